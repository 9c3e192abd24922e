/*
 * test_auth_pool.c - the password-checking thread pool: results, password
 * clearing, done() on a named pool thread with signals blocked, FIFO
 * order, draining on stop, and answers from the login cache.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth_pool.h"
#include "auth/passwd_db.h"

#define NUSERS	 6
#define NREQ	 50
#define WAIT_SEC 30
#define HOUR_MS	 (3600u * 1000u)
#define CACHE_N	 10000

static char tmpdir[] = "/tmp/msa-auth-pool-XXXXXX";
static char passwd_path[512];
static struct passwd_db *db;
static pthread_t test_thread;

/* What done() saw, per request (index = cookie). */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned ndone;
	unsigned order[NREQ]; /* cookies in done() order */
	int calls[NREQ];
	int ok[NREQ];
	int cached[NREQ];
	int cleared[NREQ];
	int on_pool_thread[NREQ];
	int named[NREQ];
	int signals_blocked[NREQ];
} seen = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
};

static void
user_name(char *buf, size_t len, unsigned i)
{
	snprintf(buf, len, "user%u", i);
}

static void
user_pass(char *buf, size_t len, unsigned i)
{
	snprintf(buf, len, "pass-%u-secret", i);
}

static int
group_setup(void **state)
{
	static const char *schemes[] = {"yescrypt", "bcrypt", "sha512-crypt"};
	char err[256] = "";
	FILE *f;
	int fd;

	(void)state;
	test_thread = pthread_self();
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(passwd_path, sizeof(passwd_path), "%s/passwd", tmpdir);
	fd = open(passwd_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	f = fdopen(fd, "w");
	if (f == NULL)
		return -1;
	for (unsigned i = 0; i < NUSERS; i++) {
		char u[32], p[32];
		char *h;

		user_name(u, sizeof(u), i);
		user_pass(p, sizeof(p), i);
		/* bcrypt at cost 5, not its default 12: these test the
		 * pool, not the cost. */
		h = passwd_hash_cost(p, schemes[i % 3], i % 3 == 1 ? 5 : 0, err,
				     sizeof(err));
		if (h == NULL) {
			fprintf(stderr, "passwd_hash: %s\n", err);
			fclose(f);
			return -1;
		}
		fprintf(f, "%s:%s\n", u, h);
		free(h);
	}
	if (fclose(f) != 0)
		return -1;
	db = passwd_db_load(passwd_path, err, sizeof(err));
	if (db == NULL) {
		fprintf(stderr, "passwd_db_load: %s\n", err);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	passwd_db_free(db);
	unlink(passwd_path);
	rmdir(tmpdir);
	return 0;
}

static int
reset_seen(void **state)
{
	(void)state;
	pthread_mutex_lock(&seen.mu);
	seen.ndone = 0;
	memset(seen.order, 0, sizeof(seen.order));
	memset(seen.calls, 0, sizeof(seen.calls));
	memset(seen.ok, 0, sizeof(seen.ok));
	memset(seen.cached, 0, sizeof(seen.cached));
	memset(seen.cleared, 0, sizeof(seen.cleared));
	memset(seen.on_pool_thread, 0, sizeof(seen.on_pool_thread));
	memset(seen.named, 0, sizeof(seen.named));
	memset(seen.signals_blocked, 0, sizeof(seen.signals_blocked));
	pthread_mutex_unlock(&seen.mu);
	return 0;
}

static void
record(struct auth_request *req)
{
	static const int sigs[] = {SIGTERM, SIGINT,  SIGHUP,
				   SIGPIPE, SIGUSR1, SIGCHLD};
	unsigned i = (unsigned)req->cookie;
	int cleared = 1, blocked = 1;
	char name[16] = "";
	sigset_t mask;

	for (size_t k = 0; k < sizeof(req->pass); k++)
		if (req->pass[k] != 0)
			cleared = 0;
	pthread_getname_np(pthread_self(), name, sizeof(name));
	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	for (size_t k = 0; k < sizeof(sigs) / sizeof(sigs[0]); k++)
		if (sigismember(&mask, sigs[k]) != 1)
			blocked = 0;

	pthread_mutex_lock(&seen.mu);
	if (i < NREQ) {
		if (seen.ndone < NREQ)
			seen.order[seen.ndone] = i;
		seen.calls[i]++;
		seen.ok[i] = req->ok;
		seen.cached[i] = req->cached;
		seen.cleared[i] = cleared;
		seen.on_pool_thread[i] =
			!pthread_equal(pthread_self(), test_thread);
		seen.named[i] = strcmp(name, "msa-auth") == 0;
		seen.signals_blocked[i] = blocked;
	}
	seen.ndone++;
	pthread_cond_broadcast(&seen.cv);
	pthread_mutex_unlock(&seen.mu);
}

static void
done_record(struct auth_request *req)
{
	record(req);
}

/* done() that also frees the request: the pool must not touch it after. */
static void
done_record_free(struct auth_request *req)
{
	record(req);
	free(req);
}

/* Wait (at most WAIT_SEC) until n requests are done; the count seen. */
static unsigned
wait_done(unsigned n)
{
	struct timespec deadline;
	unsigned got;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += WAIT_SEC;
	pthread_mutex_lock(&seen.mu);
	while (seen.ndone < n) {
		if (pthread_cond_timedwait(&seen.cv, &seen.mu, &deadline) ==
		    ETIMEDOUT)
			break;
	}
	got = seen.ndone;
	pthread_mutex_unlock(&seen.mu);
	return got;
}

/* Request i: right password, wrong password or unknown user, by i % 3.
 * Returns the expected result. */
static int
fill_request(struct auth_request *req, unsigned i, void *owner,
	     void (*done)(struct auth_request *))
{
	unsigned u = i % NUSERS;
	int expect = 0;

	memset(req, 0, sizeof(*req));
	switch (i % 3) {
	case 0:
		user_name(req->user, sizeof(req->user), u);
		user_pass(req->pass, sizeof(req->pass), u);
		expect = 1;
		break;
	case 1:
		user_name(req->user, sizeof(req->user), u);
		user_pass(req->pass, sizeof(req->pass), u + 1);
		break;
	default:
		snprintf(req->user, sizeof(req->user), "nobody%u", i);
		user_pass(req->pass, sizeof(req->pass), u);
		break;
	}
	req->ok = -1;
	req->done = done;
	req->owner = owner;
	req->cookie = i;
	return expect;
}

static void
check_all(const int *expect, unsigned n)
{
	pthread_mutex_lock(&seen.mu);
	assert_int_equal(seen.ndone, n);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(seen.calls[i], 1);
		assert_int_equal(seen.ok[i], expect[i]);
		assert_true(seen.cleared[i]);
		assert_true(seen.on_pool_thread[i]);
		assert_true(seen.named[i]);
		assert_true(seen.signals_blocked[i]);
	}
	pthread_mutex_unlock(&seen.mu);
}

static void
test_many_requests(void **state)
{
	static struct auth_request reqs[NREQ];
	int expect[NREQ];
	char err[256] = "";
	struct auth_pool *pool;

	(void)state;
	pool = auth_pool_start(4, db, HOUR_MS, CACHE_N, SECCOMP_OFF, err,
			       sizeof(err));
	if (pool == NULL)
		fail_msg("auth_pool_start: %s", err);
	for (unsigned i = 0; i < NREQ; i++) {
		expect[i] = fill_request(&reqs[i], i, reqs, done_record);
		auth_pool_submit(pool, &reqs[i]);
	}
	assert_int_equal(wait_done(NREQ), NREQ);
	check_all(expect, NREQ);
	for (unsigned i = 0; i < NREQ; i++) {
		/* The caller's fields are left alone. */
		assert_ptr_equal(reqs[i].owner, reqs);
		assert_int_equal(reqs[i].cookie, i);
		assert_int_equal(reqs[i].ok, expect[i]);
		for (size_t k = 0; k < sizeof(reqs[i].pass); k++)
			assert_int_equal(reqs[i].pass[k], 0);
	}
	auth_pool_stop(pool);
}

/* stop() returns only after every queued request got its done(); with one
 * thread they come in submission order.  done() frees each request. */
static void
test_stop_drains_fifo(void **state)
{
	enum { N = 20 };
	int expect[N];
	char err[256] = "";
	struct auth_pool *pool;

	(void)state;
	pool = auth_pool_start(1, db, HOUR_MS, CACHE_N, SECCOMP_OFF, err,
			       sizeof(err));
	if (pool == NULL)
		fail_msg("auth_pool_start: %s", err);
	for (unsigned i = 0; i < N; i++) {
		struct auth_request *req = malloc(sizeof(*req));

		assert_non_null(req);
		expect[i] = fill_request(req, i, NULL, done_record_free);
		auth_pool_submit(pool, req);
	}
	auth_pool_stop(pool); /* no waiting before: stop must drain */
	check_all(expect, N);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(seen.order[i], i);
}

/* A user field without NUL must not be read past. */
static void
test_unterminated_fields(void **state)
{
	struct auth_request req;
	char err[256] = "";
	struct auth_pool *pool;
	int expect[1] = {0};

	(void)state;
	pool = auth_pool_start(2, db, HOUR_MS, CACHE_N, SECCOMP_OFF, err,
			       sizeof(err));
	if (pool == NULL)
		fail_msg("auth_pool_start: %s", err);
	memset(&req, 0, sizeof(req));
	memset(req.user, 'x', sizeof(req.user));
	memset(req.pass, 'y', sizeof(req.pass));
	req.done = done_record;
	req.cookie = 0;
	auth_pool_submit(pool, &req);
	assert_int_equal(wait_done(1), 1);
	check_all(expect, 1);
	auth_pool_stop(pool);
}

static void
test_start_stop_idle(void **state)
{
	char err[256] = "";
	struct auth_pool *pool;

	(void)state;
	pool = auth_pool_start(8, db, HOUR_MS, CACHE_N, SECCOMP_OFF, err,
			       sizeof(err));
	if (pool == NULL)
		fail_msg("auth_pool_start: %s", err);
	auth_pool_stop(pool);
	auth_pool_stop(NULL);
	assert_int_equal(seen.ndone, 0);
}

static void
test_start_errors(void **state)
{
	char err[256] = "";

	(void)state;
	assert_null(auth_pool_start(0, db, HOUR_MS, CACHE_N, SECCOMP_OFF, err,
				    sizeof(err)));
	assert_true(err[0] != '\0');
	err[0] = '\0';
	assert_null(auth_pool_start(2, NULL, HOUR_MS, CACHE_N, SECCOMP_OFF, err,
				    sizeof(err)));
	assert_true(err[0] != '\0');
}

/* Submit one request and wait for it; its index in seen is cookie. */
static void
login_once(struct auth_pool *pool, unsigned cookie, unsigned u,
	   unsigned pass_of)
{
	struct auth_request req;

	memset(&req, 0, sizeof(req));
	user_name(req.user, sizeof(req.user), u);
	user_pass(req.pass, sizeof(req.pass), pass_of);
	req.ok = -1;
	req.cached = -1;
	req.done = done_record;
	req.cookie = cookie;
	auth_pool_submit(pool, &req);
	assert_int_equal(wait_done(cookie + 1), cookie + 1);
}

/* A repeated good login comes from the cache; a wrong password never
 * does, and does not evict the good one; a failed login is not cached. */
static void
test_cache(void **state)
{
	char err[256] = "";
	struct auth_pool *pool;

	(void)state;
	pool = auth_pool_start(2, db, HOUR_MS, CACHE_N, SECCOMP_OFF, err,
			       sizeof(err));
	if (pool == NULL)
		fail_msg("auth_pool_start: %s", err);
	login_once(pool, 0, 0, 0); /* good: full check */
	login_once(pool, 1, 0, 0); /* good again: cache */
	login_once(pool, 2, 0, 1); /* wrong password */
	login_once(pool, 3, 0, 0); /* good: still cached */
	login_once(pool, 4, 1, 2); /* wrong password, twice */
	login_once(pool, 5, 1, 2);
	login_once(pool, 6, 1, 1); /* good: full check, nothing was cached */
	auth_pool_stop(pool);

	pthread_mutex_lock(&seen.mu);
	assert_int_equal(seen.ok[0], 1);
	assert_int_equal(seen.cached[0], 0);
	assert_int_equal(seen.ok[1], 1);
	assert_int_equal(seen.cached[1], 1);
	assert_int_equal(seen.ok[2], 0);
	assert_int_equal(seen.cached[2], 0);
	assert_int_equal(seen.ok[3], 1);
	assert_int_equal(seen.cached[3], 1);
	for (unsigned i = 4; i <= 5; i++) {
		assert_int_equal(seen.ok[i], 0);
		assert_int_equal(seen.cached[i], 0);
	}
	assert_int_equal(seen.ok[6], 1);
	assert_int_equal(seen.cached[6], 0);
	for (unsigned i = 0; i <= 6; i++)
		assert_true(seen.cleared[i]);
	pthread_mutex_unlock(&seen.mu);
}

/* auth_pool_check_cached(): a hit answers on this thread with the password
 * cleared; a miss, a wrong password or an unknown user says "submit". */
static void
test_check_cached_on_caller_thread(void **state)
{
	char err[256] = "";
	struct auth_pool *pool;
	struct auth_request req;

	(void)state;
	pool = auth_pool_start(2, db, HOUR_MS, CACHE_N, SECCOMP_OFF, err,
			       sizeof(err));
	if (pool == NULL)
		fail_msg("auth_pool_start: %s", err);
	memset(&req, 0, sizeof(req));
	user_name(req.user, sizeof(req.user), 0);
	user_pass(req.pass, sizeof(req.pass), 0);
	assert_false(auth_pool_check_cached(pool, &req)); /* not yet cached */
	assert_int_not_equal(req.pass[0], '\0');	  /* still there */
	login_once(pool, 0, 0, 0);			  /* full check */
	assert_true(auth_pool_check_cached(pool, &req));
	assert_int_equal(req.ok, 1);
	assert_int_equal(req.cached, 1);
	for (size_t i = 0; i < sizeof(req.pass); i++)
		assert_int_equal(req.pass[i], 0);
	user_pass(req.pass, sizeof(req.pass), 1); /* wrong password */
	assert_false(auth_pool_check_cached(pool, &req));
	user_name(req.user, sizeof(req.user), 999); /* no such user */
	user_pass(req.pass, sizeof(req.pass), 0);
	assert_false(auth_pool_check_cached(pool, &req));
	auth_pool_stop(pool);
}

/* req->refuse (an oversize password): the right password is refused all
 * the same, and neither comes from nor goes to the cache. */
static void
test_refuse_fails_the_right_password(void **state)
{
	char err[256] = "";
	struct auth_pool *pool;
	struct auth_request req;

	(void)state;
	pool = auth_pool_start(2, db, HOUR_MS, CACHE_N, SECCOMP_OFF, err,
			       sizeof(err));
	if (pool == NULL)
		fail_msg("auth_pool_start: %s", err);
	login_once(pool, 0, 0, 0); /* good: now cached */
	memset(&req, 0, sizeof(req));
	user_name(req.user, sizeof(req.user), 0);
	user_pass(req.pass, sizeof(req.pass), 0);
	req.refuse = 1;
	assert_false(auth_pool_check_cached(pool, &req));
	req.ok = -1;
	req.cached = -1;
	req.done = done_record;
	req.cookie = 1;
	auth_pool_submit(pool, &req);
	assert_int_equal(wait_done(2), 2);
	auth_pool_stop(pool);
	pthread_mutex_lock(&seen.mu);
	assert_int_equal(seen.ok[1], 0);
	assert_int_equal(seen.cached[1], 0);
	assert_true(seen.cleared[1]);
	pthread_mutex_unlock(&seen.mu);
}

/* cache_ttl 0: every login is a full check. */
static void
test_cache_disabled(void **state)
{
	char err[256] = "";
	struct auth_pool *pool;

	(void)state;
	pool = auth_pool_start(2, db, 0, CACHE_N, SECCOMP_OFF, err,
			       sizeof(err));
	if (pool == NULL)
		fail_msg("auth_pool_start: %s", err);
	login_once(pool, 0, 2, 2);
	login_once(pool, 1, 2, 2);
	auth_pool_stop(pool);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(seen.ok[i], 1);
		assert_int_equal(seen.cached[i], 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_many_requests, reset_seen),
		cmocka_unit_test_setup(test_stop_drains_fifo, reset_seen),
		cmocka_unit_test_setup(test_unterminated_fields, reset_seen),
		cmocka_unit_test_setup(test_start_stop_idle, reset_seen),
		cmocka_unit_test_setup(test_start_errors, reset_seen),
		cmocka_unit_test_setup(test_cache, reset_seen),
		cmocka_unit_test_setup(test_refuse_fails_the_right_password,
				       reset_seen),
		cmocka_unit_test_setup(test_cache_disabled, reset_seen),
		cmocka_unit_test_setup(test_check_cached_on_caller_thread,
				       reset_seen),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
