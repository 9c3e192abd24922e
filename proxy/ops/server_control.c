/*
 * server_control.c - the running server's answers to control requests
 * (control.c parses them, msaproxyctl sends them): status, stats,
 * sessions, bans, a user's limits, backends; ban, unban, resetting a
 * user's limits, and taking a backend out of rotation or back.
 *
 * Every answer is written to out, as text for a person or as JSON (one
 * object, or one per line for lists); refusals fill err.  Counts are the
 * workers' own counters summed on read (relaxed atomics, one writer
 * each), so an answer never waits for a worker, except the session list,
 * which each worker writes itself through its mailbox (at most
 * SESSIONS_WAIT_MS each).
 *
 * Security stance: the control socket is the operator's (control.mode);
 * what reaches here is already one parsed request.  Names given (a
 * backend, a login) are only compared with the configuration, never used
 * as paths or formats.  Bans and backend changes are logged.
 *
 * Config keys: none of its own (limits.max_memory and the backends' as
 * the running generation has them).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/passwd_db.h"
#include "bans/bans.h"
#include "cluster/cluster.h"
#include "config/config_value.h"
#include "config/generation.h"
#include "io/backend_pool.h"
#include "io/worker.h"
#include "lib/log.h"
#include "lib/timer.h"
#include "limits/caps.h"
#include "limits/ratelimit.h"
#include "ops/counters.h"
#include "ops/metrics.h"
#include "ops/registry.h"
#include "ops/server.h"
#include "ops/server_internal.h"

#define SESSIONS_WAIT_MS 2000

static unsigned long long
sum(const struct server *srv, size_t off)
{
	unsigned long long n = 0;

	for (unsigned k = 0; k < srv->nworkers; k++) {
		const char *c = (const char *)worker_counters(srv->workers[k]);
		n += atomic_load_explicit((const atomic_ullong *)(c + off),
					  memory_order_relaxed);
	}
	return n;
}

#define SUM(field) sum(srv, offsetof(struct worker_counters, field))

void
server_status(struct server *srv, FILE *out, bool json)
{
	uint64_t up = (timer_now_ms() - srv->started_ms) / 1000;
	/* The human form says how long it has been in its state. */
	uint64_t in_state =
		srv->draining ? (timer_now_ms() - srv->drain_started_ms) / 1000
			      : up;
	const char *state = srv->draining ? "draining" : "running";

	if (json) {
		fprintf(out,
			"{\"pid\":%ld,\"state\":\"%s\",\"uptime_s\":%" PRIu64
			",\"config\":\"%s\",\"generation\":%u,\"reloads\":%u,"
			"\"reload_failures\":%u,\"workers\":%u,"
			"\"listeners\":%zu,\"sessions\":%llu,\"users\":%zu}\n",
			(long)getpid(), state, up, srv->path, srv->gen->id,
			srv->reloads, srv->reload_failures, srv->nworkers,
			srv->gen->cfg->nlisteners, SUM(active),
			passwd_db_count(srv->gen->users));
		return;
	}
	fprintf(out,
		"pid %ld, %s for %" PRIu64 "s\n"
		"config %s, generation %u; reloads: %u applied, %u refused\n"
		"workers %u, listeners %zu, sessions %llu, users %zu\n",
		(long)getpid(), state, in_state, srv->path, srv->gen->id,
		srv->reloads, srv->reload_failures, srv->nworkers,
		srv->gen->cfg->nlisteners, SUM(active),
		passwd_db_count(srv->gen->users));
}

/* The caps (caps.h): what they refused, and the allocator's figures read
 * now (the cap itself acts on the last CAPS_SAMPLE_MS sample). */
static void
server_caps_stats(struct server *srv, FILE *out, bool json)
{
	const struct caps *c = &srv->caps;
	uint64_t allocated, resident;

	caps_memory_read(&allocated, &resident);
	fprintf(out,
		json ? ",\"sessions_refused_max_sessions\":%llu,"
		       "\"sessions_refused_max_memory\":%llu,"
		       "\"mail_refused_max_memory\":%llu,"
		       "\"memory_allocated\":%" PRIu64
		       ",\"memory_resident\":%" PRIu64
		       ",\"memory_limit\":%" PRIu64
		       ",\"memory_over\":%d,\"memory_cap_hits\":%llu"
		     : "sessions_refused_max_sessions %llu\n"
		       "sessions_refused_max_memory %llu\n"
		       "mail_refused_max_memory %llu\n"
		       "memory_allocated %" PRIu64 "\n"
		       "memory_resident %" PRIu64 "\n"
		       "memory_limit %" PRIu64 "\n"
		       "memory_over %d\n"
		       "memory_cap_hits %llu\n",
		(unsigned long long)atomic_load(&c->refused_sessions),
		(unsigned long long)atomic_load(&c->refused_memory),
		(unsigned long long)atomic_load(&c->refused_mail), allocated,
		resident, srv->gen->cfg->max_memory,
		caps_memory_over(c) ? 1 : 0,
		(unsigned long long)atomic_load(&c->pressure_events));
}

void
server_stats(struct server *srv, FILE *out, bool json)
{
	const struct ratelimit_stats *st = ratelimit_stats(srv->shared.limits);
	static const char *const kinds[] = {"messages", "recipients", "bytes",
					    "quota"};
	static const char *const ip_kinds[] = {"ok", "banned", "rate",
					       "concurrency", "full"};

	fprintf(out,
		json ? "{\"sessions_accepted\":%llu,"
		       "\"sessions_refused\":%llu,\"sessions_active\":%llu"
		     : "sessions_accepted %llu\nsessions_refused %llu\n"
		       "sessions_active %llu\n",
		SUM(accepted), SUM(refused), SUM(active));
	server_caps_stats(srv, out, json);
	for (int k = 0; k < LIMIT_USER_KINDS; k++)
		fprintf(out,
			json ? ",\"limit_refused_%s\":%llu"
			     : "limit_refused_%s %llu\n",
			kinds[k],
			(unsigned long long)atomic_load(&st->refused[k]));
	for (int k = RATELIMIT_BANNED; k <= RATELIMIT_FULL; k++)
		fprintf(out,
			json ? ",\"ip_refused_%s\":%llu"
			     : "ip_refused_%s %llu\n",
			ip_kinds[k],
			(unsigned long long)atomic_load(&st->ip_refused[k]));
	fprintf(out,
		json ? ",\"ip_bans\":%llu,\"limit_evictions\":%llu,"
		       "\"limit_users\":%zu,\"limit_networks\":%zu"
		     : "ip_bans %llu\nlimit_evictions %llu\n"
		       "limit_users %zu\nlimit_networks %zu\n",
		(unsigned long long)atomic_load(&st->bans),
		(unsigned long long)atomic_load(&st->evictions),
		ratelimit_user_entries(srv->shared.limits),
		ratelimit_ip_entries(srv->shared.limits));
	bans_stats(srv->shared.bans, out, json);
	server_cluster_stats(srv, out, json);
	if (json)
		fprintf(out, "}\n");
}

/* A ban is never shortened (bans_add keeps the longer one, so that an
 * operator's ban cannot cut short an automatic or a file's one): a shorter
 * one is refused here rather than ignored, and the operator who means it
 * unbans first. */
int
server_ban(struct server *srv, const struct ipnet *net, uint64_t ttl_ms,
	   char *err, size_t errlen)
{
	char text[IPNET_TEXT_MAX];
	uint64_t left;

	if (ttl_ms != 0 && bans_left(srv->shared.bans, net, &left) &&
	    (left == 0 || ttl_ms < left)) {
		ipnet_format(net, text, sizeof(text));
		if (left == 0)
			snprintf(err, errlen,
				 "%s is already banned permanently; unban it "
				 "first to ban it for less",
				 text);
		else
			snprintf(err, errlen,
				 "%s is already banned for %" PRIu64
				 "s more, longer than --ttl; unban it first to "
				 "shorten the ban",
				 text, (left + 999) / 1000);
		return -1;
	}
	if (bans_add(srv->shared.bans, net, ttl_ms, BLOCKLIST_REASON_MANUAL,
		     err, errlen) != 0)
		return -1;
	if (srv->shared.cluster != NULL) /* and on every other node */
		cluster_ban(srv->shared.cluster, net, ttl_ms,
			    BLOCKLIST_REASON_MANUAL);
	log_info("banned", " network=%s ttl_ms=%" PRIu64 " reason=manual",
		 ipnet_format(net, text, sizeof(text)), ttl_ms);
	return 0;
}

/* An operator's unban lifts every kind of ban: the blocklist entry and,
 * for a network the limits banned after failed logins, the limits' own
 * ban (which answers 421 without XDP) and its failure count. */
int
server_unban(struct server *srv, const struct ipnet *net, char *err,
	     size_t errlen)
{
	char text[IPNET_TEXT_MAX];
	int r = bans_del(srv->shared.bans, net, err, errlen);
	size_t lifted;

	if (r < 0)
		return -1;
	lifted = ratelimit_ip_unban(srv->shared.limits, net, timer_now_ms());
	/* With a cluster the ban may be another node's: lifted everywhere,
	 * whatever this node held. */
	if (srv->shared.cluster != NULL)
		cluster_unban(srv->shared.cluster, net);
	else if (r == 1 && lifted == 0) {
		snprintf(err, errlen, "%s is not banned",
			 ipnet_format(net, text, sizeof(text)));
		return -1;
	}
	log_info("unbanned", " network=%s blocklist=%d limits=%zu",
		 ipnet_format(net, text, sizeof(text)), r == 0, lifted);
	return 0;
}

void
server_bans(struct server *srv, FILE *out, bool json)
{
	bans_list(srv->shared.bans, out, json);
}

int
server_sessions(struct server *srv, FILE *out, bool json)
{
	int status = 0;

	if (!json)
		fprintf(out, "ID CLIENT LISTENER USER STATE TLS\n");
	for (unsigned k = 0; k < srv->nworkers; k++) {
		char *text;

		if (srv->joined[k])
			continue;
		text = worker_sessions(srv->workers[k], json, SESSIONS_WAIT_MS);
		if (text == NULL) {
			status = -1;
			continue;
		}
		fputs(text, out);
		free(text);
	}
	return status;
}

/* A count as the configuration writes it: bytes as "1GB" (GiB, as in the
 * config) when a whole number of KB, else in tenths of the largest unit,
 * rounded down ("1023.9MB": never more than is there). */
static void
amount(char *buf, size_t len, uint64_t n, bool bytes)
{
	uint64_t unit = n >= GIB ? GIB : n >= MIB ? MIB : KIB;

	if (!bytes)
		snprintf(buf, len, "%" PRIu64, n);
	else if (n < KIB || n % KIB == 0)
		config_value_format_size(buf, len, n);
	else
		snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "%s", n / unit,
			 n % unit * 10 / unit,
			 unit == GIB   ? "GB"
			 : unit == MIB ? "MB"
				       : "KB");
}

int
server_user_limits(struct server *srv, const char *login, FILE *out, bool json,
		   char *err, size_t errlen)
{
	static const char *const kinds[] = {"messages", "recipients", "bytes",
					    "quota"};
	const struct config *cfg = srv->gen->cfg;
	const struct passwd_user_info *info =
		passwd_db_user_info(srv->gen->users, login);
	const struct config_user_limits *pol;
	struct ratelimit_key key;
	uint64_t avail[LIMIT_USER_KINDS];
	bool tracked;

	if (passwd_db_stored_hash(srv->gen->users, login) == NULL) {
		snprintf(err, errlen, "no such user in the users file");
		return -1;
	}
	pol = ratelimit_policy(cfg, login, info ? info->class_name : NULL);
	ratelimit_user_key(srv->shared.limits, login, &key);
	tracked = ratelimit_user_peek(srv->shared.limits, &key, pol,
				      timer_now_ms(), avail);
	if (json)
		fprintf(out, "{\"tracked\":%s", tracked ? "true" : "false");
	for (int k = 0; k < LIMIT_USER_KINDS; k++) {
		const struct config_rate *r = ratelimit_rate(pol, k);
		uint64_t of = k == LIMIT_QUOTA ? r->count : r->burst;
		bool bytes = k == LIMIT_BYTES;
		char a[32], b[32], c[32], p[32];

		if (r->count == 0) {
			fprintf(out, json ? ",\"%s\":null" : "%s off\n",
				kinds[k]);
			continue;
		}
		if (json) {
			fprintf(out,
				",\"%s\":{\"available\":%" PRIu64
				",\"burst\":%" PRIu64 ",\"count\":%" PRIu64
				",\"period_ms\":%" PRIu64 "}",
				kinds[k], avail[k], of, r->count, r->period_ms);
			continue;
		}
		/* In the config's own units: "1GB per 1h", "100 per 1m". */
		amount(a, sizeof(a), avail[k], bytes);
		amount(b, sizeof(b), of, bytes);
		amount(c, sizeof(c), r->count, bytes);
		config_value_format_duration(p, sizeof(p), r->period_ms);
		fprintf(out, "%s %s available of %s (%s %s per %s)\n", kinds[k],
			a, b, k == LIMIT_QUOTA ? "quota" : "rate", c, p);
	}
	server_cluster_user(srv, login, pol, out, json);
	if (json)
		fprintf(out, "}\n");
	return 0;
}

/* Any login, in the users file or not: a guessed one has a failure score
 * too. */
int
server_user_reset(struct server *srv, const char *login, char *err,
		  size_t errlen)
{
	char quoted[4 * 256 + 3];
	struct ratelimit_key key;
	bool had;

	ratelimit_user_key(srv->shared.limits, login, &key);
	had = ratelimit_user_reset(srv->shared.limits, &key);
	if (server_cluster_reset(srv, login, &had, err, errlen) != 0)
		return -1;
	if (!had) {
		snprintf(err, errlen, "%.128s has no limit state", login);
		return -1;
	}
	log_info("user-reset", " user=%s",
		 log_quote(quoted, sizeof(quoted), login, strlen(login)));
	return 0;
}

/* ---------------------------------------------------------------------
 * Backends: list, enable, disable
 */

/* Slot slot's histogram h (connect or transaction) over every worker. */
static void
backend_hist(struct server *srv, unsigned slot, bool transaction,
	     struct metrics_hist *h)
{
	memset(h, 0, sizeof(*h));
	for (unsigned k = 0; k < srv->nworkers; k++) {
		const struct worker_counters *c =
			worker_counters(srv->workers[k]);
		server_sum_hist(h, transaction ? &c->backend_transaction[slot]
					       : &c->backend_connect[slot]);
	}
}

/* JSON: p50 and p99 in ms since the start (null: no observation). */
static void
backend_latency(FILE *out, struct server *srv, unsigned slot)
{
	for (int t = 0; t < 2; t++) {
		struct metrics_hist h;
		double p50, p99;

		backend_hist(srv, slot, t == 1, &h);
		p50 = metrics_hist_quantile(&h, 0.5);
		p99 = metrics_hist_quantile(&h, 0.99);
		fprintf(out, "%s\"%s\":{\"count\":%" PRIu64, t ? "," : "",
			t ? "transaction" : "connect", h.count);
		if (p50 < 0)
			fputs(",\"p50_ms\":null,\"p99_ms\":null}", out);
		else
			fprintf(out, ",\"p50_ms\":%.3f,\"p99_ms\":%.3f}",
				p50 / 1000.0, p99 / 1000.0);
	}
}

/* JSON: the last change of state (health, or the operator's), the wall
 * clock in Unix seconds (null: none since the start). */
static void
backend_change(FILE *out, struct server *srv, size_t i, unsigned slot)
{
	const struct registry_backend *rb = &srv->reg->backend[slot];
	uint64_t at = 0, now = timer_now_ms();
	bool check = false;
	enum backend_pool_why why = backend_pool_last_change(
		srv->gen->backend_pool, i, &at, &check);
	const char *name = backend_pool_why_name(why);
	const char *source = check ? "check" : "session";

	if (why == BACKEND_WHY_NONE)
		at = 0;
	if (rb->admin_ms != 0 && rb->admin_ms >= at) {
		at = rb->admin_ms;
		source = "operator";
		name = atomic_load(&rb->disabled) ? "disabled" : "enabled";
	}
	if (at == 0 || at > now) {
		fputs(",\"last_change\":null", out);
		return;
	}
	fprintf(out,
		",\"last_change\":{\"at\":%" PRIu64
		",\"why\":\"%s\",\"source\":\"%s\"}",
		(server_wall_ms() - (now - at)) / 1000, name, source);
}

void
server_backends(struct server *srv, FILE *out, bool json)
{
	const struct config *cfg = srv->gen->cfg;
	const struct backend_pool *pool = srv->gen->backend_pool;

	for (size_t i = 0; i < cfg->nbackends; i++) {
		const char *name = cfg->backends[i].addr.text;
		bool up = backend_pool_is_up(pool, i),
		     on = backend_pool_is_enabled(pool, i);
		unsigned slot = backend_pool_slot(pool, i);

		fprintf(out,
			json ? "{\"backend\":\"%s\",\"health\":\"%s\","
			       "\"admin\":\"%s\",\"connections\":%u,"
			       "\"weight\":%u"
			     : "%s %s %s connections=%u weight=%u\n",
			name, up ? "up" : "down", on ? "enabled" : "disabled",
			backend_pool_conns(pool, i), cfg->backends[i].weight);
		if (!json)
			continue;
		if (slot < COUNTERS_BACKENDS) {
			fputs(",\"latency\":{", out);
			backend_latency(out, srv, slot);
			fputc('}', out);
			backend_change(out, srv, i, slot);
		}
		fputs("}\n", out);
	}
}

int
server_backend_set(struct server *srv, const char *name, bool enable, FILE *out,
		   char *err, size_t errlen)
{
	const struct config *cfg = srv->gen->cfg;
	size_t i, left = 0;
	int slot;

	for (i = 0; i < cfg->nbackends; i++)
		if (strcmp(cfg->backends[i].addr.text, name) == 0)
			break;
	if (i == cfg->nbackends) {
		snprintf(err, errlen,
			 "no backend %.128s in the configuration "
			 "(msaproxyctl backends lists them)",
			 name);
		return -1;
	}
	slot = registry_find_backend(srv->reg, name);
	if (slot < 0) {
		snprintf(err, errlen,
			 "backend %.128s cannot be disabled: more than %d "
			 "backend addresses since the start (restart to "
			 "manage it)",
			 name, COUNTERS_BACKENDS - 1);
		return -1;
	}
	atomic_store(&srv->reg->backend[slot].disabled, !enable);
	srv->reg->backend[slot].admin_ms = timer_now_ms();
	for (size_t k = 0; k < cfg->nbackends; k++)
		left += backend_pool_is_enabled(srv->gen->backend_pool, k);
	log_info(enable ? "backend-enabled" : "backend-disabled",
		 " backend=%s enabled=%zu of=%zu", name, left, cfg->nbackends);
	if (left == 0) {
		log_warn("backends-all-disabled",
			 " detail=\"new transactions get 451 4.4.1\"");
		fprintf(out, "warning: no backend is enabled: new transactions "
			     "get 451 4.4.1\n");
	}
	return 0;
}
