/*
 * test_xtext.c - xtext encoding and decoding (RFC 3461 4).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "smtp/xtext.h"

#define S(lit) lit, sizeof(lit) - 1

static void
expect_enc(const char *in, size_t len, const char *want)
{
	char out[256];
	ssize_t n;

	n = xtext_encode(in, len, out, sizeof(out));
	assert_int_equal(n, strlen(want));
	assert_string_equal(out, want);
}

static void
test_encode_plain(void **state)
{
	(void)state;
	expect_enc(S(""), "");
	expect_enc(S("abc"), "abc");
	expect_enc(S("mail.example.org"), "mail.example.org");
	expect_enc(S("[192.0.2.1]"), "[192.0.2.1]");
	expect_enc(S("IPv6:2001:db8::1"), "IPv6:2001:db8::1");
	expect_enc(S("!~"), "!~");
}

static void
test_encode_specials(void **state)
{
	(void)state;
	expect_enc(S("a+b"), "a+2Bb");
	expect_enc(S("a=b"), "a+3Db");
	expect_enc(S("a b"), "a+20b");
	expect_enc(S("\r\n"), "+0D+0A");
	expect_enc(S("\0"), "+00");
	expect_enc(S("\x7f"), "+7F");
	expect_enc(S("\x80\xff"), "+80+FF");
	expect_enc(S("j\xc3\xbcrgen"), "j+C3+BCrgen");
	/* An XCLIENT injection attempt stays one token. */
	expect_enc(S("x ADDR=1.2.3.4\r\nMAIL FROM:<>"),
		   "x+20ADDR+3D1.2.3.4+0D+0AMAIL+20FROM:<>");
}

static void
test_encode_every_byte(void **state)
{
	char in[1], out[8];
	unsigned c;
	ssize_t n;

	(void)state;
	for (c = 0; c < 256; c++) {
		in[0] = (char)c;
		n = xtext_encode(in, 1, out, sizeof(out));
		if (c >= '!' && c <= '~' && c != '+' && c != '=') {
			assert_int_equal(n, 1);
			assert_int_equal((unsigned char)out[0], c);
		} else {
			assert_int_equal(n, 3);
			assert_int_equal(out[0], '+');
			/* Uppercase hex, and nothing outside "!".."~". */
			assert_true(strchr("0123456789ABCDEF", out[1]) != NULL);
			assert_true(strchr("0123456789ABCDEF", out[2]) != NULL);
		}
		assert_int_equal(out[n], '\0');
	}
}

static void
test_encode_size(void **state)
{
	char out[8];

	(void)state;
	/* "abc" needs 4 bytes with the NUL. */
	assert_int_equal(xtext_encode(S("abc"), out, 4), 3);
	assert_int_equal(xtext_encode(S("abc"), out, 3), -1);
	/* "+20" needs 4. */
	assert_int_equal(xtext_encode(S(" "), out, 4), 3);
	assert_string_equal(out, "+20");
	assert_int_equal(xtext_encode(S(" "), out, 3), -1);
	assert_int_equal(xtext_encode(S(" "), out, 2), -1);
	assert_int_equal(xtext_encode(S("a "), out, 5), 4);
	assert_int_equal(xtext_encode(S("a "), out, 4), -1);
	assert_int_equal(xtext_encode(S(""), out, 1), 0);
	assert_string_equal(out, "");
	assert_int_equal(xtext_encode(S(""), out, 0), -1);
	assert_int_equal(xtext_encode(S(""), NULL, 0), -1);
}

static void
test_round_trip(void **state)
{
	char in[256], enc[3 * 256 + 1], dec[257];
	size_t i;
	ssize_t n, m;

	(void)state;
	for (i = 0; i < 256; i++)
		in[i] = (char)i;
	n = xtext_encode(in, sizeof(in), enc, sizeof(enc));
	assert_true(n > 0);
	assert_int_equal(strlen(enc), (size_t)n);
	m = xtext_decode(enc, (size_t)n, dec, sizeof(dec));
	assert_int_equal(m, 256);
	assert_memory_equal(dec, in, 256);
	assert_int_equal(dec[256], '\0');
	/* Exactly the size the encoding needs. */
	assert_int_equal(xtext_encode(in, sizeof(in), enc, (size_t)n + 1), n);
	assert_int_equal(xtext_encode(in, sizeof(in), enc, (size_t)n), -1);
}

static void
test_decode(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(xtext_decode(S("abc"), out, sizeof(out)), 3);
	assert_string_equal(out, "abc");
	assert_int_equal(xtext_decode(S("a+2Bb+3Dc"), out, sizeof(out)), 5);
	assert_string_equal(out, "a+b=c");
	/* Any "+HH" is fine, needed or not. */
	assert_int_equal(xtext_decode(S("+41"), out, sizeof(out)), 1);
	assert_string_equal(out, "A");
	/* NUL inside: the length tells. */
	assert_int_equal(xtext_decode(S("a+00b"), out, sizeof(out)), 3);
	assert_memory_equal(out, "a\0b", 4);
	assert_int_equal(xtext_decode(S(""), out, sizeof(out)), 0);
	assert_string_equal(out, "");
}

static void
test_decode_malformed(void **state)
{
	static const char *const bad[] = {
		"+",	"+2",	"a+",  "+2b",  "+zz",  "+G0",
		"+-1",	"++20", "a b", "a=b",  "a\tb", "\x7f",
		"\x80", "+ 2B", "+0a", "ab+F", "+2B+", "\r\n",
	};
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(out, 'x', sizeof(out));
		assert_int_equal(
			xtext_decode(bad[i], strlen(bad[i]), out, sizeof(out)),
			-1);
		assert_int_equal(out[0], '\0');
	}
	/* A NUL byte in the input is not xtext either. */
	assert_int_equal(xtext_decode(S("a\0b"), out, sizeof(out)), -1);
}

static void
test_decode_size(void **state)
{
	char out[4];

	(void)state;
	assert_int_equal(xtext_decode(S("abc"), out, 4), 3);
	assert_int_equal(xtext_decode(S("abcd"), out, 4), -1);
	assert_int_equal(xtext_decode(S("+41+42+43"), out, 4), 3);
	assert_int_equal(xtext_decode(S("+41+42+43+44"), out, 4), -1);
	assert_int_equal(xtext_decode(S(""), out, 1), 0);
	assert_int_equal(xtext_decode(S(""), out, 0), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_plain),
		cmocka_unit_test(test_encode_specials),
		cmocka_unit_test(test_encode_every_byte),
		cmocka_unit_test(test_encode_size),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_decode_malformed),
		cmocka_unit_test(test_decode_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
