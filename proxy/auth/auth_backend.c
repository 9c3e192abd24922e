/*
 * auth_backend.c - one door to whichever back end checks logins
 * (auth.backend: passwd, dovecot or http; read auth_backend.h first).
 *
 * A thin switch: the passwd back end is the auth_pool (crypt(3) threads
 * and the verified-login cache), the dovecot one auth_dovecot (one thread
 * multiplexing a few connections to Dovecot's auth socket), the http one
 * auth_http (one thread, one HTTP/1.0 connection per request).  The cache
 * of verified logins serves the passwd back end only: Dovecot keeps its
 * own (auth_cache_size in dovecot.conf), and docs/AUTH.md says why.
 *
 * Config keys: auth.backend, and those of each back end (restart-only: a
 * reload keeps the running back end).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth_backend.h"
#include "auth/auth_dovecot.h"
#include "auth/auth_http.h"
#include "auth/auth_pool.h"

struct auth_backend {
	enum auth_backend_kind kind;
	struct auth_pool *pool;	      /* passwd */
	struct auth_dovecot *dovecot; /* dovecot */
	struct auth_http *http;	      /* http */
	atomic_uint all;	      /* passwd: every mechanism */
	struct auth_backend_stats stats;
};

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* On the back end's thread: count the answer, then hand it on. */
static void
backend_done(struct auth_request *req)
{
	struct auth_backend_stats *st = &req->backend->stats;
	uint64_t took = now_us() - req->submitted_us;

	atomic_fetch_add_explicit(req->ok     ? &st->ok
				  : req->temp ? &st->temp
					      : &st->refused,
				  1, memory_order_relaxed);
	if (req->temp && strstr(req->reason, "timeout") != NULL)
		atomic_fetch_add_explicit(&st->timeouts, 1,
					  memory_order_relaxed);
	atomic_fetch_add_explicit(&st->latency_us_sum, took,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&st->latency_count, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&st->inflight, 1, memory_order_relaxed);
	req->done = req->caller_done;
	if (req->done != NULL)
		req->done(req); /* may free req */
}

struct auth_backend *
auth_backend_start(const struct config *cfg, struct passwd_db *db, char *err,
		   size_t errlen)
{
	struct auth_backend *b = calloc(1, sizeof(*b));

	if (b == NULL) {
		snprintf(err, errlen, "auth: out of memory");
		return NULL;
	}
	b->kind = cfg->auth_backend;
	atomic_init(&b->all, ~0u);
	switch (b->kind) {
	case AUTH_BACKEND_PASSWD:
		b->pool = auth_pool_start(
			cfg->auth_threads, db, cfg->auth_cache_ttl_ms,
			cfg->auth_cache_size, cfg->seccomp, err, errlen);
		if (b->pool == NULL)
			goto fail;
		break;
	case AUTH_BACKEND_DOVECOT:
		b->dovecot = auth_dovecot_start(cfg, err, errlen);
		if (b->dovecot == NULL)
			goto fail;
		break;
	case AUTH_BACKEND_HTTP:
		b->http = auth_http_start(cfg, err, errlen);
		if (b->http == NULL)
			goto fail;
		break;
	}
	return b;
fail:
	free(b);
	return NULL;
}

bool
auth_backend_check_cached(struct auth_backend *b, struct auth_request *req)
{
	if (b->pool == NULL || !auth_pool_check_cached(b->pool, req))
		return false;
	atomic_fetch_add_explicit(&b->stats.cache_hits, 1,
				  memory_order_relaxed);
	return true;
}

void
auth_backend_submit(struct auth_backend *b, struct auth_request *req)
{
	req->backend = b;
	req->caller_done = req->done;
	req->done = backend_done;
	req->submitted_us = now_us();
	atomic_fetch_add_explicit(&b->stats.requests, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->stats.inflight, 1, memory_order_relaxed);
	if (b->pool != NULL)
		auth_pool_submit(b->pool, req);
	else if (b->dovecot != NULL)
		auth_dovecot_submit(b->dovecot, req);
	else
		auth_http_submit(b->http, req);
}

const atomic_uint *
auth_backend_offer(const struct auth_backend *b)
{
	if (b->dovecot != NULL)
		return auth_dovecot_offer(b->dovecot);
	return &b->all;
}

const char *
auth_backend_name(const struct auth_backend *b)
{
	return b->kind == AUTH_BACKEND_DOVECOT ? "dovecot"
	       : b->kind == AUTH_BACKEND_HTTP  ? "http"
					       : "passwd";
}

const struct auth_backend_stats *
auth_backend_stats(const struct auth_backend *b)
{
	return &b->stats;
}

void
auth_backend_stop(struct auth_backend *b)
{
	if (b == NULL)
		return;
	auth_pool_stop(b->pool);
	auth_dovecot_stop(b->dovecot);
	auth_http_stop(b->http);
	free(b);
}
