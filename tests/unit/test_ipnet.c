/*
 * test_ipnet.c - IP prefixes (ipnet.c): parsing IPv4, IPv6 and single
 * addresses with every malformed form, host bits refused, the IPv4-mapped
 * form that lets an IPv4 prefix match a client on a dual-stack socket,
 * masking at odd prefix lengths, containment at the edges (/0, /31, /127,
 * /128) and printing back what was parsed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "lib/ipnet.h"

#define WHY_ADDR "expected an address or prefix, e.g. 192.0.2.0/24"
#define WHY_LEN	 "bad prefix length"
#define WHY_HOST "host bits set after the prefix length"

/* The 16-byte form of a textual address, through a sockaddr. */
static void
addr16(const char *text, uint8_t out[16])
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) ==
	    1) {
		ss.ss_family = AF_INET;
	} else {
		assert_int_equal(
			inet_pton(AF_INET6, text,
				  &((struct sockaddr_in6 *)&ss)->sin6_addr),
			1);
		ss.ss_family = AF_INET6;
	}
	assert_true(ipnet_from_sockaddr((struct sockaddr *)&ss, out));
}

static struct ipnet
parse_ok(const char *text)
{
	struct ipnet net;
	const char *why = ipnet_parse(text, &net);

	if (why != NULL)
		fail_msg("\"%s\" refused: %s", text, why);
	return net;
}

static void
assert_format(const struct ipnet *net, const char *want)
{
	char buf[IPNET_TEXT_MAX];

	assert_string_equal(ipnet_format(net, buf, sizeof(buf)), want);
}

static bool
contains(const char *net, const char *addr)
{
	struct ipnet n = parse_ok(net);
	uint8_t a[16];

	addr16(addr, a);
	return ipnet_contains(&n, a);
}

/* ---- parsing --------------------------------------------------------- */

static void
test_parse_v4(void **state)
{
	static const uint8_t want[16] = {0, 0, 0,    0,	   0,	0, 0, 0,
					 0, 0, 0xff, 0xff, 192, 0, 2, 0};
	struct ipnet net;

	(void)state;
	net = parse_ok("192.0.2.0/24");
	assert_memory_equal(net.addr, want, 16);
	assert_int_equal(net.len, 96 + 24); /* counted on the 128-bit form */
	assert_true(ipnet_is_v4(net.addr));
	assert_format(&net, "192.0.2.0/24");

	net = parse_ok("198.51.100.7"); /* a single address: /32 */
	assert_int_equal(net.len, 128);
	assert_format(&net, "198.51.100.7/32");
	net = parse_ok("0.0.0.0/0");
	assert_int_equal(net.len, 96);
	assert_format(&net, "0.0.0.0/0");
	net = parse_ok("10.0.0.0/8");
	assert_int_equal(net.len, 104);
	net = parse_ok("255.255.255.254/31");
	assert_int_equal(net.len, 127);
	net = parse_ok("192.0.2.0/024"); /* leading zero in the length */
	assert_int_equal(net.len, 120);
	net = parse_ok("128.0.0.0/1");
	assert_int_equal(net.len, 97);
	assert_format(&net, "128.0.0.0/1");
}

static void
test_parse_v6(void **state)
{
	static const uint8_t db8[16] = {0x20, 0x01, 0x0d, 0xb8};
	struct ipnet net;

	(void)state;
	net = parse_ok("2001:db8::/32");
	assert_memory_equal(net.addr, db8, 16);
	assert_int_equal(net.len, 32);
	assert_false(ipnet_is_v4(net.addr));
	assert_format(&net, "2001:db8::/32");

	net = parse_ok("::1");
	assert_int_equal(net.len, 128);
	assert_format(&net, "::1/128");
	net = parse_ok("::/0");
	assert_int_equal(net.len, 0);
	assert_format(&net, "::/0");
	net = parse_ok("2001:DB8:0:0:0:0:0:0/48"); /* any spelling */
	assert_format(&net, "2001:db8::/48");
	net = parse_ok("fe80::/10");
	assert_int_equal(net.len, 10);
	net = parse_ok("2001:db8::8000/113");
	assert_int_equal(net.len, 113);
	/* Written as IPv4-mapped IPv6: the same as the IPv4 prefix. */
	net = parse_ok("::ffff:192.0.2.0/120");
	assert_true(ipnet_is_v4(net.addr));
	assert_int_equal(net.len, 120);
	assert_format(&net, "192.0.2.0/24");
}

static void
test_parse_refused(void **state)
{
	static const struct {
		const char *text;
		const char *why;
	} bad[] = {
		{"", WHY_ADDR},
		{"/24", WHY_ADDR},
		{"192.0.2", WHY_ADDR},
		{"192.0.2.0.0", WHY_ADDR},
		{"192.0.2.256", WHY_ADDR},
		{"192.0.02.0", WHY_ADDR},
		{" 192.0.2.0", WHY_ADDR},
		{"192.0.2.0 ", WHY_ADDR},
		{"192.0.2.0 /24", WHY_ADDR},
		{"example.com", WHY_ADDR},
		{"localhost", WHY_ADDR},
		{"2001:db8::g", WHY_ADDR},
		{"2001:db8:::/48", WHY_ADDR},
		{"fe80::1%eth0", WHY_ADDR},
		{"[::1]", WHY_ADDR},
		{"[::1]/128", WHY_ADDR},
		{"0x7f000001", WHY_ADDR},
		{"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255:1", WHY_ADDR},
		{"1111111111111111111111111111111111111111111111/8", WHY_ADDR},
		{"192.0.2.0/", WHY_LEN},
		{"192.0.2.0/x", WHY_LEN},
		{"192.0.2.0/-1", WHY_LEN},
		{"192.0.2.0/+24", WHY_LEN},
		{"192.0.2.0/ 24", WHY_LEN},
		{"192.0.2.0/24 ", WHY_LEN},
		{"192.0.2.0/24/", WHY_LEN},
		{"192.0.2.0/0024", WHY_LEN},
		{"192.0.2.0/99999999999", WHY_LEN},
		{"2001:db8::/1x", WHY_LEN},
		{"192.0.2.0/33", "IPv4 prefix length is at most 32"},
		{"192.0.2.0/128", "IPv4 prefix length is at most 32"},
		{"2001:db8::/129", "IPv6 prefix length is at most 128"},
		{"2001:db8::/999", "IPv6 prefix length is at most 128"},
		{"192.0.2.1/24", WHY_HOST},
		{"192.0.2.128/24", WHY_HOST},
		{"10.0.0.1/31", WHY_HOST},
		{"1.0.0.0/0", WHY_HOST},
		{"2001:db8::1/64", WHY_HOST},
		{"2001:db9::/31", WHY_HOST},
		{"::1/127", WHY_HOST},
		{"::ffff:192.0.2.1/120", WHY_HOST},
		{"::ffff:0.0.0.0/95", WHY_HOST},
	};
	struct ipnet net;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		const char *why = ipnet_parse(bad[i].text, &net);

		if (why == NULL)
			fail_msg("\"%s\" accepted", bad[i].text);
		if (strcmp(why, bad[i].why) != 0)
			fail_msg("\"%s\": \"%s\", want \"%s\"", bad[i].text,
				 why, bad[i].why);
	}
}

/* ---- sockets and matching -------------------------------------------- */

static void
test_from_sockaddr(void **state)
{
	static const uint8_t mapped[16] = {0, 0, 0,    0,    0,	  0, 0,	  0,
					   0, 0, 0xff, 0xff, 203, 0, 113, 9};
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	uint8_t a[16], b[16];

	(void)state;
	assert_int_equal(inet_pton(AF_INET, "203.0.113.9", &sin.sin_addr), 1);
	sin.sin_port = htons(587);
	assert_true(ipnet_from_sockaddr((struct sockaddr *)&sin, a));
	assert_memory_equal(a, mapped, 16);
	assert_true(ipnet_is_v4(a));

	/* The same client seen on a dual-stack IPv6 socket. */
	assert_int_equal(
		inet_pton(AF_INET6, "::ffff:203.0.113.9", &sin6.sin6_addr), 1);
	assert_true(ipnet_from_sockaddr((struct sockaddr *)&sin6, b));
	assert_memory_equal(b, mapped, 16);

	assert_int_equal(inet_pton(AF_INET6, "2001:db8::9", &sin6.sin6_addr),
			 1);
	assert_true(ipnet_from_sockaddr((struct sockaddr *)&sin6, b));
	assert_false(ipnet_is_v4(b));
	assert_memory_equal(b, &sin6.sin6_addr, 16);

	assert_false(ipnet_from_sockaddr((struct sockaddr *)&un, a));
}

/* An IPv4 prefix matches IPv4 clients however they arrive, and nothing
 * of IPv6; IPv6 prefixes do not match IPv4 clients unless they cover the
 * mapped range. */
static void
test_v4_mapped_matching(void **state)
{
	(void)state;
	assert_true(contains("192.0.2.0/24", "192.0.2.77"));
	assert_true(contains("192.0.2.0/24", "::ffff:192.0.2.77"));
	assert_false(contains("192.0.2.0/24", "192.0.3.77"));
	assert_false(contains("192.0.2.0/24", "::ffff:192.0.3.77"));
	/* ::192.0.2.77 (IPv4-compatible) and 64:ff9b::192.0.2.77 (NAT64)
	 * are IPv6 addresses, not IPv4 clients. */
	assert_false(contains("192.0.2.0/24", "::192.0.2.77"));
	assert_false(contains("192.0.2.0/24", "64:ff9b::192.0.2.77"));
	/* 0.0.0.0/0 is all of IPv4, and only IPv4. */
	assert_true(contains("0.0.0.0/0", "203.0.113.1"));
	assert_true(contains("0.0.0.0/0", "::ffff:203.0.113.1"));
	assert_false(contains("0.0.0.0/0", "2001:db8::1"));
	assert_false(contains("0.0.0.0/0", "::"));
	/* ::/0 is everything, IPv4 included. */
	assert_true(contains("::/0", "2001:db8::1"));
	assert_true(contains("::/0", "203.0.113.1"));
	assert_true(contains("::ffff:0.0.0.0/96", "203.0.113.1"));
	assert_false(contains("2001:db8::/32", "203.0.113.1"));
}

static void
test_contains_edges(void **state)
{
	(void)state;
	/* /32 and /128: exactly one address. */
	assert_true(contains("198.51.100.7", "198.51.100.7"));
	assert_false(contains("198.51.100.7", "198.51.100.6"));
	assert_false(contains("198.51.100.7", "198.51.100.8"));
	assert_true(contains("2001:db8::1", "2001:db8::1"));
	assert_false(contains("2001:db8::1", "2001:db8::"));
	assert_false(contains("2001:db8::1", "2001:db8::3"));
	assert_false(contains("2001:db8::1", "3001:db8::1"));
	/* /31 and /127: two. */
	assert_true(contains("10.0.0.0/31", "10.0.0.0"));
	assert_true(contains("10.0.0.0/31", "10.0.0.1"));
	assert_false(contains("10.0.0.0/31", "10.0.0.2"));
	assert_false(contains("10.0.0.2/31", "10.0.0.1"));
	assert_true(contains("2001:db8::2/127", "2001:db8::3"));
	assert_false(contains("2001:db8::2/127", "2001:db8::4"));
	/* Boundaries inside a byte. */
	assert_true(contains("192.0.2.64/26", "192.0.2.64"));
	assert_true(contains("192.0.2.64/26", "192.0.2.127"));
	assert_false(contains("192.0.2.64/26", "192.0.2.63"));
	assert_false(contains("192.0.2.64/26", "192.0.2.128"));
	assert_true(contains("128.0.0.0/1", "255.255.255.255"));
	assert_false(contains("128.0.0.0/1", "127.255.255.255"));
	assert_true(contains("fe80::/10", "febf:ffff::1"));
	assert_false(contains("fe80::/10", "fec0::1"));
	/* /0 of IPv6. */
	assert_true(contains("::/0", "::"));
	assert_true(
		contains("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
}

static void
test_list_contains(void **state)
{
	struct ipnet nets[3];
	uint8_t a[16];

	(void)state;
	nets[0] = parse_ok("192.0.2.0/24");
	nets[1] = parse_ok("2001:db8::/32");
	nets[2] = parse_ok("203.0.113.9");
	addr16("2001:db8:1::1", a);
	assert_true(ipnet_list_contains(nets, 3, a));
	assert_false(ipnet_list_contains(nets, 1, a));
	addr16("203.0.113.9", a);
	assert_true(ipnet_list_contains(nets, 3, a));
	assert_false(ipnet_list_contains(nets, 2, a));
	addr16("203.0.113.10", a);
	assert_false(ipnet_list_contains(nets, 3, a));
	assert_false(ipnet_list_contains(NULL, 0, a));
}

/* ---- masking --------------------------------------------------------- */

static void
test_mask(void **state)
{
	struct ipnet m;
	uint8_t a[16];

	(void)state;
	addr16("203.0.113.201", a);
	m = ipnet_mask(a, 24, 64);
	assert_int_equal(m.len, 120);
	assert_format(&m, "203.0.113.0/24");
	assert_true(ipnet_contains(&m, a));
	m = ipnet_mask(a, 32, 64);
	assert_format(&m, "203.0.113.201/32");
	m = ipnet_mask(a, 23, 64);
	assert_format(&m, "203.0.112.0/23");
	m = ipnet_mask(a, 25, 64);
	assert_format(&m, "203.0.113.128/25");
	m = ipnet_mask(a, 9, 64);
	assert_format(&m, "203.0.0.0/9");
	m = ipnet_mask(a, 8, 64);
	assert_format(&m, "203.0.0.0/8");
	m = ipnet_mask(a, 1, 64);
	assert_format(&m, "128.0.0.0/1");
	m = ipnet_mask(a, 0, 64);
	assert_format(&m, "0.0.0.0/0");
	m = ipnet_mask(a, 99, 64); /* capped at 32 */
	assert_format(&m, "203.0.113.201/32");

	/* The IPv6 length applies to IPv6 addresses only. */
	addr16("2001:db8:abcd:ef01:2345:6789:abcd:ef01", a);
	m = ipnet_mask(a, 24, 64);
	assert_int_equal(m.len, 64);
	assert_format(&m, "2001:db8:abcd:ef01::/64");
	m = ipnet_mask(a, 24, 49);
	assert_format(&m, "2001:db8:abcd:8000::/49");
	m = ipnet_mask(a, 24, 47);
	assert_format(&m, "2001:db8:abcc::/47");
	m = ipnet_mask(a, 24, 17);
	assert_format(&m, "2001::/17");
	m = ipnet_mask(a, 24, 21);
	assert_format(&m, "2001:800::/21");
	m = ipnet_mask(a, 24, 127);
	assert_format(&m, "2001:db8:abcd:ef01:2345:6789:abcd:ef00/127");
	m = ipnet_mask(a, 24, 128);
	assert_format(&m, "2001:db8:abcd:ef01:2345:6789:abcd:ef01/128");
	m = ipnet_mask(a, 24, 200); /* capped at 128 */
	assert_int_equal(m.len, 128);
	m = ipnet_mask(a, 24, 0);
	assert_format(&m, "::/0");
	assert_true(ipnet_contains(&m, a));

	/* A v4-mapped client from a dual-stack socket is masked as IPv4. */
	addr16("::ffff:203.0.113.201", a);
	m = ipnet_mask(a, 24, 64);
	assert_format(&m, "203.0.113.0/24");
}

/* Every masked address is the prefix of itself and parses back equal. */
static void
test_format_round_trip(void **state)
{
	static const char *const texts[] = {
		"192.0.2.0/24",
		"0.0.0.0/0",
		"255.255.255.255/32",
		"10.0.0.0/31",
		"2001:db8::/32",
		"::/0",
		"::1/128",
		"fe80::/10",
		"2001:db8:0:1::/64",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127",
	};
	char buf[IPNET_TEXT_MAX];
	struct ipnet a, b;
	uint8_t addr[16];

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++) {
		a = parse_ok(texts[i]);
		assert_string_equal(ipnet_format(&a, buf, sizeof(buf)),
				    texts[i]);
		b = parse_ok(buf);
		assert_memory_equal(&a, &b, sizeof(a));
	}
	/* Every length of one address, both families. */
	addr16("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", addr);
	for (unsigned len = 0; len <= 128; len++) {
		a = ipnet_mask(addr, 32, len);
		assert_int_equal(a.len, len);
		assert_null(
			ipnet_parse(ipnet_format(&a, buf, sizeof(buf)), &b));
		assert_memory_equal(&a, &b, sizeof(a));
		assert_true(ipnet_contains(&a, addr));
	}
	addr16("255.255.255.255", addr);
	for (unsigned len = 0; len <= 32; len++) {
		a = ipnet_mask(addr, len, 128);
		assert_int_equal(a.len, 96 + len);
		assert_null(
			ipnet_parse(ipnet_format(&a, buf, sizeof(buf)), &b));
		assert_memory_equal(&a, &b, sizeof(a));
		assert_true(ipnet_contains(&a, addr));
	}
	/* A short buffer is cut, still terminated. */
	a = parse_ok("2001:db8::/32");
	memset(buf, 'x', sizeof(buf));
	ipnet_format(&a, buf, 8);
	assert_string_equal(buf, "2001:db");
}

/* Socket addresses as text: v4, v6, v4-mapped as v4, others refused. */
static void
test_sockaddr_text(void **state)
{
	union sockaddr_ip ss;
	struct sockaddr_in *in = &ss.in;
	struct sockaddr_in6 *in6 = &ss.in6;
	char buf[INET6_ADDRSTRLEN];
	unsigned port = 0;

	(void)state;
	memset(&ss, 0, sizeof(ss));
	in->sin_family = AF_INET;
	in->sin_port = htons(587);
	inet_pton(AF_INET, "192.0.2.25", &in->sin_addr);
	assert_true(ipnet_sockaddr_text(&ss.sa, buf, sizeof(buf), &port));
	assert_string_equal(buf, "192.0.2.25");
	assert_int_equal(port, 587);

	memset(&ss, 0, sizeof(ss));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(465);
	inet_pton(AF_INET6, "::ffff:198.51.100.7", &in6->sin6_addr);
	assert_true(ipnet_sockaddr_text(&ss.sa, buf, sizeof(buf), &port));
	assert_string_equal(buf, "198.51.100.7");
	assert_int_equal(port, 465);
	inet_pton(AF_INET6, "2001:db8::25", &in6->sin6_addr);
	assert_true(ipnet_sockaddr_text(&ss.sa, buf, sizeof(buf), &port));
	assert_string_equal(buf, "2001:db8::25");

	memset(&ss, 0, sizeof(ss));
	ss.sa.sa_family = AF_UNIX;
	assert_false(ipnet_sockaddr_text(&ss.sa, buf, sizeof(buf), &port));
	assert_string_equal(buf, "");
	/* Too small a buffer: refused, empty. */
	in->sin_family = AF_INET;
	inet_pton(AF_INET, "192.0.2.25", &in->sin_addr);
	assert_false(ipnet_sockaddr_text(&ss.sa, buf, 5, &port));
	assert_string_equal(buf, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_v4),
		cmocka_unit_test(test_parse_v6),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_from_sockaddr),
		cmocka_unit_test(test_v4_mapped_matching),
		cmocka_unit_test(test_contains_edges),
		cmocka_unit_test(test_list_contains),
		cmocka_unit_test(test_mask),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_sockaddr_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
