/*
 * fuzz_relay.c - libFuzzer target: the message relay (relay.c) as the
 * session drives it, with input arriving in pieces and a backend that
 * takes its bytes in pieces.
 *
 * Input: byte 0 sets the mode (bit 0: normalize; bit 1: BDAT, one chunk
 * of the whole stream, LAST; bit 2: a byte-rate allowance from byte 1;
 * bit 3: a size limit from byte 2; bit 4: the backend is lost halfway;
 * bit 5: DATA or chunk bytes written straight into the backend's buffer
 * and relayed in place whenever relay_in_place_ok(), as the session does
 * under TLS),
 * bytes 1-2 the allowance and the limit, byte 3 seeds the piece sizes;
 * the rest is the client's stream after "354" (or the chunk).
 *
 * Checked after every call and at the end:
 *   - buffers stay within their capacity; the input only shrinks, the
 *     output only by what the backend took;
 *   - in reject mode the backend gets exactly the client's bytes, a
 *     prefix of the stream, and no byte after a sink began;
 *   - nothing ever reaches the backend past the allowance or the size
 *     limit (DATA; a chunk's size was checked at its BDAT), and never a
 *     bare LF, bare CR or NUL (DATA, reject mode);
 *   - the relay ends exactly when the scanner found the end of data (or
 *     the chunk is all read), and relay_finish() leaves the smtp state a
 *     legal one with the sink cleared.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/relay.h"
#include "fuzz_check.h"

#define IN_CAP	(28u * 1024) /* a session's input buffer */
#define OUT_CAP (16u * 1024) /* small, so the backend fills up */

struct sim {
	uint64_t allowance;
	uint64_t taken;
};

static bool
take_bytes(void *ctx, size_t n)
{
	struct sim *m = ctx;

	if (n > m->allowance - m->taken)
		return false;
	m->taken += n;
	return true;
}

static const struct smtp_params params = {
	.hostname = "mx.fuzz.test",
	.mode = LISTENER_IMPLICIT,
	.auth_mechs = AUTH_MECH_PLAIN,
	.max_line = 1000,
	.max_auth_line = 12288,
	.max_message_size = 50 * 1024 * 1024,
	.max_recipients = 100,
	.max_errors = 10,
};

/* smtp.c brought to the point where message bytes flow. */
static void
to_message(struct smtp *s, struct buf *in, bool bdat, size_t len)
{
	char line[64];
	const char *lines[1] = {"ok"};
	size_t lens[1] = {2};
	int n;

	if (bdat)
		smtp_backend_offer(s, 0, SMTP_OFFER_CHUNKING);
	smtp_start(s);
	buf_append(in, "EHLO c\r\nAUTH PLAIN AGRlbW8AcHc=\r\n", 33);
	CHECK(smtp_input(s, in) == SMTP_ACT_AUTH, "no AUTH");
	smtp_auth_result(s, true);
	buf_append(in, "MAIL FROM:<a@b>\r\n", 17);
	CHECK(smtp_input(s, in) == SMTP_ACT_FORWARD, "no MAIL");
	smtp_backend_ready(s, 0, bdat);
	smtp_backend_reply(s, 250, lines, lens, 1);
	buf_append(in, "RCPT TO:<c@d>\r\n", 15);
	CHECK(smtp_input(s, in) == SMTP_ACT_FORWARD, "no RCPT");
	smtp_backend_reply(s, 250, lines, lens, 1);
	if (bdat) {
		n = snprintf(line, sizeof(line), "BDAT %zu LAST\r\n", len);
		buf_append(in, line, (size_t)n);
		CHECK(smtp_input(s, in) == SMTP_ACT_FORWARD, "no BDAT");
		smtp_chunk_begin(s);
	} else {
		buf_append(in, "DATA\r\n", 6);
		CHECK(smtp_input(s, in) == SMTP_ACT_FORWARD, "no DATA");
		CHECK(smtp_backend_reply(s, 354, NULL, NULL, 0) ==
			      SMTP_ACT_DATA,
		      "no 354");
	}
	buf_consume(&s->out, buf_used(&s->out));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp s;
	struct relay r;
	struct buf in, out;
	struct sim m = {.allowance = UINT64_MAX};
	struct relay_io io;
	unsigned mode, seed;
	bool bdat, lose, in_place, ended = false, lost = false;
	const uint8_t *stream;
	size_t len, fed = 0, got = 0;
	uint64_t max_size = 50 * 1024 * 1024;
	char *sent;

	if (size < 4)
		return 0;
	mode = data[0];
	bdat = (mode & 2) != 0;
	lose = (mode & 16) != 0;
	in_place = (mode & 32) != 0;
	if (mode & 4)
		m.allowance = data[1] * 16u;
	if (mode & 8)
		max_size = data[2] * 16u;
	seed = data[3];
	stream = data + 4;
	len = size - 4;
	sent = xmalloc(len * 2 + 64);

	smtp_init(&s, &params, true);
	buf_init(&in, IN_CAP);
	buf_init(&out, OUT_CAP);
	to_message(&s, &in, bdat, len);
	if (bdat)
		CHECK(relay_chunk_begin(&r, &s) || len == 0, "chunk refused");
	else
		relay_begin(&r);

	for (unsigned step = 0; !ended && step < 100000; step++) {
		size_t piece = 1 + (seed = seed * 33 + 7) % 97 * 37;
		size_t before = buf_used(&in);
		enum relay_sink sink_before = r.sink;

		if (piece > len - fed)
			piece = len - fed;
		if (lose && !lost && (fed + piece) * 2 >= len) {
			relay_lost(&r);
			lost = true;
		}
		io = (struct relay_io){
			.in = &in,
			.out = lost ? NULL : &out,
			.max_size = max_size,
			.normalize = (mode & 1) != 0,
			.take_bytes = take_bytes,
			.ctx = &m,
		};
		if (in_place && relay_in_place_ok(&r, &io) &&
		    buf_room(&out) > 0 && piece > 0 &&
		    (!bdat || s.chunk_left > 0)) {
			/* As the session decrypts: into the outbox's tail,
			 * what follows the end of data to the input. */
			char *t = buf_tail(&out);
			size_t used;

			if (piece > buf_room(&out))
				piece = buf_room(&out);
			memcpy(t, stream + fed, piece);
			fed += piece;
			if (bdat)
				used = relay_chunk_in_place(
					&r, &io, piece, &s.chunk_left, true);
			else
				used = relay_data_in_place(&r, &io, piece);
			CHECK(used <= piece, "used more than it had");
			CHECK(used == piece ||
				      (bdat ? s.chunk_left == 0 : r.ds.done),
			      "stopped short of the end");
			buf_append(&in, t + used, piece - used);
			before = buf_used(&in);
			ended = bdat ? s.chunk_left == 0 : r.ds.done;
		} else {
			piece = buf_append(&in, (const char *)stream + fed,
					   piece);
			fed += piece;
			before = buf_used(&in);
			if (bdat)
				ended = relay_chunk(&r, &io, &s.chunk_left,
						    true);
			else
				ended = relay_data(&r, &io);
		}
		CHECK(buf_used(&in) <= before, "input grew");
		CHECK(out.len <= out.cap && in.len <= in.cap, "over capacity");
		CHECK(io.forwarded == 0 || (!lost && sink_before == 0),
		      "forwarded while sinking");
		CHECK(r.sink == RELAY_SINK_NONE || r.sink == sink_before ||
			      sink_before == RELAY_SINK_NONE,
		      "sink changed from %d to %d", (int)sink_before,
		      (int)r.sink);
		/* The backend takes some or all of what it has. */
		if (buf_used(&out) > 0) {
			size_t take = seed & 1 ? buf_used(&out)
					       : buf_used(&out) / 2 + 1;
			memcpy(sent + got, buf_head(&out), take);
			got += take;
			buf_consume(&out, take);
		}
		CHECK(got <= m.taken && m.taken <= m.allowance,
		      "%zu bytes sent, %llu charged, %llu allowed", got,
		      (unsigned long long)m.taken,
		      (unsigned long long)m.allowance);
		if (!ended && fed == len && buf_used(&in) == 0 &&
		    buf_used(&out) == 0)
			break; /* the client stopped mid-message */
	}
	if (buf_used(&out) > 0) {
		memcpy(sent + got, buf_head(&out), buf_used(&out));
		got += buf_used(&out);
	}
	if (!(mode & 1)) {
		CHECK(got <= fed && memcmp(sent, stream, got) == 0,
		      "the backend got other bytes than the client sent");
		if (!bdat)
			for (size_t i = 0; i < got; i++)
				CHECK(sent[i] != '\0' &&
					      (sent[i] != '\n' ||
					       (i > 0 &&
						sent[i - 1] == '\r')) &&
					      (sent[i] != '\r' ||
					       i + 1 == got ||
					       sent[i + 1] == '\n'),
				      "bad byte at %zu went to the backend", i);
	}
	CHECK((mode & 1) || bdat || got <= max_size + 3,
	      "%zu bytes went on past a size limit of %llu", got,
	      (unsigned long long)max_size);
	if (ended) {
		enum relay_sink sink = relay_finish(&r, &s, "451 4.7.1 limit");

		CHECK(r.sink == RELAY_SINK_NONE, "sink survives the end");
		CHECK(sink != RELAY_SINK_NONE || s.state == SMTP_DATA_END,
		      "state %d after a message sent on", (int)s.state);
		CHECK(sink == RELAY_SINK_NONE || s.state == SMTP_IDLE,
		      "state %d after a refused message", (int)s.state);
		CHECK(!lost || sink == RELAY_SINK_LOST ||
			      sink == RELAY_SINK_BAD_BYTES ||
			      sink == RELAY_SINK_TOO_BIG ||
			      sink == RELAY_SINK_LIMIT,
		      "a lost backend's message was sent on");
	}
	smtp_free(&s);
	buf_free(&in);
	buf_free(&out);
	free(sent);
	return 0;
}
