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

#include <openssl/crypto.h>

#include "auth/auth_backend.h"
#include "auth/auth_cache.h"
#include "auth/auth_dovecot.h"
#include "auth/auth_http.h"
#include "auth/auth_pool.h"
#include "lib/timer.h"

struct auth_backend {
	enum auth_backend_kind kind;
	struct auth_pool *pool;	      /* passwd */
	struct auth_dovecot *dovecot; /* dovecot */
	struct auth_http *http;	      /* http */
	atomic_uint all;	      /* passwd: every mechanism */
	/* dovecot, http: verified logins (auth.dovecot.cache_ttl,
	 * auth.http.cache_ttl), bound to the back end's name; NULL: off. */
	struct auth_cache *cache;
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
	/* Only a plain yes is cached: a login the back end renamed, or sent
	 * to a server of its choice, is asked again (the cache keeps
	 * neither), and failures never are. */
	if (req->keep_pass) {
		if (req->ok && req->server[0] == '\0' &&
		    (req->login[0] == '\0' ||
		     strcmp(req->login, req->user) == 0))
			auth_cache_store(req->backend->cache, req->user,
					 req->pass,
					 auth_backend_name(req->backend),
					 timer_now_ms());
		OPENSSL_cleanse(req->pass, sizeof(req->pass));
	}
	req->done = req->caller_done;
	if (req->done != NULL)
		req->done(req); /* may free req */
}

/* A cache of verified logins for a remote back end; none when ttl is 0. */
static int
start_cache(struct auth_backend *b, uint64_t ttl_ms, const struct config *cfg,
	    char *err, size_t errlen)
{
	if (ttl_ms == 0)
		return 0;
	b->cache = auth_cache_new(ttl_ms, cfg->auth_cache_size, err, errlen);
	return b->cache != NULL ? 0 : -1;
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
	/* The passwd file holds passwords: never a token (config_check.c
	 * refuses OAUTHBEARER and XOAUTH2 with it). */
	atomic_init(&b->all, b->kind == AUTH_BACKEND_PASSWD
				     ? AUTH_MECH_PLAIN | AUTH_MECH_LOGIN
				     : ~0u);
	switch (b->kind) {
	case AUTH_BACKEND_PASSWD:
		b->pool = auth_pool_start(
			cfg->auth_threads, db, cfg->auth_cache_ttl_ms,
			cfg->auth_cache_size, cfg->seccomp, err, errlen);
		if (b->pool == NULL)
			goto fail;
		break;
	case AUTH_BACKEND_DOVECOT:
		if (start_cache(b, cfg->auth_dovecot_cache_ttl_ms, cfg, err,
				errlen) != 0)
			goto fail;
		b->dovecot = auth_dovecot_start(cfg, err, errlen);
		if (b->dovecot == NULL)
			goto fail;
		break;
	case AUTH_BACKEND_HTTP:
		if (start_cache(b, cfg->auth_http_cache_ttl_ms, cfg, err,
				errlen) != 0)
			goto fail;
		b->http = auth_http_start(cfg, err, errlen);
		if (b->http == NULL)
			goto fail;
		break;
	}
	return b;
fail:
	auth_cache_free(b->cache);
	free(b);
	return NULL;
}

/* dovecot, http: a login verified less than the back end's cache_ttl
 * ago, with this password. */
static bool
remote_cached(struct auth_backend *b, struct auth_request *req)
{
	req->user[sizeof(req->user) - 1] = '\0';
	req->pass[sizeof(req->pass) - 1] = '\0';
	if (b->cache == NULL ||
	    !auth_cache_check(b->cache, req->user, req->pass,
			      auth_backend_name(b), timer_now_ms()))
		return false;
	req->ok = req->cached = 1;
	req->login[0] = '\0';
	OPENSSL_cleanse(req->pass, sizeof(req->pass));
	return true;
}

bool
auth_backend_check_cached(struct auth_backend *b, struct auth_request *req)
{
	if (req->refuse || req->token != NULL) /* tokens are never cached */
		return false;
	if (b->pool != NULL ? !auth_pool_check_cached(b->pool, req)
			    : !remote_cached(b, req))
		return false;
	atomic_fetch_add_explicit(&b->stats.cache_hits, 1,
				  memory_order_relaxed);
	return true;
}

void
auth_backend_submit(struct auth_backend *b, struct auth_request *req)
{
	req->backend = b;
	req->keep_pass = b->cache != NULL && req->token == NULL;
	req->caller_done = req->done;
	req->done = backend_done;
	req->submitted_us = now_us();
	atomic_fetch_add_explicit(&b->stats.requests, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->stats.inflight, 1, memory_order_relaxed);
	if (req->token != NULL && b->pool != NULL) {
		req->ok = 0;
		snprintf(req->reason, sizeof(req->reason),
			 "the passwd file checks no tokens");
		req->done(req);
		return;
	}
	if (req->refuse && b->pool == NULL) {
		/* Not even part of it goes to Dovecot or the HTTP service:
		 * a cut password might be someone's. */
		OPENSSL_cleanse(req->pass, sizeof(req->pass));
		req->ok = 0;
		snprintf(req->reason, sizeof(req->reason), "password-too-long");
		req->done(req);
		return;
	}
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
	auth_cache_free(b->cache); /* after the threads: they store in it */
	free(b);
}
