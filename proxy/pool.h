/*
 * pool.h - the backend pool: which server a new backend connection goes
 * to, and what every worker knows about each server's health.
 *
 * The health state (up or down, consecutive failures and good checks,
 * connections open) is shared by all workers and kept in atomics; the
 * balancing state (smooth weighted round robin scores) is per worker.
 * Nothing here does I/O, logs or reads the clock: callers pass the time
 * and log the state changes the functions return.
 */
#ifndef MSAPROXY_POOL_H
#define MSAPROXY_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "smtp_reply.h"

#define POOL_NONE SIZE_MAX /* no server is left to try */

/* EHLO extensions a server offers that matter to what the proxy offers
 * its clients (pool_learn(), pool_offer()). */
#define POOL_EXT_8BITMIME 0x01u
#define POOL_EXT_SMTPUTF8 0x02u
#define POOL_EXT_DSN	  0x04u
#define POOL_EXT_CHUNKING 0x08u

struct pool;

/* One worker's balancing state (round robin scores, tie-break rotation). */
struct pool_cursor {
	long *score;
	size_t n;
	size_t next;
};

/* What a report did to the server's state: the caller logs a change. */
enum pool_change {
	POOL_SAME,
	POOL_WENT_DOWN,
	POOL_WENT_UP,
};

struct pool *pool_new(const struct config *cfg);
void pool_free(struct pool *p);
/* A reload: servers of p that old also has (same address) start with the
 * health and capabilities old knows, not as unknown. */
void pool_inherit(struct pool *p, const struct pool *old);
size_t pool_size(const struct pool *p);
/* Server i counts under counters slot slot (registry.h) and is taken out
 * of rotation while *disabled (NULL: never). */
void pool_bind(struct pool *p, size_t i, unsigned slot,
	       const atomic_bool *disabled);
unsigned pool_slot(const struct pool *p, size_t i);
/* Not disabled by the operator? */
bool pool_is_enabled(const struct pool *p, size_t i);

int pool_cursor_init(struct pool_cursor *c, const struct pool *p);
void pool_cursor_free(struct pool_cursor *c);

/*
 * The server for a new connection under backends.balance, among those
 * that are enabled (pool_bind()) and up (or down long enough to be retried,
 * when there are no active checks), under their max_conns, and not in tried
 * (bit i: server i was tried for this command).  login is the session's user,
 * for hash-login.  POOL_NONE when none is left.
 */
size_t pool_pick(struct pool *p, struct pool_cursor *c, const char *login,
		 uint64_t tried, uint64_t now_ms);

/* A backend connection to server i opened / closed (least-connections,
 * max_conns). */
void pool_conn_open(struct pool *p, size_t i);
void pool_conn_close(struct pool *p, size_t i);
unsigned pool_conns(const struct pool *p, size_t i);

/* Passive: a session's connect, greeting or handshake with server i
 * failed (counts toward fall) or completed. */
enum pool_change pool_failed(struct pool *p, size_t i, uint64_t now_ms);
enum pool_change pool_succeeded(struct pool *p, size_t i, uint64_t now_ms);
/* Active: one health check of server i ended, good or not. */
enum pool_change pool_checked(struct pool *p, size_t i, bool ok,
			      uint64_t now_ms);

bool pool_is_up(const struct pool *p, size_t i);

/* What a 250 EHLO reply offers: POOL_EXT_* bits and its SIZE (0: none
 * given, or "SIZE 0", which RFC 1870 says means no fixed limit). */
unsigned pool_ehlo_caps(const struct smtp_reply *r, uint64_t *size);
/* Remember what server i offered in its last EHLO reply. */
void pool_learn(struct pool *p, size_t i, unsigned ext, uint64_t size);
/* What every up server whose EHLO was seen offers: the extensions all of
 * them share and the smallest SIZE (0: none known).  No server seen yet:
 * *ext = 0, *size = 0.  POOL_EXT_CHUNKING only when every up server was
 * seen offering it. */
void pool_offer(const struct pool *p, unsigned *ext, uint64_t *size);
/* Times server i changed state (for metrics). */
unsigned long pool_changes(const struct pool *p, size_t i);

/* Rendezvous score of login on a server (exported for tests). */
double pool_hash_score(const char *login, uint64_t server_hash,
		       unsigned weight);

#endif
