/*
 * xtext.c - xtext (RFC 3461 4), the encoding of XCLIENT attribute values
 * (and of DSN ENVID / ORCPT).
 *
 * Hostile input: the encoder is fed client-controlled strings (HELO names,
 * user names) on their way into a command line to the backend, so it must
 * never let a byte through that could end or split that line: everything
 * outside "!".."~", and "+" and "=", becomes "+HH".  Both directions check
 * the output size before every write and always NUL-terminate on success.
 * The decoder is strict: only xchar and "+" with two UPPERCASE hex digits.
 */
#include <limits.h>
#include <stdint.h>

#include "smtp/xtext.h"

static const char hexdig[16] = "0123456789ABCDEF";

/* Bytes that stand for themselves: xchar = "!".."~" except "+" and "=". */
static int
is_xchar(unsigned char c)
{
	return c >= '!' && c <= '~' && c != '+' && c != '=';
}

/* Value of an uppercase hex digit, or -1. */
static int
xtext_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

ssize_t
xtext_encode(const char *in, size_t len, char *out, size_t outsize)
{
	size_t i, o = 0;
	unsigned char c;

	if (out == NULL || outsize == 0)
		return -1;
	for (i = 0; i < len; i++) {
		c = (unsigned char)in[i];
		if (is_xchar(c)) {
			if (outsize - o < 2) /* the byte and the NUL */
				return -1;
			out[o++] = (char)c;
		} else {
			if (outsize - o < 4) /* "+HH" and the NUL */
				return -1;
			out[o++] = '+';
			out[o++] = hexdig[c >> 4];
			out[o++] = hexdig[c & 0x0f];
		}
	}
	if (o > SSIZE_MAX)
		return -1;
	out[o] = '\0';
	return (ssize_t)o;
}

ssize_t
xtext_decode(const char *in, size_t len, char *out, size_t outsize)
{
	size_t i = 0, o = 0;
	unsigned char c;
	int hi, lo;

	if (out == NULL || outsize == 0)
		return -1;
	while (i < len) {
		if (outsize - o < 2) /* the byte and the NUL */
			goto bad;
		c = (unsigned char)in[i];
		if (c == '+') {
			if (len - i < 3)
				goto bad;
			hi = xtext_hexval((unsigned char)in[i + 1]);
			lo = xtext_hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				goto bad;
			out[o++] = (char)(hi << 4 | lo);
			i += 3;
		} else if (is_xchar(c)) {
			out[o++] = (char)c;
			i++;
		} else {
			goto bad;
		}
	}
	if (o > SSIZE_MAX)
		goto bad;
	out[o] = '\0';
	return (ssize_t)o;
bad:
	out[0] = '\0';
	return -1;
}
