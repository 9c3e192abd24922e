/*
 * fuzz_sasl_oauth.c - libFuzzer target: OAUTHBEARER (RFC 7628) and XOAUTH2
 * initial responses (smtp/sasl.c).
 *
 * The input is used as the base64 text itself and, encoded, as the
 * decoded message.  Checked: a success leaves a NUL-terminated token of
 * the b64token alphabet with token_len its length, and a user name and
 * host with no control byte; a failure leaves *out all zero.  Buffers are
 * exact-size allocations, so any overrun is ASan's.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/sasl.h"
#include "fuzz_check.h"

static void
check(enum sasl_status st, const struct sasl_oauth *o)
{
	static const struct sasl_oauth zero;

	if (st != SASL_OK) {
		CHECK(memcmp(o, &zero, sizeof(zero)) == 0,
		      "a refusal left bytes behind");
		return;
	}
	CHECK(o->token_len > 0 && o->token_len < sizeof(o->token) &&
		      strlen(o->token) == o->token_len,
	      "token length");
	for (size_t i = 0; i < o->token_len; i++) {
		unsigned char c = (unsigned char)o->token[i];

		CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') ||
			      strchr("-._~+/=", c) != NULL,
		      "token byte 0x%02x", c);
	}
	CHECK(strnlen(o->user, sizeof(o->user)) < sizeof(o->user), "user");
	CHECK(strnlen(o->host, sizeof(o->host)) < sizeof(o->host), "host");
	for (size_t i = 0; o->user[i] != '\0'; i++)
		CHECK((unsigned char)o->user[i] >= 0x20, "control in user");
	for (size_t i = 0; o->host[i] != '\0'; i++)
		CHECK((unsigned char)o->host[i] >= 0x20, "control in host");
	CHECK(o->port <= 65535, "port");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sasl_oauth o;
	char *text = xmalloc(size), *enc;
	size_t cap = 4 * (size / 3 + 1) + 1;
	ssize_t n;

	if (size > 0)
		memcpy(text, data, size); /* no NUL after it */
	check(sasl_oauthbearer_decode(text, size, &o), &o);
	check(sasl_xoauth2_decode(text, size, &o), &o);
	(void)sasl_oauth_is_dummy(text, size);
	free(text);

	/* The error challenge: any status in, one 334 line of base64 out. */
	text = xmalloc(size + 1);
	if (size > 0)
		memcpy(text, data, size);
	text[size] = '\0';
	{
		char ch[SASL_CHALLENGE_MAX];

		n = sasl_oauth_challenge(text, ch, sizeof(ch));
		CHECK(n > 4 && (size_t)n == strlen(ch) &&
			      memcmp(ch, "334 ", 4) == 0 &&
			      strspn(ch + 4,
				     "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
				     "klmnopqrstuvwxyz0123456789+/=") ==
				      (size_t)n - 4,
		      "challenge");
	}
	free(text);

	enc = xmalloc(cap);
	n = sasl_b64_encode(data, size, enc, cap);
	CHECK(n >= 0, "encode");
	text = xmalloc((size_t)n);
	memcpy(text, enc, (size_t)n);
	check(sasl_oauthbearer_decode(text, (size_t)n, &o), &o);
	check(sasl_xoauth2_decode(text, (size_t)n, &o), &o);
	free(text);
	free(enc);
	return 0;
}
