/*
 * test_http_auth_proto.c - nginx's auth_http protocol, client side
 * (auth/http_auth_proto.c): the request and its escaping, the reply's
 * headers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth/http_auth_proto.h"

#define S(lit) lit, sizeof(lit) - 1

static void
test_escape(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(http_auth_escape(S("plain"), out, sizeof(out)), 5);
	assert_string_equal(out, "plain");
	http_auth_escape(S("a b%c\r\n\t\x01"), out, sizeof(out));
	assert_string_equal(out, "a%20b%25c%0D%0A%09%01");
	/* Above 0x20 (but '%'), nginx sends bytes as they are. */
	http_auth_escape(S("\xc3\xa9+:/\x7f"), out, sizeof(out));
	assert_string_equal(out, "\xc3\xa9+:/\x7f");
	assert_int_equal(http_auth_escape(S("abc"), out, 3), -1);
	assert_int_equal(http_auth_escape(S("abc"), out, 4), 3);
	assert_int_equal(http_auth_escape(S(" "), out, 3), -1);
	assert_int_equal(http_auth_escape(S(" "), out, 4), 3);
}

static void
test_format(void **state)
{
	char out[2048];
	struct http_auth_args a = {
		.host = "127.0.0.1:9000",
		.path = "/auth",
		.method = "plain",
		.user = "al ice",
		.pass = "p%w\r\nX-Injected: 1",
		.helo = "client.example",
		.client_ip = "192.0.2.1",
		.attempt = 2,
		.ssl = true,
		.ssl_protocol = "TLSv1.3",
		.ssl_cipher = "TLS_AES_128_GCM_SHA256",
	};
	ssize_t n;

	(void)state;
	n = http_auth_format(out, sizeof(out), &a);
	assert_string_equal(out, "GET /auth HTTP/1.0\r\n"
				 "Host: 127.0.0.1:9000\r\n"
				 "Auth-Method: plain\r\n"
				 "Auth-User: al%20ice\r\n"
				 "Auth-Pass: p%25w%0D%0AX-Injected:%201\r\n"
				 "Auth-Protocol: smtp\r\n"
				 "Auth-Login-Attempt: 2\r\n"
				 "Client-IP: 192.0.2.1\r\n"
				 "Client-Host: [UNAVAILABLE]\r\n"
				 "Auth-SSL: on\r\n"
				 "Auth-SSL-Protocol: TLSv1.3\r\n"
				 "Auth-SSL-Cipher: TLS_AES_128_GCM_SHA256\r\n"
				 "Auth-SMTP-Helo: client.example\r\n"
				 "\r\n");
	assert_int_equal(n, strlen(out));
	assert_int_equal(http_auth_format(out, (size_t)n, &a), -1);
	assert_int_equal(http_auth_format(out, (size_t)n + 1, &a), n);
	a.ssl = false;
	http_auth_format(out, sizeof(out), &a);
	assert_null(strstr(out, "Auth-SSL"));
	/* Host and path go as they are: nothing that splits a line. */
	a.path = "/a b";
	assert_int_equal(http_auth_format(out, sizeof(out), &a), -1);
	a.path = "auth";
	assert_int_equal(http_auth_format(out, sizeof(out), &a), -1);
	a.path = "/";
	a.host = "h\r\nX: y";
	assert_int_equal(http_auth_format(out, sizeof(out), &a), -1);
}

static struct http_auth_reply
parse_done(const char *buf, size_t len)
{
	struct http_auth_reply r;

	assert_int_equal(http_auth_parse(buf, len, false, &r), HTTP_AUTH_DONE);
	return r;
}

static void
test_parse_ok(void **state)
{
	struct http_auth_reply r;

	(void)state;
	r = parse_done(S("HTTP/1.0 200 OK\r\n"
			 "Auth-Status: OK\r\n"
			 "Auth-Server: 192.0.2.25\r\n"
			 "Auth-Port: 25\r\n"
			 "auth-user:  alice@example.test \r\n"
			 "\r\n"));
	assert_int_equal(r.http_status, 200);
	assert_true(r.has_status);
	assert_true(r.ok);
	assert_string_equal(r.server, "192.0.2.25");
	assert_int_equal(r.port, 25);
	assert_string_equal(r.user, "alice@example.test");
	assert_int_equal(r.wait_s, -1);
	/* Bare LF line ends; body after the headers is not read. */
	r = parse_done(S("HTTP/1.1 200 OK\nAuth-Status: OK\n\nbody"));
	assert_true(r.ok);
}

static void
test_parse_refusal(void **state)
{
	struct http_auth_reply r;

	(void)state;
	r = parse_done(S("HTTP/1.0 200 OK\r\n"
			 "Auth-Status: Invalid login\x01 or password\r\n"
			 "Auth-Wait: 3\r\n"
			 "Auth-Error-Code: 535 5.7.0\r\n\r\n"));
	assert_false(r.ok);
	assert_string_equal(r.status_text, "Invalid login? or password");
	assert_int_equal(r.wait_s, 3);
	assert_string_equal(r.error_code, "535 5.7.0");
	/* "OK" only as the whole value. */
	assert_false(
		parse_done(S("HTTP/1.0 200 OK\r\nAuth-Status: OKAY\r\n\r\n"))
			.ok);
	/* Error codes only in an SMTP shape. */
	assert_string_equal(parse_done(S("HTTP/1.0 200 OK\r\nAuth-Error-Code: "
					 "451\r\n\r\n"))
				    .error_code,
			    "451");
	assert_string_equal(parse_done(S("HTTP/1.0 200 OK\r\nAuth-Error-Code: "
					 "250 2.0.0\r\n\r\n"))
				    .error_code,
			    "");
	assert_string_equal(parse_done(S("HTTP/1.0 200 OK\r\nAuth-Error-Code: "
					 "535 4.7.0\r\n\r\n"))
				    .error_code,
			    "");
	assert_string_equal(parse_done(S("HTTP/1.0 200 OK\r\nAuth-Error-Code: "
					 "535 5.7.0 text\r\n\r\n"))
				    .error_code,
			    "");
	/* Unusable values are dropped. */
	r = parse_done(S("HTTP/1.0 200 OK\r\nAuth-Port: 70000\r\n"
			 "Auth-Wait: soon\r\nAuth-User: a\x01"
			 "b\r\n\r\n"));
	assert_int_equal(r.port, 0);
	assert_int_equal(r.wait_s, -1);
	assert_string_equal(r.user, "");
	assert_false(r.has_status);
	assert_int_equal(parse_done(S("HTTP/1.0 503 Busy\r\n\r\n")).http_status,
			 503);
}

static void
test_parse_more_and_bad(void **state)
{
	struct http_auth_reply r;
	static char big[HTTP_AUTH_REPLY_MAX + 10];

	(void)state;
	assert_int_equal(
		http_auth_parse(S("HTTP/1.0 200 OK\r\nAuth-St"), false, &r),
		HTTP_AUTH_MORE);
	assert_int_equal(
		http_auth_parse(S("HTTP/1.0 200 OK\r\nAuth-St"), true, &r),
		HTTP_AUTH_BAD);
	assert_int_equal(http_auth_parse(S(""), true, &r), HTTP_AUTH_BAD);
	assert_int_equal(
		http_auth_parse(S("SMTP/1.0 200 OK\r\n\r\n"), false, &r),
		HTTP_AUTH_BAD);
	assert_int_equal(
		http_auth_parse(S("HTTP/1.0 2000 OK\r\n\r\n"), false, &r),
		HTTP_AUTH_BAD);
	assert_int_equal(http_auth_parse(S("HTTP/1.0 200 OK\r\nno colon\r\n"
					   "\r\n"),
					 false, &r),
			 HTTP_AUTH_BAD);
	memset(big, 'a', sizeof(big));
	assert_int_equal(http_auth_parse(big, HTTP_AUTH_REPLY_MAX, false, &r),
			 HTTP_AUTH_BAD);
	assert_int_equal(
		http_auth_parse(big, HTTP_AUTH_REPLY_MAX - 1, false, &r),
		HTTP_AUTH_MORE);
}

/* OAUTHBEARER and XOAUTH2: the method names it, Auth-Pass carries the
 * token (a few KB fit), a refusal may carry the JSON status. */
static void
test_oauth(void **state)
{
	static char out[HTTP_AUTH_REQUEST_MAX], token[SASL_TOKEN_MAX];
	struct http_auth_args a = {
		.host = "127.0.0.1:9000",
		.path = "/auth",
		.method = "oauthbearer",
		.user = "alice",
		.pass = token,
		.helo = "client.example",
		.client_ip = "192.0.2.1",
		.attempt = 1,
		.ssl = true,
	};
	struct http_auth_reply r;

	(void)state;
	memset(token, 'x', sizeof(token) - 1);
	assert_true(http_auth_format(out, sizeof(out), &a) > 0);
	assert_non_null(strstr(out, "Auth-Method: oauthbearer\r\n"));
	assert_non_null(strstr(out, "Auth-User: alice\r\nAuth-Pass: xxx"));
	assert_int_equal(strlen(strstr(out, "Auth-Pass: ")),
			 strlen("Auth-Pass: ") + sizeof(token) - 1 +
				 strlen(strstr(out, "\r\nAuth-Protocol")));

	r = parse_done(S("HTTP/1.0 200 OK\r\n"
			 "Auth-Status: Invalid token\r\n"
			 "Auth-OAuth-Status: {\"status\":\"invalid_token\","
			 "\"scope\":\"mail\"}\r\n\r\n"));
	assert_false(r.ok);
	assert_string_equal(
		r.oauth_status,
		"{\"status\":\"invalid_token\",\"scope\":\"mail\"}");
	/* Only a JSON object of printable ASCII. */
	assert_string_equal(
		parse_done(S("HTTP/1.0 200 OK\r\nAuth-Status: no\r\n"
			     "Auth-OAuth-Status: invalid_token\r\n\r\n"))
			.oauth_status,
		"");
	assert_string_equal(
		parse_done(S("HTTP/1.0 200 OK\r\nAuth-Status: no\r\n"
			     "Auth-OAuth-Status: {\"a\":\"\x01\"}\r\n\r\n"))
			.oauth_status,
		"");
	/* Truncated (no closing brace), and one byte over SASL_STATUS_MAX
	 * while the longest fits. */
	assert_string_equal(
		parse_done(S("HTTP/1.0 200 OK\r\nAuth-Status: no\r\n"
			     "Auth-OAuth-Status: {\"a\":1\r\n\r\n"))
			.oauth_status,
		"");
	for (size_t len = SASL_STATUS_MAX; len <= SASL_STATUS_MAX + 1; len++) {
		char resp[SASL_STATUS_MAX + 128], st[SASL_STATUS_MAX + 2];

		memset(st, 'x', len);
		memcpy(st, "{\"s\":\"", 6);
		memcpy(st + len - 2, "\"}", 2);
		st[len] = '\0';
		snprintf(resp, sizeof(resp),
			 "HTTP/1.0 200 OK\r\nAuth-Status: no\r\n"
			 "Auth-OAuth-Status: %s\r\n\r\n",
			 st);
		r = parse_done(resp, strlen(resp));
		assert_string_equal(r.oauth_status,
				    len <= SASL_STATUS_MAX ? st : "");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_refusal),
		cmocka_unit_test(test_parse_more_and_bad),
		cmocka_unit_test(test_oauth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
