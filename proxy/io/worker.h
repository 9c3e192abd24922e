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
#include "io/ring.h" /* struct worker_shared, struct worker_counters */

struct worker;
struct auth_backend;
struct ratelimit;
struct bans;
struct caps;
struct generation;

/* A listening socket handed to a worker, and the listener it serves. */
struct worker_listener {
	const struct config_listener *cl;
	int fd;
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

#endif
