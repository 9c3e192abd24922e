/*
 * auth_pool.c - threads that verify passwords off the worker rings
 * (auth.threads threads checking against auth.passwd_file; auth.cache_ttl
 * and auth.cache_size for the cache of verified logins).
 *
 * A FIFO of struct auth_request (intrusive `next`) behind one mutex and
 * condition variable.  Each thread pops a request, asks the auth_cache,
 * runs passwd_db_verify on a miss (storing a success in the cache),
 * stores the result, clears the password and calls req->done(req).  Only
 * successes are cached: a wrong password always costs the full hash.
 *
 * Each cache entry is bound to the user's stored hash, so when a reload
 * replaces the passwd entry, the cached login is void at once.
 *
 * Security stance: the password is cleared (OPENSSL_cleanse) before done()
 * runs, on every path; passwords are never logged.  Pool threads block all
 * signals so that signals are handled by the main thread only.  Stopping
 * drains the queue first: every submitted request gets its done() call.
 */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/auth_cache.h"
#include "auth/auth_pool.h"
#include "auth/passwd_db.h"
#include "ops/sandbox.h"
#include "lib/timer.h"

struct auth_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct auth_request *head, *tail; /* FIFO, under mu */
	int stopping;			  /* under mu */
	struct passwd_db *db;
	struct auth_cache *cache; /* thread-safe; disabled when ttl is 0 */
	pthread_t *threads;
	unsigned nthreads; /* started */
	enum seccomp_mode seccomp;
	sem_t started;	     /* posted by each thread once it is confined */
	char start_err[256]; /* set by a thread that could not be */
};

/* cache may be NULL (no cache). */
static void
auth_run(const struct passwd_db *db, struct auth_cache *cache,
	 struct auth_request *req)
{
	uint64_t now = timer_now_ms();
	const char *stored;

	/* Never read past the fields, whatever the caller put there. */
	req->user[sizeof(req->user) - 1] = '\0';
	req->pass[sizeof(req->pass) - 1] = '\0';
	stored = passwd_db_stored_hash(db, req->user);
	req->cached =
		!req->refuse && stored != NULL &&
		auth_cache_check(cache, req->user, req->pass, stored, now);
	if (req->cached) {
		req->ok = 1;
	} else {
		/* A miss, or another password than the cached one (it may
		 * have changed): the full check decides. */
		req->ok = passwd_db_verify(db, req->user, req->pass) == 1 &&
			  !req->refuse;
		if (req->ok)
			auth_cache_store(cache, req->user, req->pass, stored,
					 now);
	}
	OPENSSL_cleanse(req->pass, sizeof(req->pass));
	req->next = NULL;
	if (req->done != NULL)
		req->done(req); /* may free req */
}

static void *
auth_thread(void *arg)
{
	struct auth_pool *pool = arg;

	/* The mask was inherited fully blocked from auth_pool_start; this
	 * only restates it in case the thread was made some other way. */
	{
		sigset_t all;

		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, NULL);
	}
	pthread_setname_np(pthread_self(), "msa-auth");
	if (sandbox_enter(pool->seccomp, "msa-auth", pool->start_err,
			  sizeof(pool->start_err)) != 0) {
		sem_post(&pool->started);
		return NULL;
	}
	sem_post(&pool->started);

	pthread_mutex_lock(&pool->mu);
	for (;;) {
		struct auth_request *req;

		while (pool->head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->cv, &pool->mu);
		req = pool->head;
		if (req == NULL)
			break; /* stopping and drained */
		pool->head = req->next;
		if (pool->head == NULL)
			pool->tail = NULL;
		pthread_mutex_unlock(&pool->mu);

		auth_run(req->db ? req->db : pool->db, pool->cache, req);

		pthread_mutex_lock(&pool->mu);
	}
	pthread_mutex_unlock(&pool->mu);
	return NULL;
}

/* Wake every thread, wait for them to drain the queue and exit. */
static void
auth_pool_join(struct auth_pool *pool)
{
	pthread_mutex_lock(&pool->mu);
	pool->stopping = 1;
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pool->nthreads = 0;
}

static void
auth_pool_destroy(struct auth_pool *pool)
{
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mu);
	sem_destroy(&pool->started);
	auth_cache_free(pool->cache);
	free(pool->threads);
	free(pool);
}

struct auth_pool *
auth_pool_start(unsigned nthreads, struct passwd_db *db, uint64_t cache_ttl_ms,
		size_t cache_size, enum seccomp_mode seccomp, char *err,
		size_t errlen)
{
	struct auth_pool *pool;
	sigset_t all, old;
	int rc;

	if (nthreads == 0) {
		snprintf(err, errlen, "auth pool: need at least one thread");
		return NULL;
	}
	if (db == NULL) {
		snprintf(err, errlen, "auth pool: no passwd database");
		return NULL;
	}
	pool = calloc(1, sizeof(*pool));
	if (pool == NULL) {
		snprintf(err, errlen, "auth pool: out of memory");
		return NULL;
	}
	pool->threads = calloc(nthreads, sizeof(*pool->threads));
	if (pool->threads == NULL) {
		free(pool);
		snprintf(err, errlen, "auth pool: out of memory");
		return NULL;
	}
	pool->cache = auth_cache_new(cache_ttl_ms, cache_size, err, errlen);
	if (pool->cache == NULL) {
		free(pool->threads);
		free(pool);
		return NULL;
	}
	pool->db = db;
	pool->seccomp = seccomp;
	sem_init(&pool->started, 0, 0);
	pthread_mutex_init(&pool->mu, NULL);
	pthread_cond_init(&pool->cv, NULL);

	/* New threads inherit the creator's mask: block everything around
	 * pthread_create so no signal can reach a pool thread even before
	 * it starts running. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 0; i < nthreads; i++) {
		rc = pthread_create(&pool->threads[i], NULL, auth_thread, pool);
		if (rc != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			snprintf(err, errlen,
				 "auth pool: pthread_create (thread %u of "
				 "%u): %s",
				 i + 1, nthreads, strerror(rc));
			auth_pool_join(pool);
			auth_pool_destroy(pool);
			return NULL;
		}
		pool->nthreads++;
		sem_wait(&pool->started);
		if (pool->start_err[0] != '\0') {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			snprintf(err, errlen, "auth pool: %s", pool->start_err);
			auth_pool_join(pool);
			auth_pool_destroy(pool);
			return NULL;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pool;
}

bool
auth_pool_check_cached(struct auth_pool *pool, struct auth_request *req)
{
	const char *stored;

	req->user[sizeof(req->user) - 1] = '\0';
	req->pass[sizeof(req->pass) - 1] = '\0';
	stored = passwd_db_stored_hash(req->db ? req->db : pool->db, req->user);
	if (stored == NULL || req->refuse ||
	    !auth_cache_check(pool->cache, req->user, req->pass, stored,
			      timer_now_ms()))
		return false;
	req->ok = req->cached = 1;
	OPENSSL_cleanse(req->pass, sizeof(req->pass));
	return true;
}

void
auth_pool_submit(struct auth_pool *pool, struct auth_request *req)
{
	pthread_mutex_lock(&pool->mu);
	if (pool->stopping) {
		/* Misuse (submit racing stop): the threads may already be
		 * gone, so keep the done() promise on this thread, without
		 * the cache (it goes with the pool). */
		const struct passwd_db *db = req->db ? req->db : pool->db;

		pthread_mutex_unlock(&pool->mu);
		auth_run(db, NULL, req);
		return;
	}
	req->next = NULL;
	if (pool->tail != NULL)
		pool->tail->next = req;
	else
		pool->head = req;
	pool->tail = req;
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
}

void
auth_pool_stop(struct auth_pool *pool)
{
	if (pool == NULL)
		return;
	auth_pool_join(pool);
	auth_pool_destroy(pool);
}
