/*
 * server_cluster.c - the control socket's answers about fleet mode
 * (cluster.h): the cluster's state (`msaproxyctl cluster`), its counters
 * in `stats`, a user's buckets across the cluster (`user limits`) and an
 * operator's reset of them (`user reset`).
 *
 * The calls to Redis wait on the main thread, bounded by cluster.timeout
 * (cluster_call): an operator's command, never a session, waits here.
 *
 * Config keys: cluster.* (through cluster.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bans/bans.h"
#include "bans/blocklist.h"
#include "cluster/cluster.h"
#include "lib/log.h"
#include "lib/timer.h"
#include "limits/ratelimit.h"
#include "ops/server.h"
#include "ops/server_internal.h"

static const char *const kinds[LIMIT_USER_KINDS] = {"messages", "recipients",
						    "bytes", "quota"};

/* Seconds since a wall-clock time in ms; -1 for never (0). */
static long long
ago(uint64_t at)
{
	if (at == 0)
		return -1;
	return (long long)time(NULL) - (long long)(at / 1000);
}

static uint64_t
rtt_avg_us(const struct cluster_stats *st)
{
	uint64_t n = atomic_load(&st->rtt_count);

	return n == 0 ? 0 : atomic_load(&st->rtt_us_sum) / n;
}

/* ---------------------------------------------------------------------
 * The bans other nodes made, applied here (on the cluster thread: bans
 * and the limits are thread-safe).
 */

static void
sink_add(void *arg, const struct ipnet *net, uint64_t ttl_ms,
	 enum blocklist_reason reason, const char *node)
{
	struct server *srv = arg;
	char text[IPNET_TEXT_MAX], err[256];

	ipnet_format(net, text, sizeof(text));
	if (bans_add(srv->shared.bans, net, ttl_ms, reason, err, sizeof(err)) !=
	    0) {
		log_warn("cluster-ban-failed",
			 " network=%s from=%s error=\"%s\"", text, node, err);
		return;
	}
	/* An automatic ban is answered by the limits (421 and the time
	 * left), as on the node that earned it; the blocklist keeps it for
	 * XDP and the listing. */
	if (reason == BLOCKLIST_REASON_AUTO && ttl_ms != 0) {
		struct ratelimit_key key;

		if (ratelimit_ip_key(srv->shared.limits, net->addr, &key))
			ratelimit_ip_ban(srv->shared.limits, &key, ttl_ms,
					 timer_now_ms());
	}
	log_info("cluster-ban",
		 " network=%s ttl_ms=%" PRIu64 " reason=%s from=%s", text,
		 ttl_ms, blocklist_reason_name(reason), node);
}

static void
sink_del(void *arg, const struct ipnet *net, const char *node)
{
	struct server *srv = arg;
	char text[IPNET_TEXT_MAX], err[256];
	int r = bans_del(srv->shared.bans, net, err, sizeof(err));
	size_t lifted =
		ratelimit_ip_unban(srv->shared.limits, net, timer_now_ms());

	ipnet_format(net, text, sizeof(text));
	if (r < 0)
		log_warn("cluster-unban-failed",
			 " network=%s from=%s error=\"%s\"", text, node, err);
	else
		log_info("cluster-unban",
			 " network=%s from=%s blocklist=%d limits=%zu", text,
			 node, r == 0, lifted);
}

static void
sink_each(void *arg,
	  void (*fn)(void *ctx, const struct ipnet *net, uint64_t left_ms,
		     enum blocklist_reason reason),
	  void *ctx)
{
	struct server *srv = arg;

	bans_each(srv->shared.bans,
		  (1u << BLOCKLIST_REASON_MANUAL) |
			  (1u << BLOCKLIST_REASON_AUTO),
		  fn, ctx);
}

/* The other nodes' blocklist files, next to this node's own. */
static void
sink_files(void *arg, const struct ipnet *v, size_t n)
{
	struct server *srv = arg;
	char err[256];

	if (bans_share(srv->shared.bans, v, n, err, sizeof(err)) != 0)
		log_warn("cluster-files-refused", " entries=%zu error=\"%s\"",
			 n, err);
	else
		log_info("cluster-files", " entries=%zu", n);
}

struct cluster_ban_sink
server_cluster_sink(struct server *srv)
{
	return (struct cluster_ban_sink){.add = sink_add,
					 .del = sink_del,
					 .each = sink_each,
					 .files = sink_files,
					 .arg = srv};
}

void
server_cluster_files(struct server *srv, const struct config *cfg)
{
	struct ipnet *v;
	size_t n;

	if (srv->shared.cluster == NULL)
		return;
	if (bans_own_files(srv->shared.bans, &v, &n) != 0) {
		log_warn("cluster-files-failed", " error=\"out of memory\"");
		return;
	}
	cluster_files_set(srv->shared.cluster, v, n,
			  cfg->blocklist_max_entries);
	free(v);
}

void
server_cluster(struct server *srv, FILE *out, bool json)
{
	struct cluster *c = srv->shared.cluster;
	const struct cluster_stats *st;
	char err[256];

	if (c == NULL) {
		fprintf(out, json ? "{\"enabled\":false}\n"
				  : "cluster off (no cluster.redis: each node "
				    "keeps its own limits)\n");
		return;
	}
	st = cluster_stats(c);
	cluster_last_error(c, err, sizeof(err));
	fprintf(out,
		json ? "{\"enabled\":true,\"node\":\"%s\",\"redis\":\"%s\","
		       "\"up\":%s,\"fail\":\"%s\",\"last_ok_s_ago\":%lld,"
		       "\"rtt_us_avg\":%" PRIu64 ",\"requests\":%" PRIu64
		       ",\"errors\":%" PRIu64 ",\"timeouts\":%" PRIu64
		       ",\"unavailable\":%" PRIu64 ",\"connects\":%" PRIu64
		       ",\"last_sync_s_ago\":%lld,\"bans_received\":%" PRIu64
		       ",\"file_prefixes_shared\":%" PRIu64
		       ",\"file_nodes\":%" PRIu64 ",\"last_error\":\"%s\"}\n"
		     : "node %s, redis %s: %s (fail %s)\n"
		       "last answer %llds ago, round trip %" PRIu64
		       "us on average\nrequests %" PRIu64 ", errors %" PRIu64
		       ", timeouts %" PRIu64 ", answered unavailable %" PRIu64
		       ", connects %" PRIu64
		       "\nbans: last full sync %llds ago, "
		       "%" PRIu64 " from other nodes since\n"
		       "blocklist files: %" PRIu64 " prefixes from %" PRIu64
		       " other nodes\n"
		       "last error: %s\n",
		cluster_node_id(c), cluster_address(c),
		json ? (cluster_up(c) ? "true" : "false")
		     : (cluster_up(c) ? "up" : "DOWN"),
		cluster_fail_closed(c) ? "closed" : "open",
		ago(atomic_load(&st->last_ok_wall_ms)), rtt_avg_us(st),
		atomic_load(&st->requests), atomic_load(&st->errors),
		atomic_load(&st->timeouts), atomic_load(&st->unavailable),
		atomic_load(&st->connects),
		ago(atomic_load(&st->last_sync_wall_ms)),
		atomic_load(&st->bans_received), atomic_load(&st->files_shared),
		atomic_load(&st->files_nodes),
		err[0] ? err : (json ? "" : "none"));
}

void
server_cluster_stats(struct server *srv, FILE *out, bool json)
{
	struct cluster *c = srv->shared.cluster;
	const struct cluster_stats *st;

	if (c == NULL)
		return;
	st = cluster_stats(c);
	fprintf(out,
		json ? ",\"cluster\":{\"up\":%s,\"requests\":%" PRIu64
		       ",\"errors\":%" PRIu64 ",\"timeouts\":%" PRIu64
		       ",\"unavailable\":%" PRIu64 ",\"rtt_us_avg\":%" PRIu64
		       ",\"batches\":%" PRIu64 "}"
		     : "cluster_up %s\ncluster_requests %" PRIu64
		       "\ncluster_errors %" PRIu64 "\ncluster_timeouts %" PRIu64
		       "\ncluster_unavailable %" PRIu64
		       "\ncluster_rtt_us_avg %" PRIu64
		       "\ncluster_batches %" PRIu64 "\n",
		json ? (cluster_up(c) ? "true" : "false")
		     : (cluster_up(c) ? "1" : "0"),
		atomic_load(&st->requests), atomic_load(&st->errors),
		atomic_load(&st->timeouts), atomic_load(&st->unavailable),
		rtt_avg_us(st), atomic_load(&st->batches));
}

void
server_cluster_user(struct server *srv, const char *login,
		    const struct config_user_limits *pol, FILE *out, bool json)
{
	struct cluster_request req = {.op = CLUSTER_PEEK};

	if (srv->shared.cluster == NULL)
		return;
	cluster_user_id(login, req.user);
	cluster_request_rates(&req, pol);
	cluster_call(srv->shared.cluster, &req);
	if (req.status != CLUSTER_OK) {
		fprintf(out, json ? ",\"cluster\":null"
				  : "cluster: unavailable (Redis down)\n");
		return;
	}
	fprintf(out, json ? ",\"cluster\":{" : "cluster-wide:\n");
	for (int k = 0; k < LIMIT_USER_KINDS; k++) {
		const char *sep = k == 0 ? "" : ",";

		if (req.avail[k] == UINT64_MAX)
			fprintf(out, json ? "%s\"%s\":null" : "%s  %s off\n",
				json ? sep : "", kinds[k]);
		else
			fprintf(out,
				json ? "%s\"%s\":{\"available\":%" PRIu64 "}"
				     : "%s  %s %" PRIu64 " available\n",
				json ? sep : "", kinds[k], req.avail[k]);
	}
	if (json)
		fputc('}', out);
}

int
server_cluster_reset(struct server *srv, const char *login, bool *had_state,
		     char *err, size_t errlen)
{
	struct cluster_request req = {.op = CLUSTER_RESET};

	if (srv->shared.cluster == NULL)
		return 0;
	cluster_user_id(login, req.user);
	cluster_call(srv->shared.cluster, &req);
	if (req.status != CLUSTER_OK) {
		snprintf(err, errlen,
			 "the cluster's state was not reset: Redis is "
			 "unavailable (this node's was)");
		return -1;
	}
	if (req.refused > 0)
		*had_state = true;
	return 0;
}
