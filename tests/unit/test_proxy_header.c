/*
 * test_proxy_header.c - the PROXY protocol reader (proxy_header.c).
 *
 * Every form it takes (v1 TCP4, TCP6, UNKNOWN; v2 PROXY over IPv4 and
 * IPv6, with TLVs, LOCAL, AF_UNSPEC), each fed whole, with the client's
 * bytes after it, and split at every byte (MORE until the last); and
 * every form it refuses: no signature, a malformed v1 line (each field),
 * a v1 line of 108 bytes, a bad v2 version, command, family or length,
 * an oversize v2 length (refused at its 16th byte), UNIX and datagrams.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "smtp/proxy_header.h"

#define V2_SIG "\r\n\r\n\0\r\nQUIT\n"

/* Parse all of data; every shorter prefix must be MORE. */
static enum proxy_header_status
parse_split(const void *data, size_t len, struct proxy_header *h)
{
	for (size_t i = 0; i < len; i++)
		assert_int_equal(proxy_header_parse(data, i, h),
				 PROXY_HEADER_MORE);
	return proxy_header_parse(data, len, h);
}

static void
assert_v4(const union sockaddr_ip *a, const char *ip, unsigned port)
{
	char text[INET_ADDRSTRLEN];

	assert_int_equal(a->sa.sa_family, AF_INET);
	assert_non_null(
		inet_ntop(AF_INET, &a->in.sin_addr, text, sizeof(text)));
	assert_string_equal(text, ip);
	assert_int_equal(ntohs(a->in.sin_port), port);
}

static void
assert_v6(const union sockaddr_ip *a, const char *ip, unsigned port)
{
	char text[INET6_ADDRSTRLEN];

	assert_int_equal(a->sa.sa_family, AF_INET6);
	assert_non_null(
		inet_ntop(AF_INET6, &a->in6.sin6_addr, text, sizeof(text)));
	assert_string_equal(text, ip);
	assert_int_equal(ntohs(a->in6.sin6_port), port);
}

static void
assert_refused(const char *data, size_t len, enum proxy_header_error e)
{
	struct proxy_header h;

	assert_int_equal(proxy_header_parse((const uint8_t *)data, len, &h),
			 PROXY_HEADER_ERROR);
	assert_int_equal(h.error, e);
}

static void
assert_v1_refused(const char *line)
{
	assert_refused(line, strlen(line), PROXY_ERR_MALFORMED);
}

static void
test_v1_tcp4(void **state)
{
	static const char hdr[] = "PROXY TCP4 198.51.100.7 192.0.2.1 40000 587"
				  "\r\nEHLO x\r\n";
	size_t hlen = strlen(hdr) - strlen("EHLO x\r\n");
	struct proxy_header h;

	(void)state;
	assert_int_equal(parse_split(hdr, hlen, &h), PROXY_HEADER_DONE);
	assert_int_equal(h.len, hlen);
	assert_int_equal(h.version, 1);
	assert_false(h.local);
	assert_v4(&h.src, "198.51.100.7", 40000);
	assert_v4(&h.dst, "192.0.2.1", 587);
	/* The client's bytes after it are not the header's. */
	assert_int_equal(
		proxy_header_parse((const uint8_t *)hdr, strlen(hdr), &h),
		PROXY_HEADER_DONE);
	assert_int_equal(h.len, hlen);
}

static void
test_v1_tcp6_and_limits(void **state)
{
	/* The longest TCP6 line, and the spec's worst case (107 bytes). */
	static const char longest6[] =
		"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	static const char worst[] =
		"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	struct proxy_header h;
	char over[128];

	(void)state;
	assert_int_equal(parse_split(longest6, strlen(longest6), &h),
			 PROXY_HEADER_DONE);
	assert_int_equal(h.len, strlen(longest6));
	assert_v6(&h.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	assert_int_equal(strlen(worst), PROXY_V1_MAX);
	assert_int_equal(parse_split(worst, strlen(worst), &h),
			 PROXY_HEADER_DONE);
	assert_int_equal(h.len, PROXY_V1_MAX);
	assert_true(h.local);
	static const char mapped[] =
		"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 0 1\r\n";
	assert_int_equal(parse_split(mapped, strlen(mapped), &h),
			 PROXY_HEADER_DONE);
	assert_v6(&h.src, "2001:db8::1", 0);
	assert_v6(&h.dst, "::ffff:192.0.2.1", 1);
	/* One byte more: refused, without waiting for a CRLF. */
	memset(over, 'x', sizeof(over));
	memcpy(over, "PROXY UNKNOWN ", 14);
	assert_refused(over, PROXY_V1_MAX, PROXY_ERR_MALFORMED);
	memcpy(over + PROXY_V1_MAX - 1, "\r\n", 2);
	assert_refused(over, PROXY_V1_MAX + 1, PROXY_ERR_MALFORMED);
	/* 106 bytes without CRLF yet: more. */
	assert_int_equal(
		proxy_header_parse((const uint8_t *)over, PROXY_V1_MAX - 1, &h),
		PROXY_HEADER_MORE);
}

static void
test_v1_unknown(void **state)
{
	struct proxy_header h;

	(void)state;
	assert_int_equal(parse_split("PROXY UNKNOWN\r\n", 15, &h),
			 PROXY_HEADER_DONE);
	assert_true(h.local);
	assert_int_equal(h.len, 15);
	assert_int_equal(h.src.sa.sa_family, AF_UNSPEC);
	/* What follows UNKNOWN is ignored, as the spec says. */
	static const char any[] = "PROXY UNKNOWN ffff::1 whatever\r\n";
	assert_int_equal(parse_split(any, strlen(any), &h), PROXY_HEADER_DONE);
	assert_true(h.local);
	assert_int_equal(h.len, strlen(any));
	assert_v1_refused("PROXY UNKNOWNX\r\n");
}

static void
test_v1_malformed(void **state)
{
	(void)state;
	assert_v1_refused("PROXY TCP4 198.51.100.7 192.0.2.1 40000\r\n");
	assert_v1_refused("PROXY TCP4 198.51.100.7 192.0.2.1 1 2 3\r\n");
	assert_v1_refused("PROXY TCP4  198.51.100.7 192.0.2.1 1 2\r\n");
	assert_v1_refused("PROXY TCP4 198.51.100.7 192.0.2.1 1 2 \r\n");
	assert_v1_refused("PROXY TCP5 198.51.100.7 192.0.2.1 1 2\r\n");
	assert_v1_refused("PROXY tcp4 198.51.100.7 192.0.2.1 1 2\r\n");
	assert_v1_refused("PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n");
	assert_v1_refused("PROXY TCP6 198.51.100.7 2001:db8::1 1 2\r\n");
	assert_v1_refused("PROXY TCP4 198.51.100.256 192.0.2.1 1 2\r\n");
	assert_v1_refused("PROXY TCP4 198.51.100 192.0.2.1 1 2\r\n");
	assert_v1_refused("PROXY TCP4 198.51.100.7 192.0.2.1 65536 2\r\n");
	assert_v1_refused("PROXY TCP4 198.51.100.7 192.0.2.1 01 2\r\n");
	assert_v1_refused("PROXY TCP4 198.51.100.7 192.0.2.1 1 -2\r\n");
	assert_v1_refused("PROXY TCP4 198.51.100.7 192.0.2.1 1 100000\r\n");
	assert_v1_refused("PROXY TCP4 198.51.100.7 192.0.2.1 1 2\n");
	assert_v1_refused("PROXY TCP4 198.51.100.7 192.0.2.1 1 2\rX");
	assert_v1_refused("PROXY \r\n");
	assert_v1_refused("PROXY TCP4 1.2.3.4\t1.2.3.5 1 2\r\n");
	/* A byte that cannot be in a line is refused when it comes. */
	assert_refused("PROXY TCP4 \0", 12, PROXY_ERR_MALFORMED);
	assert_refused("PROXY TCP4 \x80", 12, PROXY_ERR_MALFORMED);
}

static void
test_missing(void **state)
{
	(void)state;
	assert_refused("EHLO client\r\n", 13, PROXY_ERR_MISSING);
	assert_refused("\x16\x03\x01\x02\x00", 5, PROXY_ERR_MISSING); /* TLS */
	assert_refused("PROXX", 5, PROXY_ERR_MISSING);
	assert_refused("proxy ", 6, PROXY_ERR_MISSING);
	assert_refused("\r\n\r\n\0\r\nQUIX", 12, PROXY_ERR_MISSING);
	assert_refused("\r\n\r\nEHLO", 8, PROXY_ERR_MISSING);
}

/* A v2 header: command byte, family byte, payload. */
static size_t
v2(uint8_t *out, uint8_t cmd, uint8_t fam, const void *payload, size_t plen)
{
	memcpy(out, V2_SIG, 12);
	out[12] = cmd;
	out[13] = fam;
	out[14] = (uint8_t)(plen >> 8);
	out[15] = (uint8_t)plen;
	if (plen > 0)
		memcpy(out + 16, payload, plen);
	return 16 + plen;
}

static void
test_v2_inet(void **state)
{
	static const uint8_t addrs[] = {198, 51, 100, 7, 192, 0, 2, 1, 0x9c,
					0x40, 0x02, 0x4b,
					/* a TLV: skipped */
					0x05, 0x00, 0x02, 'i', 'd'};
	uint8_t buf[64];
	struct proxy_header h;
	size_t n = v2(buf, 0x21, 0x11, addrs, sizeof(addrs));

	(void)state;
	memcpy(buf + n, "\x16\x03\x01", 3); /* a ClientHello after it */
	assert_int_equal(parse_split(buf, n, &h), PROXY_HEADER_DONE);
	assert_int_equal(h.len, n);
	assert_int_equal(h.version, 2);
	assert_false(h.local);
	assert_v4(&h.src, "198.51.100.7", 40000);
	assert_v4(&h.dst, "192.0.2.1", 587);
	assert_int_equal(proxy_header_parse(buf, n + 3, &h), PROXY_HEADER_DONE);
	assert_int_equal(h.len, n);
	/* Too short for its family. */
	n = v2(buf, 0x21, 0x11, addrs, 11);
	assert_refused((const char *)buf, 16, PROXY_ERR_MALFORMED);
}

static void
test_v2_inet6(void **state)
{
	uint8_t addrs[36] = {
		0x20,	     0x01,	  0x0d,	       0xb8,	   [15] = 1,
		0x20,	     0x01,	  0x0d,	       0xb8,	   [31] = 2,
		[32] = 0x01, [33] = 0xbb, [34] = 0x01, [35] = 0xd1};
	uint8_t buf[64];
	struct proxy_header h;
	size_t n = v2(buf, 0x21, 0x21, addrs, sizeof(addrs));

	(void)state;
	assert_int_equal(parse_split(buf, n, &h), PROXY_HEADER_DONE);
	assert_int_equal(h.len, 52);
	assert_v6(&h.src, "2001:db8::1", 443);
	assert_v6(&h.dst, "2001:db8::2", 465);
	v2(buf, 0x21, 0x21, addrs, 35);
	assert_refused((const char *)buf, 16, PROXY_ERR_MALFORMED);
}

static void
test_v2_local_and_unspec(void **state)
{
	uint8_t buf[64], junk[12] = {1, 2, 3};
	struct proxy_header h;
	size_t n = v2(buf, 0x20, 0x00, NULL, 0);

	(void)state;
	assert_int_equal(parse_split(buf, n, &h), PROXY_HEADER_DONE);
	assert_true(h.local);
	assert_int_equal(h.len, 16);
	assert_int_equal(h.src.sa.sa_family, AF_UNSPEC);
	/* LOCAL: whatever family and addresses, ignored. */
	n = v2(buf, 0x20, 0x11, junk, sizeof(junk));
	assert_int_equal(parse_split(buf, n, &h), PROXY_HEADER_DONE);
	assert_true(h.local);
	assert_int_equal(h.len, 28);
	/* PROXY over AF_UNSPEC: the connection's own endpoints. */
	n = v2(buf, 0x21, 0x00, junk, 3);
	assert_int_equal(parse_split(buf, n, &h), PROXY_HEADER_DONE);
	assert_true(h.local);
	assert_int_equal(h.len, 19);
}

static void
test_v2_refused(void **state)
{
	static uint8_t zeros[PROXY_V2_LEN_MAX];
	uint8_t buf[PROXY_HEADER_MAX + 16] = {0};
	struct proxy_header h;

	(void)state;
	v2(buf, 0x11, 0x11, NULL, 0); /* version 1 */
	assert_refused((const char *)buf, 13, PROXY_ERR_MALFORMED);
	v2(buf, 0x22, 0x11, NULL, 0); /* command 2 */
	assert_refused((const char *)buf, 13, PROXY_ERR_MALFORMED);
	v2(buf, 0x21, 0x41, NULL, 0); /* family 4 */
	assert_refused((const char *)buf, 14, PROXY_ERR_MALFORMED);
	v2(buf, 0x21, 0x13, NULL, 0); /* transport 3 */
	assert_refused((const char *)buf, 14, PROXY_ERR_MALFORMED);
	v2(buf, 0x21, 0x10, NULL, 0); /* IPv4 over nothing */
	assert_refused((const char *)buf, 14, PROXY_ERR_MALFORMED);
	v2(buf, 0x21, 0x12, NULL, 0); /* UDP */
	assert_refused((const char *)buf, 14, PROXY_ERR_UNSUPPORTED);
	v2(buf, 0x21, 0x31, NULL, 0); /* UNIX */
	assert_refused((const char *)buf, 14, PROXY_ERR_UNSUPPORTED);
	/* The longest length taken, then one more: refused at once. */
	v2(buf, 0x21, 0x11, zeros, PROXY_V2_LEN_MAX);
	assert_int_equal(proxy_header_parse(buf, 16, &h), PROXY_HEADER_MORE);
	assert_int_equal(proxy_header_parse(buf, PROXY_HEADER_MAX, &h),
			 PROXY_HEADER_DONE);
	assert_int_equal(h.len, PROXY_HEADER_MAX);
	v2(buf, 0x21, 0x11, NULL, 0);
	buf[14] = (PROXY_V2_LEN_MAX + 1) >> 8;
	buf[15] = (PROXY_V2_LEN_MAX + 1) & 0xff;
	assert_refused((const char *)buf, 16, PROXY_ERR_OVERSIZE);
	buf[14] = buf[15] = 0xff;
	assert_refused((const char *)buf, 16, PROXY_ERR_OVERSIZE);
}

static void
test_error_names(void **state)
{
	(void)state;
	assert_string_equal(proxy_header_error_name(PROXY_ERR_MISSING),
			    "missing");
	assert_string_equal(proxy_header_error_name(PROXY_ERR_OVERSIZE),
			    "oversize");
	assert_string_equal(proxy_header_error_name(PROXY_ERR_COUNT),
			    "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6_and_limits),
		cmocka_unit_test(test_v1_unknown),
		cmocka_unit_test(test_v1_malformed),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_v2_inet),
		cmocka_unit_test(test_v2_inet6),
		cmocka_unit_test(test_v2_local_and_unspec),
		cmocka_unit_test(test_v2_refused),
		cmocka_unit_test(test_error_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
