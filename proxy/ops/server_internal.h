/*
 * server_internal.h - internal to proxy/ops/server*.c: the running
 * process's state, shared by the lifecycle (server.c), the answers to
 * control requests (server_control.c) and the sums behind a scrape
 * (server_metrics.c).  Everything else sees server.h.
 *
 * All of it lives on the main thread; workers are reached only through
 * their mailboxes and read through their published counters.
 */
#ifndef MSAPROXY_SERVER_INTERNAL_H
#define MSAPROXY_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config/config.h"
#include "io/listen.h"
#include "io/worker.h"
#include "limits/caps.h"
#include "ops/metrics.h"

struct generation;
struct metrics_http;
struct registry;

#define RETIRE_MAX 16 /* generations waiting for every worker */

/* What a reload cannot change, as the process started with it. */
struct fixed_keys {
	unsigned workers, auth_threads, control_mode;
	unsigned recv_buffers, data_buffers; /* worker_buffers */
	uint64_t auth_cache_ttl_ms, ticket_key_lifetime_ms;
	size_t auth_cache_size, nxdp_interfaces;
	bool xdp_enabled;
	int xdp_mode, xdp_scope;
	uid_t run_uid;
	gid_t run_gid;
	int seccomp;
	struct config_addr metrics_listen;
	char metrics_tls[2 * 4096 + 2]; /* metrics.tls.cert, key */
	char cluster[1024];		/* cluster.*, as one line */
	char auth[768]; /* auth.backend, auth.dovecot.*, auth.http.* */
};

struct server {
	const char *path;
	struct generation *gen; /* current */
	struct generation *retiring[RETIRE_MAX];
	size_t nretiring;
	unsigned next_id;

	unsigned nworkers;
	struct worker **workers;
	bool *joined;
	struct listen_set listeners;
	struct worker_shared shared;
	struct caps caps; /* shared.caps */
	uint64_t sampled_ms;

	int sfd; /* signalfd */
	int cfd; /* control socket, or -1 */
	char *control_path;
	struct metrics_http *metrics; /* or NULL */
	struct registry *reg;

	struct fixed_keys fixed;
	uint64_t started_ms, drain_started_ms;
	uint64_t started_wall_ms, loaded_wall_ms; /* start, last good load */
	bool last_reload_ok;
	unsigned reloads, reload_failures;
	bool draining;
	int drain_signals;
	uint64_t swept_ms;
	uint64_t resolved_ms; /* backend names last looked up (0: at load) */
};

/* jemalloc's mallctl(), when jemalloc is the allocator (not under ASan):
 * a weak reference, NULL without it. */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
		   size_t newlen) __attribute__((weak));

/* The body of a scrape (metrics_http.c's callback, arg the server): every
 * counter, now, as metrics.c renders it; NULL when out of memory. */
char *server_metrics_body(void *arg, size_t *len);
/* Add one worker's histogram into to (server_metrics.c). */
void server_sum_hist(struct metrics_hist *to, const struct counter_hist *from);

/* Every counter summed now, as a scrape has them (server_metrics.c); the
 * status page's JSON (server_overview.c) reads the same.  -1: out of
 * memory.  server_snapshot_free() after. */
struct server_snapshot {
	struct metrics_snapshot m;
	struct metrics_listener *ls;
	struct metrics_backend *bs;
	uint64_t *busy;
	const char **certs;
};
int server_snapshot_take(struct server *srv, struct server_snapshot *s);
void server_snapshot_free(struct server_snapshot *s);

/* server_overview.c: the status page's JSON (GET /status.json, and
 * msaproxyctl -j overview: the same bytes), arg the server. */
char *server_overview_body(void *arg, size_t *len);
/* metrics.status in the running configuration. */
bool server_overview_enabled(void *arg);
/* A sample of the page's history every 10 s (the metrics listener calls
 * it at every turn of the main loop). */
void server_overview_tick(void *arg);
/* The page's admin actions (metrics.admin): on now?, a login against the
 * users file (1: good), one action (ban, unban, enable, disable). */
bool server_overview_admin_on(void *arg);
int server_overview_login(void *arg, const char *user, const char *pass);
int server_overview_action(void *arg, const char *user, const char *op,
			   const char *target, const char *ttl, char *err,
			   size_t errlen);

/* server_users.c: the status page's "users" object: the ten users
 * nearest their limits, with what they could still take. */
void server_users_nearest(struct server *srv, FILE *out);

/* server_reload.c: what start-up shares with a reload. */
struct listen_set;
struct worker_listener;
/* The sockets worker k gets from set s built for cfg (the caller frees). */
struct worker_listener *server_listeners_for(const struct listen_set *s,
					     const struct config *cfg,
					     unsigned k);
/* Drop retired generations once every worker is past them. */
void server_retire(struct server *srv);
/* server_resolve.c: backend host names looked up again when due. */
void server_resolve_tick(struct server *srv, uint64_t now_ms);
/* What a reload cannot change, as cfg has it. */
struct fixed_keys server_fixed_keys(const struct config *cfg);
uint64_t server_wall_ms(void); /* CLOCK_REALTIME, ms */
/* Registry slots for gen's listeners and backends (running: the
 * generation it replaces, or NULL). */
void server_bind_generation(struct server *srv, struct generation *gen,
			    const struct generation *running);

#endif
