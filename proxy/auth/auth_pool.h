/*
 * auth_pool.h - a few threads that verify passwords off the worker rings.
 *
 * A hash check costs milliseconds by design (yescrypt, bcrypt); a worker
 * must never block on one.  Workers submit requests; a pool thread checks
 * the credentials and calls req->done(req) on the pool thread, which hands
 * the result back to the worker (queue + eventfd).  The pool knows nothing
 * of workers or sessions.
 *
 * Recently verified logins are answered from an auth_cache (auth.cache_ttl,
 * auth.cache_size) without running crypt(3); req->cached says which.
 */
#ifndef MSAPROXY_AUTH_AUTH_POOL_H
#define MSAPROXY_AUTH_AUTH_POOL_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "smtp/sasl.h"

struct passwd_db;
struct auth_pool;

struct auth_request {
	char user[SASL_FIELD_MAX];
	char pass[SASL_FIELD_MAX]; /* cleared by the pool after the check */
	/* The users file to check against (a reload may have a newer one
	 * than the pool's own); NULL: the pool's.  Must outlive the check. */
	const struct passwd_db *db;
	/* in: refuse whatever the check says (a password longer than pass
	 * holds): the hash still runs, so the answer costs the same time. */
	int refuse;
	int ok;	    /* result: 1 verified, 0 refused */
	int cached; /* result: 1 when ok came from the cache, no crypt(3) */
	void (*done)(struct auth_request *req); /* called on a pool thread */
	void *owner;				/* for the caller */
	uint64_t cookie;			/* for the caller */
	struct auth_request *next;		/* queue link, pool's own */
};

/* cache_ttl_ms 0 disables the cache; cache_size bounds its entries;
 * seccomp confines the threads (sandbox.h). */
struct auth_pool *auth_pool_start(unsigned nthreads, struct passwd_db *db,
				  uint64_t cache_ttl_ms, size_t cache_size,
				  enum seccomp_mode seccomp, char *err,
				  size_t errlen);
void auth_pool_submit(struct auth_pool *pool, struct auth_request *req);
/* A returning client's login answered from the cache on the caller's
 * thread (microseconds, no thread hop): true with req->ok = req->cached =
 * 1 and the password cleared, done() not called.  false: submit it. */
bool auth_pool_check_cached(struct auth_pool *pool, struct auth_request *req);
/* Stops the threads after the queue drains; every submitted request gets
 * its done() call first. */
void auth_pool_stop(struct auth_pool *pool);

#endif
