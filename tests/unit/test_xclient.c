/*
 * test_xclient.c - the XCLIENT line: only offered attributes, in a fixed
 * order, values xtext-encoded, IPv4, IPv6 and v4-mapped addresses, the
 * proxy's end of the connection as DESTADDR/DESTPORT, and the length
 * bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "smtp/xclient.h"
#include "test_sockaddr.h"

/* What Postfix 3.7 offers, in its order. */
#define POSTFIX_ATTRS                                                          \
	"NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT"

static void
expect_line(const char *attrs, const struct xclient_info *in, const char *want)
{
	char out[XCLIENT_LINE_MAX + 1];
	ssize_t n = xclient_line(attrs, in, out, sizeof(out));

	assert_int_equal(n, strlen(want));
	assert_string_equal(out, want);
}

static void
test_postfix_line(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 40123);
	union sockaddr_ip dest = v4("192.0.2.25", 587);
	struct xclient_info in = {&client.sa, &dest.sa, "laptop.example.org",
				  "demo@example.org"};

	(void)state;
	expect_line(POSTFIX_ATTRS, &in,
		    "XCLIENT NAME=[UNAVAILABLE] ADDR=198.51.100.7 PORT=40123 "
		    "DESTADDR=192.0.2.25 DESTPORT=587 PROTO=ESMTP "
		    "HELO=laptop.example.org LOGIN=demo@example.org\r\n");
}

static void
test_only_offered_attributes(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 40123);
	union sockaddr_ip dest = v4("192.0.2.25", 465);
	struct xclient_info in = {&client.sa, &dest.sa, "h", "u"};

	(void)state;
	/* smtp-sink's list; case-insensitive names */
	expect_line("NAME HELO", &in, "XCLIENT NAME=[UNAVAILABLE] HELO=h\r\n");
	expect_line("login destport", &in, "XCLIENT DESTPORT=465 LOGIN=u\r\n");
	expect_line("DESTADDRX DEST ADDRESS", &in, "XCLIENT\r\n");
	expect_line("", &in, "XCLIENT\r\n");
}

static void
test_ipv6_and_mapped(void **state)
{
	union sockaddr_ip client = v6("2001:db8::7", 1);
	union sockaddr_ip dest = v6("::ffff:192.0.2.25", 587);
	struct xclient_info in = {&client.sa, &dest.sa, "", ""};

	(void)state;
	/* A v4-mapped address (dual-stack listener) is plain IPv4; no HELO
	 * is [UNAVAILABLE]; no login is left out. */
	expect_line(POSTFIX_ATTRS, &in,
		    "XCLIENT NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::7 PORT=1 "
		    "DESTADDR=192.0.2.25 DESTPORT=587 PROTO=ESMTP "
		    "HELO=[UNAVAILABLE]\r\n");
}

static void
test_unknown_addresses(void **state)
{
	union sockaddr_ip unspec;
	struct xclient_info in = {&unspec.sa, &unspec.sa, "h", "u"};

	(void)state;
	memset(&unspec, 0, sizeof(unspec));
	/* No client address: [UNAVAILABLE]; no local one: left out. */
	expect_line("ADDR PORT DESTADDR DESTPORT", &in,
		    "XCLIENT ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE]\r\n");
	in.dest = NULL;
	expect_line("DESTADDR DESTPORT LOGIN", &in, "XCLIENT LOGIN=u\r\n");
}

/* The client's words cannot add an attribute, a space or a line. */
static void
test_values_xtext_encoded(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 25);
	struct xclient_info in = {&client.sa, NULL, "a b\r\nDATA",
				  "x LOGIN=root+=\x01\xc3\xa9"};

	(void)state;
	expect_line("HELO LOGIN", &in,
		    "XCLIENT HELO=a+20b+0D+0ADATA "
		    "LOGIN=x+20LOGIN+3Droot+2B+3D+01+C3+A9\r\n");
}

static void
test_bounds(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 25);
	char helo[256], login[256], out[XCLIENT_LINE_MAX + 1];
	struct xclient_info in = {&client.sa, &client.sa, helo, login};
	ssize_t n;

	(void)state;
	/* The longest HELO and login, every byte encoded: still fits. */
	memset(helo, ' ', 255);
	helo[255] = '\0';
	memset(login, '=', 255);
	login[255] = '\0';
	n = xclient_line(POSTFIX_ATTRS, &in, out, sizeof(out));
	assert_true(n > 1600 && n <= XCLIENT_LINE_MAX);
	assert_int_equal(strlen(out), n);
	assert_memory_equal(out + n - 2, "\r\n", 2);
	/* One byte short of the line: refused, never cut. */
	assert_int_equal(xclient_line(POSTFIX_ATTRS, &in, out, (size_t)n), -1);
	assert_string_equal(out, "");
	assert_int_equal(xclient_line(POSTFIX_ATTRS, &in, out, (size_t)n + 1),
			 n);
	assert_int_equal(xclient_line("", &in, out, 9), -1);
	assert_string_equal(out, "");
	assert_int_equal(xclient_line("", &in, out, 10), 9);
}

/* The bits a backend pool keeps and the list they give back: every name
 * xclient_line() sends survives the round trip, others are left out. */
static void
test_attr_bits(void **state)
{
	char list[256];
	unsigned bits;

	(void)state;
	bits = xclient_attr_bits(POSTFIX_ATTRS);
	assert_int_equal(bits, 0xffu);
	xclient_attr_list(bits, list, sizeof(list));
	assert_string_equal(
		list, "NAME ADDR PORT DESTADDR DESTPORT PROTO HELO LOGIN");
	assert_int_equal(xclient_attr_bits(list), bits);
	bits = xclient_attr_bits("name helo TTL FOO");
	assert_int_equal(bits, XCLIENT_ATTR_NAME | XCLIENT_ATTR_HELO);
	xclient_attr_list(bits, list, sizeof(list));
	assert_string_equal(list, "NAME HELO");
	assert_int_equal(xclient_attr_bits(""), 0);
	xclient_attr_list(0, list, sizeof(list));
	assert_string_equal(list, "");
	/* Bounded: only whole names that fit. */
	xclient_attr_list(0xffu, list, 10);
	assert_string_equal(list, "NAME ADDR");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postfix_line),
		cmocka_unit_test(test_only_offered_attributes),
		cmocka_unit_test(test_ipv6_and_mapped),
		cmocka_unit_test(test_unknown_addresses),
		cmocka_unit_test(test_values_xtext_encoded),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_attr_bits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
