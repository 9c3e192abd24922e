/*
 * worker.h - one thread, one io_uring, its share of the listening sockets.
 *
 * Workers share nothing but the current generation (config, users, TLS;
 * generation.h), the auth pool, the limit tables and the TLS ticket keys.
 * The main thread talks to a worker only through the calls below, which
 * post to the worker's mailbox and wake its ring: the worker acts on them
 * between two batches of completions.
 */
#ifndef MSAPROXY_WORKER_H
#define MSAPROXY_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "ops/counters.h"

struct worker;
struct auth_pool;
struct ratelimit;
struct bans;
struct caps;
struct generation;

/* What every worker shares with the others (all thread-safe). */
struct worker_shared {
	struct auth_pool *auth;
	struct ratelimit *limits;
	struct bans *bans; /* may be NULL */
	struct caps *caps; /* limits.max_sessions, limits.max_memory */
};

/* A listening socket handed to a worker, and the listener it serves. */
struct worker_listener {
	const struct config_listener *cl;
	int fd;
};

/* Counters the worker keeps and anyone may read (relaxed atomics; the
 * worker is the only writer, see counters.h). */
struct worker_counters {
	atomic_ullong accepted; /* connections taken */
	atomic_ullong refused;	/* closed at accept: caps, blocklist */
	atomic_ullong active;	/* sessions open now */
	atomic_uint generation; /* id of the generation in use */
	atomic_bool draining;	/* stopped accepting */

	/* For the metrics endpoint: sessions ended (or refused at accept)
	 * by listener slot and outcome. */
	atomic_ullong sessions[COUNTERS_LISTENERS][OUTCOME_COUNT];
	atomic_ullong tls_ok[TLSV_COUNT], tls_failed[TLSV_COUNT];
	atomic_ullong auth[MECH_COUNT][AUTH_RESULT_COUNT];
	atomic_ullong limits[LIMIT_HIT_COUNT]; /* the workers' kinds */
	atomic_ullong data_bytes; /* message bytes handed to backends */
	atomic_ullong messages;	  /* acknowledged by a backend */
	atomic_ullong busy_ns;	  /* time outside the ring wait */
	struct counter_hist backend_connect[COUNTERS_BACKENDS];
	struct counter_hist backend_transaction[COUNTERS_BACKENDS];
};

/* The ring is made by the worker thread itself (worker_start). */
struct worker *worker_new(unsigned id, struct generation *gen,
			  const struct worker_listener *ls, size_t nls,
			  const struct worker_shared *shared, char *err,
			  size_t errlen);
/* Starts the thread; waits until its ring is up or failed. */
int worker_start(struct worker *w, char *err, size_t errlen);

/*
 * Switch to gen for new sessions, listening on exactly ls: sockets it had
 * and ls lacks are closed, new ones armed.  Sessions in progress keep their
 * generation.  worker_counters(w)->generation says when it is done.
 */
int worker_adopt(struct worker *w, struct generation *gen,
		 const struct worker_listener *ls, size_t nls);

/*
 * Stop accepting and drain: idle sessions get 421 at once, a session in
 * a transaction finishes it and then gets 421; at deadline_ms
 * (CLOCK_MONOTONIC ms) whatever is left is cut with 421 (a message not
 * yet acknowledged is never acknowledged).  The thread ends when its
 * last session has.  Calling it again only moves the deadline earlier.
 */
void worker_drain(struct worker *w, uint64_t deadline_ms);

/*
 * The worker's sessions as text, one per line (json: one JSON object per
 * line), made by the worker thread; NULL if it did not answer within
 * timeout_ms.  The caller frees the result.
 */
char *worker_sessions(struct worker *w, bool json, int timeout_ms);

const struct worker_counters *worker_counters(const struct worker *w);
void worker_join(struct worker *w);
/* Has the thread ended (after a drain)?  Joins it if so. */
bool worker_tryjoin(struct worker *w);
void worker_free(struct worker *w);

/*
 * For the sessions and backend connections of this worker (proxy/io/),
 * on the worker's thread.
 */
struct session;
struct auth_request;
struct timer_heap;

struct generation *worker_generation(const struct worker *w);
struct auth_pool *worker_auth(const struct worker *w);
struct ratelimit *worker_limits(const struct worker *w);
struct bans *worker_bans(const struct worker *w);
struct caps *worker_caps(const struct worker *w);
struct timer_heap *worker_timers(struct worker *w);
unsigned worker_id(const struct worker *w);
/* The worker's own counters, to add to (counters.h). */
struct worker_counters *worker_stats(struct worker *w);
/* A server of gen for a new backend connection (backends.balance among
 * those not in tried), or BACKEND_POOL_NONE.  A generation other than the
 * worker's balances with a cursor of its own for the pick. */
size_t worker_pick_backend(struct worker *w, struct generation *gen,
			   const char *login, uint64_t tried);
/* The auth pool's answer (on a pool thread): into the mailbox. */
void worker_auth_done(struct auth_request *req);
/* s runs after this batch of completions (session_run()); it holds a
 * reference until then. */
void worker_wake(struct worker *w, struct session *s);
void worker_session_gone(struct worker *w, struct session *s);
/* Sessions and backend connections count themselves in and out, so the
 * worker ends only after their last completion. */
void worker_object_new(struct worker *w);
void worker_object_freed(struct worker *w);

#endif
