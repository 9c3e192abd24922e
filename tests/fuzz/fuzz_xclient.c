/*
 * fuzz_xclient.c - libFuzzer target: the XCLIENT line (xclient.c) from a
 * hostile attribute list, HELO name and login.
 *
 * Input: byte 0 picks the address families (client v4/v6/v4-mapped/none,
 * destination likewise), bytes 1-2 the output size; the rest is split at
 * NUL bytes into the backend's attribute list, the HELO name and the
 * login (each cut to what the session holds: 255 bytes).
 *
 * Checked: either -1 with an empty output, or a line that is "XCLIENT",
 * then " NAME=value" items, then CRLF, within the buffer and
 * XCLIENT_LINE_MAX, with no other CR, LF, NUL or control byte; every
 * name is one the list offers, at most once, in the fixed order; every
 * value is strict xtext and decodes to what the proxy meant (the HELO and
 * login as given, ADDR/DESTADDR the addresses); a bigger buffer never
 * turns a line into -1, and the same line comes out for any buffer it
 * fits in (each buffer its own exact-size allocation, so ASan sees any
 * overrun).
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/xclient.h"
#include "smtp/xtext.h"
#include "fuzz_check.h"

static const char *const order[] = {
	"NAME",	    "ADDR",  "PORT", "DESTADDR",
	"DESTPORT", "PROTO", "HELO", "LOGIN",
};

static void
make_addr(unsigned kind, struct sockaddr_storage *ss, char *want,
	  char *want_port, unsigned port)
{
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	want[0] = want_port[0] = '\0';
	switch (kind & 3) {
	case 0:
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, "198.51.100.7", &a->sin_addr);
		strcpy(want, "198.51.100.7");
		break;
	case 1:
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, "2001:db8::7", &a6->sin6_addr);
		strcpy(want, "IPV6:2001:db8::7");
		break;
	case 2:
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, "::ffff:192.0.2.25", &a6->sin6_addr);
		strcpy(want, "192.0.2.25");
		break;
	default:
		ss->ss_family = AF_UNIX;
		return;
	}
	snprintf(want_port, 8, "%u", port);
}

/* The next NUL-terminated field of [*p, end), at most 255 bytes. */
static char *
field(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
	size_t n = nul ? (size_t)(nul - *p) : (size_t)(end - *p);
	char *f = xmalloc(256);

	memcpy(f, *p, n > 255 ? 255 : n);
	f[n > 255 ? 255 : n] = '\0';
	*p += n + (nul != NULL);
	return f;
}

static const char *
meant(const char *name, const char *ca, const char *cp, const char *da,
      const char *dp, const char *helo, const char *login)
{
	if (strcmp(name, "NAME") == 0)
		return "[UNAVAILABLE]";
	if (strcmp(name, "ADDR") == 0)
		return ca[0] ? ca : "[UNAVAILABLE]";
	if (strcmp(name, "PORT") == 0)
		return cp[0] ? cp : "[UNAVAILABLE]";
	if (strcmp(name, "DESTADDR") == 0)
		return da[0] ? da : NULL;
	if (strcmp(name, "DESTPORT") == 0)
		return dp[0] ? dp : NULL;
	if (strcmp(name, "PROTO") == 0)
		return "ESMTP";
	if (strcmp(name, "HELO") == 0)
		return helo[0] ? helo : "[UNAVAILABLE]";
	return login[0] ? login : NULL;
}

static void
check_line(const char *out, size_t n, const char *attrs,
	   const struct xclient_info *in, const char *ca, const char *cp,
	   const char *da, const char *dp)
{
	const char *p = out + 7, *end = out + n - 2;
	size_t next = 0;
	bool seen[8] = {false};

	CHECK(n >= 9 && n <= XCLIENT_LINE_MAX, "length %zu", n);
	CHECK(strlen(out) == n, "NUL inside the line");
	CHECK(memcmp(out, "XCLIENT", 7) == 0, "does not start with XCLIENT");
	CHECK(memcmp(end, "\r\n", 2) == 0, "no CRLF at the end");
	for (const char *c = out; c < end; c++)
		CHECK((unsigned char)*c > 0x20 || *c == ' ',
		      "control byte 0x%02x at %zu", (unsigned char)*c,
		      (size_t)(c - out));
	while (p < end) {
		const char *eq, *sp;
		char name[16], val[300];
		size_t i;
		ssize_t d;

		CHECK(*p == ' ', "items not separated by one space");
		p++;
		eq = memchr(p, '=', (size_t)(end - p));
		CHECK(eq != NULL && eq - p < 16, "item without NAME=");
		memcpy(name, p, (size_t)(eq - p));
		name[eq - p] = '\0';
		sp = memchr(eq, ' ', (size_t)(end - eq));
		if (sp == NULL)
			sp = end;
		for (i = next; i < 8 && strcmp(order[i], name) != 0; i++)
			;
		CHECK(i < 8, "%s out of order, repeated or unknown", name);
		CHECK(!seen[i], "%s twice", name);
		seen[i] = true;
		next = i + 1;
		CHECK(xclient_offers(attrs, name), "%s not offered", name);
		d = xtext_decode(eq + 1, (size_t)(sp - eq - 1), val,
				 sizeof(val));
		CHECK(d >= 0, "%s value is not strict xtext", name);
		CHECK(meant(name, ca, cp, da, dp, in->helo, in->login) &&
			      strcmp(val, meant(name, ca, cp, da, dp, in->helo,
						in->login)) == 0 &&
			      (size_t)d == strlen(val),
		      "%s=%s is not what was meant", name, val);
		p = sp;
	}
	/* Everything offered and meant is there. */
	for (size_t i = 0; i < 8; i++)
		CHECK(seen[i] || !xclient_offers(attrs, order[i]) ||
			      meant(order[i], ca, cp, da, dp, in->helo,
				    in->login) == NULL,
		      "%s offered but left out", order[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage client, dest;
	char ca[64], cp[8], da[64], dp[8];
	const uint8_t *p, *end = data + size;
	char *attrs, *helo, *login, *big, *out;
	struct xclient_info in;
	size_t cap;
	ssize_t n, nbig;

	if (size < 3)
		return 0;
	make_addr(data[0], &client, ca, cp, 1 + data[1]);
	make_addr(data[0] >> 2, &dest, da, dp, 65535 - data[2]);
	cap = ((size_t)data[1] << 8 | data[2]) % (XCLIENT_LINE_MAX + 64);
	p = data + 3;
	attrs = field(&p, end);
	helo = field(&p, end);
	login = field(&p, end);
	in = (struct xclient_info){
		(const struct sockaddr *)&client,
		(data[0] & 0x10) ? NULL : (const struct sockaddr *)&dest, helo,
		login};
	if (in.dest == NULL)
		da[0] = dp[0] = '\0';

	big = xmalloc(XCLIENT_LINE_MAX + 1);
	nbig = xclient_line(attrs, &in, big, XCLIENT_LINE_MAX + 1);
	/* 255-byte values, all encoded, and the rest: always fits. */
	CHECK(nbig > 0, "no line with the biggest buffer");
	check_line(big, (size_t)nbig, attrs, &in, ca, cp, da, dp);

	out = xmalloc(cap);
	n = xclient_line(attrs, &in, out, cap);
	if ((size_t)nbig < cap) {
		CHECK(n == nbig && memcmp(out, big, (size_t)n + 1) == 0,
		      "a buffer of %zu changed the line", cap);
	} else {
		CHECK(n == -1, "a line of %zd in a buffer of %zu", nbig, cap);
		CHECK(cap == 0 || out[0] == '\0', "output left after -1");
	}
	free(out);
	free(big);
	free(attrs);
	free(helo);
	free(login);
	return 0;
}
