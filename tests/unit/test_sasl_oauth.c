/*
 * test_sasl_oauth.c - OAUTHBEARER (RFC 7628) and XOAUTH2 initial
 * responses, decoded (smtp/sasl.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/sasl.h"

/* base64 of raw[0..len) (the encoder is tested in test_sasl.c). */
static char *
b64(const char *raw, size_t len)
{
	size_t cap = 4 * (len / 3 + 1) + 1;
	char *out = malloc(cap);

	assert_non_null(out);
	assert_true(sasl_b64_encode((const unsigned char *)raw, len, out,
				    cap) >= 0);
	return out;
}

#define S(lit) lit, sizeof(lit) - 1

static enum sasl_status
bearer(const char *raw, size_t len, struct sasl_oauth *o)
{
	char *e = b64(raw, len);
	enum sasl_status st = sasl_oauthbearer_decode(e, strlen(e), o);

	free(e);
	return st;
}

static enum sasl_status
xoauth2(const char *raw, size_t len, struct sasl_oauth *o)
{
	char *e = b64(raw, len);
	enum sasl_status st = sasl_xoauth2_decode(e, strlen(e), o);

	free(e);
	return st;
}

static void
test_oauthbearer_rfc7628_example(void **state)
{
	static struct sasl_oauth o;

	(void)state;
	/* RFC 7628 4.1, with the port. */
	assert_int_equal(
		bearer(S("n,a=user@example.com,\x01"
			 "host=server.example.com\x01"
			 "port=143\x01"
			 "auth=Bearer "
			 "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"),
		       &o),
		SASL_OK);
	assert_string_equal(o.user, "user@example.com");
	assert_string_equal(o.host, "server.example.com");
	assert_int_equal(o.port, 143);
	assert_string_equal(o.token,
			    "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
	assert_int_equal(o.token_len, strlen(o.token));
	/* No authzid; the scheme in another case; unknown keys ignored. */
	assert_int_equal(bearer(S("n,,\x01"
				  "mfa=otp\x01"
				  "auth=bearer abc.def-ghi_~+/\x01\x01"),
				&o),
			 SASL_OK);
	assert_string_equal(o.user, "");
	assert_string_equal(o.token, "abc.def-ghi_~+/");
	/* An escaped authzid. */
	assert_int_equal(bearer(S("y,a=a=2Cb=3Dc,\x01"
				  "auth=Bearer t\x01\x01"),
				&o),
			 SASL_OK);
	assert_string_equal(o.user, "a,b=c");
}

static void
test_oauthbearer_refused(void **state)
{
	static struct sasl_oauth o;

	(void)state;
	/* Channel binding, a bad escape, no auth, two auths, a token of the
	 * wrong alphabet, no final ^A, bytes after it, a bad port. */
	assert_int_equal(bearer(S("p=tls-unique,,\x01"
				  "auth=Bearer t\x01\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,a=a=2Db,\x01"
				  "auth=Bearer t\x01\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,a=a=2,\x01"
				  "auth=Bearer t\x01\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,\x01host=h\x01\x01"), &o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,\x01"
				  "auth=Bearer t\x01"
				  "auth=Bearer u\x01\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,\x01"
				  "auth=Bearer t t\x01\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,\x01"
				  "auth=Bearer =t\x01\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,\x01"
				  "auth=Basic dXNlcjpwYXNz\x01\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,\x01"
				  "auth=Bearer t\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,\x01"
				  "auth=Bearer t\x01\x01x"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,\x01port=99999\x01"
				  "auth=Bearer t\x01\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,\x01"
				  "au th=x\x01"
				  "auth=Bearer t\x01\x01"),
				&o),
			 SASL_MALFORMED);
	assert_int_equal(bearer(S("n,,auth=Bearer t\x01\x01"), &o),
			 SASL_MALFORMED);
	/* A refusal leaves nothing behind. */
	assert_string_equal(o.token, "");
	assert_int_equal(sasl_oauthbearer_decode(S("="), &o), SASL_MALFORMED);
	assert_int_equal(sasl_oauthbearer_decode(S("bm9"), &o),
			 SASL_BAD_BASE64);
}

static void
test_xoauth2(void **state)
{
	static struct sasl_oauth o;
	static char big[SASL_TOKEN_MAX + 64];
	size_t n;

	(void)state;
	assert_int_equal(
		xoauth2(S("user=someuser@example.com\x01"
			  "auth=Bearer "
			  "ya29."
			  "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg\x01\x01"),
			&o),
		SASL_OK);
	assert_string_equal(o.user, "someuser@example.com");
	assert_string_equal(o.token,
			    "ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg");
	/* user= is required, once, and obeys the name rule. */
	assert_int_equal(xoauth2(S("auth=Bearer t\x01\x01"), &o),
			 SASL_MALFORMED);
	assert_int_equal(xoauth2(S("user=a\x01user=b\x01"
				   "auth=Bearer t\x01\x01"),
				 &o),
			 SASL_MALFORMED);
	assert_int_equal(xoauth2(S("user=a\rb\x01"
				   "auth=Bearer t\x01\x01"),
				 &o),
			 SASL_MALFORMED);
	assert_int_equal(xoauth2(S("user=\x01"
				   "auth=Bearer t\x01\x01"),
				 &o),
			 SASL_MALFORMED);
	/* The token's bound. */
	n = (size_t)snprintf(big, sizeof(big),
			     "user=u\x01"
			     "auth=Bearer ");
	memset(big + n, 'T', SASL_TOKEN_MAX - 1);
	n += SASL_TOKEN_MAX - 1;
	memcpy(big + n, "\x01\x01", 2);
	assert_int_equal(xoauth2(big, n + 2, &o), SASL_OK);
	assert_int_equal(o.token_len, SASL_TOKEN_MAX - 1);
	memmove(big + n + 1, big + n, 2);
	big[n] = 'T';
	assert_int_equal(xoauth2(big, n + 3, &o), SASL_MALFORMED);
}

static void
test_dummy(void **state)
{
	(void)state;
	assert_true(sasl_oauth_is_dummy(S("AQ==")));
	assert_false(sasl_oauth_is_dummy(S("AQ")));
	assert_false(sasl_oauth_is_dummy(S("*")));
}

/* RFC 7628 3.2.2's challenge: the status base64 in a 334, a generic one
 * for a status that is missing or unfit. */
static void
test_challenge(void **state)
{
	char out[SASL_CHALLENGE_MAX];
	static char big[SASL_STATUS_MAX + 2];

	(void)state;
	assert_int_equal(
		sasl_oauth_challenge("{\"status\":\"401\"}", out, sizeof(out)),
		strlen("334 eyJzdGF0dXMiOiI0MDEifQ=="));
	assert_string_equal(out, "334 eyJzdGF0dXMiOiI0MDEifQ==");
	sasl_oauth_challenge(NULL, out, sizeof(out));
	assert_string_equal(out, "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=");
	sasl_oauth_challenge("", out, sizeof(out));
	assert_string_equal(out, "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=");
	sasl_oauth_challenge("{\"a\":\"\r\n\"}", out, sizeof(out));
	assert_string_equal(out, "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=");
	sasl_oauth_challenge("invalid_token", out, sizeof(out));
	assert_string_equal(out, "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=");
	/* The longest status fits SASL_CHALLENGE_MAX; a longer one is
	 * replaced. */
	memset(big, 'x', SASL_STATUS_MAX);
	big[0] = '{';
	big[SASL_STATUS_MAX - 1] = '}';
	assert_true(sasl_oauth_challenge(big, out, sizeof(out)) >
		    (ssize_t)SASL_STATUS_MAX);
	big[SASL_STATUS_MAX - 1] = 'x';
	big[SASL_STATUS_MAX] = '}';
	sasl_oauth_challenge(big, out, sizeof(out));
	assert_string_equal(out, "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=");
	assert_int_equal(sasl_oauth_challenge(NULL, out, 8), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oauthbearer_rfc7628_example),
		cmocka_unit_test(test_oauthbearer_refused),
		cmocka_unit_test(test_xoauth2),
		cmocka_unit_test(test_dummy),
		cmocka_unit_test(test_challenge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
