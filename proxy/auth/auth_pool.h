/*
 * auth_pool.h - a few threads that verify passwords off the worker rings:
 * the passwd back end (auth_backend.h).
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

#include "auth/auth_backend.h"
#include "config/config.h"

struct passwd_db;

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
