/*
 * sasl.c - strict base64 (RFC 4648 4) and the SASL PLAIN (RFC 4616) and
 * LOGIN (draft-murchison-sasl-login) client responses of SMTP AUTH
 * (RFC 4954).
 *
 * Hostile input: every byte here comes from an unauthenticated client.
 * Base64 is decoded strictly (canonical form only: no whitespace, no
 * characters outside the alphabet, length a multiple of 4, at most two '='
 * and only at the very end, unused bits of the last group zero), so that
 * one credential has exactly one spelling.  Decoded fields are bounded
 * before they are copied, must be valid UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF) and may not hold C0 controls or DEL.
 * Every buffer that held decoded bytes is cleared with OPENSSL_cleanse()
 * before it goes out of scope, and the caller's output is cleared on
 * failure, so no partial password is left behind.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "lib/bit_names.h"
#include "smtp/sasl.h"

/* ---- mechanism names ------------------------------------------------ */

static const struct bit_name mechs[] = {
	{AUTH_MECH_PLAIN, "PLAIN"},
	{AUTH_MECH_LOGIN, "LOGIN"},
	{AUTH_MECH_OAUTHBEARER, "OAUTHBEARER"},
	{AUTH_MECH_XOAUTH2, "XOAUTH2"},
};
#define NMECHS (sizeof(mechs) / sizeof(*mechs))

unsigned
sasl_mech_of(const char *name, size_t len)
{
	for (size_t i = 0; i < NMECHS; i++)
		if (strlen(mechs[i].name) == len &&
		    strncasecmp(name, mechs[i].name, len) == 0)
			return mechs[i].bit;
	return 0;
}

const char *
sasl_mech_name(unsigned bit)
{
	for (size_t i = 0; i < NMECHS; i++)
		if (mechs[i].bit == bit)
			return mechs[i].name;
	return NULL;
}

void
sasl_mech_list(unsigned bits, char *out, size_t size)
{
	if (bits == 0)
		snprintf(out, size, "none");
	else
		bit_names_join(mechs, NMECHS, bits, ",", out, size);
}

/*
 * Decoding table for the 128 ASCII values: 6-bit value, or 0xff for bytes
 * outside the alphabet ('=' included: padding is handled separately).
 * Bytes >= 0x80 are rejected before the lookup.
 */
static const unsigned char b64_dec[128] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 0x00 */
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 0x08 */
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 0x10 */
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 0x18 */
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 0x20 */
	0xff, 0xff, 0xff, 0x3e, 0xff, 0xff, 0xff, 0x3f, /* 0x28 + / */
	0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, /* 0x30 0-7 */
	0x3c, 0x3d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 0x38 8 9 */
	0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, /* 0x40 A-G */
	0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, /* 0x48 H-O */
	0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, /* 0x50 P-W */
	0x17, 0x18, 0x19, 0xff, 0xff, 0xff, 0xff, 0xff, /* 0x58 X-Z */
	0xff, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, /* 0x60 a-g */
	0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, /* 0x68 h-o */
	0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, /* 0x70 p-w */
	0x31, 0x32, 0x33, 0xff, 0xff, 0xff, 0xff, 0xff, /* 0x78 x-z */
};

static const char b64_enc[64] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of c, or -1 when c is not in the alphabet. */
static int
b64_val(unsigned char c)
{
	if (c >= 0x80 || b64_dec[c] == 0xff)
		return -1;
	return b64_dec[c];
}

/*
 * Check that in[0..len) is canonical base64 and compute its decoded
 * length.  Returns false on any violation.  Nothing is written.
 */
static bool
b64_check(const unsigned char *in, size_t len, size_t *declen)
{
	size_t i, pad = 0;

	if (len % 4 != 0)
		return false;
	if (len == 0) {
		*declen = 0;
		return true;
	}
	if (in[len - 1] == '=') {
		pad = 1;
		if (in[len - 2] == '=')
			pad = 2;
	}
	/* Everything before the padding must be in the alphabet. */
	for (i = 0; i < len - pad; i++)
		if (b64_val(in[i]) < 0)
			return false;
	/* The bits that the padding leaves over must be zero. */
	if (pad == 1 && (b64_val(in[len - 2]) & 0x03) != 0)
		return false;
	if (pad == 2 && (b64_val(in[len - 3]) & 0x0f) != 0)
		return false;
	*declen = len / 4 * 3 - pad;
	return true;
}

/* Decode input that b64_check() accepted; out has room for all of it. */
static void
b64_decode_checked(const unsigned char *in, size_t len, unsigned char *out)
{
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i < len; i += 4) {
		v = (uint32_t)b64_val(in[i]) << 18 |
		    (uint32_t)b64_val(in[i + 1]) << 12;
		out[o++] = (unsigned char)(v >> 16);
		if (in[i + 2] == '=')
			break;
		v |= (uint32_t)b64_val(in[i + 2]) << 6;
		out[o++] = (unsigned char)(v >> 8);
		if (in[i + 3] == '=')
			break;
		v |= (uint32_t)b64_val(in[i + 3]);
		out[o++] = (unsigned char)v;
	}
}

ssize_t
sasl_b64_decode(const char *in, size_t len, unsigned char *out, size_t outsize)
{
	size_t n;

	if (len > 0 && in == NULL)
		return -1;
	if (!b64_check((const unsigned char *)in, len, &n))
		return -1;
	if (n > outsize || n > SSIZE_MAX)
		return -1;
	if (n > 0)
		b64_decode_checked((const unsigned char *)in, len, out);
	return (ssize_t)n;
}

ssize_t
sasl_b64_encode(const unsigned char *in, size_t len, char *out, size_t outsize)
{
	size_t i, o = 0, need;
	uint32_t v;

	/* 4 output bytes per started group of 3, and the NUL. */
	if (len > (SIZE_MAX / 4 - 1) * 3)
		return -1;
	need = (len + 2) / 3 * 4;
	if (need >= outsize || need > SSIZE_MAX)
		return -1;
	for (i = 0; i + 3 <= len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = b64_enc[v >> 18 & 0x3f];
		out[o++] = b64_enc[v >> 12 & 0x3f];
		out[o++] = b64_enc[v >> 6 & 0x3f];
		out[o++] = b64_enc[v & 0x3f];
	}
	if (len - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = b64_enc[v >> 18 & 0x3f];
		out[o++] = b64_enc[v >> 12 & 0x3f];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_enc[v >> 18 & 0x3f];
		out[o++] = b64_enc[v >> 12 & 0x3f];
		out[o++] = b64_enc[v >> 6 & 0x3f];
		out[o++] = '=';
	}
	out[o] = '\0';
	return (ssize_t)o;
}

/*
 * Is p[0..len) well-formed UTF-8 (RFC 3629) without C0 controls, DEL or
 * NUL?  Overlong forms, UTF-16 surrogates (U+D800..U+DFFF) and code points
 * above U+10FFFF are refused.  C1 controls (U+0080..U+009F) are legal
 * UTF-8 and pass.
 */
static bool
utf8_text_ok(const unsigned char *p, size_t len)
{
	size_t i = 0, n, k;
	unsigned char c, lo, hi;

	while (i < len) {
		c = p[i];
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return false;
			i++;
			continue;
		}
		/* Lead byte: number of continuation bytes and the allowed
		 * range of the first one (which rules out overlongs,
		 * surrogates and values above U+10FFFF). */
		lo = 0x80;
		hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
		} else if (c == 0xe0) {
			n = 2;
			lo = 0xa0;
		} else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
			n = 2;
		} else if (c == 0xed) {
			n = 2;
			hi = 0x9f;
		} else if (c == 0xf0) {
			n = 3;
			lo = 0x90;
		} else if (c >= 0xf1 && c <= 0xf3) {
			n = 3;
		} else if (c == 0xf4) {
			n = 3;
			hi = 0x8f;
		} else {
			/* 0x80..0xc1 (continuation or overlong 2-byte
			 * lead), 0xf5..0xff */
			return false;
		}
		if (len - i - 1 < n)
			return false;
		if (p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (k = 2; k <= n; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
		i += n + 1;
	}
	return true;
}

/* "=" is the RFC 4954 spelling of an empty response. */
static bool
is_empty_response(const char *b64, size_t len)
{
	return len == 0 || (len == 1 && b64[0] == '=');
}

/* The checks every client response gets first: SASL_OK with *declen its
 * decoded length, SASL_EMPTY for "" or "=" (each caller says what an
 * empty one means), else why it is not base64. */
#define SASL_EMPTY 1 /* beside enum sasl_status's OK and errors */
static int
response_check(const char *b64, size_t len, size_t *declen)
{
	if (len > 0 && b64 == NULL)
		return SASL_BAD_BASE64;
	if (is_empty_response(b64, len))
		return SASL_EMPTY;
	if (!b64_check((const unsigned char *)b64, len, declen))
		return SASL_BAD_BASE64;
	return SASL_OK;
}

/* The longest valid PLAIN message: three full fields and two NULs. */
#define PLAIN_MAX (3 * (SASL_FIELD_MAX - 1) + 2)
/* What is decoded of a longer one: a whole number of base64 groups that
 * holds the longest authzid and user with their NULs, and more. */
#define PLAIN_PREFIX ((PLAIN_MAX + 2) / 3 * 3)

/* Decode the first groups of checked base64 in[0..len) into out, which
 * holds outsize bytes (a multiple of 3, all of it when it is enough). */
static size_t
b64_decode_prefix(const unsigned char *in, size_t len, size_t n,
		  unsigned char *out, size_t outsize)
{
	if (n <= outsize) {
		b64_decode_checked(in, len, out);
		return n;
	}
	/* A strict prefix of whole groups holds no padding. */
	b64_decode_checked(in, outsize / 3 * 4, out);
	return outsize;
}

enum sasl_status
sasl_plain_decode(const char *b64, size_t len, struct sasl_creds *out)
{
	int rc;
	unsigned char buf[PLAIN_PREFIX];
	const unsigned char *f[3], *nul;
	size_t n, m, flen[3], i, rest;
	enum sasl_status st;

	sasl_creds_clear(out);
	if ((rc = response_check(b64, len, &n)) != SASL_OK)
		return rc == SASL_EMPTY ? SASL_MALFORMED : (enum sasl_status)rc;
	/* A longer message is read only as far as its first two fields can
	 * reach: an oversize password is refused without being decoded. */
	m = b64_decode_prefix((const unsigned char *)b64, len, n, buf,
			      sizeof(buf));

	/* Split authzid NUL authcid NUL passwd.  A third NUL would be a NUL
	 * inside the password and is caught by the text check below. */
	rest = m;
	f[0] = buf;
	for (i = 0; i < 2; i++) {
		nul = memchr(f[i], '\0', rest);
		if (nul == NULL) {
			/* Past the prefix, a field is too long anyway. */
			st = n > m ? SASL_TOO_LONG : SASL_MALFORMED;
			goto done;
		}
		flen[i] = (size_t)(nul - f[i]);
		rest -= flen[i] + 1;
		f[i + 1] = nul + 1;
	}
	flen[2] = n - flen[0] - flen[1] - 2;

	if (flen[1] == 0) {
		st = SASL_MALFORMED; /* empty authcid */
		goto done;
	}
	for (i = 0; i < 2; i++) {
		if (flen[i] >= SASL_FIELD_MAX) {
			st = SASL_TOO_LONG;
			goto done;
		}
	}
	/* The authzid is held to the same rule as the user name: it may be
	 * logged or compared with it, and RFC 4616 wants UTF-8 too. */
	for (i = 0; i < 2; i++) {
		if (!utf8_text_ok(f[i], flen[i])) {
			st = SASL_MALFORMED;
			goto done;
		}
	}
	memcpy(out->authzid, f[0], flen[0]);
	memcpy(out->user, f[1], flen[1]);
	if (flen[2] >= SASL_FIELD_MAX) {
		st = SASL_PASS_TOO_LONG; /* the caller's 535, not ours */
		goto done;
	}
	if (!utf8_text_ok(f[2], flen[2])) {
		st = SASL_MALFORMED;
		goto done;
	}
	memcpy(out->pass, f[2], flen[2]);
	/* The arrays were zeroed by sasl_creds_clear(): NUL-terminated. */
	st = SASL_OK;
done:
	OPENSSL_cleanse(buf, sizeof(buf));
	if (st != SASL_OK && st != SASL_PASS_TOO_LONG)
		sasl_creds_clear(out);
	return st;
}

enum sasl_status
sasl_login_decode(const char *b64, size_t len, char *out, size_t outsize)
{
	int rc;
	size_t n;

	if (out == NULL || outsize == 0)
		return SASL_TOO_LONG;
	OPENSSL_cleanse(out, outsize);
	if ((rc = response_check(b64, len, &n)) != SASL_OK) /* empty: "" */
		return rc == SASL_EMPTY ? SASL_OK : (enum sasl_status)rc;
	if (n >= outsize)
		return SASL_TOO_LONG;
	b64_decode_checked((const unsigned char *)b64, len,
			   (unsigned char *)out);
	if (memchr(out, '\0', n) != NULL) {
		OPENSSL_cleanse(out, outsize);
		return SASL_MALFORMED;
	}
	if (!utf8_text_ok((const unsigned char *)out, n)) {
		OPENSSL_cleanse(out, outsize);
		return SASL_MALFORMED;
	}
	out[n] = '\0';
	return SASL_OK;
}

void
sasl_creds_clear(struct sasl_creds *c)
{
	if (c != NULL)
		OPENSSL_cleanse(c, sizeof(*c));
}

/* ---- OAUTHBEARER (RFC 7628) and XOAUTH2 ------------------------------ */

/* ASCII classes (not <ctype.h>: no locale in protocol code). */
static bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* A bearer token (RFC 6750 2.1, b64token): 1*( ALPHA / DIGIT / "-" / "."
 * / "_" / "~" / "+" / "/" ) *"=". */
static bool
b64token_ok(const unsigned char *t, size_t len)
{
	size_t i = 0;

	while (i < len && (is_alpha(t[i]) || is_digit(t[i]) || t[i] == '-' ||
			   t[i] == '.' || t[i] == '_' || t[i] == '~' ||
			   t[i] == '+' || t[i] == '/'))
		i++;
	if (i == 0)
		return false;
	while (i < len && t[i] == '=')
		i++;
	return i == len;
}

/* "auth=Bearer <token>" (the scheme is case-insensitive): the token into
 * out.  false when the value is not of that shape or does not fit. */
static bool
take_bearer(const unsigned char *v, size_t len, struct sasl_oauth *out)
{
	if (len < 7 || strncasecmp((const char *)v, "Bearer ", 7) != 0)
		return false;
	v += 7;
	len -= 7;
	if (len >= sizeof(out->token) || !b64token_ok(v, len))
		return false;
	memcpy(out->token, v, len);
	out->token[len] = '\0';
	out->token_len = len;
	return true;
}

/* The key=value^A pairs from p to the final ^A (p[0..len) ends with the
 * pair list's terminating ^A).  Keys are 1*ALPHA; auth is required, host
 * and port (OAUTHBEARER) and user (XOAUTH2) are taken, others ignored. */
static enum sasl_status
take_pairs(const unsigned char *p, size_t len, bool xoauth2,
	   struct sasl_oauth *out)
{
	bool have_auth = false, have_user = !xoauth2;

	while (len > 0) {
		const unsigned char *sep = memchr(p, 0x01, len), *eq;
		size_t plen, klen, vlen;

		if (sep == NULL)
			return SASL_MALFORMED;
		plen = (size_t)(sep - p);
		if (plen == 0) /* the closing ^A: it must be the last byte */
			return len == 1 && have_auth && have_user
				       ? SASL_OK
				       : SASL_MALFORMED;
		eq = memchr(p, '=', plen);
		if (eq == NULL || eq == p)
			return SASL_MALFORMED;
		klen = (size_t)(eq - p);
		vlen = plen - klen - 1;
		for (size_t i = 0; i < klen; i++)
			if (!is_alpha(p[i]))
				return SASL_MALFORMED;
		if (klen == 4 && memcmp(p, "auth", 4) == 0) {
			if (have_auth || !take_bearer(eq + 1, vlen, out))
				return SASL_MALFORMED;
			have_auth = true;
		} else if (xoauth2 && klen == 4 && memcmp(p, "user", 4) == 0) {
			if (have_user || vlen == 0 ||
			    vlen >= sizeof(out->user) ||
			    !utf8_text_ok(eq + 1, vlen))
				return SASL_MALFORMED;
			memcpy(out->user, eq + 1, vlen);
			have_user = true;
		} else if (!xoauth2 && klen == 4 && memcmp(p, "host", 4) == 0) {
			if (vlen >= sizeof(out->host) ||
			    !utf8_text_ok(eq + 1, vlen))
				return SASL_MALFORMED;
			memcpy(out->host, eq + 1, vlen);
			out->host[vlen] = '\0';
		} else if (!xoauth2 && klen == 4 && memcmp(p, "port", 4) == 0) {
			unsigned long v = 0;

			if (vlen == 0 || vlen > 5)
				return SASL_MALFORMED;
			for (size_t i = 0; i < vlen; i++) {
				if (!is_digit(eq[1 + i]))
					return SASL_MALFORMED;
				v = v * 10 + (unsigned long)(eq[1 + i] - '0');
			}
			if (v > 65535)
				return SASL_MALFORMED;
			out->port = (unsigned)v;
		}
		p += plen + 1;
		len -= plen + 1;
	}
	return SASL_MALFORMED; /* no closing ^A */
}

/* OAUTHBEARER's gs2 header, "n,[a=authzid]," or "y,[a=authzid],": the
 * authzid (",", "=" escaped as =2C, =3D) into out->user; the length of the
 * header, 0 when it is malformed ("p=": channel binding, not offered). */
static size_t
take_gs2(const unsigned char *p, size_t len, struct sasl_oauth *out)
{
	const unsigned char *comma;
	size_t i, o = 0;

	if (len < 3 || (p[0] != 'n' && p[0] != 'y') || p[1] != ',')
		return 0;
	comma = memchr(p + 2, ',', len - 2);
	if (comma == NULL)
		return 0;
	if (comma > p + 2) {
		if (comma - (p + 2) < 3 || p[2] != 'a' || p[3] != '=')
			return 0;
		for (i = 4; p + i < comma; i++) {
			unsigned char c = p[i];

			if (c == '=') { /* RFC 5801: =2C is ',', =3D is '=' */
				if (p + i + 2 >= comma)
					return 0;
				if (p[i + 1] == '2' && p[i + 2] == 'C')
					c = ',';
				else if (p[i + 1] == '3' && p[i + 2] == 'D')
					c = '=';
				else
					return 0;
				i += 2;
			}
			if (o + 1 >= sizeof(out->user))
				return 0;
			out->user[o++] = (char)c;
		}
		if (o == 0 ||
		    !utf8_text_ok((const unsigned char *)out->user, o))
			return 0;
	}
	out->user[o] = '\0';
	return (size_t)(comma - p) + 1;
}

static enum sasl_status
oauth_decode(const char *b64, size_t len, bool xoauth2, struct sasl_oauth *out)
{
	int rc;
	unsigned char *buf;
	size_t n, off = 0;
	enum sasl_status st;

	OPENSSL_cleanse(out, sizeof(*out));
	if ((rc = response_check(b64, len, &n)) != SASL_OK)
		return rc == SASL_EMPTY ? SASL_MALFORMED : (enum sasl_status)rc;
	if (n > SASL_OAUTH_MAX)
		return SASL_TOO_LONG;
	buf = malloc(n + 1);
	if (buf == NULL)
		return SASL_TOO_LONG;
	b64_decode_checked((const unsigned char *)b64, len, buf);
	if (!xoauth2) {
		off = take_gs2(buf, n, out);
		if (off == 0 || off >= n || buf[off] != 0x01) {
			st = SASL_MALFORMED;
			goto done;
		}
		off++; /* the ^A after the gs2 header */
	}
	st = take_pairs(buf + off, n - off, xoauth2, out);
done:
	OPENSSL_cleanse(buf, n + 1);
	free(buf);
	if (st != SASL_OK)
		OPENSSL_cleanse(out, sizeof(*out));
	return st;
}

enum sasl_status
sasl_oauthbearer_decode(const char *b64, size_t len, struct sasl_oauth *out)
{
	return oauth_decode(b64, len, false, out);
}

enum sasl_status
sasl_xoauth2_decode(const char *b64, size_t len, struct sasl_oauth *out)
{
	return oauth_decode(b64, len, true, out);
}

bool
sasl_oauth_is_dummy(const char *b64, size_t len)
{
	return len == 4 && memcmp(b64, "AQ==", 4) == 0;
}

bool
sasl_oauth_status_ok(const char *st, size_t len)
{
	if (len < 2 || len > SASL_STATUS_MAX || st[0] != '{' ||
	    st[len - 1] != '}')
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)st[i] < 0x20 || (unsigned char)st[i] > 0x7e)
			return false;
	return true;
}

ssize_t
sasl_oauth_challenge(const char *status, char *out, size_t outsize)
{
	static const char generic[] = "{\"status\":\"invalid_token\"}";
	size_t len = status != NULL ? strnlen(status, SASL_STATUS_MAX + 1) : 0;
	ssize_t n;

	if (!sasl_oauth_status_ok(status, len)) {
		status = generic;
		len = sizeof(generic) - 1;
	}
	if (outsize < 5)
		return -1;
	memcpy(out, "334 ", 4);
	n = sasl_b64_encode((const unsigned char *)status, len, out + 4,
			    outsize - 4);
	return n < 0 ? -1 : n + 4;
}
