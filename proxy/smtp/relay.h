/*
 * relay.h - a message's bytes from the client to the backend: DATA
 * (RFC 5321 4.1.1.4) and BDAT chunks (RFC 3030), pure (bytes in, bytes
 * out, a verdict out).
 *
 * The session hands relay_data() or relay_chunk() its plaintext input and
 * the backend's output buffer; the relay scans what it moves (data_scan.h:
 * the end of data, bare CR, bare LF, NUL), counts the size, charges the
 * user's byte rate through the caller's hook, and copies the bytes on as
 * they are (DKIM signatures survive) or normalised
 * (limits.bare_newlines: normalize).  When something is wrong with the
 * message it stops forwarding and sinks the rest of it: the backend must
 * never see the end of a message it only had part of.  At the end,
 * relay_finish() tells smtp.c (a chunk or message sent on, or refused with
 * its reply) and says which.
 *
 * Trusts nothing: the input may stop anywhere, and every byte is scanned
 * before it goes on.  The output buffer's room bounds each call; what does
 * not fit stays in the input for the next one.
 */
#ifndef MSAPROXY_RELAY_H
#define MSAPROXY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "smtp/data_scan.h"
#include "smtp/smtp.h"

/* Why the rest of a message is being read and dropped. */
enum relay_sink {
	RELAY_SINK_NONE,
	RELAY_SINK_BAD_BYTES, /* bare LF/CR or NUL: 550 at the end */
	RELAY_SINK_TOO_BIG,   /* over the size limit: 552 */
	RELAY_SINK_LOST,      /* the backend went away: 451 */
	RELAY_SINK_LIMIT,     /* over the user's byte rate: 451 */
};

struct relay {
	struct data_scan ds;
	enum relay_sink sink;
};

/* One call's surroundings, from the session. */
struct relay_io {
	struct buf *in;	   /* the client's plaintext */
	struct buf *out;   /* the backend's output; NULL: none (sinking) */
	uint64_t max_size; /* limits.max_message_size or the backend's SIZE */
	bool normalize;	   /* limits.bare_newlines: normalize */
	/* May n more bytes go to the backend (the user's byte rate)?  NULL:
	 * always. */
	bool (*take_bytes)(void *ctx, size_t n);
	void *ctx;
	uint64_t forwarded; /* out: bytes put in out by this call */
};

/* A new message (DATA's 354, or its first BDAT). */
void relay_begin(struct relay *r);

/* DATA: move what io->in holds, up to the end of data.  Returns true when
 * the end of data was consumed (relay_finish() next); false when it needs
 * more input or more room in io->out. */
bool relay_data(struct relay *r, struct relay_io *io);

/* DATA decrypted straight into the backend's buffer (one copy of every
 * message byte fewer than through io->in): the caller wrote len bytes at
 * buf_tail(io->out), within its room, without committing them.  They are
 * scanned there, and what goes on is committed.  Returns the bytes used:
 * len, or fewer when the end of data came first (the rest is the client's
 * next command: the caller moves it to io->in).  Only while
 * relay_in_place_ok(). */
size_t relay_data_in_place(struct relay *r, struct relay_io *io, size_t len);

/* BDAT, the same: len bytes at buf_tail(io->out), of which the chunk's
 * (up to *left) are scanned, committed and counted off *left (last: the
 * chunk said LAST).  Returns the bytes used; the rest follows the chunk
 * (the client's next command, for io->in).  Only while
 * relay_in_place_ok() and *left > 0. */
size_t relay_chunk_in_place(struct relay *r, struct relay_io *io, size_t len,
			    uint64_t *left, bool last);

/* May the next DATA or chunk bytes be read into io->out in place: nothing waits
 * in io->in ahead of them, the message is not being sunk, and the bytes go on
 * unchanged (not limits.bare_newlines: normalize). */
bool relay_in_place_ok(const struct relay *r, const struct relay_io *io);

/* BDAT: move up to *left bytes of the chunk (last: the chunk that says
 * LAST), counting them off *left.  Returns true when the chunk has all
 * been read. */
bool relay_chunk(struct relay *r, struct relay_io *io, uint64_t *left,
		 bool last);

/* A forwarded BDAT is about to go to the backend (smtp_chunk_begin() was
 * called): the first chunk starts a message.  Returns false when the BDAT
 * must not be sent after all: "BDAT 0 LAST" after a chunk that ended in CR
 * would end the message on a bare CR (the message is then refused). */
bool relay_chunk_begin(struct relay *r, const struct smtp *m);

/* The backend is gone: sink the rest, 451 at the end. */
void relay_lost(struct relay *r);

/* The message or chunk ended: tell smtp.c.  RELAY_SINK_NONE: it all went
 * to the backend (await its reply).  Otherwise the refusal is queued to
 * the client (limit_reply: the text for RELAY_SINK_LIMIT) and the sink is
 * returned, so the caller can log it and cut the backend.  The relay is
 * ready for the next message either way. */
enum relay_sink relay_finish(struct relay *r, struct smtp *m,
			     const char *limit_reply);

/* The sink's name for logs: "bare-newline", "too-big", ... */
const char *relay_sink_name(enum relay_sink sink);

#endif
