/*
 * fuzz_http_auth_proto.c - libFuzzer target: auth_http replies as this
 * client parses them, and its requests (auth/http_auth_proto.c).
 *
 * The input is parsed as a reply, whole and in every prefix-split the
 * connection could see (MORE until the header block ends, never DONE on
 * less than the whole block).  Checked: text fields are terminated and
 * printable (status text) or free of control bytes (user, server); an
 * error code is "4xx"/"5xx" shaped; a port is 1..65535 or 0.  The input is
 * also escaped into exact-size buffers, and used as a user name and
 * password for a request, which must stay one header block: exactly one
 * blank line, at its end, and no bare CR or LF.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/http_auth_proto.h"
#include "fuzz_check.h"

static void
check_reply(const struct http_auth_reply *r)
{
	size_t n = strnlen(r->status_text, sizeof(r->status_text));

	CHECK(n < sizeof(r->status_text), "status text unterminated");
	for (size_t i = 0; i < n; i++)
		CHECK(r->status_text[i] >= 0x20 && r->status_text[i] < 0x7f,
		      "status text byte 0x%02x",
		      (unsigned char)r->status_text[i]);
	n = strnlen(r->user, sizeof(r->user));
	CHECK(n < sizeof(r->user), "user unterminated");
	for (size_t i = 0; i < n; i++)
		CHECK((unsigned char)r->user[i] >= 0x20 && r->user[i] != 0x7f,
		      "control byte in user");
	n = strnlen(r->server, sizeof(r->server));
	CHECK(n < sizeof(r->server), "server unterminated");
	for (size_t i = 0; i < n; i++)
		CHECK((unsigned char)r->server[i] > 0x20, "space in server");
	n = strnlen(r->error_code, sizeof(r->error_code));
	CHECK(n == 0 || (n >= 3 &&
			 (r->error_code[0] == '4' || r->error_code[0] == '5')),
	      "error code %s", r->error_code);
	CHECK(r->port <= 65535, "port %u", r->port);
	n = strnlen(r->oauth_status, sizeof(r->oauth_status));
	CHECK(n < sizeof(r->oauth_status), "OAuth status unterminated");
	CHECK(n == 0 || sasl_oauth_status_ok(r->oauth_status, n),
	      "OAuth status %s", r->oauth_status);
	CHECK(!r->ok || r->has_status, "ok without Auth-Status");
}

static void
check_parse(const uint8_t *data, size_t size)
{
	struct http_auth_reply r;
	enum http_auth_parse whole, part;
	size_t step = size / 7 + 1;

	whole = http_auth_parse((const char *)data, size, true, &r);
	CHECK(whole != HTTP_AUTH_MORE, "MORE at end of input");
	check_reply(&r);
	for (size_t k = 0; k < size; k += step) {
		part = http_auth_parse((const char *)data, k, false, &r);
		check_reply(&r);
		if (whole == HTTP_AUTH_BAD && part == HTTP_AUTH_DONE)
			CHECK(0, "a prefix parsed where the whole did not");
	}
}

static void
check_escape(const uint8_t *data, size_t size)
{
	char *out = xmalloc(3 * size + 1);
	ssize_t n =
		http_auth_escape((const char *)data, size, out, 3 * size + 1);

	CHECK(n >= 0 && (size_t)n >= size, "escape failed");
	for (ssize_t i = 0; i < n; i++)
		CHECK((unsigned char)out[i] > 0x20, "escaped holds 0x%02x",
		      (unsigned char)out[i]);
	CHECK(http_auth_escape((const char *)data, size, out, (size_t)n) == -1,
	      "one byte short accepted");
	free(out);
}

static void
check_format(const uint8_t *data, size_t size)
{
	char user[SASL_FIELD_MAX] = "", pass[SASL_FIELD_MAX] = "";
	char out[4096];
	size_t half = size / 2;
	size_t ul = half < sizeof(user) - 1 ? half : sizeof(user) - 1;
	size_t pl =
		size - half < sizeof(pass) - 1 ? size - half : sizeof(pass) - 1;
	struct http_auth_args a = {
		.host = "127.0.0.1:80",
		.path = "/auth",
		.method = "plain",
		.user = user,
		.pass = pass,
		.helo = user,
		.client_ip = "192.0.2.1",
		.attempt = 1,
	};
	ssize_t n;
	char *blank;

	memcpy(user, data, ul);
	memcpy(pass, data + half, pl);
	n = http_auth_format(out, sizeof(out), &a);
	CHECK(n > 0, "request refused");
	CHECK((size_t)n == strlen(out), "length");
	blank = strstr(out, "\r\n\r\n");
	CHECK(blank != NULL && blank + 4 == out + n, "blank line not at end");
	for (ssize_t i = 0; i < n; i++) {
		if (out[i] == '\r')
			CHECK(out[i + 1] == '\n', "bare CR");
		if (out[i] == '\n')
			CHECK(i > 0 && out[i - 1] == '\r', "bare LF");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_parse(data, size);
	check_escape(data, size);
	check_format(data, size);
	return 0;
}
