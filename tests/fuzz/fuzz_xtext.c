/*
 * fuzz_xtext.c - libFuzzer target: xtext encoding and decoding (xtext.c,
 * RFC 3461 4), against a model.
 *
 * The input is used as raw bytes to encode and as xtext to decode.
 * Checked: the encoding is exactly the model's (xchar as itself, anything
 * else "+HH" in uppercase), so it never holds a space, control byte, "+"
 * or "=" of the input that could split an XCLIENT line; decoding the
 * encoding gives the bytes back; the decoder accepts exactly the strict
 * grammar and decodes as the model does; output sizes are exact, a buffer
 * one byte short is refused (with out[0] = NUL when decoding), and no
 * buffer is overrun (each is its own exact-size allocation).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/xtext.h"
#include "fuzz_check.h"

static bool
xchar(unsigned char c)
{
	return c >= '!' && c <= '~' && c != '+' && c != '=';
}

static int
hex_upper(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The model encoder; returns the length written to out (big enough). */
static size_t
model_encode(const unsigned char *in, size_t len, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (xchar(in[i])) {
			out[o++] = (char)in[i];
		} else {
			out[o++] = '+';
			out[o++] = hex[in[i] >> 4];
			out[o++] = hex[in[i] & 15];
		}
	}
	return o;
}

/* The model decoder: -1 on malformed input, else the decoded length. */
static long
model_decode(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (xchar(in[i])) {
			out[o++] = (char)in[i];
		} else if (in[i] == '+' && len - i >= 3 &&
			   hex_upper(in[i + 1]) >= 0 &&
			   hex_upper(in[i + 2]) >= 0) {
			out[o++] = (char)(hex_upper(in[i + 1]) << 4 |
					  hex_upper(in[i + 2]));
			i += 2;
		} else {
			return -1;
		}
	}
	return (long)o;
}

static void
check_encode(const uint8_t *data, size_t size)
{
	char *want = xmalloc(3 * size + 1), *out, *back;
	size_t n = model_encode(data, size, want);
	ssize_t r;

	out = xmalloc(n + 1);
	CHECK(xtext_encode((const char *)data, size, out, n) == -1,
	      "encoded into a buffer one byte short");
	r = xtext_encode((const char *)data, size, out, n + 1);
	CHECK(r >= 0 && (size_t)r == n, "encoded length %zd, model %zu", r, n);
	CHECK(memcmp(out, want, n) == 0 && out[n] == '\0',
	      "encoding differs from the model");
	for (size_t i = 0; i < n; i++)
		CHECK(out[i] > ' ' && out[i] < 0x7f && out[i] != '=',
		      "encoding holds 0x%02x", (unsigned char)out[i]);

	back = xmalloc(size + 1);
	r = xtext_decode(out, n, back, size + 1);
	CHECK(r >= 0 && (size_t)r == size && back[size] == '\0' &&
		      (size == 0 || memcmp(back, data, size) == 0),
	      "decode(encode(x)) != x");
	if (size > 0) {
		r = xtext_decode(out, n, back, size);
		CHECK(r == -1 && back[0] == '\0',
		      "decoded into a buffer one byte short");
	}
	free(back);
	free(out);
	free(want);
}

static void
check_decode(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size), *want = xmalloc(size + 1), *out;
	long n;
	ssize_t r;

	if (size > 0)
		memcpy(text, data, size); /* no NUL after it */
	n = model_decode(data, size, want);
	if (n < 0) {
		out = xmalloc(size + 1);
		r = xtext_decode(text, size, out, size + 1);
		CHECK(r == -1 && out[0] == '\0', "accepted malformed xtext");
		free(out);
	} else {
		out = xmalloc((size_t)n + 1);
		r = xtext_decode(text, size, out, (size_t)n + 1);
		CHECK(r == n && out[n] == '\0' &&
			      memcmp(out, want, (size_t)n) == 0,
		      "decoded %zd bytes, model %ld", r, n);
		if (n > 0) {
			r = xtext_decode(text, size, out, (size_t)n);
			CHECK(r == -1 && out[0] == '\0',
			      "decoded into a buffer one byte short");
		}
		free(out);
	}
	CHECK(xtext_decode(text, size, NULL, 0) == -1, "NULL output");
	free(want);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_encode(data, size);
	check_decode(data, size);
	return 0;
}
