/*
 * server.h - the running process: workers, the current generation, reload,
 * drain, and the main thread's loop (signals, the control socket).
 *
 * The main thread never touches a session: it loads, binds and decides,
 * then hands the workers what they need through their mailboxes.
 */
#ifndef MSAPROXY_SERVER_H
#define MSAPROXY_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/ipnet.h"

struct generation;
struct server;

/* Run until drained; takes over gen (the loaded, checked config).
 * Returns the exit status. */
int server_run(const char *path, struct generation *gen);

/* For the control socket (control.c), on the main thread: reload and
 * drain are server.c's, the answers server_control.c's. */
/* Reload: 0, or -1 with the first error in err ("FILE:LINE: KEY: why"
 * where a key is to blame).  report (or NULL) gets one line for every
 * other finding, "error: ..." or "warning: ...": the audit's, and the
 * restart-only keys a successful reload leaves alone.  Everything is
 * logged as well. */
int server_reload(struct server *srv, FILE *report, char *err, size_t errlen);
void server_drain(struct server *srv, bool fast);
void server_status(struct server *srv, FILE *out, bool json);
/* Everything the status page shows, as one JSON object (server_overview.c):
 * the body of GET /status.json and of "json overview". */
void server_overview(struct server *srv, FILE *out);
void server_stats(struct server *srv, FILE *out, bool json);
int server_sessions(struct server *srv, FILE *out, bool json);
int server_ban(struct server *srv, const struct ipnet *net, uint64_t ttl_ms,
	       char *err, size_t errlen);
int server_unban(struct server *srv, const struct ipnet *net, char *err,
		 size_t errlen);
void server_bans(struct server *srv, FILE *out, bool json);
/* The running configuration's backends: health, operator state. */
void server_backends(struct server *srv, FILE *out, bool json);
/* Take backend name (its address as configured) out of rotation or put
 * it back; a warning in out when none is left enabled. */
int server_backend_set(struct server *srv, const char *name, bool enable,
		       FILE *out, char *err, size_t errlen);
int server_user_limits(struct server *srv, const char *login, FILE *out,
		       bool json, char *err, size_t errlen);
/* Forget the limits' state of login (buckets, quota, failure score);
 * an error when there is none. */
int server_user_reset(struct server *srv, const char *login, char *err,
		      size_t errlen);
/* server_cluster.c: fleet mode.  The cluster's state; its counters for
 * stats; a user's buckets across the cluster; their reset (had_state set
 * when there was some). */
void server_cluster(struct server *srv, FILE *out, bool json);
/* Where the bans other nodes make are applied: this server's tables. */
struct cluster_ban_sink server_cluster_sink(struct server *srv);
/* This node's blocklist files to the other nodes, with cfg's
 * blocklist.max_entries (after the start and every reload, cfg the one
 * taking effect; nothing without a cluster). */
void server_cluster_files(struct server *srv, const struct config *cfg);
void server_cluster_stats(struct server *srv, FILE *out, bool json);
void server_cluster_user(struct server *srv, const char *login,
			 const struct config_user_limits *pol, FILE *out,
			 bool json);
int server_cluster_reset(struct server *srv, const char *login, bool *had_state,
			 char *err, size_t errlen);

#endif
