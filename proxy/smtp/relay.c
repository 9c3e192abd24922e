/*
 * relay.c - a message's bytes from the client to the backend (DATA and
 * BDAT), scanned, counted and charged as they go.  Read relay.h first.
 *
 * No I/O, no clock, no logs: the session gives it buffers and a hook for
 * the byte rate, and acts on what it returns.  The refusals it queues are
 * the client's only answer to a message the backend never completed.
 *
 * RFCs: 5321 2.3.8 and 4.1.1.4 (DATA, bare CR/LF), 3030 (BDAT), 1870
 * (SIZE).
 */
#include <string.h>

#include "smtp/relay.h"

static const char bad_reply[] =
	"550 5.6.0 Message refused: bare CR or LF, or NUL, in the message "
	"(RFC 5321 2.3.8)";
static const char big_reply[] =
	"552 5.3.4 Message size exceeds fixed maximum message size";

void
relay_begin(struct relay *r)
{
	data_scan_init(&r->ds);
	r->sink = RELAY_SINK_NONE;
}

void
relay_lost(struct relay *r)
{
	if (r->sink == RELAY_SINK_NONE)
		r->sink = RELAY_SINK_LOST;
}

static bool
relay_take(struct relay_io *io, size_t n)
{
	return io->take_bytes == NULL || n == 0 || io->take_bytes(io->ctx, n);
}

/* n scanned bytes go on (true), or the message is sunk from here: bad
 * bytes, too big, or over the byte limit, in that order. */
static bool
passes(struct relay *r, struct relay_io *io, size_t n, bool too_big)
{
	if (r->ds.bad)
		r->sink = RELAY_SINK_BAD_BYTES;
	else if (too_big)
		r->sink = RELAY_SINK_TOO_BIG;
	else if (!relay_take(io, n))
		r->sink = RELAY_SINK_LIMIT;
	else
		return true;
	return false;
}

/* Normalise what fits in io->out's room: each input byte may become two
 * (a bare LF to CRLF), plus a dot-stuffing dot.  Returns the input bytes
 * consumed; 0 when there is no room. */
static size_t
normalize_some(struct relay *r, struct relay_io *io, const char *p,
	       size_t avail)
{
	size_t room = buf_room(io->out), n, outlen;
	char *t;

	if (room < 16 || (t = buf_tail(io->out)) == NULL)
		return 0;
	if (avail > (room - 3) / 2)
		avail = (room - 3) / 2;
	n = data_normalize(&r->ds, p, avail, t, &outlen);
	if (r->ds.size > io->max_size)
		r->sink = RELAY_SINK_TOO_BIG;
	else if (!relay_take(io, outlen))
		r->sink = RELAY_SINK_LIMIT;
	else {
		buf_commit(io->out, outlen);
		io->forwarded += outlen;
	}
	return n;
}

/* Scan and copy what fits in io->out's room.  Returns the input bytes
 * consumed; 0 when there is no room. */
static size_t
scan_some(struct relay *r, struct relay_io *io, const char *p, size_t avail)
{
	size_t room = buf_room(io->out), n;

	if (room == 0)
		return 0;
	if (avail > room)
		avail = room;
	n = data_scan(&r->ds, p, avail);
	if (passes(r, io, n, r->ds.size > io->max_size))
		io->forwarded += buf_append(io->out, p, n);
	return n;
}

bool
relay_data(struct relay *r, struct relay_io *io)
{
	io->forwarded = 0;
	if (io->out == NULL)
		relay_lost(r);
	while (buf_used(io->in) > 0 && !r->ds.done) {
		const char *p = buf_head(io->in);
		size_t avail = buf_used(io->in), n;

		if (r->sink != RELAY_SINK_NONE)
			n = data_scan(&r->ds, p, avail);
		else if (io->normalize)
			n = normalize_some(r, io, p, avail);
		else
			n = scan_some(r, io, p, avail);
		if (n == 0 && !r->ds.done)
			break; /* no room: the backend must take some first */
		buf_consume(io->in, n);
	}
	return r->ds.done;
}

bool
relay_in_place_ok(const struct relay *r, const struct relay_io *io)
{
	return io->out != NULL && !io->normalize && buf_used(io->in) == 0 &&
	       r->sink == RELAY_SINK_NONE && !r->ds.done;
}

/* n scanned bytes at io->out's tail go on, or the message is sunk. */
static void
commit_in_place(struct relay *r, struct relay_io *io, size_t n, bool too_big)
{
	if (passes(r, io, n, too_big)) {
		buf_commit(io->out, n);
		io->forwarded = n;
	}
}

/* The same checks as scan_some(), on bytes already where they go. */
size_t
relay_data_in_place(struct relay *r, struct relay_io *io, size_t len)
{
	const char *p = buf_tail(io->out);
	size_t n;

	io->forwarded = 0;
	if (p == NULL || len == 0)
		return 0;
	n = data_scan(&r->ds, p, len);
	commit_in_place(r, io, n, r->ds.size > io->max_size);
	return n;
}

/* The same checks as relay_chunk(), on bytes already where they go. */
size_t
relay_chunk_in_place(struct relay *r, struct relay_io *io, size_t len,
		     uint64_t *left, bool last)
{
	const char *p = buf_tail(io->out);
	size_t n = len;

	io->forwarded = 0;
	if (p == NULL || len == 0 || *left == 0)
		return 0;
	if (n > *left)
		n = (size_t)*left;
	data_scan_chunk(&r->ds, p, n, last && n == *left);
	commit_in_place(r, io, n, false);
	*left -= n;
	return n;
}

bool
relay_chunk(struct relay *r, struct relay_io *io, uint64_t *left, bool last)
{
	io->forwarded = 0;
	if (io->out == NULL)
		relay_lost(r);
	while (*left > 0 && buf_used(io->in) > 0) {
		const char *p = buf_head(io->in);
		size_t n = buf_used(io->in);

		if (n > *left)
			n = (size_t)*left;
		if (r->sink == RELAY_SINK_NONE) {
			size_t room = buf_room(io->out);

			if (room == 0)
				break;
			if (n > room)
				n = room;
			data_scan_chunk(&r->ds, p, n, last && n == *left);
			if (passes(r, io, n, false))
				io->forwarded += buf_append(io->out, p, n);
		}
		buf_consume(io->in, n);
		*left -= n;
	}
	return *left == 0;
}

bool
relay_chunk_begin(struct relay *r, const struct smtp *m)
{
	if (m->bdat_chunks == 1)
		relay_begin(r);
	if (m->chunk_left == 0 && m->chunk_last) {
		data_scan_chunk(&r->ds, "", 0, true);
		if (r->ds.bad) {
			r->sink = RELAY_SINK_BAD_BYTES;
			return false;
		}
	}
	return true;
}

enum relay_sink
relay_finish(struct relay *r, struct smtp *m, const char *limit_reply)
{
	enum relay_sink sink = r->sink;

	switch (sink) {
	case RELAY_SINK_NONE:
		if (m->state == SMTP_CHUNK)
			smtp_chunk_sent(m);
		else
			smtp_data_sent(m);
		return sink;
	case RELAY_SINK_BAD_BYTES:
		smtp_data_refused(m, bad_reply);
		break;
	case RELAY_SINK_TOO_BIG:
		smtp_data_refused(m, big_reply);
		break;
	case RELAY_SINK_LOST:
		smtp_backend_failed(m, SMTP_BACKEND_LOST);
		break;
	case RELAY_SINK_LIMIT:
		smtp_data_refused(m, limit_reply);
		break;
	}
	r->sink = RELAY_SINK_NONE;
	return sink;
}

const char *
relay_sink_name(enum relay_sink sink)
{
	static const char *const names[] = {
		[RELAY_SINK_NONE] = "none",
		[RELAY_SINK_BAD_BYTES] = "bare-newline",
		[RELAY_SINK_TOO_BIG] = "too-big",
		[RELAY_SINK_LOST] = "backend-lost",
		[RELAY_SINK_LIMIT] = "rate-limit",
	};

	return names[sink];
}
