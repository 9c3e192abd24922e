/*
 * test_relay.c - the message relay (smtp/relay.c): DATA and BDAT bytes
 * from the client's input to the backend's buffer, with the verdicts it
 * hands smtp.c at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/relay.h"

static const struct smtp_params params = {
	.hostname = "mx.test",
	.mode = LISTENER_IMPLICIT,
	.auth_mechs = AUTH_MECH_PLAIN,
	.max_line = 1000,
	.max_auth_line = 12288,
	.max_message_size = 1000000,
	.max_recipients = 3,
	.max_errors = 5,
};

struct fixture {
	struct smtp s;
	struct relay r;
	struct buf in, out;
	uint64_t allowance; /* of the byte rate */
	char replies[4096];
};

static bool
take_bytes(void *ctx, size_t n)
{
	struct fixture *f = ctx;

	if (n > f->allowance)
		return false;
	f->allowance -= n;
	return true;
}

static struct relay_io
io_of(struct fixture *f, uint64_t max_size, bool normalize)
{
	struct relay_io io = {
		.in = &f->in,
		.out = &f->out,
		.max_size = max_size,
		.normalize = normalize,
		.take_bytes = take_bytes,
		.ctx = f,
	};
	return io;
}

static enum smtp_action
feeds(struct fixture *f, const char *bytes)
{
	assert_int_equal(buf_append(&f->in, bytes, strlen(bytes)),
			 strlen(bytes));
	return smtp_input(&f->s, &f->in);
}

static void
reply(struct fixture *f, int code)
{
	const char *lines[1] = {"ok"};
	size_t lens[1] = {2};

	smtp_backend_reply(&f->s, code, lines, lens, 1);
}

static const char *
replies(struct fixture *f)
{
	size_t n = buf_used(&f->s.out);

	if (n > 0) /* an empty buffer may have no storage yet */
		memcpy(f->replies, buf_head(&f->s.out), n);
	f->replies[n] = '\0';
	buf_consume(&f->s.out, n);
	return f->replies;
}

/* Authenticated on 465, MAIL and RCPT taken by the backend. */
static void
to_transaction(struct fixture *f, bool chunking)
{
	if (chunking)
		smtp_backend_offer(&f->s, 0, SMTP_OFFER_CHUNKING);
	smtp_start(&f->s);
	assert_int_equal(feeds(f, "EHLO c.test\r\nAUTH PLAIN AGRlbW8AcHc=\r\n"),
			 SMTP_ACT_AUTH);
	smtp_auth_result(&f->s, true);
	assert_int_equal(feeds(f, "MAIL FROM:<a@b>\r\n"), SMTP_ACT_FORWARD);
	smtp_backend_ready(&f->s, 0, chunking);
	reply(f, 250);
	assert_int_equal(feeds(f, "RCPT TO:<c@d>\r\n"), SMTP_ACT_FORWARD);
	reply(f, 250);
	replies(f);
}

/* ... and the backend said 354 to DATA. */
static void
to_data(struct fixture *f)
{
	to_transaction(f, false);
	assert_int_equal(feeds(f, "DATA\r\n"), SMTP_ACT_FORWARD);
	assert_int_equal(smtp_backend_reply(&f->s, 354, NULL, NULL, 0),
			 SMTP_ACT_DATA);
	relay_begin(&f->r);
	replies(f);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	smtp_init(&f->s, &params, true);
	buf_init(&f->in, 64 * 1024);
	buf_init(&f->out, 128 * 1024);
	f->allowance = UINT64_MAX;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	smtp_free(&f->s);
	buf_free(&f->in);
	buf_free(&f->out);
	free(f);
	return 0;
}

static void
append(struct buf *b, const char *text)
{
	assert_int_equal(buf_append(b, text, strlen(text)), strlen(text));
}

static void
append_n(struct buf *b, const char *p, size_t n)
{
	assert_int_equal(buf_append(b, p, n), n);
}

static void
test_canonical_message_passes_byte_for_byte(void **state)
{
	static const char msg[] = "Subject: x\r\n\r\n..dot\r\nbody\r\n";
	struct fixture *f = *state;
	struct relay_io io;

	to_data(f);
	append(&f->in, msg);
	append(&f->in, ".\r\nQUIT\r\n");
	io = io_of(f, 1000000, false);
	assert_true(relay_data(&f->r, &io));
	/* The marker too, nothing unstuffed; the next command stays. */
	assert_int_equal(buf_used(&f->out), strlen(msg) + 3);
	assert_memory_equal(buf_head(&f->out), msg, strlen(msg));
	assert_int_equal(io.forwarded, strlen(msg) + 3);
	assert_int_equal(buf_used(&f->in), 6);
	assert_int_equal(f->r.ds.size, strlen(msg));
	assert_int_equal(relay_finish(&f->r, &f->s, NULL), RELAY_SINK_NONE);
	assert_int_equal(f->s.state, SMTP_DATA_END);
}

static void
test_every_split_gives_the_same_bytes(void **state)
{
	static const char msg[] = "a\r\n.b\r\n\r\n.\r\n";
	struct fixture *f = *state;

	to_data(f);
	for (size_t cut = 0; cut <= strlen(msg); cut++) {
		struct relay_io io = io_of(f, 1000000, false);

		relay_begin(&f->r);
		buf_clear(&f->out);
		assert_int_equal(buf_append(&f->in, msg, cut), cut);
		assert_false(cut < strlen(msg) && relay_data(&f->r, &io));
		append(&f->in, msg + cut);
		assert_true(relay_data(&f->r, &io));
		assert_int_equal(buf_used(&f->out), strlen(msg));
		assert_memory_equal(buf_head(&f->out), msg, strlen(msg));
		assert_int_equal(buf_used(&f->in), 0);
	}
}

static void
test_full_outbox_waits(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;
	char *big = malloc(100000);

	to_data(f);
	buf_free(&f->out);
	buf_init(&f->out, 4096);
	memset(big, 'x', 99998);
	memcpy(big + 99998, "\r\n", 2);
	assert_int_equal(buf_append(&f->in, big, 60000), 60000);
	io = io_of(f, 1000000, false);
	assert_false(relay_data(&f->r, &io));
	assert_int_equal(buf_used(&f->out), 4096); /* as far as it fits */
	assert_int_equal(buf_used(&f->in), 60000 - 4096);
	assert_false(relay_data(&f->r, &io)); /* still full: nothing */
	assert_int_equal(io.forwarded, 0);
	buf_consume(&f->out, 4096); /* the backend took it */
	assert_false(relay_data(&f->r, &io));
	assert_int_equal(io.forwarded, 4096);
	free(big);
}

static void
test_bare_lf_is_sunk_and_refused(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_data(f);
	append(&f->in, "ok\r\nbad\nline\r\nmore\r\n.\r\n");
	io = io_of(f, 1000000, false);
	assert_true(relay_data(&f->r, &io));
	assert_int_equal(f->r.sink, RELAY_SINK_BAD_BYTES);
	/* Nothing: the scan of what arrived together says whether any of
	 * it may go, and the bare LF was in it. */
	assert_int_equal(buf_used(&f->out), 0);
	assert_int_equal(relay_finish(&f->r, &f->s, NULL),
			 RELAY_SINK_BAD_BYTES);
	assert_string_equal(replies(f),
			    "550 5.6.0 Message refused: bare CR or LF, or NUL, "
			    "in the message (RFC 5321 2.3.8)\r\n");
	assert_int_equal(f->s.state, SMTP_IDLE);
	assert_false(f->s.in_mail);
	assert_int_equal(f->r.sink, RELAY_SINK_NONE);
}

static void
test_normalize_rewrites_bare_lf(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_data(f);
	append(&f->in, "a\nb\r\n.\r\n");
	io = io_of(f, 1000000, true);
	assert_true(relay_data(&f->r, &io));
	assert_int_equal(buf_used(&f->out), strlen("a\r\nb\r\n.\r\n"));
	assert_memory_equal(buf_head(&f->out), "a\r\nb\r\n.\r\n", 9);
	assert_int_equal(relay_finish(&f->r, &f->s, NULL), RELAY_SINK_NONE);
}

static void
test_too_big_is_552(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_data(f);
	append(&f->in, "0123456789\r\n0123456789\r\n.\r\n");
	io = io_of(f, 10, false);
	assert_true(relay_data(&f->r, &io));
	assert_int_equal(f->r.sink, RELAY_SINK_TOO_BIG);
	assert_int_equal(relay_finish(&f->r, &f->s, NULL), RELAY_SINK_TOO_BIG);
	assert_string_equal(replies(f), "552 5.3.4 Message size exceeds fixed "
					"maximum message size\r\n");
	assert_string_equal(relay_sink_name(RELAY_SINK_TOO_BIG), "too-big");
}

static void
test_byte_rate_stops_forwarding(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_data(f);
	f->allowance = 5;
	append(&f->in, "0123456789\r\n.\r\n");
	io = io_of(f, 1000000, false);
	assert_true(relay_data(&f->r, &io));
	assert_int_equal(f->r.sink, RELAY_SINK_LIMIT);
	assert_int_equal(buf_used(&f->out), 0);
	assert_int_equal(relay_finish(&f->r, &f->s, "451 4.7.1 Slow down"),
			 RELAY_SINK_LIMIT);
	assert_string_equal(replies(f), "451 4.7.1 Slow down\r\n");
}

static void
test_lost_backend_sinks_and_answers_451(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_data(f);
	append(&f->in, "part one\r\n");
	io = io_of(f, 1000000, false);
	assert_false(relay_data(&f->r, &io));
	relay_lost(&f->r);
	io.out = NULL; /* the connection is gone */
	append(&f->in, "part two\r\n.\r\n");
	assert_true(relay_data(&f->r, &io));
	assert_int_equal(relay_finish(&f->r, &f->s, NULL), RELAY_SINK_LOST);
	assert_non_null(strstr(replies(f), "451 4.4.2"));
}

static void
test_no_outbox_is_a_lost_backend(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_data(f);
	append(&f->in, "x\r\n.\r\n");
	io = io_of(f, 1000000, false);
	io.out = NULL;
	assert_true(relay_data(&f->r, &io));
	assert_int_equal(f->r.sink, RELAY_SINK_LOST);
}

static void
test_bdat_chunks_stream_exactly(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_transaction(f, true);
	assert_int_equal(feeds(f, "BDAT 5\r\nhel"), SMTP_ACT_FORWARD);
	smtp_chunk_begin(&f->s);
	assert_true(relay_chunk_begin(&f->r, &f->s));
	io = io_of(f, 1000000, false);
	assert_false(
		relay_chunk(&f->r, &io, &f->s.chunk_left, f->s.chunk_last));
	assert_int_equal(f->s.chunk_left, 2);
	append(&f->in, "loNOOP\r\n");
	assert_true(relay_chunk(&f->r, &io, &f->s.chunk_left, f->s.chunk_last));
	assert_int_equal(buf_used(&f->out), 5);
	assert_memory_equal(buf_head(&f->out), "hello", 5);
	assert_int_equal(buf_used(&f->in), 6); /* NOOP stays a command */
	assert_int_equal(relay_finish(&f->r, &f->s, NULL), RELAY_SINK_NONE);
	assert_int_equal(f->s.state, SMTP_BACKEND); /* not LAST */
}

static void
test_bdat_bare_cr_across_last_chunk(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_transaction(f, true);
	assert_int_equal(feeds(f, "BDAT 2\r\nx\r"), SMTP_ACT_FORWARD);
	smtp_chunk_begin(&f->s);
	assert_true(relay_chunk_begin(&f->r, &f->s));
	io = io_of(f, 1000000, false);
	assert_true(relay_chunk(&f->r, &io, &f->s.chunk_left, false));
	assert_int_equal(relay_finish(&f->r, &f->s, NULL), RELAY_SINK_NONE);
	reply(f, 250);
	/* "BDAT 0 LAST" would end the message on that CR: held back. */
	assert_int_equal(feeds(f, "BDAT 0 LAST\r\n"), SMTP_ACT_FORWARD);
	smtp_chunk_begin(&f->s);
	assert_false(relay_chunk_begin(&f->r, &f->s));
	assert_int_equal(f->r.sink, RELAY_SINK_BAD_BYTES);
	assert_true(relay_chunk(&f->r, &io, &f->s.chunk_left, true));
	assert_int_equal(relay_finish(&f->r, &f->s, NULL),
			 RELAY_SINK_BAD_BYTES);
	assert_non_null(strstr(replies(f), "550 5.6.0"));
}

/* Bytes "decrypted" into the outbox's tail, as the session does, then
 * relayed in place; what follows the end of data goes to f->in. */
static size_t
in_place(struct fixture *f, struct relay_io *io, const char *p, size_t n)
{
	char *t = buf_tail(&f->out);
	size_t used;

	assert_non_null(t);
	assert_true(n <= buf_room(&f->out));
	assert_true(relay_in_place_ok(&f->r, io));
	memcpy(t, p, n);
	used = relay_data_in_place(&f->r, io, n);
	if (used < n)
		append_n(&f->in, t + used, n - used);
	return used;
}

static void
test_in_place_every_split_gives_the_same_bytes(void **state)
{
	/* Dot-stuffing, and the end of data split across two "records" at
	 * every byte, with the next command right behind it. */
	static const char msg[] = "a\r\n..b\r\n\r\n.c\r\n.\r\nQUIT\r\n";
	const size_t body = strlen(msg) - strlen("QUIT\r\n");
	struct fixture *f = *state;

	to_data(f);
	for (size_t cut = 0; cut <= strlen(msg); cut++) {
		struct relay_io io = io_of(f, 1000000, false);
		size_t used = in_place(f, &io, msg, cut);

		assert_int_equal(used, cut <= body ? cut : body);
		if (!f->r.ds.done)
			in_place(f, &io, msg + cut, strlen(msg) - cut);
		else
			append(&f->in, msg + cut);
		assert_true(f->r.ds.done);
		assert_false(relay_in_place_ok(&f->r, &io));
		assert_int_equal(buf_used(&f->out), body);
		assert_memory_equal(buf_head(&f->out), msg, body);
		assert_int_equal(buf_used(&f->in), strlen("QUIT\r\n"));
		assert_memory_equal(buf_head(&f->in), "QUIT\r\n", 6);
		assert_int_equal(f->r.ds.size, body - 3);
		relay_begin(&f->r);
		buf_clear(&f->out);
		buf_clear(&f->in);
	}
}

static void
test_in_place_refuses_as_the_copy_path_does(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_data(f);
	io = io_of(f, 1000000, false);
	in_place(f, &io, "ok\r\n", 4);
	assert_int_equal(buf_used(&f->out), 4);
	/* A bare LF: nothing of its record goes on, and the rest is sunk
	 * through the input buffer. */
	in_place(f, &io, "bad\nline\r\n", 10);
	assert_int_equal(f->r.sink, RELAY_SINK_BAD_BYTES);
	assert_int_equal(buf_used(&f->out), 4);
	assert_false(relay_in_place_ok(&f->r, &io));
	append(&f->in, "more\r\n.\r\n");
	assert_true(relay_data(&f->r, &io));
	assert_int_equal(buf_used(&f->out), 4);
	assert_int_equal(relay_finish(&f->r, &f->s, NULL),
			 RELAY_SINK_BAD_BYTES);

	/* Too big, and over the byte rate. */
	buf_clear(&f->out);
	relay_begin(&f->r);
	io = io_of(f, 10, false);
	in_place(f, &io, "0123456789\r\n", 12);
	assert_int_equal(f->r.sink, RELAY_SINK_TOO_BIG);
	assert_int_equal(buf_used(&f->out), 0);
	relay_begin(&f->r);
	f->allowance = 5;
	io = io_of(f, 1000000, false);
	in_place(f, &io, "0123456789\r\n", 12);
	assert_int_equal(f->r.sink, RELAY_SINK_LIMIT);
	assert_int_equal(buf_used(&f->out), 0);
}

static void
test_in_place_only_when_nothing_waits(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_data(f);
	io = io_of(f, 1000000, false);
	assert_true(relay_in_place_ok(&f->r, &io));
	append(&f->in, "x"); /* older bytes go first, through the copy */
	assert_false(relay_in_place_ok(&f->r, &io));
	buf_clear(&f->in);
	io = io_of(f, 1000000, true); /* normalize rewrites: no */
	assert_false(relay_in_place_ok(&f->r, &io));
	io = io_of(f, 1000000, false);
	io.out = NULL;
	assert_false(relay_in_place_ok(&f->r, &io));
}

/* A chunk "decrypted" into the outbox in place, the rest to f->in. */
static size_t
chunk_in_place(struct fixture *f, struct relay_io *io, const char *p, size_t n,
	       bool last)
{
	char *t = buf_tail(&f->out);
	size_t used;

	assert_non_null(t);
	assert_true(relay_in_place_ok(&f->r, io));
	memcpy(t, p, n);
	used = relay_chunk_in_place(&f->r, io, n, &f->s.chunk_left, last);
	if (used < n)
		append_n(&f->in, t + used, n - used);
	return used;
}

static void
test_bdat_in_place(void **state)
{
	struct fixture *f = *state;
	struct relay_io io;

	to_transaction(f, true);
	assert_int_equal(feeds(f, "BDAT 7\r\n"), SMTP_ACT_FORWARD);
	smtp_chunk_begin(&f->s);
	assert_true(relay_chunk_begin(&f->r, &f->s));
	io = io_of(f, 1000000, false);
	/* Two records: the chunk's end and the next command in the second. */
	assert_int_equal(chunk_in_place(f, &io, "hel", 3, false), 3);
	assert_int_equal(f->s.chunk_left, 4);
	assert_int_equal(chunk_in_place(f, &io, "lo\r\nNOOP\r\n", 10, false),
			 4);
	assert_int_equal(f->s.chunk_left, 0);
	assert_int_equal(buf_used(&f->out), 7);
	assert_memory_equal(buf_head(&f->out), "hello\r\n", 7);
	assert_int_equal(buf_used(&f->in), 6); /* NOOP stays a command */
	assert_int_equal(relay_finish(&f->r, &f->s, NULL), RELAY_SINK_NONE);
	assert_int_equal(f->s.state, SMTP_BACKEND);
	reply(f, 250);
	replies(f);
	buf_clear(&f->in);
	buf_clear(&f->out);

	/* A bare LF in the LAST chunk: nothing of it goes on. */
	assert_int_equal(feeds(f, "BDAT 4 LAST\r\n"), SMTP_ACT_FORWARD);
	smtp_chunk_begin(&f->s);
	assert_true(relay_chunk_begin(&f->r, &f->s));
	assert_int_equal(chunk_in_place(f, &io, "a\nb\r", 4, true), 4);
	assert_int_equal(f->r.sink, RELAY_SINK_BAD_BYTES);
	assert_int_equal(buf_used(&f->out), 0);
	assert_int_equal(f->s.chunk_left, 0);
	assert_int_equal(relay_finish(&f->r, &f->s, NULL),
			 RELAY_SINK_BAD_BYTES);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_canonical_message_passes_byte_for_byte, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_every_split_gives_the_same_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_outbox_waits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_bare_lf_is_sunk_and_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_normalize_rewrites_bare_lf,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_big_is_552, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_byte_rate_stops_forwarding,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_lost_backend_sinks_and_answers_451, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_no_outbox_is_a_lost_backend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bdat_chunks_stream_exactly,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_bdat_bare_cr_across_last_chunk, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_in_place_every_split_gives_the_same_bytes, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_in_place_refuses_as_the_copy_path_does, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_in_place_only_when_nothing_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bdat_in_place, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
