/*
 * test_sasl.c - strict base64, SASL PLAIN and LOGIN decoding.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/sasl.h"

#define S(lit) lit, sizeof(lit) - 1

/* base64 of raw[0..len) into a static buffer (via the encoder under
 * test, which the vector and round-trip tests check on its own). */
static const char *
b64(const void *raw, size_t len)
{
	static char buf[16384];
	ssize_t n;

	n = sasl_b64_encode(raw, len, buf, sizeof(buf));
	assert_true(n >= 0);
	return buf;
}

static int
b64_ok(const char *s, size_t len)
{
	unsigned char out[256];

	return sasl_b64_decode(s, len, out, sizeof(out)) >= 0;
}

static bool
all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (c[i] != 0)
			return false;
	return true;
}

/* ------------------------------------------------------------ base64 */

static void
test_b64_vectors(void **state)
{
	/* RFC 4648 10 */
	static const char *const v[][2] = {
		{"", ""},
		{"f", "Zg=="},
		{"fo", "Zm8="},
		{"foo", "Zm9v"},
		{"foob", "Zm9vYg=="},
		{"fooba", "Zm9vYmE="},
		{"foobar", "Zm9vYmFy"},
	};
	char enc[64];
	unsigned char dec[64];
	size_t i;
	ssize_t n;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		n = sasl_b64_encode((const unsigned char *)v[i][0],
				    strlen(v[i][0]), enc, sizeof(enc));
		assert_int_equal(n, strlen(v[i][1]));
		assert_string_equal(enc, v[i][1]);
		n = sasl_b64_decode(v[i][1], strlen(v[i][1]), dec, sizeof(dec));
		assert_int_equal(n, strlen(v[i][0]));
		assert_memory_equal(dec, v[i][0], (size_t)n);
	}
}

static void
test_b64_round_trip(void **state)
{
	unsigned char raw[300], dec[300];
	char enc[404];
	size_t len, i;
	ssize_t n, m;
	uint32_t x = 12345;

	(void)state;
	for (len = 0; len <= sizeof(raw); len++) {
		for (i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			raw[i] = (unsigned char)(x >> 16);
		}
		n = sasl_b64_encode(raw, len, enc, sizeof(enc));
		assert_int_equal(n, (len + 2) / 3 * 4);
		assert_int_equal(enc[n], '\0');
		m = sasl_b64_decode(enc, (size_t)n, dec, sizeof(dec));
		assert_int_equal(m, len);
		assert_memory_equal(dec, raw, len);
	}
	/* All byte values. */
	for (i = 0; i < 256; i++)
		raw[i] = (unsigned char)i;
	n = sasl_b64_encode(raw, 256, enc, sizeof(enc));
	assert_true(n > 0);
	m = sasl_b64_decode(enc, (size_t)n, dec, sizeof(dec));
	assert_int_equal(m, 256);
	assert_memory_equal(dec, raw, 256);
}

static void
test_b64_alphabet_exhaustive(void **state)
{
	char q[4];
	unsigned c;
	bool in_alpha;

	(void)state;
	/* Every byte value in every position of a quantum. */
	for (c = 0; c < 256; c++) {
		in_alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			   (c >= '0' && c <= '9') || c == '+' || c == '/';
		memcpy(q, "AAAA", 4);
		q[0] = (char)c;
		assert_int_equal(b64_ok(q, 4), in_alpha);
		memcpy(q, "AAAA", 4);
		q[1] = (char)c;
		assert_int_equal(b64_ok(q, 4), in_alpha);
		/* Third and fourth positions: '=' is padding there. */
		memcpy(q, "AAAA", 4);
		q[3] = (char)c;
		assert_int_equal(b64_ok(q, 4), in_alpha || c == '=');
	}
	/* Decoded values of the alphabet, in order. */
	{
		static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
					    "abcdefghijklmnopqrstuvwxyz"
					    "0123456789+/";
		unsigned char out[3];
		unsigned v;

		for (v = 0; v < 64; v++) {
			q[0] = alpha[v];
			q[1] = 'A';
			q[2] = 'A';
			q[3] = 'A';
			assert_int_equal(sasl_b64_decode(q, 4, out, 3), 3);
			assert_int_equal(out[0] >> 2, v);
		}
	}
}

static void
test_b64_rejects_whitespace(void **state)
{
	(void)state;
	assert_false(b64_ok(S("Zm9v\n")));
	assert_false(b64_ok(S("Zm9v\r\n")));
	assert_false(b64_ok(S(" Zm9v")));
	assert_false(b64_ok(S("Zm 9v")));
	assert_false(b64_ok(S("Zm9v    ")));
	assert_false(b64_ok(S("Zm\t9")));
	assert_false(b64_ok(S("Zm9v\0AAA")));
	assert_false(b64_ok(S("Zm9v    Zm9v")));
}

static void
test_b64_rejects_bad_length(void **state)
{
	(void)state;
	assert_false(b64_ok(S("Z")));
	assert_false(b64_ok(S("Zm")));
	assert_false(b64_ok(S("Zm9")));
	assert_false(b64_ok(S("Zm9vY")));
	/* Unpadded forms of valid input are not accepted. */
	assert_false(b64_ok(S("Zg")));
	assert_false(b64_ok(S("Zm8")));
	assert_true(b64_ok(S("")));
}

static void
test_b64_rejects_bad_padding(void **state)
{
	(void)state;
	assert_false(b64_ok(S("====")));
	assert_false(b64_ok(S("Z===")));
	assert_false(b64_ok(S("Zg=")));
	assert_false(b64_ok(S("Zg===")));
	assert_false(b64_ok(S("Zg=a")));
	assert_false(b64_ok(S("Z=g=")));
	assert_false(b64_ok(S("=Zg=")));
	/* Padding in the middle. */
	assert_false(b64_ok(S("Zg==Zg==")));
	assert_false(b64_ok(S("Zm8=Zm9v")));
	/* Non-zero bits under the padding: 'f' is "Zg==", not "Zh==". */
	assert_true(b64_ok(S("Zg==")));
	assert_false(b64_ok(S("Zh==")));
	assert_false(b64_ok(S("Zv==")));
	assert_true(b64_ok(S("Zm8=")));
	assert_false(b64_ok(S("Zm9=")));
	assert_false(b64_ok(S("Zm/=")));
	/* A lone '=' is not base64 (the SASL layer reads it as empty). */
	assert_false(b64_ok(S("=")));
}

static void
test_b64_rejects_non_alphabet(void **state)
{
	(void)state;
	/* base64url and other near misses. */
	assert_false(b64_ok(S("Zm-v")));
	assert_false(b64_ok(S("Zm_v")));
	assert_false(b64_ok(S("Zm.v")));
	assert_false(b64_ok(S("Zm*v")));
	assert_false(b64_ok(S("Zm9\x80")));
	assert_false(b64_ok(S("\xffm9v")));
	assert_false(b64_ok(S("Zm9v\x7f\x7f\x7f\x7f")));
}

static void
test_b64_out_size(void **state)
{
	unsigned char out[8];
	char enc[8];

	(void)state;
	memset(out, 0xaa, sizeof(out));
	assert_int_equal(sasl_b64_decode(S("Zm9v"), out, 2), -1);
	assert_int_equal(out[2], 0xaa);
	assert_int_equal(sasl_b64_decode(S("Zm9v"), out, 3), 3);
	/* Padding makes the real length smaller than 3 * len / 4. */
	assert_int_equal(sasl_b64_decode(S("Zm8="), out, 2), 2);
	assert_int_equal(sasl_b64_decode(S("Zg=="), out, 1), 1);
	assert_int_equal(sasl_b64_decode(S("Zg=="), out, 0), -1);
	assert_int_equal(sasl_b64_decode(S(""), NULL, 0), 0);

	/* The encoder needs room for the NUL too. */
	assert_int_equal(
		sasl_b64_encode((const unsigned char *)"foo", 3, enc, 4), -1);
	assert_int_equal(
		sasl_b64_encode((const unsigned char *)"foo", 3, enc, 5), 4);
	assert_string_equal(enc, "Zm9v");
	assert_int_equal(sasl_b64_encode((const unsigned char *)"", 0, enc, 1),
			 0);
	assert_string_equal(enc, "");
	assert_int_equal(sasl_b64_encode((const unsigned char *)"", 0, enc, 0),
			 -1);
	/* A length whose encoding cannot be represented. */
	assert_int_equal(sasl_b64_encode((const unsigned char *)"", SIZE_MAX,
					 enc, sizeof(enc)),
			 -1);
}

/* ------------------------------------------------------------- PLAIN */

static enum sasl_status
plain_raw(const void *msg, size_t len, struct sasl_creds *c)
{
	const char *e = b64(msg, len);

	return sasl_plain_decode(e, strlen(e), c);
}

static void
test_plain_ok(void **state)
{
	struct sasl_creds c;

	(void)state;
	assert_int_equal(plain_raw(S("\0alice\0secret"), &c), SASL_OK);
	assert_string_equal(c.authzid, "");
	assert_string_equal(c.user, "alice");
	assert_string_equal(c.pass, "secret");

	assert_int_equal(plain_raw(S("admin\0alice\0secret"), &c), SASL_OK);
	assert_string_equal(c.authzid, "admin");
	assert_string_equal(c.user, "alice");
	assert_string_equal(c.pass, "secret");

	/* RFC 4616 example. */
	assert_int_equal(
		sasl_plain_decode(S("AHRpbQB0YW5zdGFhZnRhbnN0YWFm"), &c),
		SASL_OK);
	assert_string_equal(c.user, "tim");
	assert_string_equal(c.pass, "tanstaaftanstaaf");

	/* An empty password is the back end's business, not a format
	 * error. */
	assert_int_equal(plain_raw(S("\0alice\0"), &c), SASL_OK);
	assert_string_equal(c.pass, "");

	/* Spaces and UTF-8 are fine. */
	assert_int_equal(plain_raw(S("\0j\xc3\xbcrgen\0p w \xe2\x82\xac"), &c),
			 SASL_OK);
	assert_string_equal(c.user, "j\xc3\xbcrgen");
	assert_string_equal(c.pass, "p w \xe2\x82\xac");
	sasl_creds_clear(&c);
	assert_true(all_zero(&c, sizeof(c)));
}

static void
test_plain_empty_authcid(void **state)
{
	struct sasl_creds c;

	(void)state;
	assert_int_equal(plain_raw(S("\0\0secret"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("admin\0\0secret"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("\0\0"), &c), SASL_MALFORMED);
}

static void
test_plain_missing_nuls(void **state)
{
	struct sasl_creds c;

	(void)state;
	assert_int_equal(plain_raw(S("alicesecret"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("alice\0secret"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("\0alice"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("x"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("\0"), &c), SASL_MALFORMED);
}

static void
test_plain_extra_nuls(void **state)
{
	struct sasl_creds c;

	(void)state;
	assert_int_equal(plain_raw(S("\0alice\0sec\0ret"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("\0alice\0secret\0"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("\0alice\0\0"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("\0\0\0"), &c), SASL_MALFORMED);
	assert_int_equal(plain_raw(S("\0\0alice\0secret"), &c), SASL_MALFORMED);
}

/*
 * The SMTP layer sees "AUTH PLAIN =" (RFC 4954: a zero-length initial
 * response).  Whether the caller maps "=" to "" first or passes it as is,
 * the result is the same: an empty PLAIN message is malformed.
 */
static enum sasl_status
caller_plain(const char *arg, struct sasl_creds *c)
{
	size_t len = strlen(arg);

	if (len == 1 && arg[0] == '=')
		len = 0;
	return sasl_plain_decode(arg, len, c);
}

static void
test_plain_equals(void **state)
{
	struct sasl_creds c;

	(void)state;
	assert_int_equal(sasl_plain_decode(S("="), &c), SASL_MALFORMED);
	assert_int_equal(sasl_plain_decode(S(""), &c), SASL_MALFORMED);
	assert_int_equal(caller_plain("=", &c), SASL_MALFORMED);
	assert_int_equal(caller_plain("", &c), SASL_MALFORMED);
	/* "=" anywhere else is just bad base64. */
	assert_int_equal(sasl_plain_decode(S("=="), &c), SASL_BAD_BASE64);
	assert_int_equal(sasl_plain_decode(S("===="), &c), SASL_BAD_BASE64);
	assert_int_equal(caller_plain("AGFsaWNlAHNlY3JldA==", &c), SASL_OK);
	assert_string_equal(c.user, "alice");
}

static void
test_plain_bad_base64(void **state)
{
	struct sasl_creds c;

	(void)state;
	assert_int_equal(sasl_plain_decode(S("AGFsaWNlAHNlY3JldA= ="), &c),
			 SASL_BAD_BASE64);
	assert_int_equal(sasl_plain_decode(S("AGFsaWNlAHNlY3JldA"), &c),
			 SASL_BAD_BASE64);
	assert_int_equal(sasl_plain_decode(S("AGFsaWNlAHNlY3JldA==\r\n"), &c),
			 SASL_BAD_BASE64);
	assert_int_equal(sasl_plain_decode(S("*"), &c), SASL_BAD_BASE64);
	assert_true(all_zero(&c, sizeof(c)));
}

static void
test_plain_oversize(void **state)
{
	char msg[1200];
	struct sasl_creds c;
	const size_t max = SASL_FIELD_MAX - 1;
	size_t n;

	(void)state;
	/* Each field at the limit. */
	n = 0;
	memset(msg + n, 'z', max);
	n += max;
	msg[n++] = '\0';
	memset(msg + n, 'u', max);
	n += max;
	msg[n++] = '\0';
	memset(msg + n, 'p', max);
	n += max;
	assert_int_equal(plain_raw(msg, n, &c), SASL_OK);
	assert_int_equal(strlen(c.authzid), max);
	assert_int_equal(strlen(c.user), max);
	assert_int_equal(strlen(c.pass), max);

	/* One byte over, in each field. */
	n = 0;
	msg[n++] = '\0';
	memset(msg + n, 'u', max + 1);
	n += max + 1;
	msg[n++] = '\0';
	msg[n++] = 'p';
	assert_int_equal(plain_raw(msg, n, &c), SASL_TOO_LONG);
	assert_true(all_zero(&c, sizeof(c)));

	n = 0;
	msg[n++] = '\0';
	msg[n++] = 'u';
	msg[n++] = '\0';
	memset(msg + n, 'p', max + 1);
	n += max + 1;
	/* A password one byte over: the caller's 535, user kept. */
	assert_int_equal(plain_raw(msg, n, &c), SASL_PASS_TOO_LONG);
	assert_string_equal(c.user, "u");
	assert_true(all_zero(c.pass, sizeof(c.pass)));

	n = 0;
	memset(msg + n, 'z', max + 1);
	n += max + 1;
	msg[n++] = '\0';
	msg[n++] = 'u';
	msg[n++] = '\0';
	msg[n++] = 'p';
	assert_int_equal(plain_raw(msg, n, &c), SASL_TOO_LONG);

	/* Far too long as a whole: the password is the long one. */
	memset(msg, 'x', sizeof(msg));
	msg[0] = '\0';
	msg[10] = '\0';
	assert_int_equal(plain_raw(msg, sizeof(msg), &c), SASL_PASS_TOO_LONG);
	assert_string_equal(c.user, "xxxxxxxxx");
	assert_true(all_zero(c.pass, sizeof(c.pass)));
	/* The user name is the long one: 501 as before. */
	msg[10] = 'x';
	msg[600] = '\0';
	assert_int_equal(plain_raw(msg, sizeof(msg), &c), SASL_TOO_LONG);
	assert_true(all_zero(&c, sizeof(c)));
	/* One NUL only, past the part that is read: too long. */
	msg[600] = 'x';
	assert_int_equal(plain_raw(msg, sizeof(msg), &c), SASL_TOO_LONG);
	assert_true(all_zero(&c, sizeof(c)));
}

/* Issue 18 item 7: a 9,000-octet password is not "malformed" (that would
 * tell a prober where the limit lies) but a password to refuse; its bytes
 * are not looked at, a bad user name or authzid is still 501. */
static void
test_plain_huge_password(void **state)
{
	static char msg[9100];
	struct sasl_creds c;
	size_t n = 0;

	(void)state;
	memcpy(msg, "\0alice\0", 7);
	n = 7;
	memset(msg + n, 'p', 9000);
	n += 9000;
	assert_int_equal(plain_raw(msg, n, &c), SASL_PASS_TOO_LONG);
	assert_string_equal(c.authzid, "");
	assert_string_equal(c.user, "alice");
	assert_true(all_zero(c.pass, sizeof(c.pass)));
	/* A NUL or a control inside it changes nothing: not read. */
	msg[5000] = '\0';
	msg[6000] = '\r';
	assert_int_equal(plain_raw(msg, n, &c), SASL_PASS_TOO_LONG);
	/* authzid = user is allowed with it, as with a short one. */
	memcpy(msg, "alice\0alice\0", 12);
	assert_int_equal(plain_raw(msg, n, &c), SASL_PASS_TOO_LONG);
	assert_string_equal(c.authzid, "alice");
	/* A bad user name: malformed, cleared. */
	memcpy(msg, "\0al\001ce\0", 7);
	assert_int_equal(plain_raw(msg, n, &c), SASL_MALFORMED);
	assert_true(all_zero(&c, sizeof(c)));
	/* No NUL at all: nothing to split, too long as a whole. */
	memset(msg, 'p', n);
	assert_int_equal(plain_raw(msg, n, &c), SASL_TOO_LONG);
	/* Bad base64 stays bad base64, however long. */
	assert_int_equal(sasl_plain_decode(msg, n, &c), SASL_BAD_BASE64);
}

static void
test_plain_bad_utf8(void **state)
{
	/* Each string is put in the user field and in the password. */
	static const char *const bad[] = {
		"\xc0\xaf",	    /* overlong '/' */
		"\xc1\xbf",	    /* overlong */
		"\xe0\x80\xaf",	    /* overlong 3-byte */
		"\xe0\x9f\xbf",	    /* overlong 3-byte, top */
		"\xf0\x80\x80\xaf", /* overlong 4-byte */
		"\xf0\x8f\xbf\xbf", /* overlong 4-byte, top */
		"\xed\xa0\x80",	    /* U+D800 */
		"\xed\xbf\xbf",	    /* U+DFFF */
		"\xf4\x90\x80\x80", /* U+110000 */
		"\xf5\x80\x80\x80", /* lead byte > F4 */
		"\xff",		    /* never valid */
		"\xfe",		    /* never valid */
		"\x80",		    /* lone continuation */
		"a\xbf",	    /* lone continuation */
		"\xc3",		    /* truncated */
		"\xe2\x82",	    /* truncated */
		"\xf0\x9f\x98",	    /* truncated */
		"\xc3\x28",	    /* bad continuation */
		"\xe2\x28\xa1",	    /* bad continuation */
		"\xf0\x9f\x28\x80", /* bad continuation */
		"\x01",		    /* C0 control */
		"a\tb",		    /* TAB is a control too */
		"a\rb",		    /* CR */
		"a\nb",		    /* LF */
		"\x1b[0m",	    /* ESC */
		"\x1f",		    /* last C0 */
		"\x7f",		    /* DEL */
	};
	char msg[64];
	struct sasl_creds c;
	size_t i, l, n;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		l = strlen(bad[i]);
		n = 0;
		msg[n++] = '\0';
		memcpy(msg + n, bad[i], l);
		n += l;
		msg[n++] = '\0';
		msg[n++] = 'p';
		assert_int_equal(plain_raw(msg, n, &c), SASL_MALFORMED);
		assert_true(all_zero(&c, sizeof(c)));

		n = 0;
		msg[n++] = '\0';
		msg[n++] = 'u';
		msg[n++] = '\0';
		memcpy(msg + n, bad[i], l);
		n += l;
		assert_int_equal(plain_raw(msg, n, &c), SASL_MALFORMED);
		assert_true(all_zero(&c, sizeof(c)));

		/* The authzid too. */
		n = 0;
		memcpy(msg + n, bad[i], l);
		n += l;
		memcpy(msg + n, "\0u\0p", 4);
		n += 4;
		assert_int_equal(plain_raw(msg, n, &c), SASL_MALFORMED);
	}
}

static void
test_plain_good_utf8_edges(void **state)
{
	static const char *const good[] = {
		" ",		    /* lowest allowed */
		"~",		    /* highest ASCII allowed */
		"\xc2\x80",	    /* U+0080 (a C1 control: allowed) */
		"\xdf\xbf",	    /* U+07FF */
		"\xe0\xa0\x80",	    /* U+0800 */
		"\xed\x9f\xbf",	    /* U+D7FF */
		"\xee\x80\x80",	    /* U+E000 */
		"\xef\xbf\xbf",	    /* U+FFFF */
		"\xf0\x90\x80\x80", /* U+10000 */
		"\xf0\x9f\x98\x80", /* emoji */
		"\xf4\x8f\xbf\xbf", /* U+10FFFF */
		"\xe6\x97\xa5\xe6\x9c\xac",
	};
	char msg[64];
	struct sasl_creds c;
	size_t i, l, n;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		l = strlen(good[i]);
		n = 0;
		msg[n++] = '\0';
		memcpy(msg + n, good[i], l);
		n += l;
		msg[n++] = '\0';
		memcpy(msg + n, good[i], l);
		n += l;
		assert_int_equal(plain_raw(msg, n, &c), SASL_OK);
		assert_string_equal(c.user, good[i]);
		assert_string_equal(c.pass, good[i]);
	}
}

static void
test_plain_clears_on_error(void **state)
{
	struct sasl_creds c;

	(void)state;
	assert_int_equal(plain_raw(S("\0alice\0secret"), &c), SASL_OK);
	/* A failing call leaves nothing of the earlier credentials. */
	assert_int_equal(plain_raw(S("\0alice\0sec\x01"), &c), SASL_MALFORMED);
	assert_true(all_zero(&c, sizeof(c)));
	sasl_creds_clear(NULL); /* harmless */
}

/*
 * A second, independent reading of the UTF-8 rule: decode the code point
 * the long way and judge it.  Used to check the decoder over all 1- and
 * 2-byte strings and a wide sample of 3- and 4-byte ones.
 */
static bool
ref_utf8_ok(const unsigned char *p, size_t n)
{
	size_t i = 0, k, need;
	uint32_t cp, min;

	while (i < n) {
		if (p[i] < 0x80) {
			need = 0;
			cp = p[i];
			min = 0;
		} else if ((p[i] & 0xe0) == 0xc0) {
			need = 1;
			cp = p[i] & 0x1f;
			min = 0x80;
		} else if ((p[i] & 0xf0) == 0xe0) {
			need = 2;
			cp = p[i] & 0x0f;
			min = 0x800;
		} else if ((p[i] & 0xf8) == 0xf0) {
			need = 3;
			cp = p[i] & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (n - i - 1 < need)
			return false;
		for (k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		if (cp < 0x20 || cp == 0x7f)
			return false;
		i += need + 1;
	}
	return true;
}

static bool
login_accepts(const unsigned char *p, size_t n)
{
	char out[16];
	const char *e = b64(p, n);

	return sasl_login_decode(e, strlen(e), out, sizeof(out)) == SASL_OK;
}

static void
test_utf8_against_model(void **state)
{
	static const unsigned char tails[] = {0x00, 0x41, 0x7f, 0x80,
					      0x8f, 0x90, 0x9f, 0xa0,
					      0xbf, 0xc0, 0xff};
	unsigned char s[4];
	unsigned a, b, c, d;

	(void)state;
	for (a = 0; a < 256; a++) {
		s[0] = (unsigned char)a;
		assert_int_equal(login_accepts(s, 1), ref_utf8_ok(s, 1));
		for (b = 0; b < 256; b++) {
			s[1] = (unsigned char)b;
			assert_int_equal(login_accepts(s, 2),
					 ref_utf8_ok(s, 2));
		}
	}
	for (a = 0xc0; a < 256; a++) {
		s[0] = (unsigned char)a;
		for (b = 0; b < 256; b++) {
			s[1] = (unsigned char)b;
			for (c = 0; c < sizeof(tails); c++) {
				s[2] = tails[c];
				assert_int_equal(login_accepts(s, 3),
						 ref_utf8_ok(s, 3));
				for (d = 0; d < sizeof(tails); d++) {
					s[3] = tails[d];
					assert_int_equal(login_accepts(s, 4),
							 ref_utf8_ok(s, 4));
				}
			}
		}
	}
}

/* ------------------------------------------------------------- LOGIN */

/* The mechanisms' names: case-insensitive, exact length, one table. */
static void
test_mech_names(void **state)
{
	char list[64];

	(void)state;
	assert_int_equal(sasl_mech_of("PLAIN", 5), AUTH_MECH_PLAIN);
	assert_int_equal(sasl_mech_of("login", 5), AUTH_MECH_LOGIN);
	assert_int_equal(sasl_mech_of("OAuthBearer", 11),
			 AUTH_MECH_OAUTHBEARER);
	assert_int_equal(sasl_mech_of("xoauth2", 7), AUTH_MECH_XOAUTH2);
	assert_int_equal(sasl_mech_of("PLAIN ", 6), 0);
	assert_int_equal(sasl_mech_of("PLAI", 4), 0);
	assert_int_equal(sasl_mech_of("PLAINX", 5), AUTH_MECH_PLAIN);
	assert_int_equal(sasl_mech_of("CRAM-MD5", 8), 0);
	assert_int_equal(sasl_mech_of("", 0), 0);
	assert_string_equal(sasl_mech_name(AUTH_MECH_XOAUTH2), "XOAUTH2");
	assert_null(sasl_mech_name(0));
	assert_null(sasl_mech_name(AUTH_MECH_OAUTH));
	sasl_mech_list(AUTH_MECH_PLAIN | AUTH_MECH_LOGIN, list, sizeof(list));
	assert_string_equal(list, "PLAIN,LOGIN");
	sasl_mech_list(AUTH_MECH_LOGIN | AUTH_MECH_XOAUTH2, list, sizeof(list));
	assert_string_equal(list, "LOGIN,XOAUTH2"); /* no leading comma */
	sasl_mech_list(0, list, sizeof(list));
	assert_string_equal(list, "none");
	sasl_mech_list(AUTH_MECH_PLAIN | AUTH_MECH_OAUTH, list, 12);
	assert_string_equal(list, "PLAIN"); /* cut whole: no half name */
}

static void
test_login(void **state)
{
	char out[SASL_FIELD_MAX];
	char big[600];

	(void)state;
	assert_int_equal(sasl_login_decode(S("YWxpY2U="), out, sizeof(out)),
			 SASL_OK);
	assert_string_equal(out, "alice");
	assert_int_equal(sasl_login_decode(S("c2VjcmV0"), out, sizeof(out)),
			 SASL_OK);
	assert_string_equal(out, "secret");

	/* "=" and "" are the empty string. */
	memset(out, 'x', sizeof(out));
	assert_int_equal(sasl_login_decode(S("="), out, sizeof(out)), SASL_OK);
	assert_string_equal(out, "");
	memset(out, 'x', sizeof(out));
	assert_int_equal(sasl_login_decode(S(""), out, sizeof(out)), SASL_OK);
	assert_string_equal(out, "");

	/* NUL inside, anywhere. */
	assert_int_equal(sasl_login_decode(S("YQBi"), out, sizeof(out)),
			 SASL_MALFORMED); /* "a\0b" */
	assert_true(all_zero(out, sizeof(out)));
	assert_int_equal(sasl_login_decode(S("AGFi"), out, sizeof(out)),
			 SASL_MALFORMED); /* "\0ab" */
	assert_int_equal(sasl_login_decode(S("YWIA"), out, sizeof(out)),
			 SASL_MALFORMED); /* "ab\0" */

	/* Bad base64. */
	assert_int_equal(sasl_login_decode(S("YWxpY2U"), out, sizeof(out)),
			 SASL_BAD_BASE64);
	assert_int_equal(sasl_login_decode(S("YWxp Y2U="), out, sizeof(out)),
			 SASL_BAD_BASE64);
	assert_int_equal(sasl_login_decode(S("=="), out, sizeof(out)),
			 SASL_BAD_BASE64);

	/* Bad UTF-8 and controls. */
	assert_int_equal(sasl_login_decode(S("wK8="), out, sizeof(out)),
			 SASL_MALFORMED); /* C0 AF */
	assert_int_equal(sasl_login_decode(S("YQ1i"), out, sizeof(out)),
			 SASL_MALFORMED); /* "a\rb" */
	assert_true(all_zero(out, sizeof(out)));

	/* Size: "alice" needs 6 bytes with its NUL. */
	assert_int_equal(sasl_login_decode(S("YWxpY2U="), out, 6), SASL_OK);
	assert_string_equal(out, "alice");
	assert_int_equal(sasl_login_decode(S("YWxpY2U="), out, 5),
			 SASL_TOO_LONG);
	assert_int_equal(sasl_login_decode(S("YWxpY2U="), out, 0),
			 SASL_TOO_LONG);
	assert_int_equal(sasl_login_decode(S("="), out, 1), SASL_OK);
	assert_string_equal(out, "");

	/* A user name longer than the field. */
	memset(big, 'u', SASL_FIELD_MAX);
	assert_int_equal(sasl_login_decode(b64(big, SASL_FIELD_MAX),
					   strlen(b64(big, SASL_FIELD_MAX)),
					   out, sizeof(out)),
			 SASL_TOO_LONG);
	assert_int_equal(sasl_login_decode(b64(big, SASL_FIELD_MAX - 1),
					   strlen(b64(big, SASL_FIELD_MAX - 1)),
					   out, sizeof(out)),
			 SASL_OK);
	assert_int_equal(strlen(out), SASL_FIELD_MAX - 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mech_names),
		cmocka_unit_test(test_b64_vectors),
		cmocka_unit_test(test_b64_round_trip),
		cmocka_unit_test(test_b64_alphabet_exhaustive),
		cmocka_unit_test(test_b64_rejects_whitespace),
		cmocka_unit_test(test_b64_rejects_bad_length),
		cmocka_unit_test(test_b64_rejects_bad_padding),
		cmocka_unit_test(test_b64_rejects_non_alphabet),
		cmocka_unit_test(test_b64_out_size),
		cmocka_unit_test(test_plain_ok),
		cmocka_unit_test(test_plain_empty_authcid),
		cmocka_unit_test(test_plain_missing_nuls),
		cmocka_unit_test(test_plain_extra_nuls),
		cmocka_unit_test(test_plain_equals),
		cmocka_unit_test(test_plain_bad_base64),
		cmocka_unit_test(test_plain_oversize),
		cmocka_unit_test(test_plain_huge_password),
		cmocka_unit_test(test_plain_bad_utf8),
		cmocka_unit_test(test_plain_good_utf8_edges),
		cmocka_unit_test(test_plain_clears_on_error),
		cmocka_unit_test(test_utf8_against_model),
		cmocka_unit_test(test_login),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
