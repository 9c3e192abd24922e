/*
 * fuzz_sasl.c - libFuzzer target: base64 and the SASL PLAIN and LOGIN
 * decoders (sasl.c), against an independent model.
 *
 * The input is used twice: as the base64 text a client sends, and as the
 * decoded bytes of a response (encoded here first), which reaches the
 * field splitting and UTF-8 checks far more often than random text would.
 *
 * Checked:
 *   - base64: decoding succeeds exactly for the encoder's outputs (decode
 *     then encode gives the text back; encode then decode gives the bytes
 *     back), output sizes are exact and a buffer one byte short is
 *     refused without being overrun;
 *   - PLAIN and LOGIN: the status and the fields agree with a model written
 *     from sasl.h (fields split at the NULs, length limits, UTF-8 without
 *     controls, overlongs, surrogates or code points above U+10FFFF), and
 *     every failure leaves the output all zero.
 * Every buffer is its own exact-size allocation, so ASan sees any
 * overrun.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/sasl.h"
#include "fuzz_check.h"

static void *
dup_exact(const void *p, size_t n)
{
	void *d = xmalloc(n);

	if (n > 0)
		memcpy(d, p, n);
	return d;
}

static bool
all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		if (c[i] != 0)
			return false;
	return true;
}

/*
 * The model of a valid field: UTF-8 decoded code point by code point, the
 * shortest form only, no surrogates, nothing above U+10FFFF, and no C0
 * control or DEL.  Written from the definition (RFC 3629), not from the
 * table in sasl.c.
 */
static bool
model_text_ok(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned c = p[i], n, cp, min;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return false;
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/* Encode n bytes into a fresh exact-size string; checks the encoder. */
static char *
encode(const unsigned char *p, size_t n, size_t *outlen)
{
	size_t need = (n + 2) / 3 * 4;
	char *e = xmalloc(need + 1);
	ssize_t r;

	/* One byte short (no room for the NUL) must be refused. */
	CHECK(sasl_b64_encode(p, n, e, need) == -1, "encode into %zu", need);
	r = sasl_b64_encode(p, n, e, need + 1);
	CHECK(r >= 0 && (size_t)r == need, "encoded %zu bytes to %zd", n, r);
	CHECK(e[need] == '\0', "encoding not NUL-terminated");
	for (size_t i = 0; i < need; i++)
		CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvw"
			     "xyz"
			     "0123456789+/=",
			     e[i]) != NULL &&
			      e[i] != '\0',
		      "encoder wrote 0x%02x", (unsigned char)e[i]);
	*outlen = need;
	return e;
}

/* Decode text; returns the bytes (exact size) or NULL.  Checks that an
 * accepted text is canonical and that a short buffer is refused. */
static unsigned char *
decode(const char *text, size_t len, size_t *outlen)
{
	size_t cap = len / 4 * 3;
	unsigned char *d = xmalloc(cap);
	ssize_t n = sasl_b64_decode(text, len, d, cap);
	size_t elen;
	char *e;

	if (n < 0) {
		free(d);
		return NULL;
	}
	CHECK((size_t)n <= cap, "decoded %zd into %zu", n, cap);
	CHECK(len % 4 == 0 && (size_t)n + 2 >= cap, "decoded length %zd", n);
	if (n > 0) {
		unsigned char *small = xmalloc((size_t)n - 1);
		CHECK(sasl_b64_decode(text, len, small, (size_t)n - 1) == -1,
		      "decoded into a buffer one byte short");
		free(small);
	}
	e = encode(d, (size_t)n, &elen);
	CHECK(elen == len && memcmp(e, text, len) == 0,
	      "accepted a non-canonical spelling");
	free(e);
	*outlen = (size_t)n;
	return d;
}

/* What sasl_plain_decode() should make of decoded bytes p[0..n). */
static enum sasl_status
model_plain(const unsigned char *p, size_t n, size_t flen[3])
{
	const unsigned char *f = p, *nul;
	size_t rest = n;

	for (int i = 0; i < 2; i++) {
		nul = memchr(f, '\0', rest);
		if (nul == NULL)
			return SASL_MALFORMED;
		flen[i] = (size_t)(nul - f);
		rest -= flen[i] + 1;
		f = nul + 1;
	}
	flen[2] = rest;
	if (flen[1] == 0)
		return SASL_MALFORMED;
	for (int i = 0; i < 2; i++)
		if (flen[i] >= SASL_FIELD_MAX)
			return SASL_TOO_LONG;
	f = p;
	for (int i = 0; i < 2; i++) {
		if (!model_text_ok(f, flen[i]))
			return SASL_MALFORMED;
		f += flen[i] + 1;
	}
	/* An oversize password is not looked at: the caller's 535. */
	if (flen[2] >= SASL_FIELD_MAX)
		return SASL_PASS_TOO_LONG;
	if (!model_text_ok(f, flen[2]))
		return SASL_MALFORMED; /* a third NUL lands here */
	return SASL_OK;
}

static bool
empty_response(const char *text, size_t len)
{
	return len == 0 || (len == 1 && text[0] == '=');
}

static void
check_plain(const char *text, size_t len)
{
	struct sasl_creds *c = xmalloc(sizeof(*c));
	unsigned char *d = NULL;
	enum sasl_status st, want;
	size_t n = 0, flen[3] = {0, 0, 0};

	memset(c, 0xa5, sizeof(*c)); /* stale bytes must not survive */
	st = sasl_plain_decode(text, len, c);
	if (empty_response(text, len))
		want = SASL_MALFORMED;
	else if ((d = decode(text, len, &n)) == NULL)
		want = SASL_BAD_BASE64;
	else
		want = model_plain(d, n, flen);
	/* Oversized messages may be refused before they are split. */
	if (want == SASL_MALFORMED && st == SASL_TOO_LONG &&
	    n > 3 * (SASL_FIELD_MAX - 1) + 2)
		want = SASL_TOO_LONG;
	CHECK(st == want, "PLAIN status %d, model %d", (int)st, (int)want);
	if (st != SASL_OK && st != SASL_PASS_TOO_LONG) {
		CHECK(all_zero(c, sizeof(*c)), "PLAIN failure left bytes");
	} else {
		const char *f[3] = {c->authzid, c->user, c->pass};
		const unsigned char *src = d;
		int nf = st == SASL_OK ? 3 : 2;
		if (nf == 2)
			CHECK(all_zero(c->pass, sizeof(c->pass)),
			      "an oversize password left bytes");
		for (int i = 0; i < nf; i++) {
			CHECK(strlen(f[i]) == flen[i] &&
				      memcmp(f[i], src, flen[i]) == 0,
			      "PLAIN field %d differs", i);
			CHECK(all_zero(f[i] + flen[i],
				       SASL_FIELD_MAX - flen[i]),
			      "PLAIN field %d: bytes after its NUL", i);
			src += flen[i] + 1;
		}
	}
	sasl_creds_clear(c);
	CHECK(all_zero(c, sizeof(*c)), "sasl_creds_clear()");
	free(c);
	free(d);
}

static void
check_login(const char *text, size_t len, size_t outsize)
{
	char *out = xmalloc(outsize);
	unsigned char *d = NULL;
	enum sasl_status st, want;
	size_t n = 0;

	memset(out, 0xa5, outsize);
	st = sasl_login_decode(text, len, out, outsize);
	if (empty_response(text, len))
		want = SASL_OK;
	else if ((d = decode(text, len, &n)) == NULL)
		want = SASL_BAD_BASE64;
	else if (n >= outsize)
		want = SASL_TOO_LONG;
	else if (memchr(d, '\0', n) != NULL || !model_text_ok(d, n))
		want = SASL_MALFORMED;
	else
		want = SASL_OK;
	CHECK(st == want, "LOGIN status %d, model %d (outsize %zu)", (int)st,
	      (int)want, outsize);
	if (st != SASL_OK) {
		CHECK(all_zero(out, outsize), "LOGIN failure left bytes");
	} else {
		CHECK(n < outsize && out[n] == '\0' &&
			      (n == 0 || memcmp(out, d, n) == 0),
		      "LOGIN field differs");
	}
	free(out);
	free(d);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = dup_exact(data, size), *enc;
	unsigned char *d;
	size_t n, elen;

	/* The input as base64 text. */
	d = decode(text, size, &n);
	free(d);
	check_plain(text, size);
	check_login(text, size, SASL_FIELD_MAX);
	check_login(text, size, 1 + size % 8);

	/* The input as the decoded response. */
	enc = encode(data, size, &elen);
	d = decode(enc, elen, &n);
	CHECK(d != NULL && n == size && (n == 0 || memcmp(d, data, n) == 0),
	      "encode/decode round trip of %zu bytes", size);
	free(d);
	free(text);
	text = dup_exact(enc, elen); /* no NUL after it */
	free(enc);
	check_plain(text, elen);
	check_login(text, elen, SASL_FIELD_MAX);
	check_login(text, elen, 1 + size % 8);
	free(text);
	return 0;
}
