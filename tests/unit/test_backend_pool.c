/*
 * test_pool.c - backend selection and health state (pool.c).
 *
 * The pool is built on a struct config made here (no file): weights,
 * max_conns, balance policy and the health settings are set per test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "io/backend_pool.h"

#define NSERVERS 4

static struct config cfg;
static struct config_backend servers[NSERVERS];

/* n servers 127.0.0.1:2500+i with the given weights. */
static void
make_config(size_t n, const unsigned *weights, enum balance_policy balance)
{
	memset(&cfg, 0, sizeof(cfg));
	memset(servers, 0, sizeof(servers));
	for (size_t i = 0; i < n; i++) {
		snprintf(servers[i].addr.text, sizeof(servers[i].addr.text),
			 "127.0.0.1:%zu", 2500 + i);
		servers[i].weight = weights ? weights[i] : 1;
	}
	cfg.backends = servers;
	cfg.nbackends = n;
	cfg.balance = balance;
	cfg.backend_down_time_ms = 30000;
	cfg.health_interval_ms = 0;
	cfg.health_rise = 2;
	cfg.health_fall = 3;
}

static struct backend_pool *
make_pool(struct backend_pool_cursor *c)
{
	struct backend_pool *p = backend_pool_new(&cfg);

	assert_non_null(p);
	assert_int_equal(backend_pool_cursor_init(c, p), 0);
	return p;
}

static void
done(struct backend_pool *p, struct backend_pool_cursor *c)
{
	backend_pool_cursor_free(c);
	backend_pool_free(p);
}

/* Weighted round robin: exact shares, and smooth (no long runs). */
static void
test_round_robin_weights(void **state)
{
	static const unsigned w[] = {5, 1, 1};
	struct backend_pool_cursor c;
	struct backend_pool *p;
	unsigned count[3] = {0}, run = 0, longest = 0;
	size_t last = BACKEND_POOL_NONE;

	(void)state;
	make_config(3, w, BALANCE_ROUND_ROBIN);
	p = make_pool(&c);
	for (int i = 0; i < 70; i++) {
		size_t k = backend_pool_pick(p, &c, "u", 0, 0);
		assert_true(k < 3);
		count[k]++;
		run = k == last ? run + 1 : 1;
		longest = run > longest ? run : longest;
		last = k;
	}
	assert_int_equal(count[0], 50);
	assert_int_equal(count[1], 10);
	assert_int_equal(count[2], 10);
	/* nginx's cycle a a b a c a a: at most 4 in a row across cycles
	 * (a plain weighted rotation sends 5) */
	assert_true(longest <= 4);
	done(p, &c);
}

/* Tried servers and down servers are skipped; none left: BACKEND_POOL_NONE. */
static void
test_skip_tried_and_down(void **state)
{
	struct backend_pool_cursor c;
	struct backend_pool *p;

	(void)state;
	make_config(3, NULL, BALANCE_ROUND_ROBIN);
	p = make_pool(&c);
	for (int i = 0; i < 10; i++) {
		size_t k = backend_pool_pick(p, &c, "u", 1u << 0 | 1u << 2, 0);
		assert_int_equal(k, 1);
	}
	assert_int_equal(backend_pool_pick(p, &c, "u", 7, 0),
			 BACKEND_POOL_NONE);

	/* fall = 3 failures take server 1 down, and only the third says so */
	assert_int_equal(backend_pool_failed(p, 1, 100), BACKEND_POOL_SAME);
	assert_int_equal(backend_pool_failed(p, 1, 100), BACKEND_POOL_SAME);
	assert_int_equal(backend_pool_failed(p, 1, 100),
			 BACKEND_POOL_WENT_DOWN);
	assert_false(backend_pool_is_up(p, 1));
	assert_int_equal(backend_pool_failed(p, 1, 100), BACKEND_POOL_SAME);
	for (int i = 0; i < 10; i++)
		assert_int_not_equal(backend_pool_pick(p, &c, "u", 0, 200), 1);
	assert_int_equal(backend_pool_pick(p, &c, "u", 1u << 0 | 1u << 2, 200),
			 BACKEND_POOL_NONE);
	assert_int_equal(backend_pool_changes(p, 1), 1);
	done(p, &c);
}

/* A success between failures resets the count. */
static void
test_fall_needs_consecutive(void **state)
{
	struct backend_pool_cursor c;
	struct backend_pool *p;

	(void)state;
	make_config(2, NULL, BALANCE_ROUND_ROBIN);
	p = make_pool(&c);
	backend_pool_failed(p, 0, 0);
	backend_pool_failed(p, 0, 0);
	assert_int_equal(backend_pool_succeeded(p, 0, 0), BACKEND_POOL_SAME);
	backend_pool_failed(p, 0, 0);
	backend_pool_failed(p, 0, 0);
	assert_true(backend_pool_is_up(p, 0));
	assert_int_equal(backend_pool_failed(p, 0, 0), BACKEND_POOL_WENT_DOWN);
	done(p, &c);
}

/* No active checks: retried after down_time; a good session brings it
 * back, a failed retry waits another down_time. */
static void
test_passive_retry(void **state)
{
	struct backend_pool_cursor c;
	struct backend_pool *p;

	(void)state;
	make_config(2, NULL, BALANCE_ROUND_ROBIN);
	cfg.health_fall = 1;
	p = make_pool(&c);
	assert_int_equal(backend_pool_failed(p, 0, 1000),
			 BACKEND_POOL_WENT_DOWN);
	assert_int_equal(backend_pool_pick(p, &c, "u", 2, 1000 + 29999),
			 BACKEND_POOL_NONE);
	assert_int_equal(backend_pool_pick(p, &c, "u", 2, 1000 + 30000), 0);
	assert_int_equal(backend_pool_failed(p, 0, 31000), BACKEND_POOL_SAME);
	assert_int_equal(backend_pool_pick(p, &c, "u", 2, 31000 + 29999),
			 BACKEND_POOL_NONE);
	assert_int_equal(backend_pool_pick(p, &c, "u", 2, 61000), 0);
	assert_int_equal(backend_pool_succeeded(p, 0, 61000),
			 BACKEND_POOL_WENT_UP);
	assert_true(backend_pool_is_up(p, 0));
	done(p, &c);
}

/* Active checks: only rise good checks bring a server back; a failed
 * check in between starts the count again; no passive retry. */
static void
test_active_rise_fall(void **state)
{
	struct backend_pool_cursor c;
	struct backend_pool *p;

	(void)state;
	make_config(2, NULL, BALANCE_ROUND_ROBIN);
	cfg.health_interval_ms = 1000;
	p = make_pool(&c);
	assert_int_equal(backend_pool_checked(p, 0, false, 0),
			 BACKEND_POOL_SAME);
	assert_int_equal(backend_pool_checked(p, 0, false, 0),
			 BACKEND_POOL_SAME);
	assert_int_equal(backend_pool_checked(p, 0, false, 0),
			 BACKEND_POOL_WENT_DOWN);
	/* never retried by sessions, however long it has been */
	assert_int_equal(backend_pool_pick(p, &c, "u", 2, UINT64_C(1) << 40),
			 BACKEND_POOL_NONE);
	assert_int_equal(backend_pool_succeeded(p, 0, 0), BACKEND_POOL_SAME);
	assert_false(backend_pool_is_up(p, 0));
	assert_int_equal(backend_pool_checked(p, 0, true, 0),
			 BACKEND_POOL_SAME);
	assert_int_equal(backend_pool_checked(p, 0, false, 0),
			 BACKEND_POOL_SAME);
	assert_int_equal(backend_pool_checked(p, 0, true, 0),
			 BACKEND_POOL_SAME);
	assert_int_equal(backend_pool_checked(p, 0, true, 0),
			 BACKEND_POOL_WENT_UP);
	assert_true(backend_pool_is_up(p, 0));
	assert_int_equal(backend_pool_changes(p, 0), 2);
	/* once up, fall counts from zero again */
	assert_int_equal(backend_pool_checked(p, 0, false, 0),
			 BACKEND_POOL_SAME);
	assert_true(backend_pool_is_up(p, 0));
	done(p, &c);
}

/* max_conns: a full server is skipped until a connection closes. */
static void
test_max_conns(void **state)
{
	struct backend_pool_cursor c;
	struct backend_pool *p;

	(void)state;
	make_config(2, NULL, BALANCE_ROUND_ROBIN);
	servers[0].max_conns = 2;
	p = make_pool(&c);
	backend_pool_conn_open(p, 0);
	backend_pool_conn_open(p, 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(backend_pool_pick(p, &c, "u", 0, 0), 1);
	assert_int_equal(backend_pool_pick(p, &c, "u", 2, 0),
			 BACKEND_POOL_NONE);
	backend_pool_conn_close(p, 0);
	assert_int_equal(backend_pool_conns(p, 0), 1);
	assert_int_equal(backend_pool_pick(p, &c, "u", 2, 0), 0);
	done(p, &c);
}

/* least-connections: fewest per weight; equal servers take turns. */
static void
test_least_connections(void **state)
{
	static const unsigned w[] = {1, 2, 1};
	struct backend_pool_cursor c;
	struct backend_pool *p;
	unsigned count[3] = {0};

	(void)state;
	make_config(3, w, BALANCE_LEAST_CONN);
	p = make_pool(&c);
	backend_pool_conn_open(p, 0);
	backend_pool_conn_open(p, 1);
	assert_int_equal(backend_pool_pick(p, &c, "u", 0, 0), 2);
	backend_pool_conn_open(p, 2);
	/* 1/1, 1/2, 1/1: server 1 has the fewest per weight */
	assert_int_equal(backend_pool_pick(p, &c, "u", 0, 0), 1);
	/* opening as we pick: shares follow the weights */
	for (int i = 0; i < 40; i++) {
		size_t k = backend_pool_pick(p, &c, "u", 0, 0);
		count[k]++;
		backend_pool_conn_open(p, k);
	}
	assert_int_equal(count[0] + count[1] + count[2], 40);
	assert_true(count[1] >= 19 && count[1] <= 21);
	assert_true(count[0] >= 9 && count[0] <= 11);
	/* ties rotate: with nothing open each server gets a turn */
	make_config(3, NULL, BALANCE_LEAST_CONN);
	done(p, &c);
	p = make_pool(&c);
	memset(count, 0, sizeof(count));
	for (int i = 0; i < 3; i++)
		count[backend_pool_pick(p, &c, "u", 0, 0)]++;
	assert_int_equal(count[0], 1);
	assert_int_equal(count[1], 1);
	assert_int_equal(count[2], 1);
	done(p, &c);
}

/* hash-login: sticky, spread by weight, and a server going down moves
 * only its own users. */
static void
test_hash_login(void **state)
{
	static const unsigned w[] = {1, 1, 2, 1};
	struct backend_pool_cursor c;
	struct backend_pool *p;
	size_t before[1000];
	unsigned count[NSERVERS] = {0}, moved = 0;
	char login[32];

	(void)state;
	make_config(NSERVERS, w, BALANCE_HASH_LOGIN);
	cfg.health_fall = 1;
	p = make_pool(&c);
	for (int i = 0; i < 1000; i++) {
		snprintf(login, sizeof(login), "user%d@example.test", i);
		before[i] = backend_pool_pick(p, &c, login, 0, 0);
		assert_int_equal(backend_pool_pick(p, &c, login, 0, 0),
				 before[i]);
		count[before[i]]++;
	}
	/* weight 2 gets about 2/5, the others about 1/5 */
	assert_true(count[2] > 330 && count[2] < 470);
	for (int i = 0; i < NSERVERS; i++)
		if (i != 2)
			assert_true(count[i] > 140 && count[i] < 260);

	assert_int_equal(backend_pool_failed(p, 1, 0), BACKEND_POOL_WENT_DOWN);
	for (int i = 0; i < 1000; i++) {
		size_t now;
		snprintf(login, sizeof(login), "user%d@example.test", i);
		now = backend_pool_pick(p, &c, login, 0, 0);
		assert_int_not_equal(now, 1);
		if (before[i] != 1)
			assert_int_equal(now,
					 before[i]); /* nobody else moves */
		else
			moved++;
	}
	assert_int_equal(moved, count[1]);
	/* failover of one login: the next server in its own order */
	snprintf(login, sizeof(login), "user0@example.test");
	{
		size_t first = backend_pool_pick(p, &c, login, 0, 0);
		size_t second = backend_pool_pick(p, &c, login,
						  UINT64_C(1) << first, 0);
		assert_int_not_equal(second, first);
		assert_int_not_equal(second, 1);
	}
	/* no login yet: falls back to round robin */
	assert_true(backend_pool_pick(p, &c, "", 0, 0) < NSERVERS);
	done(p, &c);
}

/* A reply as smtp_reply_feed() leaves it. */
static void
feed_reply(struct smtp_reply *r, const char *text)
{
	size_t used;

	smtp_reply_init(r);
	assert_int_equal(smtp_reply_feed(r, text, strlen(text), &used),
			 SMTP_REPLY_DONE);
}

static void
test_capabilities(void **state)
{
	struct smtp_reply r;
	struct backend_pool_cursor c;
	struct backend_pool *p;
	unsigned ext;
	uint64_t size;

	(void)state;
	feed_reply(&r, "250-mx.test\r\n250-SIZE 10240000\r\n250-DSN\r\n"
		       "250-SMTPUTF8\r\n250 8BITMIME\r\n");
	ext = backend_pool_ehlo_caps(&r, &size);
	assert_int_equal(ext, BACKEND_POOL_EXT_DSN | BACKEND_POOL_EXT_SMTPUTF8 |
				      BACKEND_POOL_EXT_8BITMIME);
	assert_int_equal(size, 10240000);
	feed_reply(&r, "250-mx.test\r\n250-SIZE\r\n250 CHUNKING\r\n");
	assert_int_equal(backend_pool_ehlo_caps(&r, &size),
			 BACKEND_POOL_EXT_CHUNKING);
	assert_int_equal(size, 0);
	feed_reply(&r, "250-mx.test\r\n250 SIZE 12x\r\n");
	backend_pool_ehlo_caps(&r, &size);
	assert_int_equal(size, 0);

	make_config(3, NULL, BALANCE_ROUND_ROBIN);
	cfg.health_fall = 1;
	p = make_pool(&c);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(ext, 0); /* nothing seen yet */
	assert_int_equal(size, 0);
	backend_pool_learn(
		p, 0, BACKEND_POOL_EXT_DSN | BACKEND_POOL_EXT_8BITMIME, 20000);
	backend_pool_learn(p, 1, BACKEND_POOL_EXT_DSN, 0);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(ext, BACKEND_POOL_EXT_DSN);
	assert_int_equal(size, 20000);
	backend_pool_learn(p, 2, BACKEND_POOL_EXT_DSN, 5000);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(size, 5000);
	/* a down server does not count */
	backend_pool_failed(p, 2, 0);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(size, 20000);
	done(p, &c);
}

/* An operator-disabled server is never picked, under every policy, and
 * its capabilities do not count; enabled again, it is back. */
/* XCLIENT before EHLO: only once a server's list was learned, and never
 * again after it refused it there (a reload keeps both). */
static void
test_xclient_early(void **state)
{
	struct backend_pool_cursor c, c2;
	struct backend_pool *p, *p2;

	(void)state;
	make_config(2, NULL, BALANCE_ROUND_ROBIN);
	p = make_pool(&c);
	assert_int_equal(backend_pool_xclient_early(p, 0), 0);
	backend_pool_learn_xclient(p, 0, 0x0fu);
	assert_int_equal(backend_pool_xclient_early(p, 0), 0x0fu);
	backend_pool_learn_xclient(p, 1, 0); /* not offered */
	assert_int_equal(backend_pool_xclient_early(p, 1), 0);
	assert_true(backend_pool_refuse_early(p, 0));
	assert_false(backend_pool_refuse_early(p, 0));
	assert_int_equal(backend_pool_xclient_early(p, 0), 0);
	backend_pool_learn_xclient(p, 0, 0x0fu); /* the refusal sticks */
	assert_int_equal(backend_pool_xclient_early(p, 0), 0);
	backend_pool_learn_xclient(p, 1, 0xc0u);
	p2 = make_pool(&c2);
	backend_pool_inherit(p2, p);
	assert_int_equal(backend_pool_xclient_early(p2, 0), 0);
	assert_int_equal(backend_pool_xclient_early(p2, 1), 0xc0u);
	backend_pool_cursor_free(&c2);
	backend_pool_free(p2);
	backend_pool_cursor_free(&c);
	backend_pool_free(p);
}

static void
test_disabled(void **state)
{
	static const enum balance_policy policies[] = {
		BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN, BALANCE_HASH_LOGIN};
	atomic_bool off[NSERVERS];
	struct backend_pool_cursor c;
	struct backend_pool *p;
	unsigned ext;
	uint64_t size;

	(void)state;
	for (size_t k = 0; k < sizeof(policies) / sizeof(*policies); k++) {
		make_config(3, NULL, policies[k]);
		p = make_pool(&c);
		for (size_t i = 0; i < 3; i++) {
			atomic_init(&off[i], false);
			backend_pool_bind(p, i, (unsigned)(7 + i), &off[i]);
		}
		assert_int_equal(backend_pool_slot(p, 2), 9);
		atomic_store(&off[1], true);
		assert_false(backend_pool_is_enabled(p, 1));
		assert_true(backend_pool_is_enabled(p, 0));
		for (int n = 0; n < 30; n++) {
			char login[16];

			snprintf(login, sizeof(login), "user%d", n);
			assert_int_not_equal(
				backend_pool_pick(p, &c, login, 0, 0), 1);
		}
		atomic_store(&off[0], true);
		atomic_store(&off[2], true);
		assert_int_equal(backend_pool_pick(p, &c, "u", 0, 0),
				 BACKEND_POOL_NONE);
		atomic_store(&off[1], false);
		assert_int_equal(backend_pool_pick(p, &c, "u", 0, 0), 1);
		/* health is not touched by it */
		assert_true(backend_pool_is_up(p, 0));
		done(p, &c);
	}

	make_config(2, NULL, BALANCE_ROUND_ROBIN);
	p = make_pool(&c);
	atomic_init(&off[0], false);
	backend_pool_bind(p, 0, 0, &off[0]);
	backend_pool_learn(p, 0, BACKEND_POOL_EXT_DSN, 1000);
	backend_pool_learn(p, 1, BACKEND_POOL_EXT_DSN, 2000);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(size, 1000);
	atomic_store(&off[0], true);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(size, 2000);
	/* unbound: never disabled */
	assert_true(backend_pool_is_enabled(p, 1));
	done(p, &c);
}

/* CHUNKING only when every up server was seen offering it: a BDAT that
 * reaches one without it can only be refused. */
static void
test_offer_chunking_needs_every_server(void **state)
{
	struct backend_pool_cursor c;
	struct backend_pool *p;
	unsigned ext;
	uint64_t size;

	(void)state;
	make_config(2, NULL, BALANCE_ROUND_ROBIN);
	cfg.health_fall = 1;
	p = make_pool(&c);
	backend_pool_learn(p, 0,
			   BACKEND_POOL_EXT_CHUNKING | BACKEND_POOL_EXT_DSN, 0);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(ext, BACKEND_POOL_EXT_DSN); /* server 1 not seen yet */
	backend_pool_learn(p, 1,
			   BACKEND_POOL_EXT_CHUNKING | BACKEND_POOL_EXT_DSN, 0);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(ext, BACKEND_POOL_EXT_CHUNKING | BACKEND_POOL_EXT_DSN);
	backend_pool_learn(p, 1, BACKEND_POOL_EXT_DSN, 0);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(ext, BACKEND_POOL_EXT_DSN);
	/* a down server without it does not count */
	backend_pool_failed(p, 1, 0);
	backend_pool_offer(p, &ext, &size);
	assert_int_equal(ext, BACKEND_POOL_EXT_CHUNKING | BACKEND_POOL_EXT_DSN);
	done(p, &c);
}

static void
test_hash_score_range(void **state)
{
	(void)state;
	for (uint64_t h = 0; h < 1000; h++) {
		double s = backend_pool_hash_score(
			"x", h * 0x9e3779b97f4a7c15ULL, 1);
		assert_true(s > 0);
		assert_true(backend_pool_hash_score("x",
						    h * 0x9e3779b97f4a7c15ULL,
						    2) == 2 * s);
	}
}

/* The last change and why: what the reason text says, kept across a
 * reload's new pool. */
static void
test_last_change(void **state)
{
	struct backend_pool_cursor c;
	struct backend_pool *p, *q;
	uint64_t at = 1;
	bool check = true;

	(void)state;
	assert_int_equal(
		backend_pool_why_of(false, "connect: Connection refused"),
		BACKEND_WHY_REFUSED);
	assert_int_equal(backend_pool_why_of(false, "timeout"),
			 BACKEND_WHY_TIMEOUT);
	assert_int_equal(
		backend_pool_why_of(false, "connect: Connection timed out"),
		BACKEND_WHY_TIMEOUT);
	assert_int_equal(backend_pool_why_of(false, "greeting: 554 go away"),
			 BACKEND_WHY_GREETING);
	assert_int_equal(
		backend_pool_why_of(false, "ehlo: XCLIENT not offered"),
		BACKEND_WHY_FAILED);
	assert_int_equal(backend_pool_why_of(true, "handshake completed"),
			 BACKEND_WHY_RECOVERED);
	assert_string_equal(backend_pool_why_name(BACKEND_WHY_GREETING),
			    "bad greeting");
	assert_string_equal(backend_pool_why_name(BACKEND_WHY_COUNT), "none");

	make_config(2, NULL, BALANCE_ROUND_ROBIN);
	p = make_pool(&c);
	assert_int_equal(backend_pool_last_change(p, 1, &at, &check),
			 BACKEND_WHY_NONE);
	assert_true(at == 0 && !check);
	backend_pool_note(p, 1, BACKEND_WHY_TIMEOUT, true, 5000);
	assert_int_equal(backend_pool_last_change(p, 1, &at, &check),
			 BACKEND_WHY_TIMEOUT);
	assert_true(at == 5000 && check);
	backend_pool_note(p, 1, BACKEND_WHY_RECOVERED, false, 6000);
	assert_int_equal(backend_pool_last_change(p, 1, &at, &check),
			 BACKEND_WHY_RECOVERED);
	assert_true(at == 6000 && !check);
	q = backend_pool_new(&cfg);
	assert_non_null(q);
	backend_pool_inherit(q, p);
	assert_int_equal(backend_pool_last_change(q, 1, &at, &check),
			 BACKEND_WHY_RECOVERED);
	assert_true(at == 6000);
	assert_int_equal(backend_pool_last_change(q, 0, &at, &check),
			 BACKEND_WHY_NONE);
	backend_pool_free(q);
	backend_pool_cursor_free(&c);
	backend_pool_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_robin_weights),
		cmocka_unit_test(test_skip_tried_and_down),
		cmocka_unit_test(test_fall_needs_consecutive),
		cmocka_unit_test(test_passive_retry),
		cmocka_unit_test(test_active_rise_fall),
		cmocka_unit_test(test_max_conns),
		cmocka_unit_test(test_least_connections),
		cmocka_unit_test(test_hash_login),
		cmocka_unit_test(test_capabilities),
		cmocka_unit_test(test_xclient_early),
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_offer_chunking_needs_every_server),
		cmocka_unit_test(test_hash_score_range),
		cmocka_unit_test(test_last_change),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
