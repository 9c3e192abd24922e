/*
 * test_bantable.c - the accept()-time ban table (bantable.c): longest
 * prefix wins, expiry (an expired longer entry does not hide a live
 * shorter one), never weakening an entry, delete, sweep, IPv4 and IPv6
 * neighbours of a CIDR, and a table of many lengths against a model.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "bans/bantable.h"

#define NOW 1000000u

static struct ipnet
net(const char *text)
{
	struct ipnet n;

	assert_null(ipnet_parse(text, &n));
	return n;
}

/* The 16-byte form of an address. */
static const uint8_t *
addr(const char *text)
{
	static struct ipnet n;

	n = net(text);
	return n.addr;
}

static void
test_longest_live_match(void **state)
{
	struct ban_table t = {0};
	struct ipnet a = net("198.51.100.0/24"), b = net("198.51.100.7"),
		     c = net("2001:db8::/32");
	const struct ban_entry *e;

	(void)state;
	assert_int_equal(ban_table_put(&t, &a, 0, 1, NOW), 0);
	assert_int_equal(ban_table_put(&t, &b, NOW + 10, 2, NOW), 0);
	assert_int_equal(ban_table_put(&t, &c, 0, 0, NOW), 0);
	e = ban_table_match(&t, addr("198.51.100.7"), NOW, 0);
	assert_non_null(e);
	assert_int_equal(e->reason, 2);
	/* b expired: a still covers it. */
	e = ban_table_match(&t, addr("198.51.100.7"), NOW + 10, 0);
	assert_non_null(e);
	assert_int_equal(e->reason, 1);
	/* Neighbours are not covered. */
	assert_null(ban_table_match(&t, addr("198.51.101.0"), NOW, 0));
	assert_null(ban_table_match(&t, addr("198.51.99.255"), NOW, 0));
	assert_non_null(ban_table_match(&t, addr("2001:db8:ffff::1"), NOW, 0));
	assert_null(ban_table_match(&t, addr("2001:db9::1"), NOW, 0));
	/* Ignored reasons do not match; shorter entries still do. */
	e = ban_table_match(&t, addr("198.51.100.7"), NOW, 1u << 2);
	assert_non_null(e);
	assert_int_equal(e->reason, 1);
	assert_null(ban_table_match(&t, addr("198.51.100.7"), NOW, 6));
	assert_int_equal(ban_table_sweep(&t, NOW + 10), 1);
	assert_int_equal(t.n, 2);
	assert_int_equal(ban_table_del(&t, &a), 0);
	assert_int_equal(ban_table_del(&t, &a), 1);
	assert_null(ban_table_match(&t, addr("198.51.100.7"), NOW, 0));
	ban_table_free(&t);
}

static void
test_never_weakened(void **state)
{
	struct ban_table t = {0};
	struct ipnet a = net("203.0.113.0/24");

	(void)state;
	assert_int_equal(ban_table_put(&t, &a, NOW + 100, 2, NOW), 0);
	assert_int_equal(ban_table_put(&t, &a, NOW + 50, 1, NOW), 1);
	assert_int_equal(ban_table_find(&t, &a)->expires_ms, NOW + 100);
	assert_int_equal(ban_table_put(&t, &a, NOW + 200, 1, NOW), 0);
	assert_int_equal(ban_table_put(&t, &a, 0, 1, NOW), 0);
	assert_int_equal(ban_table_put(&t, &a, NOW + 999, 2, NOW), 1);
	assert_int_equal(ban_table_find(&t, &a)->expires_ms, 0);
	/* An expired entry is replaced by anything. */
	ban_table_del(&t, &a);
	ban_table_put(&t, &a, NOW + 1, 2, NOW);
	assert_int_equal(ban_table_put(&t, &a, NOW + 5, 1, NOW + 2), 0);
	assert_int_equal(ban_table_find(&t, &a)->reason, 1);
	ban_table_free(&t);
}

/* Every IPv4 prefix length at once, checked against a linear model. */
static void
test_against_model(void **state)
{
	struct ban_table t = {0};
	struct ipnet nets[33];

	(void)state;
	srand(7);
	for (unsigned len = 0; len <= 32; len++) {
		uint8_t a[16] = {0};

		a[10] = a[11] = 0xff;
		for (int i = 12; i < 16; i++)
			a[i] = (uint8_t)rand();
		nets[len].len = (uint8_t)(96 + len);
		for (int i = 0; i < 16; i++) {
			unsigned bits = 96 + len > (unsigned)i * 8
						? 96 + len - (unsigned)i * 8
						: 0;
			nets[len].addr[i] =
				bits >= 8 ? a[i]
					  : (uint8_t)(a[i] & (0xff00u >> bits));
		}
		if (len > 0) /* /0 would cover everything */
			assert_int_equal(
				ban_table_put(&t, &nets[len], 0, len % 3, NOW),
				0);
	}
	for (int probe = 0; probe < 20000; probe++) {
		uint8_t a[16] = {0};
		const struct ban_entry *e, *want = NULL;

		a[10] = a[11] = 0xff;
		for (int i = 12; i < 16; i++)
			a[i] = (uint8_t)rand();
		if (probe % 2) /* near an entry */
			memcpy(a + 12, nets[1 + probe % 32].addr + 12, 3);
		for (unsigned len = 32; len > 0 && want == NULL; len--) {
			if (ipnet_contains(&nets[len], a))
				want = ban_table_find(&t, &nets[len]);
		}
		e = ban_table_match(&t, a, NOW, 0);
		assert_ptr_equal(e, want);
	}
	ban_table_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_longest_live_match),
		cmocka_unit_test(test_never_weakened),
		cmocka_unit_test(test_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
