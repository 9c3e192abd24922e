/*
 * registry.h - the listener and backend addresses the process has seen,
 * each with a slot that stays the same across reloads, and each backend's
 * operator state (enabled or disabled by msaproxyctl backend).
 *
 * Workers count per slot (counters.h), so a listener or backend that is
 * still configured after a reload keeps its counters, and the metrics
 * endpoint names each slot.  A disabled backend takes no new backend
 * connection in any generation: the pool of every generation points at
 * the same flag (backend_pool_bind()).
 *
 * Names and slots are written by the main thread only (start, reload),
 * which is also the only reader of the names; workers read the flags
 * (atomics).  Slots are never freed: after the capacity minus one names,
 * every further name shares the last slot, called "other", whose flag is
 * never set.  Pure: no I/O, no logging.
 */
#ifndef MSAPROXY_REGISTRY_H
#define MSAPROXY_REGISTRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "ops/counters.h"

#define REGISTRY_NAME_MAX 128 /* struct config_addr's text */
#define REGISTRY_OTHER	  "other"

struct registry_backend {
	char name[REGISTRY_NAME_MAX];
	atomic_bool disabled;
	/* The operator's last enable or disable (main thread only):
	 * CLOCK_MONOTONIC ms, 0 none. */
	uint64_t admin_ms;
};

struct registry {
	char listener[COUNTERS_LISTENERS][REGISTRY_NAME_MAX];
	unsigned nlisteners;
	struct registry_backend backend[COUNTERS_BACKENDS];
	unsigned nbackends;
};

/* The slot of a listener or backend address, added if new. */
unsigned registry_listener(struct registry *r, const char *name);
unsigned registry_backend(struct registry *r, const char *name);
/* The slot of a backend name already seen, or -1 (never seen, or in the
 * shared last slot). */
int registry_find_backend(const struct registry *r, const char *name);
/* Is slot the shared "other" one? */
bool registry_backend_is_other(const struct registry *r, unsigned slot);

#endif
