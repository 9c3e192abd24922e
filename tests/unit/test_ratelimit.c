/*
 * test_ratelimit.c - token buckets, quotas, login scores, per-network limits
 * and table bounds (proxy/limits/ratelimit.c), on a frozen clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "limits/ratelimit.h"

#define T0 1000000 /* ms: any start time */

static struct config cfg;

static void
reset_config(void)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_message_size = 1024;
	cfg.user_limits.messages = (struct config_rate){3, 2000, 3};
	cfg.user_limits.recipients = (struct config_rate){10, 2000, 10};
	cfg.user_limits.bytes = (struct config_rate){4096, 1000, 4096};
	cfg.max_users = 1000;
	cfg.login_failures = (struct config_rate){2, 60000, 2};
	cfg.login_max_delay_ms = 5000;
	cfg.ip_prefix_v4 = 24;
	cfg.ip_prefix_v6 = 64;
	cfg.ip_connections = (struct config_rate){5, 1000, 5};
	cfg.ip_concurrency = 3;
	cfg.ip_auth_failures = (struct config_rate){3, 60000, 3};
	cfg.ip_ban_time_ms = 10000;
	cfg.ip_max_entries = 1000;
}

static int
setup(void **state)
{
	char err[256];

	reset_config();
	*state = ratelimit_new(&cfg, err, sizeof(err));
	return *state == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	ratelimit_free(*state);
	return 0;
}

static enum ratelimit_user_kind
take(struct ratelimit *l, const char *user, enum ratelimit_user_kind kind,
     uint64_t n, uint64_t now, uint64_t *retry)
{
	uint64_t amount[LIMIT_USER_KINDS] = {0}, r = 0;
	struct ratelimit_key k;

	ratelimit_user_key(l, user, &k);
	amount[kind] = n;
	if (kind == LIMIT_MESSAGES)
		amount[LIMIT_QUOTA] = n;
	enum ratelimit_user_kind got =
		ratelimit_user_take(l, &k, &cfg.user_limits, amount, now, &r);
	if (retry != NULL)
		*retry = r;
	return got;
}

static void
test_burst_then_rate(void **state)
{
	struct ratelimit *l = *state;
	uint64_t retry;

	for (int i = 0; i < 3; i++)
		assert_int_equal(take(l, "alice", LIMIT_MESSAGES, 1, T0, NULL),
				 LIMIT_USER_KINDS);
	assert_int_equal(take(l, "alice", LIMIT_MESSAGES, 1, T0, &retry),
			 LIMIT_MESSAGES);
	/* 3 per 2 s: one more every 667 ms. */
	assert_in_range(retry, 666, 667);
	assert_int_equal(take(l, "alice", LIMIT_MESSAGES, 1, T0 + 600, NULL),
			 LIMIT_MESSAGES);
	assert_int_equal(take(l, "alice", LIMIT_MESSAGES, 1, T0 + 667, NULL),
			 LIMIT_USER_KINDS);
	/* Another user has a bucket of its own. */
	assert_int_equal(take(l, "bob", LIMIT_MESSAGES, 1, T0, NULL),
			 LIMIT_USER_KINDS);
	assert_int_equal(ratelimit_stats(l)->refused[LIMIT_MESSAGES], 2);
}

static void
test_give_back(void **state)
{
	struct ratelimit *l = *state;
	uint64_t amount[LIMIT_USER_KINDS] = {[LIMIT_MESSAGES] = 1};
	struct ratelimit_key k;

	ratelimit_user_key(l, "carol", &k);
	for (int i = 0; i < 3; i++)
		assert_int_equal(take(l, "carol", LIMIT_MESSAGES, 1, T0, NULL),
				 LIMIT_USER_KINDS);
	ratelimit_user_give(l, &k, &cfg.user_limits, amount, T0);
	assert_int_equal(take(l, "carol", LIMIT_MESSAGES, 1, T0, NULL),
			 LIMIT_USER_KINDS);
	assert_int_equal(take(l, "carol", LIMIT_MESSAGES, 1, T0, NULL),
			 LIMIT_MESSAGES);
	/* Giving back more than was taken never fills past the burst. */
	amount[LIMIT_MESSAGES] = 50;
	ratelimit_user_give(l, &k, &cfg.user_limits, amount, T0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(take(l, "carol", LIMIT_MESSAGES, 1, T0, NULL),
				 LIMIT_USER_KINDS);
	assert_int_equal(take(l, "carol", LIMIT_MESSAGES, 1, T0, NULL),
			 LIMIT_MESSAGES);
}

static void
test_bytes_and_never(void **state)
{
	struct ratelimit *l = *state;
	uint64_t retry;

	assert_int_equal(take(l, "dave", LIMIT_BYTES, 4000, T0, NULL),
			 LIMIT_USER_KINDS);
	assert_int_equal(take(l, "dave", LIMIT_BYTES, 200, T0, &retry),
			 LIMIT_BYTES);
	assert_in_range(retry, 25, 30); /* 104 bytes at 4096/s */
	assert_int_equal(take(l, "dave", LIMIT_BYTES, 5000, T0 + 5000, &retry),
			 LIMIT_BYTES);
	assert_true(retry == UINT64_MAX); /* more than the burst: never */
}

static void
test_all_or_nothing_and_quota(void **state)
{
	struct ratelimit *l = *state;
	uint64_t retry;

	cfg.user_limits.messages = (struct config_rate){100, 1000, 100};
	cfg.user_limits.messages_quota = (struct config_rate){4, 86400000, 4};
	for (int i = 0; i < 4; i++)
		assert_int_equal(take(l, "erin", LIMIT_MESSAGES, 1, T0, NULL),
				 LIMIT_USER_KINDS);
	assert_int_equal(take(l, "erin", LIMIT_MESSAGES, 1, T0 + 10, &retry),
			 LIMIT_QUOTA);
	assert_int_equal(retry, 86400000 - 10);
	/* The refused take left the message bucket untouched: 96 left. */
	cfg.user_limits.messages_quota.count = 0;
	for (int i = 0; i < 96; i++)
		assert_int_equal(take(l, "erin", LIMIT_MESSAGES, 1, T0, NULL),
				 LIMIT_USER_KINDS);
	assert_int_equal(take(l, "erin", LIMIT_MESSAGES, 1, T0, NULL),
			 LIMIT_MESSAGES);
	/* A new window opens after the old one. */
	cfg.user_limits.messages_quota.count = 4;
	assert_int_equal(
		take(l, "erin", LIMIT_MESSAGES, 1, T0 + 86400000, NULL),
		LIMIT_USER_KINDS);
	reset_config();
}

struct hammer {
	struct ratelimit *l;
	int granted;
};

static void *
hammer_thread(void *arg)
{
	struct hammer *h = arg;

	for (int i = 0; i < 20000; i++)
		if (take(h->l, "shared", LIMIT_RECIPIENTS, 1, T0 + i / 1000,
			 NULL) == LIMIT_USER_KINDS)
			h->granted++;
	return NULL;
}

/* Four threads on one user get exactly burst + rate * elapsed. */
static void
test_exact_across_threads(void **state)
{
	struct hammer h[4];
	pthread_t t[4];
	int total = 0;

	for (int i = 0; i < 4; i++) {
		h[i] = (struct hammer){*state, 0};
		pthread_create(&t[i], NULL, hammer_thread, &h[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		total += h[i].granted;
	}
	/* 10 per 2 s, burst 10, clock from T0 to T0+19 ms: 10 in all. */
	assert_int_equal(total, 10);
}

static void
test_peek_and_reconfigure(void **state)
{
	struct ratelimit *l = *state;
	struct ratelimit_key k;
	uint64_t avail[LIMIT_USER_KINDS];
	struct config next, bigger;
	char warn[256];

	ratelimit_user_key(l, "peeked", &k);
	assert_false(ratelimit_user_peek(l, &k, &cfg.user_limits, T0, avail));
	assert_int_equal(avail[LIMIT_MESSAGES], 3);
	assert_int_equal(avail[LIMIT_QUOTA], UINT64_MAX); /* off */
	assert_int_equal(take(l, "peeked", LIMIT_MESSAGES, 2, T0, NULL),
			 LIMIT_USER_KINDS);
	assert_true(ratelimit_user_peek(l, &k, &cfg.user_limits, T0, avail));
	assert_int_equal(avail[LIMIT_MESSAGES], 1);
	assert_int_equal(avail[LIMIT_RECIPIENTS], 10);
	/* 3 per 2 s: one more every 667 ms. */
	ratelimit_user_peek(l, &k, &cfg.user_limits, T0 + 700, avail);
	assert_int_equal(avail[LIMIT_MESSAGES], 2);

	/* A reload keeps the buckets; other table sizes wait for a restart. */
	next = cfg;
	next.login_max_delay_ms = 1234;
	assert_int_equal(ratelimit_reconfigure(l, &next, warn, sizeof(warn)),
			 0);
	assert_int_equal(take(l, "peeked", LIMIT_MESSAGES, 2, T0, NULL),
			 LIMIT_MESSAGES);
	bigger = next;
	bigger.max_users = 5000;
	assert_int_equal(ratelimit_reconfigure(l, &bigger, warn, sizeof(warn)),
			 1);
	assert_non_null(strstr(warn, "until a restart"));
	ratelimit_reconfigure(l, &cfg, warn, sizeof(warn));
}

static void
test_login_delay_grows(void **state)
{
	struct ratelimit *l = *state;
	struct ratelimit_key k;

	ratelimit_user_key(l, "victim", &k);
	assert_int_equal(ratelimit_login_delay(l, &k, 1000, T0), 0);
	ratelimit_login_failed(l, &k, T0);
	assert_int_equal(ratelimit_login_delay(l, &k, 1000, T0), 0);
	ratelimit_login_failed(l, &k, T0);
	/* The allowance (2) is used up: the next attempt waits. */
	assert_int_equal(ratelimit_login_delay(l, &k, 1000, T0), 1000);
	ratelimit_login_failed(l, &k, T0);
	assert_int_equal(ratelimit_login_delay(l, &k, 1000, T0), 2000);
	ratelimit_login_failed(l, &k, T0);
	ratelimit_login_failed(l, &k, T0);
	assert_int_equal(ratelimit_login_delay(l, &k, 1000, T0),
			 5000); /* cap */
	/* It decays: 2 per minute. */
	assert_int_equal(ratelimit_login_delay(l, &k, 1000, T0 + 10 * 60000),
			 0);
}

static void
addr4(uint8_t a[16], unsigned x, unsigned y)
{
	memset(a, 0, 16);
	a[10] = a[11] = 0xff;
	a[12] = 127;
	a[13] = (uint8_t)x;
	a[14] = (uint8_t)y;
	a[15] = 1;
}

static void
test_ip_concurrency_and_rate(void **state)
{
	struct ratelimit *l = *state;
	struct ratelimit_key k, k2;
	uint8_t a[16];
	uint64_t retry;

	addr4(a, 1, 1);
	assert_true(ratelimit_ip_key(l, a, &k));
	a[15] = 99; /* same /24 */
	assert_true(ratelimit_ip_key(l, a, &k2));
	assert_memory_equal(k.b, k2.b, 16);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ratelimit_ip_connect(l, &k, T0, &retry),
				 RATELIMIT_OK);
	assert_int_equal(ratelimit_ip_connect(l, &k, T0, &retry),
			 RATELIMIT_CONCURRENCY);
	ratelimit_ip_disconnect(l, &k);
	ratelimit_ip_disconnect(l, &k);
	ratelimit_ip_disconnect(l, &k);
	/* 5 per second: 3 used, 2 left. */
	assert_int_equal(ratelimit_ip_connect(l, &k, T0, &retry), RATELIMIT_OK);
	ratelimit_ip_disconnect(l, &k);
	assert_int_equal(ratelimit_ip_connect(l, &k, T0, &retry), RATELIMIT_OK);
	ratelimit_ip_disconnect(l, &k);
	assert_int_equal(ratelimit_ip_connect(l, &k, T0, &retry),
			 RATELIMIT_RATE);
	assert_int_equal(retry, 200);
	assert_int_equal(ratelimit_ip_connect(l, &k, T0 + 200, &retry),
			 RATELIMIT_OK);
	ratelimit_ip_disconnect(l, &k);
}

static void
test_ip_ban_and_allow(void **state)
{
	struct ratelimit *l = *state;
	struct ratelimit_key k;
	struct ipnet allow;
	uint8_t a[16];
	uint64_t retry;

	addr4(a, 2, 2);
	assert_true(ratelimit_ip_key(l, a, &k));
	assert_int_equal(ratelimit_ip_auth_failed(l, &k, T0), 0);
	assert_int_equal(ratelimit_ip_auth_failed(l, &k, T0), 0);
	assert_int_equal(ratelimit_ip_auth_failed(l, &k, T0), 10000);
	assert_int_equal(ratelimit_ip_connect(l, &k, T0 + 9999, &retry),
			 RATELIMIT_BANNED);
	assert_int_equal(retry, 1);
	assert_int_equal(ratelimit_ip_connect(l, &k, T0 + 10000, &retry),
			 RATELIMIT_OK);
	ratelimit_ip_disconnect(l, &k);
	assert_int_equal(ratelimit_stats(l)->bans, 1);
	/* An allowlisted network is not tracked at all. */
	assert_null(ipnet_parse("127.2.0.0/16", &allow));
	cfg.ip_allow = (struct config_nets){&allow, 1};
	assert_false(ratelimit_ip_key(l, a, &k));
	cfg.ip_allow = (struct config_nets){NULL, 0};
}

/* Ban a /24 (prefix_v4) by its failures. */
static void
ban_net(struct ratelimit *l, struct ratelimit_key *k, unsigned x)
{
	uint8_t a[16];

	addr4(a, x, 7);
	assert_true(ratelimit_ip_key(l, a, k));
	for (int i = 0; i < 3; i++)
		ratelimit_ip_auth_failed(l, k, T0);
}

static void
test_ip_unban(void **state)
{
	struct ratelimit *l = *state;
	struct ratelimit_key k3, k4, k5;
	struct ipnet net;
	uint64_t retry;

	ban_net(l, &k3, 3);
	ban_net(l, &k4, 4);
	ban_net(l, &k5, 5);
	/* Wider than the tracked /24s: those inside it. */
	assert_null(ipnet_parse("127.3.0.0/16", &net));
	assert_int_equal(ratelimit_ip_unban(l, &net, T0 + 1), 1);
	assert_int_equal(ratelimit_ip_connect(l, &k3, T0 + 1, &retry),
			 RATELIMIT_OK);
	ratelimit_ip_disconnect(l, &k3);
	assert_int_equal(ratelimit_ip_connect(l, &k4, T0 + 1, &retry),
			 RATELIMIT_BANNED);
	/* Narrower: the tracked /24 it lies in. */
	assert_null(ipnet_parse("127.4.7.9", &net));
	assert_int_equal(ratelimit_ip_unban(l, &net, T0 + 1), 1);
	assert_int_equal(ratelimit_ip_connect(l, &k4, T0 + 1, &retry),
			 RATELIMIT_OK);
	ratelimit_ip_disconnect(l, &k4);
	/* A neighbour is not touched; nothing banned is lifted twice. */
	assert_null(ipnet_parse("127.6.0.0/24", &net));
	assert_int_equal(ratelimit_ip_unban(l, &net, T0 + 1), 0);
	assert_int_equal(ratelimit_ip_connect(l, &k5, T0 + 1, &retry),
			 RATELIMIT_BANNED);
	/* The failure count went with the ban: two more do not ban. */
	assert_int_equal(ratelimit_ip_auth_failed(l, &k3, T0 + 1), 0);
	assert_int_equal(ratelimit_ip_auth_failed(l, &k3, T0 + 1), 0);
}

static void
test_user_reset(void **state)
{
	struct ratelimit *l = *state;
	struct ratelimit_key k;
	uint64_t avail[LIMIT_USER_KINDS];

	ratelimit_user_key(l, "alice", &k);
	assert_false(ratelimit_user_reset(l, &k));
	assert_int_equal(take(l, "alice", LIMIT_MESSAGES, 3, T0, NULL),
			 LIMIT_USER_KINDS);
	for (int i = 0; i < 3; i++)
		ratelimit_login_failed(l, &k, T0);
	assert_int_not_equal(ratelimit_login_delay(l, &k, 1000, T0), 0);
	assert_true(ratelimit_user_reset(l, &k));
	assert_false(ratelimit_user_peek(l, &k, &cfg.user_limits, T0, avail));
	assert_int_equal(avail[LIMIT_MESSAGES], 3);
	assert_int_equal(ratelimit_login_delay(l, &k, 1000, T0), 0);
	assert_int_equal(ratelimit_user_entries(l), 0);
	assert_false(ratelimit_user_reset(l, &k));
	/* The entry's slot is usable again. */
	assert_int_equal(take(l, "alice", LIMIT_MESSAGES, 3, T0, NULL),
			 LIMIT_USER_KINDS);
}

static void
test_tables_stay_bounded(void **state)
{
	struct ratelimit *l;
	struct ratelimit_key k[200];
	uint64_t retry;
	char err[128];
	uint8_t a[16];
	int full = 0;

	(void)state;
	cfg.ip_max_entries = 64; /* four shards of 16 */
	l = ratelimit_new(&cfg, err, sizeof(err));
	assert_non_null(l);
	/* A flood of distinct networks, each coming and going. */
	for (unsigned i = 0; i < 5000; i++) {
		addr4(a, i >> 8, i & 0xff);
		assert_true(ratelimit_ip_key(l, a, &k[0]));
		if (ratelimit_ip_connect(l, &k[0], T0, &retry) == RATELIMIT_OK)
			ratelimit_ip_disconnect(l, &k[0]);
	}
	assert_true(ratelimit_ip_entries(l) <= 64);
	assert_true(ratelimit_stats(l)->evictions > 0);
	/* Open sessions pin their entries: a full table refuses. */
	for (unsigned i = 0; i < 200; i++) {
		addr4(a, 100 + (i >> 8), i & 0xff);
		ratelimit_ip_key(l, a, &k[i]);
		if (ratelimit_ip_connect(l, &k[i], T0 + 100000, &retry) ==
		    RATELIMIT_FULL)
			full++;
		else
			assert_true(ratelimit_ip_entries(l) <= 64);
	}
	assert_true(full > 0);
	ratelimit_free(l);
	reset_config();
}

static void
test_policy_lookup(void **state)
{
	struct config_class classes[1] = {{.name = (char *)"bulk"}};
	struct config_user_class uc[1] = {
		{.login = (char *)"news", .cls = &classes[0]}};

	(void)state;
	classes[0].lim.messages.count = 5000;
	cfg.classes = classes;
	cfg.nclasses = 1;
	cfg.user_classes = uc;
	cfg.nuser_classes = 1;
	assert_ptr_equal(ratelimit_policy(&cfg, "news", NULL), &classes[0].lim);
	assert_ptr_equal(ratelimit_policy(&cfg, "alice", "bulk"),
			 &classes[0].lim);
	assert_ptr_equal(ratelimit_policy(&cfg, "alice", NULL),
			 &cfg.user_limits);
	assert_ptr_equal(ratelimit_policy(&cfg, "alice", "nope"),
			 &cfg.user_limits);
	reset_config();
}

/* The status page's scan: only users with a bucket in use, a shard at a
 * time, bounded by the buffer; their availability as peek says it. */
static void
test_user_scan(void **state)
{
	struct ratelimit *l = *state;
	struct ratelimit_user_seen seen[64];
	uint64_t avail[LIMIT_USER_KINDS], peek[LIMIT_USER_KINDS];
	struct ratelimit_key k;
	unsigned shard = 0, calls = 0;
	size_t total = 0;
	bool truncated = false, found = false;

	assert_int_equal(take(l, "alice", LIMIT_MESSAGES, 2, T0, NULL),
			 LIMIT_USER_KINDS);
	assert_int_equal(take(l, "bob", LIMIT_RECIPIENTS, 4, T0, NULL),
			 LIMIT_USER_KINDS);
	/* A login failure alone is no bucket in use. */
	ratelimit_user_key(l, "carol", &k);
	ratelimit_login_failed(l, &k, T0);
	ratelimit_user_key(l, "alice", &k);
	do {
		size_t n = ratelimit_user_scan(l, &shard, T0 + 100, seen, 64,
					       &truncated);

		for (size_t i = 0; i < n; i++) {
			if (memcmp(seen[i].key, k.b, sizeof(k.b)) != 0)
				continue;
			found = true;
			ratelimit_user_avail(&seen[i], &cfg.user_limits,
					     T0 + 100, avail);
		}
		total += n;
		calls++;
	} while (shard != 0 && calls < 1000);
	assert_int_equal(shard, 0);
	assert_int_equal(total, 2);
	assert_false(truncated);
	assert_true(found);
	assert_true(
		ratelimit_user_peek(l, &k, &cfg.user_limits, T0 + 100, peek));
	assert_memory_equal(avail, peek, sizeof(avail));
	assert_int_equal(avail[LIMIT_MESSAGES], 1);
	/* Full again later: no longer seen. */
	shard = 0;
	total = 0;
	calls = 0;
	do {
		total += ratelimit_user_scan(l, &shard, T0 + 60000, seen, 64,
					     &truncated);
	} while (shard != 0 && ++calls < 1000);
	assert_int_equal(total, 0);
	/* A buffer too small says so. */
	assert_int_equal(take(l, "alice", LIMIT_MESSAGES, 1, T0 + 60000, NULL),
			 LIMIT_USER_KINDS);
	shard = 0;
	total = 0;
	calls = 0;
	do {
		total += ratelimit_user_scan(l, &shard, T0 + 60000, seen, 0,
					     &truncated);
	} while (shard != 0 && ++calls < 1000);
	assert_int_equal(total, 0);
	assert_true(truncated);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_burst_then_rate, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_give_back, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_user_scan, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bytes_and_never, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_all_or_nothing_and_quota,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_exact_across_threads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_login_delay_grows, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ip_concurrency_and_rate,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_ip_unban, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_reset, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ip_ban_and_allow, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_peek_and_reconfigure,
						setup, teardown),
		cmocka_unit_test(test_tables_stay_bounded),
		cmocka_unit_test(test_policy_lookup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
