/*
 * smtp_reply.h - incremental parser for SMTP replies (RFC 5321 4.2).
 *
 * Used on the backend side: bytes from a possibly hostile server in, one
 * complete reply out.  A reply is one or more lines "DDD-text" ending with
 * "DDD text" (or "DDD" alone), all with the same code, each ending in
 * CRLF (a bare LF is accepted as line end).  The raw bytes of the reply
 * are kept so they can be relayed to the client verbatim.
 */
#ifndef MSAPROXY_SMTP_REPLY_H
#define MSAPROXY_SMTP_REPLY_H

#include <stddef.h>

#define SMTP_REPLY_MAX	     8192 /* whole reply, all lines */
#define SMTP_REPLY_LINE_MAX  1000 /* one line, CRLF included */
#define SMTP_REPLY_LINES_MAX 64

enum smtp_reply_status {
	SMTP_REPLY_MORE = 0,   /* need more bytes */
	SMTP_REPLY_DONE = 1,   /* a whole reply is in the parser */
	SMTP_REPLY_ERROR = -1, /* not SMTP, too long, too many lines,
				  codes differ: drop the backend */
};

struct smtp_reply {
	int code; /* 200..599 */
	size_t nlines;
	size_t len; /* raw bytes in raw[] */
	char raw[SMTP_REPLY_MAX];
	/* offsets into raw[] of each line's text (after "DDD-") and its
	 * length without CRLF */
	unsigned short text_off[SMTP_REPLY_LINES_MAX];
	unsigned short text_len[SMTP_REPLY_LINES_MAX];
	unsigned state; /* private */
};

void smtp_reply_init(struct smtp_reply *r);
/* Feed bytes; *consumed gets how many were used (it stops right after a
 * complete reply, so pipelined replies stay in the caller's buffer).
 * After SMTP_REPLY_DONE the next feed starts a new reply (the finished one
 * is discarded).  SMTP_REPLY_ERROR is sticky until smtp_reply_init().  The
 * code must be %x32-35 %x30-35 %x30-39 (RFC 5321 4.2); text may hold HTAB,
 * printable ASCII and bytes >= 0x80, no other control bytes. */
enum smtp_reply_status smtp_reply_feed(struct smtp_reply *r, const char *in,
				       size_t len, size_t *consumed);
/* Does an EHLO reply list keyword kw (case-insensitive, first word of a
 * line after the first)?  If so and args is non-NULL, *args points at the
 * rest of that line (after one space) and *argslen its length.  Only a
 * complete reply with code 250 lists anything. */
int smtp_reply_has_ext(const struct smtp_reply *r, const char *kw,
		       const char **args, size_t *argslen);

#endif
