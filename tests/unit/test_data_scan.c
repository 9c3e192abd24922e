/*
 * test_data_scan.c - the DATA end-of-data scanner and normalizer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/data_scan.h"

#define S(lit) lit, sizeof(lit) - 1

/* What a whole run over a stream gives. */
struct run {
	size_t consumed;
	unsigned bad;
	bool done;
	uint64_t size;
	char *out; /* normalize mode: the output, malloc'd */
	size_t outlen;
};

static void
run_free(struct run *r)
{
	free(r->out);
	r->out = NULL;
}

/*
 * Feed in[0..len) cut at the ncuts offsets in cuts[] (ascending), in
 * reject (norm false) or normalize mode.  Checks the per-call contract on
 * the way: a call consumes everything unless it finds the marker, nothing
 * is consumed after done, and normalize never writes more than 2 * n + 3.
 */
static void
feed(const char *in, size_t len, const size_t *cuts, size_t ncuts, bool norm,
     struct run *r)
{
	struct data_scan ds;
	size_t i, from = 0, to, n, used, olen;
	char *chunk, *obuf;

	memset(r, 0, sizeof(*r));
	data_scan_init(&ds);
	r->out = malloc(2 * len + 3 + 1);
	assert_non_null(r->out);
	for (i = 0; i <= ncuts; i++) {
		to = i < ncuts ? cuts[i] : len;
		assert_true(to >= from && to <= len);
		n = to - from;
		/* An exact-size heap copy so ASan sees any over-read, and an
		 * exact-size output so it sees any over-write. */
		chunk = malloc(n ? n : 1);
		obuf = malloc(2 * n + 3);
		assert_non_null(chunk);
		assert_non_null(obuf);
		memcpy(chunk, in + from, n);
		if (norm) {
			olen = 12345;
			used = data_normalize(&ds, chunk, n, obuf, &olen);
			assert_true(olen <= 2 * n + 3);
			memcpy(r->out + r->outlen, obuf, olen);
			r->outlen += olen;
		} else {
			used = data_scan(&ds, chunk, n);
		}
		free(chunk);
		free(obuf);
		assert_true(used <= n);
		if (used < n)
			assert_true(ds.done);
		if (r->done)
			assert_int_equal(used, 0);
		r->done = ds.done;
		r->consumed += used;
		from = to;
	}
	r->bad = ds.bad;
	r->size = ds.size;
}

static void
feed_whole(const char *in, size_t len, bool norm, struct run *r)
{
	feed(in, len, NULL, 0, norm, r);
}

static void
assert_same_run(const struct run *a, const struct run *b, bool norm)
{
	assert_int_equal(a->consumed, b->consumed);
	assert_int_equal(a->bad, b->bad);
	assert_int_equal(a->done, b->done);
	assert_int_equal(a->size, b->size);
	if (norm) {
		assert_int_equal(a->outlen, b->outlen);
		assert_memory_equal(a->out, b->out, a->outlen);
	}
}

/* Feed in every 2-chunk split and byte by byte; every result must equal
 * the one-shot result. */
static void
check_all_splits(const char *in, size_t len, bool norm)
{
	struct run whole, part;
	size_t cut, *cuts, i;

	feed_whole(in, len, norm, &whole);
	for (cut = 0; cut <= len; cut++) {
		feed(in, len, &cut, 1, norm, &part);
		assert_same_run(&whole, &part, norm);
		run_free(&part);
	}
	cuts = malloc((len + 1) * sizeof(*cuts));
	assert_non_null(cuts);
	for (i = 0; i < len; i++)
		cuts[i] = i + 1;
	feed(in, len, cuts, len ? len - 1 : 0, norm, &part);
	assert_same_run(&whole, &part, norm);
	run_free(&part);
	free(cuts);
	run_free(&whole);
}

/* One-shot reject scan: consumed, done, bad, size. */
static void
expect_scan(const char *in, size_t len, size_t consumed, bool done,
	    unsigned bad, uint64_t size)
{
	struct run r;

	feed_whole(in, len, false, &r);
	assert_int_equal(r.consumed, consumed);
	assert_int_equal(r.done, done);
	assert_int_equal(r.bad, bad);
	assert_int_equal(r.size, size);
	run_free(&r);
	check_all_splits(in, len, false);
	check_all_splits(in, len, true);
}

/* One-shot normalize: output and state. */
static void
expect_norm(const char *in, size_t len, const char *out, size_t outlen,
	    bool done, unsigned bad)
{
	struct run r;

	feed_whole(in, len, true, &r);
	assert_int_equal(r.done, done);
	assert_int_equal(r.bad, bad);
	assert_int_equal(r.outlen, outlen);
	assert_memory_equal(r.out, out, outlen);
	run_free(&r);
	check_all_splits(in, len, true);
}

static void
test_simple_message(void **state)
{
	(void)state;
	expect_scan(S("Subject: hi\r\n\r\nbody\r\n.\r\n"), 24, true, 0, 21);
	expect_scan(S("a\r\n.\r\n"), 6, true, 0, 3);
}

static void
test_first_line_dot(void **state)
{
	(void)state;
	/* The stream starts as if after CRLF: an empty message. */
	expect_scan(S(".\r\n"), 3, true, 0, 0);
	expect_scan(S(".\r\nQUIT\r\n"), 3, true, 0, 0);
}

static void
test_no_end_yet(void **state)
{
	(void)state;
	expect_scan(S(""), 0, false, 0, 0);
	expect_scan(S("abc"), 3, false, 0, 3);
	expect_scan(S("abc\r\n"), 5, false, 0, 5);
	/* A dot mid-line is text. */
	expect_scan(S("a.\r\n"), 4, false, 0, 4);
	expect_scan(S("a\r\n.x\r\n"), 7, false, 0, 7);
	/* "\r\n.\r\n" not at the start needs its leading CRLF: ".\r\n" after
	 * text on the same line is not the end. */
	expect_scan(S("a.\r\n.x"), 6, false, 0, 6);
}

static void
test_dot_stuffed_not_end(void **state)
{
	(void)state;
	expect_scan(S("..\r\n"), 4, false, 0, 4);
	expect_scan(S("a\r\n..\r\n"), 7, false, 0, 7);
	expect_scan(S("a\r\n..\r\n.\r\n"), 10, true, 0, 7);
	expect_scan(S("...\r\n.\r\n"), 8, true, 0, 5);
}

static void
test_bare_lf_variants_not_end(void **state)
{
	(void)state;
	expect_scan(S("a\n.\n"), 4, false, DATA_BAD_LF, 4);
	expect_scan(S("a\r\n.\n"), 5, false, DATA_BAD_LF, 5);
	expect_scan(S("a\n.\r\n"), 5, false, DATA_BAD_LF, 5);
	expect_scan(S("\n.\n"), 3, false, DATA_BAD_LF, 3);
	expect_scan(S("\n.\r\n"), 4, false, DATA_BAD_LF, 4);
	/* At the very start too. */
	expect_scan(S(".\n"), 2, false, DATA_BAD_LF, 2);
	/* The real marker later still ends it, flags kept. */
	expect_scan(S("a\n.\r\n.\r\n"), 8, true, DATA_BAD_LF, 5);
	expect_scan(S("a\r\n.\n.\r\n"), 8, false, DATA_BAD_LF, 8);
	expect_scan(S("a\r\n.\n\r\n.\r\n"), 10, true, DATA_BAD_LF, 7);
}

static void
test_bare_cr(void **state)
{
	(void)state;
	expect_scan(S("a\rb"), 3, false, DATA_BAD_CR, 3);
	expect_scan(S("a\r.\r\n"), 5, false, DATA_BAD_CR, 5);
	expect_scan(S("\r.\r\n"), 4, false, DATA_BAD_CR, 4);
	expect_scan(S("a\r\n.\r.\r\n"), 8, false, DATA_BAD_CR, 8);
	expect_scan(S("a\r\n.\r\r\n"), 7, false, DATA_BAD_CR, 7);
	/* CR CR LF: the first CR is bare, the CRLF still ends the line. */
	expect_scan(S("a\r\r\n.\r\n"), 7, true, DATA_BAD_CR, 4);
	/* A CR at the end of what we have is not known to be bare. */
	expect_scan(S("a\r"), 2, false, 0, 2);
	expect_scan(S("a\r\n.\r"), 5, false, 0, 3);
}

static void
test_cr_decided_by_next_chunk(void **state)
{
	struct data_scan ds;

	(void)state;
	data_scan_init(&ds);
	assert_int_equal(data_scan(&ds, S("abc\r")), 4);
	assert_int_equal(ds.bad, 0);
	assert_int_equal(data_scan(&ds, S("\n")), 1);
	assert_int_equal(ds.bad, 0);
	assert_int_equal(data_scan(&ds, S("x\r")), 2);
	assert_int_equal(ds.bad, 0);
	assert_int_equal(data_scan(&ds, S("y")), 1);
	assert_int_equal(ds.bad, DATA_BAD_CR);
	assert_false(ds.done);
}

static void
test_nul(void **state)
{
	(void)state;
	expect_scan(S("a\0b\r\n.\r\n"), 8, true, DATA_BAD_NUL, 5);
	expect_scan(S("\0"), 1, false, DATA_BAD_NUL, 1);
	/* A NUL between the dot and CRLF: not the marker. */
	expect_scan(S("a\r\n.\0\r\n"), 7, false, DATA_BAD_NUL, 7);
	expect_scan(S("a\r\n\0.\r\n"), 7, false, DATA_BAD_NUL, 7);
	expect_scan(S("a\r\0\n"), 4, false,
		    DATA_BAD_CR | DATA_BAD_NUL | DATA_BAD_LF, 4);
}

static void
test_pipelining(void **state)
{
	struct data_scan ds;
	const char in[] = "Hi\r\n.\r\nMAIL FROM:<a@b>\r\n";

	(void)state;
	data_scan_init(&ds);
	assert_int_equal(data_scan(&ds, in, sizeof(in) - 1), 7);
	assert_true(ds.done);
	assert_int_equal(ds.size, 4);
	/* Nothing more once done. */
	assert_int_equal(data_scan(&ds, in + 7, sizeof(in) - 1 - 7), 0);
	assert_int_equal(ds.size, 4);

	expect_scan(S("Hi\r\n.\r\nRSET\r\n"), 7, true, 0, 4);
	/* Bad bytes after the marker belong to the next command and do not
	 * taint this message. */
	expect_scan(S("Hi\r\n.\r\n\n\0\r"), 7, true, 0, 4);
}

static void
test_pipelining_normalize(void **state)
{
	struct data_scan ds;
	char out[64];
	size_t olen, used;

	(void)state;
	data_scan_init(&ds);
	used = data_normalize(&ds, S("a\nb\r\n.\r\nQUIT\r\n"), out, &olen);
	assert_int_equal(used, 8);
	assert_true(ds.done);
	assert_int_equal(olen, 9);
	assert_memory_equal(out, "a\r\nb\r\n.\r\n", 9);
	assert_int_equal(ds.size, 5);
	olen = 99;
	assert_int_equal(data_normalize(&ds, S("QUIT\r\n"), out, &olen), 0);
	assert_int_equal(olen, 0);
}

static void
test_size_counting(void **state)
{
	struct data_scan ds;

	(void)state;
	data_scan_init(&ds);
	assert_int_equal(ds.size, 0);
	data_scan(&ds, S("abc\r\n"));
	assert_int_equal(ds.size, 5);
	/* A dot (and CR) that may start the marker is held out. */
	data_scan(&ds, S("."));
	assert_int_equal(ds.size, 5);
	data_scan(&ds, S("\r"));
	assert_int_equal(ds.size, 5);
	/* ... and counted once it is known not to be the marker. */
	data_scan(&ds, S("x"));
	assert_int_equal(ds.size, 8);
	assert_int_equal(ds.bad, DATA_BAD_CR);
	data_scan(&ds, S("\r\n.."));
	assert_int_equal(ds.size, 12);
	data_scan(&ds, S("\r\n.\r\n"));
	assert_true(ds.done);
	assert_int_equal(ds.size, 14);

	/* Dots and NUL count as sent. */
	expect_scan(S("..\r\n\0\r\n.\r\n"), 10, true, DATA_BAD_NUL, 7);
}

static void
test_size_large(void **state)
{
	size_t n = 1 << 20, i;
	char *msg = malloc(n + 3);
	struct data_scan ds;
	size_t used = 0, step;

	(void)state;
	assert_non_null(msg);
	for (i = 0; i < n; i++)
		msg[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : 'x';
	/* n is a multiple of 80 + 16: end the last line properly. */
	msg[n - 2] = '\r';
	msg[n - 1] = '\n';
	memcpy(msg + n, ".\r\n", 3);
	data_scan_init(&ds);
	for (i = 0; i < n + 3; i += step) {
		step = 4093 < n + 3 - i ? 4093 : n + 3 - i;
		used += data_scan(&ds, msg + i, step);
	}
	assert_true(ds.done);
	assert_int_equal(used, n + 3);
	assert_int_equal(ds.size, n);
	assert_int_equal(ds.bad, 0);
	free(msg);
}

static void
test_normalize_canonical_unchanged(void **state)
{
	(void)state;
	expect_norm(S("a\r\n..b\r\n.\r\n"), S("a\r\n..b\r\n.\r\n"), true, 0);
	expect_norm(S(".\r\n"), S(".\r\n"), true, 0);
	expect_norm(S("plain\r\ntext"), S("plain\r\ntext"), false, 0);
}

static void
test_normalize_bare_lf(void **state)
{
	(void)state;
	expect_norm(S("a\nb\n"), S("a\r\nb\r\n"), false, DATA_BAD_LF);
	expect_norm(S("\n\n"), S("\r\n\r\n"), false, DATA_BAD_LF);
	expect_norm(S("a\nb\r\n.\r\n"), S("a\r\nb\r\n.\r\n"), true,
		    DATA_BAD_LF);
}

static void
test_normalize_redot(void **state)
{
	(void)state;
	/* The rewrite starts a line with '.': stuff it. */
	expect_norm(S("a\n.\r\n"), S("a\r\n..\r\n"), false, DATA_BAD_LF);
	expect_norm(S("a\n.\r\n.\r\n"), S("a\r\n..\r\n.\r\n"), true,
		    DATA_BAD_LF);
	expect_norm(S("a\n.\n"), S("a\r\n..\r\n"), false, DATA_BAD_LF);
	expect_norm(S("\n.\r\n"), S("\r\n..\r\n"), false, DATA_BAD_LF);
	expect_norm(S("a\n.b"), S("a\r\n..b"), false, DATA_BAD_LF);
	expect_norm(S("a\n..b"), S("a\r\n...b"), false, DATA_BAD_LF);
	expect_norm(S("a\r.\r\n"), S("a\r\n..\r\n"), false, DATA_BAD_CR);
	/* A real line start with '.' then bare LF: the output line must not
	 * be "." alone. */
	expect_norm(S("a\r\n.\n"), S("a\r\n..\r\n"), false, DATA_BAD_LF);
	expect_norm(S(".\n"), S("..\r\n"), false, DATA_BAD_LF);
	expect_norm(S("a\r\n.\n.\r\n"), S("a\r\n..\r\n..\r\n"), false,
		    DATA_BAD_LF);
	/* ... and after a bare CR. */
	expect_norm(S("a\r\n.\rb"), S("a\r\n..\r\nb"), false, DATA_BAD_CR);
	expect_norm(S("a\r\n.\r.\r\n"), S("a\r\n..\r\n..\r\n"), false,
		    DATA_BAD_CR);
	expect_norm(S("a\r\n.\r\r\n.\r\n"), S("a\r\n..\r\n\r\n.\r\n"), true,
		    DATA_BAD_CR);
}

static void
test_normalize_nul(void **state)
{
	(void)state;
	expect_norm(S("a\0b\r\n.\r\n"), S("ab\r\n.\r\n"), true, DATA_BAD_NUL);
	/* Dropping NUL must not create the marker either. */
	expect_norm(S("a\r\n\0.\r\n"), S("a\r\n..\r\n"), false, DATA_BAD_NUL);
	expect_norm(S("\0.\r\n"), S("..\r\n"), false, DATA_BAD_NUL);
	expect_norm(S("a\r\n.\0\r\n"), S("a\r\n..\r\n"), false, DATA_BAD_NUL);
	expect_norm(S("a\r\n.\0\0\n"), S("a\r\n..\r\n"), false,
		    DATA_BAD_NUL | DATA_BAD_LF);
	expect_norm(S("a\r\n.\0\rx"), S("a\r\n..\r\nx"), false,
		    DATA_BAD_NUL | DATA_BAD_CR);
	expect_norm(S("a\r\n.\0x\r\n"), S("a\r\n.x\r\n"), false, DATA_BAD_NUL);
	expect_norm(S("a\r\n.\0.\r\n"), S("a\r\n..\r\n"), false, DATA_BAD_NUL);
	expect_norm(S("a\n\0\0.x"), S("a\r\n..x"), false,
		    DATA_BAD_LF | DATA_BAD_NUL);
}

static void
test_normalize_bare_cr(void **state)
{
	(void)state;
	expect_norm(S("a\rb\r\n.\r\n"), S("a\r\nb\r\n.\r\n"), true,
		    DATA_BAD_CR);
	expect_norm(S("a\r\r\n.\r\n"), S("a\r\n\r\n.\r\n"), true, DATA_BAD_CR);
	expect_norm(S("a\r\r\r"), S("a\r\n\r\n"), false, DATA_BAD_CR);
}

static void
test_normalize_holds_cr(void **state)
{
	struct data_scan ds;
	char out[16];
	size_t olen;

	(void)state;
	data_scan_init(&ds);
	assert_int_equal(data_normalize(&ds, S("ab\r"), out, &olen), 3);
	assert_int_equal(olen, 2); /* the CR is held back */
	assert_memory_equal(out, "ab", 2);
	assert_int_equal(data_normalize(&ds, S("c"), out, &olen), 1);
	assert_int_equal(olen, 3);
	assert_memory_equal(out, "\r\nc", 3);
	assert_int_equal(ds.bad, DATA_BAD_CR);

	data_scan_init(&ds);
	assert_int_equal(data_normalize(&ds, S("ab\r"), out, &olen), 3);
	assert_int_equal(data_normalize(&ds, S("\n"), out, &olen), 1);
	assert_int_equal(olen, 2);
	assert_memory_equal(out, "\r\n", 2);
	assert_int_equal(ds.bad, 0);

	/* "." CR held; the next chunk shows a bare CR: 5 bytes out of one
	 * byte in, the worst case (2 * 1 + 3). */
	data_scan_init(&ds);
	assert_int_equal(data_normalize(&ds, S("."), out, &olen), 1);
	assert_int_equal(data_normalize(&ds, S("\r"), out, &olen), 1);
	assert_int_equal(olen, 0);
	assert_int_equal(data_normalize(&ds, S("."), out, &olen), 1);
	assert_int_equal(olen, 5);
	assert_memory_equal(out, ".\r\n..", 5);
}

/*
 * Reference model, written the slow obvious way: the end is the first
 * "\r\n.\r\n" in "\r\n" + in.
 */
static size_t
ref_end(const char *in, size_t len, bool *found)
{
	char *s = malloc(len + 2);
	size_t i, end = len;

	assert_non_null(s);
	s[0] = '\r';
	s[1] = '\n';
	memcpy(s + 2, in, len);
	*found = false;
	for (i = 0; i + 5 <= len + 2; i++) {
		if (memcmp(s + i, "\r\n.\r\n", 5) == 0) {
			*found = true;
			end = i + 5 - 2;
			break;
		}
	}
	free(s);
	return end;
}

static unsigned
ref_bad(const char *in, size_t n)
{
	unsigned bad = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (in[i] == '\0')
			bad |= DATA_BAD_NUL;
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			bad |= DATA_BAD_LF;
		if (in[i] == '\r' && i + 1 < n && in[i + 1] != '\n')
			bad |= DATA_BAD_CR;
	}
	return bad;
}

/* Bytes at the end of an unfinished stream that may still begin the
 * marker ("\r\n." or "\r\n.\r", the start counting as "\r\n"). */
static size_t
ref_held(const char *in, size_t len)
{
	char s[96 + 2];

	assert_true(len <= 96);
	s[0] = '\r';
	s[1] = '\n';
	memcpy(s + 2, in, len);
	len += 2;
	if (len >= 3 && memcmp(s + len - 3, "\r\n.", 3) == 0)
		return 1;
	if (len >= 4 && memcmp(s + len - 4, "\r\n.\r", 4) == 0)
		return 2;
	return 0;
}

/* Where does a backend that reads only CRLF lines find the end in out? */
static size_t
backend_end(const char *out, size_t len, bool *found)
{
	return ref_end(out, len, found);
}

/*
 * The meaning check for normalize.  model_lines() cuts the consumed input
 * into lines the way the normalizer does (CRLF, bare LF and bare CR end a
 * line; a CR at the very end is undecided), drops NULs and removes the
 * client's stuffing dot (a '.' first on a line that began after a real
 * CRLF or at the start).  A line that so becomes empty but was not the
 * marker (".\n", ".\0\r\n", ".\r" + x) is documented to reach the
 * backend as "." (written ".."), so the model expects ".".  The marker
 * line is left out.  Complete lines only, joined with '|'.
 */
static size_t
model_lines(const char *in, size_t n, bool found, char *out)
{
	size_t i, o = 0, pos = 0, raw = 0, line = 0;
	bool real = true, stuffed = false, marker;
	char c;

	if (found)
		n -= 3; /* the marker's ".\r\n" */
	for (i = 0; i < n; i++) {
		c = in[i];
		if (c == '\r' && i + 1 == n)
			break; /* undecided */
		if (c == '\r' || c == '\n') {
			bool crlf = c == '\r' && in[i + 1] == '\n';

			marker = stuffed && raw == 1 && crlf;
			assert_false(marker); /* the marker is cut off above */
			if (stuffed && pos == 0)
				out[o++] = '.';
			out[o++] = '|';
			if (crlf)
				i++;
			real = crlf;
			pos = raw = 0;
			stuffed = false;
			line = o;
			continue;
		}
		if (raw == 0 && real && c == '.') {
			stuffed = true;
		} else if (c != '\0') {
			out[o++] = c;
			pos++;
		}
		raw++;
	}
	return line; /* drop the incomplete last line */
}

/* The backend's view of out: complete CRLF lines, each with one leading
 * '.' removed, joined with '|'; the final "." line (the marker) left
 * out. */
static size_t
backend_lines(const char *in, size_t n, bool found, char *out)
{
	size_t i, o = 0, start = 0;

	if (found) {
		assert_true(n >= 3);
		n -= 3;
	}
	for (i = 0; i + 1 < n; i++) {
		if (in[i] == '\r' && in[i + 1] == '\n') {
			if (in[start] == '.' && start < i)
				start++;
			memcpy(out + o, in + start, i - start);
			o += i - start;
			out[o++] = '|';
			i++;
			start = i + 1;
		}
	}
	return o;
}

static uint32_t
rng(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
test_random_against_model(void **state)
{
	/* Short dense streams, and longer ones mostly of text so that the
	 * word-at-a-time path meets specials at every alignment. */
	static const char dense[] = {'a',  '.', '\r', '\n',
				     '\0', '.', '\r', '\n'};
	static const char sparse[] = "aaaaaaaaaaaaaaaaaaaaaaaa.\r\n\r\n\n\r\0";
	char in[80];
	const char *alpha;
	size_t alen, maxlen;
	struct run r, nr;
	uint32_t seed = 0x2545f491u;
	size_t len, i, end, bend, k;
	bool found, bfound;
	int iter;

	(void)state;
	for (iter = 0; iter < 20000; iter++) {
		if (iter % 2 == 0) {
			alpha = dense;
			alen = sizeof(dense);
			maxlen = 24;
		} else {
			alpha = sparse;
			alen = sizeof(sparse); /* the NUL included */
			maxlen = sizeof(in);
		}
		len = rng(&seed) % maxlen;
		for (i = 0; i < len; i++)
			in[i] = alpha[rng(&seed) % alen];
		end = ref_end(in, len, &found);

		feed_whole(in, len, false, &r);
		assert_int_equal(r.done, found);
		assert_int_equal(r.consumed, end);
		assert_int_equal(r.bad, ref_bad(in, r.consumed));
		assert_int_equal(r.size,
				 found ? end - 3 : end - ref_held(in, len));
		run_free(&r);

		feed_whole(in, len, true, &nr);
		assert_int_equal(nr.done, found);
		assert_int_equal(nr.consumed, end);
		assert_int_equal(nr.bad, ref_bad(in, nr.consumed));
		/* Canonical output: CRLF only, no NUL ... */
		for (k = 0; k < nr.outlen; k++) {
			assert_int_not_equal(nr.out[k], '\0');
			if (nr.out[k] == '\n')
				assert_true(k > 0 && nr.out[k - 1] == '\r');
			if (nr.out[k] == '\r' && k + 1 < nr.outlen)
				assert_int_equal(nr.out[k + 1], '\n');
		}
		/* ... and the backend finds the end exactly where we did:
		 * at the very end of the output, or nowhere. */
		bend = backend_end(nr.out, nr.outlen, &bfound);
		assert_int_equal(bfound, found);
		if (found)
			assert_int_equal(bend, nr.outlen);
		/* The backend reads the lines the client meant. */
		{
			char want[4 * sizeof(in)], got[4 * sizeof(in)];
			size_t wl, gl;

			wl = model_lines(in, end, found, want);
			gl = backend_lines(nr.out, nr.outlen, found, got);
			assert_int_equal(gl, wl);
			assert_memory_equal(got, want, wl);
		}
		/* Canonical input passes through unchanged. */
		if (ref_bad(in, end) == 0 &&
		    (end == 0 || in[end - 1] != '\r')) {
			assert_int_equal(nr.outlen, end);
			assert_memory_equal(nr.out, in, end);
		}
		run_free(&nr);

		if (iter % 16 < 2) {
			check_all_splits(in, len, false);
			check_all_splits(in, len, true);
		}
	}
}

static void
test_all_splits_messages(void **state)
{
	static const char *const msgs[] = {
		"Subject: x\r\n\r\nline\r\n..stuffed\r\n.\r\n",
		".\r\n",
		"a\r\n.\r\nNEXT",
		"a\n.\n.\r\n.\r\n",
		"a\r\n.\n\r\n.\r\n",
		"\r\n.\r\n",
		"a\r\r\n.\r\r\n.\r\n",
		"..\r\n.\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		check_all_splits(msgs[i], strlen(msgs[i]), false);
		check_all_splits(msgs[i], strlen(msgs[i]), true);
	}
	/* With NUL inside (strlen would stop there). */
	check_all_splits(S("a\0\r\n.\0\r\n\0.\r\n.\r\n"), false);
	check_all_splits(S("a\0\r\n.\0\r\n\0.\r\n.\r\n"), true);
}

static void
test_long_message_splits(void **state)
{
	/* Long enough that the word-at-a-time path runs, with specials at
	 * every offset modulo 8. */
	char msg[200];
	size_t n = 0, i;
	struct run r;

	(void)state;
	for (i = 0; i < 9; i++) {
		memset(msg + n, 'x', i + 9);
		n += i + 9;
		msg[n++] = '\r';
		msg[n++] = '\n';
	}
	memcpy(msg + n, ".\r\nTAIL", 7);
	n += 7;
	feed_whole(msg, n, false, &r);
	assert_true(r.done);
	assert_int_equal(r.consumed, n - 4);
	assert_int_equal(r.size, n - 7);
	run_free(&r);
	check_all_splits(msg, n, false);
	check_all_splits(msg, n, true);

	/* A bare LF and a NUL deep in a long run. */
	memset(msg, 'y', 100);
	msg[37] = '\n';
	msg[66] = '\0';
	feed_whole(msg, 100, false, &r);
	assert_int_equal(r.bad, DATA_BAD_LF | DATA_BAD_NUL);
	run_free(&r);
	check_all_splits(msg, 100, true);
}

static void
test_canonical_blocks(void **state)
{
	/* Canonical lines of every length from 1 to 40 put CR, LF, a
	 * stuffed dot and an empty line at every offset of the 32-byte
	 * blocks skip_canonical() checks at once; the marker ends it. */
	char msg[2048];
	size_t n = 0, len, i;
	struct run r;

	(void)state;
	for (len = 1; len <= 40; len++) {
		memset(msg + n, 'a' + (char)(len % 26), len);
		if (len % 7 == 0)
			msg[n] = '.'; /* a line the client dot-stuffed */
		n += len;
		memcpy(msg + n, "\r\n\r\n", 4); /* every fifth: an empty
						     line after it */
		n += len % 5 == 0 ? 4 : 2;
	}
	memcpy(msg + n, ".\r\nNEXT", 7);
	n += 7;
	feed_whole(msg, n, false, &r);
	assert_true(r.done);
	assert_int_equal(r.bad, 0);
	assert_int_equal(r.consumed, n - 4);
	assert_int_equal(r.size, n - 7);
	run_free(&r);
	check_all_splits(msg, n, false);

	/* One bad byte at each offset of a long canonical run is found,
	 * whichever block it falls in, and the same at every split. */
	for (i = 40; i < 120; i++) {
		static const char bad[] = {'\n', '\r', '\0'};
		static const unsigned flag[] = {DATA_BAD_LF, DATA_BAD_CR,
						DATA_BAD_NUL};

		for (size_t k = 0; k < 3; k++) {
			for (n = 0; n < 160; n += 20) {
				memset(msg + n, 'z', 18);
				memcpy(msg + n + 18, "\r\n", 2);
			}
			if (msg[i] == '\r' || msg[i] == '\n')
				continue;
			msg[i] = bad[k];
			memcpy(msg + n, ".\r\n", 3);
			feed_whole(msg, n + 3, false, &r);
			assert_int_equal(r.bad, flag[k]);
			assert_true(r.done);
			run_free(&r);
			if (i % 8 == 0)
				check_all_splits(msg, n + 3, false);
		}
	}
}

/* BDAT chunks: a message cut into chunks at every pair of points gives
 * the flags of the whole, and a CR is bare only if no LF follows in the
 * next chunk, or if it ends the message. */
static unsigned
chunks_bad(const char *msg, size_t len, size_t a, size_t b)
{
	struct data_scan ds;

	data_scan_init(&ds);
	data_scan_chunk(&ds, msg, a, false);
	data_scan_chunk(&ds, msg + a, b - a, false);
	data_scan_chunk(&ds, msg + b, len - b, true);
	assert_true(ds.done);
	assert_int_equal(ds.size, len);
	return ds.bad;
}

static void
test_bdat_chunks(void **state)
{
	static const struct {
		const char *msg;
		unsigned bad;
	} cases[] = {
		{"Subject: x\r\n\r\n.body\r\n.\r\n", 0}, /* dots are text */
		{"a\r\nb\nc\r\n", DATA_BAD_LF},
		{"a\rb\r\n", DATA_BAD_CR},
		{"a\r\n\r", DATA_BAD_CR}, /* ends on a CR */
		{"a\r", DATA_BAD_CR},
		{"\n", DATA_BAD_LF},
		{"\r\r\n", DATA_BAD_CR},
		{"", 0},
		{"no newline at the end", 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		size_t len = strlen(cases[i].msg);
		for (size_t a = 0; a <= len; a++)
			for (size_t b = a; b <= len; b++)
				assert_int_equal(
					chunks_bad(cases[i].msg, len, a, b),
					cases[i].bad);
	}
	/* NUL anywhere */
	assert_int_equal(chunks_bad("ab\0\r\n", 5, 1, 3), DATA_BAD_NUL);
	/* "BDAT 0 LAST" after a chunk ending in CR: a bare CR. */
	{
		struct data_scan ds;
		data_scan_init(&ds);
		data_scan_chunk(&ds, S("text\r"), false);
		assert_int_equal(ds.bad, 0);
		data_scan_chunk(&ds, "", 0, true);
		assert_int_equal(ds.bad, DATA_BAD_CR);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_message),
		cmocka_unit_test(test_first_line_dot),
		cmocka_unit_test(test_no_end_yet),
		cmocka_unit_test(test_dot_stuffed_not_end),
		cmocka_unit_test(test_bare_lf_variants_not_end),
		cmocka_unit_test(test_bare_cr),
		cmocka_unit_test(test_cr_decided_by_next_chunk),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_pipelining_normalize),
		cmocka_unit_test(test_size_counting),
		cmocka_unit_test(test_size_large),
		cmocka_unit_test(test_normalize_canonical_unchanged),
		cmocka_unit_test(test_normalize_bare_lf),
		cmocka_unit_test(test_normalize_redot),
		cmocka_unit_test(test_normalize_nul),
		cmocka_unit_test(test_normalize_bare_cr),
		cmocka_unit_test(test_normalize_holds_cr),
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_bdat_chunks),
		cmocka_unit_test(test_all_splits_messages),
		cmocka_unit_test(test_long_message_splits),
		cmocka_unit_test(test_canonical_blocks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
