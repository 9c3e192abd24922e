/*
 * health.h - active health checks of the backends, on one worker's ring.
 *
 * Worker 0 owns them all (one check per server at a time, a few sockets
 * in all); the results go into the shared pool (backend_pool.h), which every
 * worker reads when it picks a server.
 */
#ifndef MSAPROXY_HEALTH_H
#define MSAPROXY_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct ring;
struct backend_pool;
struct health;
struct health_check;

/* NULL when backends.health_check.interval is 0 (no checks) or out of
 * memory (*oom set). */
struct health *health_new(struct ring *ring, struct backend_pool *pool,
			  const struct config *cfg, bool *oom);
/* After the worker's ring is gone: closes the sockets. */
void health_free(struct health *h);
/* Is a check on the ring (a replaced generation's checks are freed only
 * when none is)? */
bool health_busy(const struct health *h);
/* The earliest time health_run() has something to do. */
uint64_t health_next(const struct health *h);
/* Start due checks (unless stopping), time out late ones. */
void health_run(struct health *h, uint64_t now_ms, bool stopping);

/* Ring completions (worker.c). */
void health_on_connect(struct health_check *c, int res);
void health_on_recv(struct health_check *c, int res);
void health_on_send(struct health_check *c, int res);

#endif
