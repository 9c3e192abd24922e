/*
 * cluster_msg.h - the bans' publish messages between nodes (pure).
 *
 * What the ban script publishes on <prefix>bans (cluster_scripts.c):
 *   "add <prefix> <ttl_ms> <reason> <origin>"   reason 1 manual, 2 auto
 *   "del <prefix> <origin>"
 * and what cluster_files.c publishes when a node's blocklist files change:
 *   "files <origin>"
 * origin is "<node_id>#<random>" (cluster.c).  Anything else, or a part
 * out of its bounds, is refused whole.
 */
#ifndef MSAPROXY_CLUSTER_MSG_H
#define MSAPROXY_CLUSTER_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ipnet.h"

#define CLUSTER_ORIGIN_MAX 88 /* node_id (63) + '#' + 16 hex + NUL */
#define CLUSTER_MSG_MAX	   256

struct cluster_msg {
	bool add;   /* false: del (or files) */
	bool files; /* a node's blocklist files changed: no net */
	struct ipnet net;
	uint64_t ttl_ms; /* add: 0 for none */
	int reason;	 /* add: BLOCKLIST_REASON_MANUAL or _AUTO */
	char origin[CLUSTER_ORIGIN_MAX];
};

/* msg[0..len) into out: false when it is not one of the three forms. */
bool cluster_msg_parse(const char *msg, size_t len, struct cluster_msg *out);

#endif
