/*
 * smtp_reply.c - incremental parser for SMTP replies (RFC 5321 4.2, 4.5.3;
 * EHLO keywords RFC 5321 4.1.1.1).
 *
 * Hostile input: the bytes come from a backend that may be broken or
 * compromised, and end up relayed to our client.  The parser is a byte-wise
 * state machine with fixed bounds (SMTP_REPLY_MAX bytes, SMTP_REPLY_LINE_MAX
 * per line, SMTP_REPLY_LINES_MAX lines) and never reads or writes outside
 * its arguments and struct.  Anything that is not a well-formed reply is
 * SMTP_REPLY_ERROR, and the error is sticky until smtp_reply_init():
 *   - a reply code that is not %x32-35 %x30-35 %x30-39 (200..559 in the
 *     RFC 5321 grammar), or a line whose code differs from the first line's;
 *   - a fourth byte that is not '-', ' ' or the line end;
 *   - in the text, a control byte other than HTAB (NUL, bare CR, ESC, DEL
 *     ...); bytes >= 0x80 pass (SMTPUTF8 servers send UTF-8);
 *   - a line longer than SMTP_REPLY_LINE_MAX (terminator included), a reply
 *     longer than SMTP_REPLY_MAX, more than SMTP_REPLY_LINES_MAX lines.
 * A line ends with CRLF or a bare LF; "DDD" alone is a valid last line.
 *
 * After SMTP_REPLY_DONE, feeding more bytes starts a new reply (the old one
 * is dropped), so a caller can loop over pipelined replies.
 *
 * The private state word packs the parser state (bits 0-3), "this line is
 * the last one" (bit 4) and the raw offset where the current line starts
 * (bits 16-31; SMTP_REPLY_MAX fits).
 */
#include <string.h>

#include "smtp/smtp_reply.h"

enum {
	RS_CODE0 = 0, /* first digit of a line */
	RS_CODE1,
	RS_CODE2,
	RS_SEP,	 /* '-', ' ' or line end */
	RS_TEXT, /* text up to CR or LF */
	RS_CR,	 /* after CR, LF must follow */
	RS_DONE,
	RS_ERROR,
};

#define ST_MASK	    0x0fu
#define LAST_FLAG   0x10u
#define START_SHIFT 16

_Static_assert(SMTP_REPLY_MAX <= 0xffff, "line start must fit 16 bits");
_Static_assert(SMTP_REPLY_LINE_MAX <= SMTP_REPLY_MAX, "bounds");

static unsigned
pack(unsigned st, unsigned last, size_t start)
{
	return st | (last ? LAST_FLAG : 0) | (unsigned)start << START_SHIFT;
}

void
smtp_reply_init(struct smtp_reply *r)
{
	/* Not raw[] and the line tables (8.5 KB): len and nlines say how
	 * much of them holds this reply. */
	r->code = 0;
	r->nlines = 0;
	r->len = 0;
	r->state = pack(RS_CODE0, 0, 0);
}

/* May byte c appear in reply text?  HTAB, printable ASCII, and 8-bit. */
static int
text_byte_ok(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/*
 * Digit d (0..2) of a line's code.  The first line sets the code and must
 * follow RFC 5321's Reply-code = %x32-35 %x30-35 %x30-39; later lines must
 * repeat it byte for byte.
 */
static int
code_digit_ok(const struct smtp_reply *r, unsigned d, unsigned char c)
{
	static const char lo[3] = {'2', '0', '0'}, hi[3] = {'5', '5', '9'};

	if (r->nlines > 0)
		return c == (unsigned char)r->raw[d];
	return c >= lo[d] && c <= hi[d];
}

/* A line ended; the terminator is already in raw[] and ends at r->len.
 * tlen is the terminator's length (1 or 2). */
static unsigned
end_line(struct smtp_reply *r, unsigned last, size_t tlen)
{
	size_t n = r->nlines;

	r->text_len[n] = (unsigned short)(r->len - tlen - r->text_off[n]);
	r->nlines = n + 1;
	if (last)
		return RS_DONE;
	if (r->nlines == SMTP_REPLY_LINES_MAX)
		return RS_ERROR; /* a continuation line with no room left */
	return RS_CODE0;
}

enum smtp_reply_status
smtp_reply_feed(struct smtp_reply *r, const char *in, size_t len,
		size_t *consumed)
{
	unsigned st = r->state & ST_MASK;
	unsigned last = (r->state & LAST_FLAG) != 0;
	size_t start = r->state >> START_SHIFT;
	size_t i = 0;
	unsigned char c;

	*consumed = 0;
	if (st == RS_ERROR)
		return SMTP_REPLY_ERROR;
	if (st == RS_DONE) {
		smtp_reply_init(r);
		st = RS_CODE0;
		last = 0;
		start = 0;
	}

	while (i < len && st != RS_DONE && st != RS_ERROR) {
		c = (unsigned char)in[i];
		/* Bounds first: the byte must fit the line and the reply. */
		if (r->len >= SMTP_REPLY_MAX ||
		    r->len - start >= SMTP_REPLY_LINE_MAX) {
			st = RS_ERROR;
			break;
		}
		r->raw[r->len++] = (char)c;
		i++;

		switch (st) {
		case RS_CODE0:
		case RS_CODE1:
		case RS_CODE2:
			if (!code_digit_ok(r, st - RS_CODE0, c)) {
				st = RS_ERROR;
				break;
			}
			if (st == RS_CODE2 && r->nlines == 0)
				r->code = (r->raw[0] - '0') * 100 +
					  (r->raw[1] - '0') * 10 +
					  (r->raw[2] - '0');
			st++;
			break;
		case RS_SEP:
			if (c == '-' || c == ' ') {
				last = c == ' ';
				r->text_off[r->nlines] = (unsigned short)r->len;
				st = RS_TEXT;
			} else if (c == '\r' || c == '\n') {
				/* "DDD" alone: a last line with no text. */
				last = 1;
				r->text_off[r->nlines] =
					(unsigned short)(r->len - 1);
				if (c == '\r')
					st = RS_CR;
				else
					st = end_line(r, last, 1);
			} else {
				st = RS_ERROR;
			}
			break;
		case RS_TEXT:
			if (c == '\r')
				st = RS_CR;
			else if (c == '\n')
				st = end_line(r, last, 1);
			else if (!text_byte_ok(c))
				st = RS_ERROR;
			break;
		case RS_CR:
			if (c == '\n')
				st = end_line(r, last, 2);
			else
				st = RS_ERROR; /* bare CR */
			break;
		default:
			st = RS_ERROR;
			break;
		}
		if (st == RS_CODE0)
			start = r->len; /* a new line begins after this byte */
	}

	*consumed = i;
	r->state = pack(st, last, start);
	if (st == RS_ERROR)
		return SMTP_REPLY_ERROR;
	if (st == RS_DONE)
		return SMTP_REPLY_DONE;
	return SMTP_REPLY_MORE;
}

static int
ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

int
smtp_reply_has_ext(const struct smtp_reply *r, const char *kw,
		   const char **args, size_t *argslen)
{
	size_t i, k, kwlen, tl;
	const char *t;

	if (kw == NULL || (kwlen = strlen(kw)) == 0)
		return 0;
	/* Only a complete, positive EHLO reply advertises anything. */
	if ((r->state & ST_MASK) != RS_DONE || r->code != 250)
		return 0;
	for (i = 1; i < r->nlines && i < SMTP_REPLY_LINES_MAX; i++) {
		t = r->raw + r->text_off[i];
		tl = r->text_len[i];
		if (tl < kwlen || (tl > kwlen && t[kwlen] != ' '))
			continue;
		for (k = 0; k < kwlen; k++)
			if (ascii_lower((unsigned char)t[k]) !=
			    ascii_lower((unsigned char)kw[k]))
				break;
		if (k != kwlen)
			continue;
		if (args != NULL) {
			*args = tl > kwlen ? t + kwlen + 1 : t + kwlen;
			if (argslen != NULL)
				*argslen = tl > kwlen ? tl - kwlen - 1 : 0;
		}
		return 1;
	}
	return 0;
}
