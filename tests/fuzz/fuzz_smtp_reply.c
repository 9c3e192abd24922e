/*
 * fuzz_smtp_reply.c - libFuzzer target: the backend reply parser
 * (smtp_reply.c), fed incrementally, against a model.
 *
 * Input: byte 0 seeds the chunk sizes (1..32); the rest is what a backend
 * sends, possibly several pipelined replies.
 *
 * The stream is parsed twice, reply by reply: all remaining bytes in one
 * call, and in small chunks.  Checked: both give the same status, bytes
 * consumed, code, lines and text offsets, which are also those of a model
 * written from smtp_reply.h (codes %x32-35 %x30-35 %x30-39 repeated on
 * every line, '-' / ' ' / line end after them, HTAB, printable and 8-bit
 * text, CRLF or LF line ends, at most 1000 bytes a line, 8192 a reply and
 * 64 lines); raw[] holds exactly the bytes consumed; an error is sticky;
 * smtp_reply_has_ext() answers as the model does and points inside raw[].
 * Chunks are exact-size copies, so ASan sees any read past one.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_reply.h"
#include "fuzz_check.h"

/* One reply as the model parses it. */
struct model {
	enum smtp_reply_status status;
	size_t consumed;
	int code;
	size_t nlines;
	size_t text_off[SMTP_REPLY_LINES_MAX];
	size_t text_len[SMTP_REPLY_LINES_MAX];
};

/* The model's byte reader: bounds are checked before a byte is taken. */
struct cursor {
	const uint8_t *p;
	size_t n, i, line;
};

enum { GOT, NEED_MORE, TOO_LONG };

static int
take(struct cursor *c, uint8_t *b)
{
	if (c->i == c->n)
		return NEED_MORE;
	if (c->i >= SMTP_REPLY_MAX || c->i - c->line >= SMTP_REPLY_LINE_MAX)
		return TOO_LONG;
	*b = c->p[c->i++];
	return GOT;
}

static bool
text_ok(uint8_t b)
{
	return b == '\t' || (b >= 0x20 && b != 0x7f);
}

static void
model_parse(const uint8_t *p, size_t n, struct model *m)
{
	static const char lo[3] = "200", hi[3] = "559";
	struct cursor c = {.p = p, .n = n};
	int r = GOT;
	uint8_t b = 0;

	memset(m, 0, sizeof(*m));
	for (;;) {
		bool last;

		c.line = c.i;
		for (int d = 0; d < 3; d++) {
			if ((r = take(&c, &b)) != GOT)
				goto out;
			if (m->nlines == 0 ? b < lo[d] || b > hi[d] : b != p[d])
				goto error;
		}
		if (m->nlines == 0)
			m->code = (p[0] - '0') * 100 + (p[1] - '0') * 10 +
				  (p[2] - '0');
		if ((r = take(&c, &b)) != GOT)
			goto out;
		if (b == '-' || b == ' ') {
			last = b == ' ';
			m->text_off[m->nlines] = c.i;
			do {
				if ((r = take(&c, &b)) != GOT)
					goto out;
				if (b != '\r' && b != '\n' && !text_ok(b))
					goto error;
			} while (b != '\r' && b != '\n');
		} else if (b == '\r' || b == '\n') {
			last = true;
			m->text_off[m->nlines] = c.i - 1;
		} else {
			goto error;
		}
		m->text_len[m->nlines] = c.i - 1 - m->text_off[m->nlines];
		if (b == '\r') {
			if ((r = take(&c, &b)) != GOT)
				goto out;
			if (b != '\n')
				goto error;
		}
		m->nlines++;
		if (last) {
			m->status = SMTP_REPLY_DONE;
			m->consumed = c.i;
			return;
		}
		if (m->nlines == SMTP_REPLY_LINES_MAX)
			goto error;
	}
out:
	m->status = r == NEED_MORE ? SMTP_REPLY_MORE : SMTP_REPLY_ERROR;
	m->consumed = c.i;
	return;
error:
	m->status = SMTP_REPLY_ERROR;
	m->consumed = c.i;
}

/* The model of smtp_reply_has_ext(): -1, or the line it names. */
static int
model_ext(const struct model *m, const uint8_t *p, const char *kw)
{
	size_t k = strlen(kw);

	if (m->status != SMTP_REPLY_DONE || m->code != 250)
		return -1;
	for (size_t i = 1; i < m->nlines; i++) {
		const char *t = (const char *)p + m->text_off[i];
		size_t tl = m->text_len[i];
		if (tl >= k && strncasecmp(t, kw, k) == 0 &&
		    (tl == k || t[k] == ' '))
			return (int)i;
	}
	return -1;
}

static void
check_ext(const struct smtp_reply *r, const struct model *m, const uint8_t *p,
	  const char *kw)
{
	const char *args = NULL;
	size_t alen = 0;
	int want = model_ext(m, p, kw);
	int got = smtp_reply_has_ext(r, kw, &args, &alen);

	CHECK(got == (want >= 0), "has_ext(%s) = %d, model line %d", kw, got,
	      want);
	if (want >= 0) {
		size_t off = m->text_off[want], tl = m->text_len[want];
		size_t k = strlen(kw);
		CHECK(args == r->raw + off + (tl > k ? k + 1 : k) &&
			      alen == (tl > k ? tl - k - 1 : 0),
		      "has_ext(%s) arguments", kw);
	}
}

/* The parser agrees with the model on one reply at p[0..n). */
static void
check_reply(const struct smtp_reply *r, enum smtp_reply_status st,
	    size_t consumed, const uint8_t *p, size_t n)
{
	static const char *const kws[] = {
		"PIPELINING", "SIZE", "XCLIENT", "8BITMIME", "STARTTLS", "x",
	};
	struct model m;

	model_parse(p, n, &m);
	CHECK(st == m.status, "status %d, model %d", (int)st, (int)m.status);
	CHECK(consumed == m.consumed, "consumed %zu, model %zu", consumed,
	      m.consumed);
	if (st != SMTP_REPLY_DONE) {
		CHECK(smtp_reply_has_ext(r, "SIZE", NULL, NULL) == 0,
		      "an unfinished reply lists extensions");
		return;
	}
	CHECK(r->len == consumed && memcmp(r->raw, p, consumed) == 0,
	      "raw[] is not the bytes consumed");
	CHECK(r->code == m.code && r->nlines == m.nlines,
	      "code %d/%d lines "
	      "%zu/%zu",
	      r->code, m.code, r->nlines, m.nlines);
	for (size_t i = 0; i < m.nlines; i++)
		CHECK(r->text_off[i] == m.text_off[i] &&
			      r->text_len[i] == m.text_len[i],
		      "line %zu text at %u+%u, model %zu+%zu", i,
		      r->text_off[i], r->text_len[i], m.text_off[i],
		      m.text_len[i]);
	for (size_t i = 0; i < sizeof(kws) / sizeof(*kws); i++)
		check_ext(r, &m, p, kws[i]);
	/* The second line's first word, which often is a keyword. */
	if (m.nlines > 1) {
		char kw[17];
		size_t k = 0;
		const uint8_t *t = p + m.text_off[1];
		while (k < m.text_len[1] && k < sizeof(kw) - 1 && t[k] != ' ' &&
		       t[k] != '\0')
			k++;
		memcpy(kw, t, k);
		kw[k] = '\0';
		if (k > 0)
			check_ext(r, &m, p, kw);
	}
}

/* Feed p[0..n) in chunks until a reply is complete or fails. */
static enum smtp_reply_status
feed_chunks(struct smtp_reply *r, const uint8_t *p, size_t n, unsigned *seed,
	    size_t *consumed)
{
	enum smtp_reply_status st = SMTP_REPLY_MORE;

	*consumed = 0;
	while (*consumed < n) {
		size_t len, used;
		char *chunk;

		*seed = *seed * 1103515245u + 12345u;
		len = 1 + (*seed >> 16) % 32;
		if (len > n - *consumed)
			len = n - *consumed;
		chunk = malloc(len);
		CHECK(chunk != NULL, "out of memory");
		memcpy(chunk, p + *consumed, len);
		st = smtp_reply_feed(r, chunk, len, &used);
		free(chunk);
		CHECK(used <= len, "consumed %zu of %zu", used, len);
		*consumed += used;
		if (st != SMTP_REPLY_MORE)
			break;
		CHECK(used == len, "MORE after %zu of %zu", used, len);
	}
	return st;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct smtp_reply one, chunked;
	const uint8_t *p = data + 1;
	size_t n, off = 0;
	unsigned seed;

	if (size < 1)
		return 0;
	seed = data[0];
	n = size - 1;
	smtp_reply_init(&one);
	smtp_reply_init(&chunked);
	while (off < n) {
		size_t c1, c2;
		char *rest = malloc(n - off);
		enum smtp_reply_status s1, s2;

		CHECK(rest != NULL, "out of memory");
		memcpy(rest, p + off, n - off);
		s1 = smtp_reply_feed(&one, rest, n - off, &c1);
		free(rest);
		s2 = feed_chunks(&chunked, p + off, n - off, &seed, &c2);
		CHECK(s1 == s2 && c1 == c2,
		      "one call: %d after %zu; chunks: %d after %zu", (int)s1,
		      c1, (int)s2, c2);
		check_reply(&one, s1, c1, p + off, n - off);
		if (s1 == SMTP_REPLY_DONE) {
			CHECK(one.len == chunked.len &&
				      memcmp(one.raw, chunked.raw, one.len) ==
					      0 &&
				      memcmp(one.text_off, chunked.text_off,
					     sizeof(one.text_off)) == 0 &&
				      memcmp(one.text_len, chunked.text_len,
					     sizeof(one.text_len)) == 0,
			      "chunked reply differs");
		}
		if (s1 == SMTP_REPLY_ERROR) {
			size_t c;
			CHECK(smtp_reply_feed(&one, "250 ok\r\n", 8, &c) ==
					      SMTP_REPLY_ERROR &&
				      c == 0,
			      "error is not sticky");
		}
		if (s1 != SMTP_REPLY_DONE)
			break;
		off += c1;
	}
	return 0;
}
