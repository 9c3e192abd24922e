/*
 * worker.h - one thread, one io_uring, one set of listening sockets.
 *
 * Workers share nothing but the read-only config, the auth pool, the
 * limit tables, the users file and the TLS ticket keys.  Each binds its own
 * SO_REUSEPORT socket per listener, so the kernel spreads connections across
 * workers.
 */
#ifndef MSAPROXY_WORKER_H
#define MSAPROXY_WORKER_H

#include <stddef.h>

#include "config.h"

struct worker;
struct auth_pool;
struct ratelimit;
struct passwd_db;
struct pool;

/* What every worker shares with the others (all thread-safe). */
struct worker_shared {
	struct auth_pool *auth;
	struct ratelimit *limits;
	const struct passwd_db *users;
	struct pool *pool; /* backend health, atomics */
};

/* Binds the listening sockets (in the caller's thread, so a bad address
 * fails start-up).  The ring is made by the worker thread itself. */
struct worker *worker_new(unsigned id, const struct config *cfg,
			  const struct worker_shared *shared, char *err,
			  size_t errlen);
/* Starts the thread; waits until its ring and TLS are up or failed. */
int worker_start(struct worker *w, char *err, size_t errlen);
/* Asks the worker to stop: listeners close, sessions end with 421. */
void worker_stop(struct worker *w);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

#endif
