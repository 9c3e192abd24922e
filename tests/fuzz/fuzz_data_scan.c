/*
 * fuzz_data_scan.c - libFuzzer target: the DATA scanner and normalizer
 * (data_scan.c), against a model, across chunk boundaries.
 *
 * Input: bytes 0-1 pick a split point, byte 2 seeds a run of small chunk
 * sizes (1..16); the rest is the client's message stream after "354".
 *
 * Checked, for data_scan() and data_normalize() alike:
 *   - split-point independence: one call, two chunks split anywhere, and
 *     many small chunks give the same consumed, done, bad and size (and
 *     the same output bytes, for normalize);
 *   - the result is the model's: the end of data is the first CRLF "."
 *     CRLF (the stream starting as if after a CRLF), bad has exactly the
 *     bare LFs, bare CRs and NULs before it, size follows data_scan.h;
 *   - normalize writes at most 2 * len + 3 bytes per call, never a bare
 *     CR, bare LF or NUL, and never CRLF "." CRLF anywhere but as its
 *     final marker; and with a marker appended to the input, the text
 *     the backend gets after undoing dot-stuffing is what the client
 *     meant: its lines, its own stuffing removed, bare CR and LF as line
 *     ends, NULs dropped.  (A stuffing dot followed only by NULs up to
 *     the line end is kept as text: the line "." must not end the data.)
 * And for data_scan_chunk() (BDAT), the same input as a whole message in
 * one, two and many chunks: the same bad and size, and bad is the
 * model's over all of it, with a CR at the very end bare.
 * Every chunk is copied to its own exact-size allocation, so reading past
 * it is caught by ASan.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/data_scan.h"
#include "fuzz_check.h"

struct result {
	size_t consumed;
	bool done;
	unsigned bad;
	uint64_t size;
	char *out; /* normalize: all output, concatenated */
	size_t outlen;
};

/* Feed in[0..len) in chunks of the given sizes (the last one takes the
 * rest), each from its own allocation. */
static void
run(const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts,
    bool normalize, struct result *r)
{
	struct data_scan ds;
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	r->out = xmalloc(2 * len + 3);
	data_scan_init(&ds);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t n = i < ncuts ? cuts[i] : len - off, used, outlen = 0;
		char *chunk, *out;

		if (n > len - off)
			n = len - off;
		chunk = xmalloc(n);
		if (n > 0)
			memcpy(chunk, in + off, n);
		if (normalize) {
			out = xmalloc(2 * n + 3);
			used = data_normalize(&ds, chunk, n, out, &outlen);
			CHECK(outlen <= 2 * n + 3, "%zu bytes out of %zu in",
			      outlen, n);
			CHECK(r->outlen + outlen <= 2 * len + 3,
			      "output grows past 2 * len + 3");
			memcpy(r->out + r->outlen, out, outlen);
			r->outlen += outlen;
			free(out);
		} else {
			used = data_scan(&ds, chunk, n);
		}
		free(chunk);
		CHECK(used <= n, "consumed %zu of %zu", used, n);
		CHECK(used == n || ds.done, "stopped at %zu of %zu, not done",
		      used, n);
		CHECK(!ds.done || r->done || r->consumed + used >= 3,
		      "done before a marker could be complete");
		if (r->done)
			CHECK(used == 0 && outlen == 0, "input after the end");
		r->consumed += used;
		r->done = ds.done;
		off += n;
	}
	r->bad = ds.bad;
	r->size = ds.size;
}

static void
same(const struct result *a, const struct result *b, const char *what)
{
	CHECK(a->consumed == b->consumed, "%s: consumed %zu vs %zu", what,
	      a->consumed, b->consumed);
	CHECK(a->done == b->done, "%s: done %d vs %d", what, a->done, b->done);
	CHECK(a->bad == b->bad, "%s: bad %u vs %u", what, a->bad, b->bad);
	CHECK(a->size == b->size, "%s: size %llu vs %llu", what,
	      (unsigned long long)a->size, (unsigned long long)b->size);
}

/* Where CRLF "." CRLF first occurs in "\r\n" + in: the index just past
 * it in in[], or 0. */
static size_t
marker_end(const uint8_t *in, size_t len)
{
	static const char m[] = "\r\n.\r\n";

	for (size_t j = 0; j + 3 <= len; j++) {
		bool hit = true;
		for (size_t k = 0; k < 5 && hit; k++) {
			size_t v = j + k; /* index into "\r\n" + in */
			int c = v < 2 ? m[v] : in[v - 2];
			hit = c == m[k];
		}
		if (hit)
			return j + 3;
	}
	return 0;
}

/* Does "\r\n" + in end with suffix? */
static bool
stream_ends_with(const uint8_t *in, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	if (len + 2 < n)
		return false;
	for (size_t k = 0; k < n; k++) {
		size_t v = len + 2 - n + k; /* index into "\r\n" + in */
		int c = v < 2 ? "\r\n"[v] : in[v - 2];
		if (c != suffix[k])
			return false;
	}
	return true;
}

/* data_scan.h, as a model: consumed, done, bad and size of one stream. */
static void
model(const uint8_t *in, size_t len, struct result *r)
{
	size_t end = marker_end(in, len);

	memset(r, 0, sizeof(*r));
	r->done = end > 0;
	r->consumed = r->done ? end : len;
	for (size_t i = 0; i < r->consumed; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			r->bad |= DATA_BAD_LF;
		if (in[i] == '\r' && i + 1 < len && in[i + 1] != '\n')
			r->bad |= DATA_BAD_CR;
		if (in[i] == '\0')
			r->bad |= DATA_BAD_NUL;
	}
	/* A "." (and a CR after it) at a line start might still begin the
	 * marker: not counted yet. */
	if (r->done)
		r->size = end - 3;
	else if (stream_ends_with(in, len, "\r\n.\r"))
		r->size = len - 2;
	else if (stream_ends_with(in, len, "\r\n."))
		r->size = len - 1;
	else
		r->size = len;
}

static void
check_canonical(const struct result *r)
{
	const char *o = r->out;
	size_t n = r->outlen, end;

	for (size_t i = 0; i < n; i++) {
		CHECK(o[i] != '\0', "NUL in the output at %zu", i);
		if (o[i] == '\r')
			CHECK(i + 1 < n && o[i + 1] == '\n',
			      "bare CR in the output at %zu", i);
		if (o[i] == '\n')
			CHECK(i > 0 && o[i - 1] == '\r',
			      "bare LF in the output at %zu", i);
	}
	end = marker_end((const uint8_t *)o, n);
	if (r->done)
		CHECK(end == n, "output has an end of data at %zu of %zu", end,
		      n);
	else
		CHECK(end == 0, "output has an end of data at %zu", end);
}

/* What the backend's dot-unstuffing gives: a line starting with "." loses
 * that dot.  o has CRLF line ends only. */
static size_t
backend_text(const char *o, size_t n, char *text)
{
	size_t t = 0;
	bool bol = true;

	for (size_t i = 0; i < n; i++) {
		if (bol && o[i] == '.') {
			bol = false;
			continue;
		}
		text[t++] = o[i];
		bol = o[i] == '\n';
	}
	return t;
}

/* What the client meant by msg[0..n): its stuffing dots removed (a dot
 * that starts a real CRLF line, unless only NULs follow it up to a line
 * end), bare CR and LF as CRLF, NULs dropped. */
static size_t
client_text(const uint8_t *msg, size_t n, char *text)
{
	size_t t = 0;
	bool bol = true;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = msg[i];

		if (bol && c == '.') {
			size_t k = i + 1;
			while (k < n && msg[k] == '\0')
				k++;
			bol = false;
			if (k < n && msg[k] != '\r' && msg[k] != '\n')
				continue; /* the client's stuffing */
		}
		bol = false;
		if (c == '\r' && i + 1 < n && msg[i + 1] == '\n') {
			text[t++] = '\r';
			text[t++] = '\n';
			i++;
			bol = true; /* a real line start */
		} else if (c == '\r' || c == '\n') {
			text[t++] = '\r';
			text[t++] = '\n';
		} else if (c != '\0') {
			text[t++] = (char)c;
		}
	}
	return t;
}

/* Normalize in + CRLF "." CRLF and compare the texts. */
static void
check_meaning(const uint8_t *in, size_t len)
{
	size_t slen = len + 5, mlen;
	uint8_t *s = xmalloc(slen);
	char *want, *got;
	struct result r;
	size_t wn, gn;

	if (len > 0)
		memcpy(s, in, len);
	memcpy(s + len, "\r\n.\r\n", 5);
	run(s, slen, NULL, 0, true, &r);
	CHECK(r.done && r.consumed >= 3, "no end with a marker appended");
	check_canonical(&r);
	CHECK(r.outlen >= 3 && memcmp(r.out + r.outlen - 3, ".\r\n", 3) == 0,
	      "output does not end with the marker");
	mlen = r.consumed - 3;
	want = xmalloc(2 * mlen);
	got = xmalloc(r.outlen);
	wn = client_text(s, mlen, want);
	gn = backend_text(r.out, r.outlen - 3, got);
	CHECK(wn == gn && (wn == 0 || memcmp(want, got, wn) == 0),
	      "the backend reads %zu bytes of text, the client meant %zu", gn,
	      wn);
	free(got);
	free(want);
	free(r.out);
	free(s);
}

/* BDAT: in[0..len) as one message, cut at cuts[] (the last piece takes
 * the rest); returns its bad flags after checking size and done. */
static unsigned
run_chunks(const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts)
{
	struct data_scan ds;
	size_t off = 0;

	data_scan_init(&ds);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t n = i < ncuts ? cuts[i] : len - off;
		char *chunk;

		if (n > len - off)
			n = len - off;
		chunk = xmalloc(n);
		if (n > 0)
			memcpy(chunk, in + off, n);
		data_scan_chunk(&ds, chunk, n, i == ncuts);
		free(chunk);
		off += n;
		CHECK(ds.size == off, "chunk size %llu after %zu bytes",
		      (unsigned long long)ds.size, off);
		CHECK(ds.done == (i == ncuts), "done before the last chunk");
	}
	return ds.bad;
}

static unsigned
chunk_model(const uint8_t *in, size_t len)
{
	unsigned bad = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			bad |= DATA_BAD_LF;
		if (in[i] == '\r' && (i + 1 == len || in[i + 1] != '\n'))
			bad |= DATA_BAD_CR;
		if (in[i] == '\0')
			bad |= DATA_BAD_NUL;
	}
	return bad;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *in = data + 3;
	size_t len, split, cuts[64], ncuts = 0, total = 0;
	struct result want, one, two, many;
	unsigned seed;

	if (size < 3)
		return 0;
	len = size - 3;
	split = ((size_t)data[0] | (size_t)data[1] << 8) % (len + 1);
	seed = data[2];
	while (ncuts < sizeof(cuts) / sizeof(*cuts) && total < len) {
		seed = seed * 1103515245u + 12345u;
		cuts[ncuts] = 1 + (seed >> 16) % 16;
		total += cuts[ncuts++];
	}

	model(in, len, &want);
	for (int normalize = 0; normalize < 2; normalize++) {
		const char *mode = normalize ? "normalize" : "scan";

		run(in, len, NULL, 0, normalize, &one);
		run(in, len, &split, 1, normalize, &two);
		run(in, len, cuts, ncuts, normalize, &many);
		same(&want, &one, mode);
		same(&one, &two, mode);
		same(&one, &many, mode);
		if (normalize) {
			CHECK(one.outlen == two.outlen &&
				      one.outlen == many.outlen &&
				      memcmp(one.out, two.out, one.outlen) ==
					      0 &&
				      memcmp(one.out, many.out, one.outlen) ==
					      0,
			      "normalized output depends on the chunks");
			check_canonical(&one);
		}
		free(one.out);
		free(two.out);
		free(many.out);
	}
	check_meaning(in, len);
	{
		unsigned bad = chunk_model(in, len);
		CHECK(run_chunks(in, len, NULL, 0) == bad, "BDAT: one chunk");
		CHECK(run_chunks(in, len, &split, 1) == bad,
		      "BDAT: two chunks");
		CHECK(run_chunks(in, len, cuts, ncuts) == bad,
		      "BDAT: many chunks");
	}
	return 0;
}
