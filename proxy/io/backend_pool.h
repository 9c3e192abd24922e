/*
 * backend_pool.h - the backend pool: which server a new backend connection goes
 * to, and what every worker knows about each server's health.
 *
 * The health state (up or down, consecutive failures and good checks,
 * connections open) is shared by all workers and kept in atomics; the
 * balancing state (smooth weighted round robin scores) is per worker.
 * Nothing here does I/O, logs or reads the clock: callers pass the time
 * and log the state changes the functions return.
 */
#ifndef MSAPROXY_BACKEND_POOL_H
#define MSAPROXY_BACKEND_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "smtp/smtp_reply.h"

#define BACKEND_POOL_NONE SIZE_MAX /* no server is left to try */

/* EHLO extensions a server offers that matter to what the proxy offers
 * its clients (backend_pool_learn(), backend_pool_offer()). */
#define BACKEND_POOL_EXT_8BITMIME 0x01u
#define BACKEND_POOL_EXT_SMTPUTF8 0x02u
#define BACKEND_POOL_EXT_DSN	  0x04u
#define BACKEND_POOL_EXT_CHUNKING 0x08u

struct backend_pool;

/* One worker's balancing state (round robin scores, tie-break rotation). */
struct backend_pool_cursor {
	long *score;
	size_t n;
	size_t next;
};

/* What a report did to the server's state: the caller logs a change. */
enum backend_pool_change {
	BACKEND_POOL_SAME,
	BACKEND_POOL_WENT_DOWN,
	BACKEND_POOL_WENT_UP,
};

struct backend_pool *backend_pool_new(const struct config *cfg);
void backend_pool_free(struct backend_pool *p);
/* A reload: servers of p that old also has (same address) start with the
 * health and capabilities old knows, not as unknown. */
void backend_pool_inherit(struct backend_pool *p,
			  const struct backend_pool *old);
/* Server i counts under counters slot slot (registry.h) and is taken out
 * of rotation while *disabled (NULL: never). */
void backend_pool_bind(struct backend_pool *p, size_t i, unsigned slot,
		       const atomic_bool *disabled);
unsigned backend_pool_slot(const struct backend_pool *p, size_t i);
/* Not disabled by the operator? */
bool backend_pool_is_enabled(const struct backend_pool *p, size_t i);

int backend_pool_cursor_init(struct backend_pool_cursor *c,
			     const struct backend_pool *p);
void backend_pool_cursor_free(struct backend_pool_cursor *c);

/*
 * The server for a new connection under backends.balance, among those
 * that are enabled (backend_pool_bind()) and up (or down long enough to be
 * retried, when there are no active checks), under their max_conns, and not in
 * tried (bit i: server i was tried for this command).  login is the session's
 * user, for hash-login.  BACKEND_POOL_NONE when none is left.
 */
size_t backend_pool_pick(struct backend_pool *p, struct backend_pool_cursor *c,
			 const char *login, uint64_t tried, uint64_t now_ms);

/* A backend connection to server i opened / closed (least-connections,
 * max_conns). */
void backend_pool_conn_open(struct backend_pool *p, size_t i);
void backend_pool_conn_close(struct backend_pool *p, size_t i);
unsigned backend_pool_conns(const struct backend_pool *p, size_t i);

/* Passive: a session's connect, greeting or handshake with server i
 * failed (counts toward fall) or completed. */
enum backend_pool_change backend_pool_failed(struct backend_pool *p, size_t i,
					     uint64_t now_ms);
enum backend_pool_change backend_pool_succeeded(struct backend_pool *p,
						size_t i, uint64_t now_ms);
/* Active: one health check of server i ended, good or not. */
enum backend_pool_change backend_pool_checked(struct backend_pool *p, size_t i,
					      bool ok, uint64_t now_ms);

bool backend_pool_is_up(const struct backend_pool *p, size_t i);

/* What a 250 EHLO reply offers: BACKEND_POOL_EXT_* bits and its SIZE (0: none
 * given, or "SIZE 0", which RFC 1870 says means no fixed limit). */
unsigned backend_pool_ehlo_caps(const struct smtp_reply *r, uint64_t *size);
/* Remember what server i offered in its last EHLO reply. */
void backend_pool_learn(struct backend_pool *p, size_t i, unsigned ext,
			uint64_t size);
/* What server i's XCLIENT takes (xclient.h's XCLIENT_ATTR_* bits; 0:
 * XCLIENT not offered), from an EHLO reply that came before XCLIENT. */
void backend_pool_learn_xclient(struct backend_pool *p, size_t i,
				unsigned attrs);
/* Server i refused an XCLIENT sent before EHLO: EHLO first from now on.
 * True the first time (for the log). */
bool backend_pool_refuse_early(struct backend_pool *p, size_t i);
/* The XCLIENT_ATTR_* bits a new session may send server i at once after
 * its greeting, without an EHLO first; 0 when not learned yet, not
 * offered, or refused there before. */
unsigned backend_pool_xclient_early(const struct backend_pool *p, size_t i);
/* What every up server whose EHLO was seen offers: the extensions all of
 * them share and the smallest SIZE (0: none known).  No server seen yet:
 * *ext = 0, *size = 0.  BACKEND_POOL_EXT_CHUNKING only when every up server was
 * seen offering it. */
void backend_pool_offer(const struct backend_pool *p, unsigned *ext,
			uint64_t *size);
/* Why server i last changed state, for the status page. */
enum backend_pool_why {
	BACKEND_WHY_NONE,      /* no change since the start */
	BACKEND_WHY_REFUSED,   /* connect refused */
	BACKEND_WHY_TIMEOUT,   /* no connect or reply in time */
	BACKEND_WHY_GREETING,  /* a greeting other than 220 */
	BACKEND_WHY_FAILED,    /* another failure (EHLO, TLS, a send) */
	BACKEND_WHY_RECOVERED, /* back up */
	BACKEND_WHY_COUNT,
};
/* What a state change's reason text ("connect: Connection refused",
 * "timeout", "greeting: 554 ...") says, for a change to up or down. */
enum backend_pool_why backend_pool_why_of(bool up, const char *reason);
const char *backend_pool_why_name(enum backend_pool_why why);
/* Record server i's change of state at now_ms (CLOCK_MONOTONIC), and
 * whether a health check (not a session) saw it.  Two workers noting at
 * once may pair one's time with the other's reason: both are changes of
 * the same moment. */
void backend_pool_note(struct backend_pool *p, size_t i,
		       enum backend_pool_why why, bool check, uint64_t now_ms);
/* The last change noted (BACKEND_WHY_NONE: none), its time and source. */
enum backend_pool_why backend_pool_last_change(const struct backend_pool *p,
					       size_t i, uint64_t *at_ms,
					       bool *check);
/* Times server i changed state (for metrics). */
unsigned long backend_pool_changes(const struct backend_pool *p, size_t i);

/* Rendezvous score of login on a server (exported for tests). */
double backend_pool_hash_score(const char *login, uint64_t server_hash,
			       unsigned weight);

#endif
