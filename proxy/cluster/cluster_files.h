/*
 * cluster_files.h - the nodes' blocklist files, shared through Redis.
 *
 * Each node keeps the prefixes of its own blocklist files in a Redis set
 * of its own, named by its node id, and an index hash names every node's
 * set with a digest of it.  A node whose files change writes its set
 * (into a staging key, then renamed in one script, so no reader sees half
 * of it) and publishes "files <origin>" on the bans' channel; every other
 * node then reads the sets whose digest changed and hands the union of
 * the others' sets to the ban sink, which enforces it next to its own
 * files (bans.h: bans_share).  A node's set expires FILES_TTL after its
 * last refresh, so the files of a node that is gone for good stop
 * counting; a live node refreshes it every FILES_REFRESH.
 *
 * Run on the cluster thread only, on its connection while nothing is in
 * flight on it (the calls wait, each bounded by cluster.timeout), except
 * cluster_files_own(), which any thread may call.
 */
#ifndef MSAPROXY_CLUSTER_FILES_H
#define MSAPROXY_CLUSTER_FILES_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/redis_conn.h"
#include "lib/ipnet.h"

#define FILES_TTL_MS	   300000u  /* a node's set outlives it by 5 min */
#define FILES_REFRESH_US   60000000 /* its TTL renewed, the others read */
#define FILES_DIGEST_CHARS 16

/* Another node's set, as last read. */
struct files_node {
	char name[64];
	char digest[FILES_DIGEST_CHARS + 1];
	struct ipnet *v;
	size_t n;
};

struct cluster_files {
	bool on; /* cluster.share_files */
	char index_key[96], own_key[160], staging_key[168], node_key[100];
	const char *node_id, *origin, *channel; /* the cluster's */
	const char *sha_commit, *sha_index;	/* the scripts' */
	uint64_t timeout_us;
	size_t max_entries; /* blocklist.max_entries: per other node */

	pthread_mutex_t mu; /* the own set, given by the server thread */
	struct ipnet *own;
	size_t nown;
	size_t own_max; /* blocklist.max_entries as given with it */
	bool own_dirty; /* under mu: write it */

	/* The thread's own. */
	bool others_dirty; /* a publish came: read the index */
	uint64_t next_refresh_us;
	struct files_node *nodes;
	size_t nnodes;
	bool refused; /* the last call got an error reply */
};

/* The union of the other nodes' sets, to enforce (the ban sink's). */
typedef void (*cluster_files_sink)(void *arg, const struct ipnet *v, size_t n);

void cluster_files_init(struct cluster_files *f, bool on, const char *prefix,
			const char *node_id, const char *origin,
			const char *channel, uint64_t timeout_us,
			size_t max_entries);
void cluster_files_free(struct cluster_files *f);
/* This node's prefixes (copied), to write when the thread can, and
 * blocklist.max_entries now: a changed cap reads every other set again. */
void cluster_files_own(struct cluster_files *f, const struct ipnet *v, size_t n,
		       size_t max_entries);
/* A "files" publish from another node; or a (re)connect: do it all. */
void cluster_files_changed(struct cluster_files *f);
void cluster_files_reconnected(struct cluster_files *f);
/* Is there work (now, in µs)?  And the time of the next, for the poll. */
bool cluster_files_due(struct cluster_files *f, uint64_t now_us);
uint64_t cluster_files_next(const struct cluster_files *f);
/* Do the work on conn (nothing else in flight on it): 0; 1 when Redis
 * refused a call (logged here; tried again at the next refresh); or -1
 * with err when the connection broke (it is then to be dropped). */
int cluster_files_run(struct cluster_files *f, struct redis_conn *conn,
		      cluster_files_sink sink, void *arg, char *err,
		      size_t errlen);

#endif
