/*
 * test_auth_cache.c - the cache of verified logins: hits, misses that do
 * not poison, expiry (absolute, from the clock the caller passes), the
 * entry bound and eviction order, the disabled cache, the stored-hash
 * fingerprint, and concurrent use from 8 threads (run under TSan too).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/auth_cache.h"

#define HOUR_MS (3600u * 1000u)
#define HASH_A	"$y$j9T$saltA$hashA"
#define HASH_B	"$y$j9T$saltB$hashB"

static struct auth_cache *
new_cache(uint64_t ttl_ms, size_t size)
{
	char err[256] = "";
	struct auth_cache *c = auth_cache_new(ttl_ms, size, err, sizeof(err));

	if (c == NULL)
		fail_msg("auth_cache_new: %s", err);
	return c;
}

static void
user_name(char *buf, size_t len, unsigned i)
{
	snprintf(buf, len, "user%u@example.test", i);
}

static void
user_pass(char *buf, size_t len, unsigned i)
{
	snprintf(buf, len, "pass-%u-secret", i);
}

static void
test_hit_after_store(void **state)
{
	struct auth_cache *c = new_cache(HOUR_MS, 100);

	(void)state;
	assert_int_equal(auth_cache_capacity(c), 100);
	assert_false(auth_cache_check(c, "demo", "pw", HASH_A, 1000));
	assert_int_equal(auth_cache_count(c), 0);
	auth_cache_store(c, "demo", "pw", HASH_A, 1000);
	assert_int_equal(auth_cache_count(c), 1);
	assert_true(auth_cache_check(c, "demo", "pw", HASH_A, 1000));
	assert_true(auth_cache_check(c, "demo", "pw", HASH_A, 2000));
	/* Storing again refreshes the user's own entry, no second one. */
	auth_cache_store(c, "demo", "pw", HASH_A, 3000);
	assert_int_equal(auth_cache_count(c), 1);
	/* Another user is not affected. */
	assert_false(auth_cache_check(c, "alice", "pw", HASH_A, 3000));
	auth_cache_free(c);
}

static void
test_wrong_password_misses(void **state)
{
	struct auth_cache *c = new_cache(HOUR_MS, 100);

	(void)state;
	auth_cache_store(c, "demo", "right", HASH_A, 0);
	assert_false(auth_cache_check(c, "demo", "wrong", HASH_A, 1));
	assert_false(auth_cache_check(c, "demo", "", HASH_A, 2));
	assert_false(auth_cache_check(c, "demo", "right ", HASH_A, 3));
	assert_false(auth_cache_check(c, "demo", "righ", HASH_A, 4));
	/* Not poisoned: the entry is still there and the right one hits. */
	assert_int_equal(auth_cache_count(c), 1);
	assert_true(auth_cache_check(c, "demo", "right", HASH_A, 5));
	/* Case matters in user names as in passwd_db. */
	assert_false(auth_cache_check(c, "Demo", "right", HASH_A, 6));
	auth_cache_free(c);
}

/* The user/password split is part of what is hashed: "ab"+"c" must not
 * match "a"+"bc", and an entry never vouches for another user. */
static void
test_user_bound(void **state)
{
	struct auth_cache *c = new_cache(HOUR_MS, 100);

	(void)state;
	auth_cache_store(c, "ab", "c", NULL, 0);
	assert_false(auth_cache_check(c, "a", "bc", NULL, 1));
	assert_false(auth_cache_check(c, "abc", "", NULL, 1));
	assert_true(auth_cache_check(c, "ab", "c", NULL, 1));
	/* The same password for two users: two entries. */
	auth_cache_store(c, "a", "c", NULL, 0);
	assert_int_equal(auth_cache_count(c), 2);
	auth_cache_free(c);
}

static void
test_expiry(void **state)
{
	struct auth_cache *c = new_cache(50, 100);

	(void)state;
	auth_cache_store(c, "demo", "pw", HASH_A, 1000);
	assert_true(auth_cache_check(c, "demo", "pw", HASH_A, 1000));
	assert_true(auth_cache_check(c, "demo", "pw", HASH_A, 1049));
	assert_false(auth_cache_check(c, "demo", "pw", HASH_A, 1050));
	/* The stale entry was dropped, and stays a miss. */
	assert_int_equal(auth_cache_count(c), 0);
	assert_false(auth_cache_check(c, "demo", "pw", HASH_A, 1000));
	/* A fresh full check stores it again. */
	auth_cache_store(c, "demo", "pw", HASH_A, 2000);
	assert_true(auth_cache_check(c, "demo", "pw", HASH_A, 2010));
	auth_cache_free(c);
}

/* Hits do not extend an entry: a password is re-checked against the file
 * at least every ttl, however often the user logs in. */
static void
test_expiry_is_absolute(void **state)
{
	struct auth_cache *c = new_cache(100, 10);

	(void)state;
	auth_cache_store(c, "demo", "pw", NULL, 0);
	for (uint64_t t = 0; t < 100; t += 10)
		assert_true(auth_cache_check(c, "demo", "pw", NULL, t));
	assert_false(auth_cache_check(c, "demo", "pw", NULL, 100));
	auth_cache_free(c);
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The same with the real clock: 20 ms ttl, 60 ms sleep. */
static void
test_expiry_real_clock(void **state)
{
	struct timespec nap = {.tv_sec = 0, .tv_nsec = 60 * 1000 * 1000};
	struct auth_cache *c = new_cache(20, 10);

	(void)state;
	auth_cache_store(c, "demo", "pw", NULL, mono_ms());
	while (nanosleep(&nap, &nap) != 0)
		;
	assert_false(auth_cache_check(c, "demo", "pw", NULL, mono_ms()));
	auth_cache_free(c);
}

/* Insert size*3 users: never more than size entries; the newest always
 * hits; the table ends (nearly) full. */
static void
test_eviction_bound(void **state)
{
	static const size_t sizes[] = {1, 2, 13, 16, 17, 100, 1000};

	(void)state;
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t size = sizes[k], n;
		struct auth_cache *c = new_cache(HOUR_MS, size);

		assert_int_equal(auth_cache_capacity(c), size);
		for (unsigned i = 0; i < size * 3; i++) {
			char u[64], p[64];

			user_name(u, sizeof(u), i);
			user_pass(p, sizeof(p), i);
			auth_cache_store(c, u, p, NULL, i);
			assert_true(auth_cache_check(c, u, p, NULL, i));
			assert_true(auth_cache_count(c) <= size);
		}
		n = auth_cache_count(c);
		assert_true(n <= size);
		assert_true(n * 10 >= size * 9);
		auth_cache_free(c);
	}
}

/* In a full bucket the oldest entry goes; expired entries are reused
 * first.  16 entries are exactly one bucket. */
static void
test_eviction_order(void **state)
{
	struct auth_cache *c = new_cache(1000, 16);
	char u[64], p[64];

	(void)state;
	for (unsigned i = 0; i < 16; i++) {
		user_name(u, sizeof(u), i);
		user_pass(p, sizeof(p), i);
		auth_cache_store(c, u, p, NULL, i);
	}
	assert_int_equal(auth_cache_count(c), 16);
	user_name(u, sizeof(u), 16);
	user_pass(p, sizeof(p), 16);
	auth_cache_store(c, u, p, NULL, 16);
	assert_int_equal(auth_cache_count(c), 16);
	for (unsigned i = 0; i <= 16; i++) {
		user_name(u, sizeof(u), i);
		user_pass(p, sizeof(p), i);
		/* user0, stored at 0, was the oldest */
		assert_int_equal(auth_cache_check(c, u, p, NULL, 17), i != 0);
	}

	/* At 1020 users 1..16 have expired: 16 new users take their slots,
	 * every one stays. */
	for (unsigned i = 100; i < 116; i++) {
		user_name(u, sizeof(u), i);
		user_pass(p, sizeof(p), i);
		auth_cache_store(c, u, p, NULL, 1020);
	}
	for (unsigned i = 100; i < 116; i++) {
		user_name(u, sizeof(u), i);
		user_pass(p, sizeof(p), i);
		assert_true(auth_cache_check(c, u, p, NULL, 1021));
	}
	assert_int_equal(auth_cache_count(c), 16);
	auth_cache_free(c);
}

static void
test_disabled(void **state)
{
	struct auth_cache *off[2];

	(void)state;
	off[0] = new_cache(0, 10000);	/* auth.cache_ttl: 0s */
	off[1] = new_cache(HOUR_MS, 0); /* no room */
	for (size_t k = 0; k < 2; k++) {
		struct auth_cache *c = off[k];

		assert_int_equal(auth_cache_capacity(c), 0);
		auth_cache_store(c, "demo", "pw", HASH_A, 0);
		assert_false(auth_cache_check(c, "demo", "pw", HASH_A, 0));
		assert_int_equal(auth_cache_count(c), 0);
		auth_cache_free(c);
	}
	/* No cache at all behaves the same. */
	auth_cache_store(NULL, "demo", "pw", HASH_A, 0);
	assert_false(auth_cache_check(NULL, "demo", "pw", HASH_A, 0));
	assert_int_equal(auth_cache_count(NULL), 0);
	assert_int_equal(auth_cache_capacity(NULL), 0);
	auth_cache_free(NULL);
}

/* A changed stored hash voids the entry for good, even when the old hash
 * comes back. */
static void
test_stored_hash_change(void **state)
{
	struct auth_cache *c = new_cache(HOUR_MS, 100);

	(void)state;
	auth_cache_store(c, "demo", "pw", HASH_A, 0);
	assert_true(auth_cache_check(c, "demo", "pw", HASH_A, 1));
	assert_false(auth_cache_check(c, "demo", "pw", HASH_B, 2));
	assert_int_equal(auth_cache_count(c), 0);
	assert_false(auth_cache_check(c, "demo", "pw", HASH_A, 3));
	/* NULL (hash unknown) is the same as "", and not any real hash. */
	auth_cache_store(c, "demo", "pw", NULL, 4);
	assert_true(auth_cache_check(c, "demo", "pw", "", 5));
	assert_false(auth_cache_check(c, "demo", "pw", HASH_A, 6));
	auth_cache_free(c);
}

/* Long names and passwords, bytes above 0x7f. */
static void
test_long_fields(void **state)
{
	struct auth_cache *c = new_cache(HOUR_MS, 100);
	char u[256], p[256], q[256];

	(void)state;
	memset(u, 'u', sizeof(u) - 1);
	u[sizeof(u) - 1] = '\0';
	memset(p, '\xe9', sizeof(p) - 1);
	p[sizeof(p) - 1] = '\0';
	memcpy(q, p, sizeof(q));
	q[254] = 'x';
	auth_cache_store(c, u, p, HASH_A, 0);
	assert_true(auth_cache_check(c, u, p, HASH_A, 1));
	assert_false(auth_cache_check(c, u, q, HASH_A, 1));
	auth_cache_free(c);
}

/* ---- 8 threads on one small cache ---- */

#define NTHREADS 8
#define NUSERS	 200
#define NITER	 4000
#define CSIZE	 64

struct shared {
	struct auth_cache *c;
	atomic_uint wrong_hits;
	atomic_uint hits;
	atomic_uint over_bound;
};

struct hammer_arg {
	struct shared *sh;
	unsigned id;
};

/* Wrong then right password for users that all threads share; the cache
 * is a third of the users, so entries are evicted under contention. */
static void *
hammer(void *arg)
{
	struct hammer_arg *a = arg;
	struct shared *sh = a->sh;

	for (unsigned i = 0; i < NITER; i++) {
		unsigned k = (i * 7 + a->id * 31) % NUSERS;
		char u[64], p[64], w[64];
		uint64_t now = i / 8;

		user_name(u, sizeof(u), k);
		user_pass(p, sizeof(p), k);
		user_pass(w, sizeof(w), k + 1);
		if (auth_cache_check(sh->c, u, w, NULL, now))
			atomic_fetch_add(&sh->wrong_hits, 1);
		if (auth_cache_check(sh->c, u, p, NULL, now))
			atomic_fetch_add(&sh->hits, 1);
		else
			auth_cache_store(sh->c, u, p, NULL, now);
		if (a->id == 0 && i % 256 == 0 &&
		    auth_cache_count(sh->c) > CSIZE)
			atomic_fetch_add(&sh->over_bound, 1);
	}
	return NULL;
}

static void
test_concurrent(void **state)
{
	static struct shared sh;
	struct hammer_arg args[NTHREADS];
	pthread_t t[NTHREADS];

	(void)state;
	sh.c = new_cache(HOUR_MS, CSIZE);
	atomic_init(&sh.wrong_hits, 0);
	atomic_init(&sh.hits, 0);
	atomic_init(&sh.over_bound, 0);
	for (unsigned i = 0; i < NTHREADS; i++) {
		args[i] = (struct hammer_arg){.sh = &sh, .id = i};
		assert_int_equal(pthread_create(&t[i], NULL, hammer, &args[i]),
				 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&sh.wrong_hits), 0);
	assert_int_equal(atomic_load(&sh.over_bound), 0);
	assert_true(atomic_load(&sh.hits) > 0);
	assert_true(auth_cache_count(sh.c) <= CSIZE);
	auth_cache_free(sh.c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_after_store),
		cmocka_unit_test(test_wrong_password_misses),
		cmocka_unit_test(test_user_bound),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_expiry_is_absolute),
		cmocka_unit_test(test_expiry_real_clock),
		cmocka_unit_test(test_eviction_bound),
		cmocka_unit_test(test_eviction_order),
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_stored_hash_change),
		cmocka_unit_test(test_long_fields),
		cmocka_unit_test(test_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
