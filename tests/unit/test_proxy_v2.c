/*
 * test_proxy_v2.c - the PROXY protocol v2 writer (proxy_v2.c).
 *
 * Exact bytes for an IPv4 header with every TLV, the IPv6 and mixed
 * families, UNSPEC, LOCAL, and refusal of short buffers (at every length)
 * and over-long fields.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "smtp/proxy_v2.h"
#include "test_sockaddr.h"

static void
test_ipv4_all_tlvs(void **state)
{
	union sockaddr_ip src = v4("198.51.100.7", 40000);
	union sockaddr_ip dst = v4("192.0.2.1", 465);
	struct proxy_v2_info info = {
		.src = &src.sa,
		.dst = &dst.sa,
		.login = "demo",
		.unique_id = "1a",
		.sni = "mx",
		.tls_version = "TLSv1.3",
		.tls_cipher = "X",
	};
	static const uint8_t want[] = {
		'\r',	    '\n', '\r', '\n',
		0,	    '\r', '\n', 'Q',
		'U',	    'I',  'T',	'\n',
		0x21,	    0x11, 0,	12 + 5 + 5 + 3 + 5 + 10 + 4 + 7,
		198,	    51,	  100,	7,
		192,	    0,	  2,	1,
		0x9c,	    0x40, 0x01, 0xd1,
		0x02,	    0,	  2,	'm',
		'x',	    0x05, 0,	2,
		'1',	    'a',  0x20, 0,
		5 + 10 + 4, 0x01, 0,	0,
		0,	    1,	  0x21, 0,
		7,	    'T',  'L',	'S',
		'v',	    '1',  '.',	'3',
		0x23,	    0,	  1,	'X',
		0xE0,	    0,	  4,	'd',
		'e',	    'm',  'o',
	};
	uint8_t out[PROXY_V2_MAX];
	ssize_t n;

	(void)state;
	n = proxy_v2_write(&info, out, sizeof(out));
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	/* every shorter buffer is refused, never overrun */
	for (size_t cap = 0; cap < sizeof(want); cap++)
		assert_int_equal(proxy_v2_write(&info, out, cap), -1);
}

static void
test_ipv6_and_mixed(void **state)
{
	union sockaddr_ip src = v6("2001:db8::7", 1);
	union sockaddr_ip dst = v4("192.0.2.1", 587);
	union sockaddr_ip mapped = v6("::ffff:198.51.100.9", 2);
	struct proxy_v2_info info = {.src = &src.sa, .dst = &dst.sa};
	uint8_t out[PROXY_V2_MAX];
	static const uint8_t dst_mapped[16] = {0, 0, 0,	   0,	 0,   0, 0, 0,
					       0, 0, 0xff, 0xff, 192, 0, 2, 1};

	(void)state;
	/* IPv6 client, IPv4 listener: both sent as IPv6 */
	assert_int_equal(proxy_v2_write(&info, out, sizeof(out)), 16 + 36);
	assert_int_equal(out[13], 0x21);
	assert_int_equal(out[15], 36);
	assert_memory_equal(out + 16 + 16, dst_mapped, 16);
	assert_int_equal(out[16 + 32], 0);
	assert_int_equal(out[16 + 33], 1);

	/* a v4-mapped client on an IPv4 listener is plain IPv4 */
	info.src = &mapped.sa;
	assert_int_equal(proxy_v2_write(&info, out, sizeof(out)), 16 + 12);
	assert_int_equal(out[13], 0x11);
	assert_int_equal(out[16], 198);
	assert_int_equal(out[19], 9);

	/* unknown family: UNSPEC, no addresses, TLVs still there */
	info.src = NULL;
	info.login = "u";
	assert_int_equal(proxy_v2_write(&info, out, sizeof(out)), 16 + 4);
	assert_int_equal(out[13], 0x00);
	assert_int_equal(out[16], 0xE0);
}

static void
test_local_and_limits(void **state)
{
	char longname[PROXY_V2_FIELD_MAX + 2];
	union sockaddr_ip src = v4("198.51.100.7", 1);
	struct proxy_v2_info info = {.src = &src.sa, .dst = &src.sa};
	uint8_t out[PROXY_V2_MAX];

	(void)state;
	assert_int_equal(proxy_v2_write_local(out, sizeof(out)), 16);
	assert_memory_equal(out, PROXY_V2_SIG, PROXY_V2_SIG_LEN);
	assert_int_equal(out[12], 0x20);
	assert_int_equal(out[13], 0);
	assert_int_equal(out[14], 0);
	assert_int_equal(out[15], 0);
	assert_int_equal(proxy_v2_write_local(out, 15), -1);

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	info.login = longname;
	assert_int_equal(proxy_v2_write(&info, out, sizeof(out)), -1);
	longname[PROXY_V2_FIELD_MAX] = '\0';
	assert_int_equal(proxy_v2_write(&info, out, sizeof(out)),
			 16 + 12 + 3 + PROXY_V2_FIELD_MAX);
	/* all fields at their longest fit in PROXY_V2_MAX */
	info.unique_id = info.sni = info.tls_version = info.tls_cipher =
		longname;
	assert_true(proxy_v2_write(&info, out, sizeof(out)) > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4_all_tlvs),
		cmocka_unit_test(test_ipv6_and_mixed),
		cmocka_unit_test(test_local_and_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
