/*
 * server_metrics.c - what a scrape of the metrics endpoint shows: the
 * workers' counters summed, the limit tables' and the blocklist's own
 * counts, the backends' gauges by registry slot and the allocator's
 * figures, in one snapshot that metrics.c renders (metrics_http.c calls
 * server_metrics_body() on the main thread).
 *
 * Nothing here waits for a worker: each worker publishes its counters
 * (relaxed atomics it alone writes) and they are read as they are, so
 * one scrape's sums are not an instant of the whole process, only of
 * each counter.  Listeners and backends are summed by registry slot, so
 * a series keeps its name across reloads.
 *
 * Security stance: reads only; the body holds addresses and counts,
 * never a login or a client's address.
 *
 * Config keys: none (the backends as the running generation has them).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bans/bans.h"
#include "auth/auth_backend.h"
#include "cluster/cluster.h"
#include "config/generation.h"
#include "io/backend_pool.h"
#include "io/worker.h"
#include "limits/ratelimit.h"
#include "ops/counters.h"
#include "ops/metrics.h"
#include "ops/registry.h"
#include "ops/server_internal.h"

static void
memory_stats(struct metrics_snapshot *m)
{
	static const char *const names[] = {"stats.allocated", "stats.active",
					    "stats.resident", "stats.mapped"};
	uint64_t *to[] = {&m->mem_allocated, &m->mem_active, &m->mem_resident,
			  &m->mem_mapped};
	uint64_t epoch = 1;
	size_t len = sizeof(epoch);

	if (mallctl == NULL ||
	    mallctl("epoch", &epoch, &len, &epoch, sizeof(epoch)) != 0)
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t v = 0;

		len = sizeof(v);
		if (mallctl(names[i], &v, &len, NULL, 0) != 0)
			return;
		*to[i] = v;
	}
	m->memory = true;
}

void
server_sum_hist(struct metrics_hist *to, const struct counter_hist *from)
{
	for (int i = 0; i <= COUNTERS_HIST_BOUNDS; i++)
		to->bucket[i] += counter_read(&from->bucket[i]);
	to->count += counter_read(&from->count);
	to->sum_us += counter_read(&from->sum_us);
}

/* The workers' counters, summed. */
static void
sum_workers(struct server *srv, struct metrics_snapshot *m,
	    struct metrics_listener *ls, struct metrics_backend *bs,
	    uint64_t *busy)
{
	for (unsigned k = 0; k < srv->nworkers; k++) {
		const struct worker_counters *c =
			worker_counters(srv->workers[k]);

		m->accepted += counter_read(&c->accepted);
		m->active += counter_read(&c->active);
		m->messages += counter_read(&c->messages);
		m->data_bytes += counter_read(&c->data_bytes);
		busy[k] = counter_read(&c->busy_ns);
		for (unsigned i = 0; i < srv->reg->nlisteners; i++)
			for (int o = 0; o < OUTCOME_COUNT; o++)
				ls[i].sessions[o] +=
					counter_read(&c->sessions[i][o]);
		for (unsigned i = 0; i < srv->reg->nlisteners; i++) {
			ls[i].open += counter_read(&c->open[i]);
			for (int r = 0; r < REFUSAL_COUNT; r++)
				ls[i].refusals[r] +=
					counter_read(&c->refusals[i][r]);
		}
		for (int v = 0; v < TLSV_COUNT; v++) {
			m->tls_ok[v] += counter_read(&c->tls_ok[v]);
			m->tls_failed[v] += counter_read(&c->tls_failed[v]);
			m->tls_resumed[v] += counter_read(&c->tls_resumed[v]);
		}
		for (int i = 0; i < MECH_COUNT; i++)
			for (int r = 0; r < AUTH_RESULT_COUNT; r++)
				m->auth[i][r] += counter_read(&c->auth[i][r]);
		for (int i = 0; i < LIMIT_HIT_COUNT; i++)
			m->limits[i] += counter_read(&c->limits[i]);
		for (int i = 0; i < PROXY_IN_COUNT; i++)
			m->proxy_in[i] += counter_read(&c->proxy_in[i]);
		for (unsigned i = 0; i < srv->reg->nbackends; i++) {
			server_sum_hist(&bs[i].connect, &c->backend_connect[i]);
			server_sum_hist(&bs[i].transaction,
					&c->backend_transaction[i]);
		}
	}
}

/* The limit tables' own counters (ratelimit.h), as limit kinds. */
static void
sum_limits(struct server *srv, struct metrics_snapshot *m)
{
	const struct ratelimit_stats *st = ratelimit_stats(srv->shared.limits);

	m->limits[LIMIT_HIT_MESSAGES] +=
		atomic_load(&st->refused[LIMIT_MESSAGES]);
	m->limits[LIMIT_HIT_RECIPIENTS] +=
		atomic_load(&st->refused[LIMIT_RECIPIENTS]);
	m->limits[LIMIT_HIT_BYTES] += atomic_load(&st->refused[LIMIT_BYTES]);
	m->limits[LIMIT_HIT_MESSAGES_QUOTA] +=
		atomic_load(&st->refused[LIMIT_QUOTA]);
	m->limits[LIMIT_HIT_IP_BANNED] +=
		atomic_load(&st->ip_refused[RATELIMIT_BANNED]);
	m->limits[LIMIT_HIT_IP_CONNECTION_RATE] +=
		atomic_load(&st->ip_refused[RATELIMIT_RATE]);
	m->limits[LIMIT_HIT_IP_CONCURRENCY] +=
		atomic_load(&st->ip_refused[RATELIMIT_CONCURRENCY]);
	m->limits[LIMIT_HIT_IP_TABLE_FULL] +=
		atomic_load(&st->ip_refused[RATELIMIT_FULL]);
}

static void
blocklist_counts(struct server *srv, struct metrics_snapshot *m)
{
	struct bans_counts bc;

	if (srv->shared.bans == NULL)
		return;
	bans_counts(srv->shared.bans, &bc);
	for (int r = 0; r < METRICS_XDP_REASONS; r++) {
		m->block_entries[r] = bc.block[r];
		m->bans_added[r] = bc.added[r];
		m->xdp_dropped_packets[r] = bc.xdp_dropped_packets[r];
		m->xdp_dropped_bytes[r] = bc.xdp_dropped_bytes[r];
	}
	m->allow_entries = bc.allow;
	m->blocklist_refused = bc.refused;
	m->xdp = bc.xdp;
	m->xdp_passed_packets = bc.xdp_passed_packets;
	m->xdp_allowed_packets = bc.xdp_allowed_packets;
}

/* The configured backends' gauges, by registry slot. */
static void
backend_gauges(struct server *srv, struct metrics_backend *bs)
{
	const struct config *cfg = srv->gen->cfg;
	const struct backend_pool *pool = srv->gen->backend_pool;

	for (unsigned i = 0; i < srv->reg->nbackends; i++)
		bs[i].name = srv->reg->backend[i].name;
	for (size_t i = 0; i < cfg->nbackends; i++) {
		struct metrics_backend *b = &bs[backend_pool_slot(pool, i)];

		b->configured = true;
		b->up = backend_pool_is_up(pool, i);
		b->enabled = backend_pool_is_enabled(pool, i);
		b->connections += backend_pool_conns(pool, i);
		b->changes += backend_pool_changes(pool, i);
	}
}

static void
auth_counts(struct server *srv, struct metrics_snapshot *m)
{
	const struct auth_backend_stats *st;

	if (srv->shared.auth == NULL)
		return;
	st = auth_backend_stats(srv->shared.auth);
	m->auth_backend = auth_backend_name(srv->shared.auth);
	m->auth_cache_hits = atomic_load(&st->cache_hits);
	m->auth_requests = atomic_load(&st->requests);
	m->auth_ok = atomic_load(&st->ok);
	m->auth_refused = atomic_load(&st->refused);
	m->auth_temp = atomic_load(&st->temp);
	m->auth_timeouts = atomic_load(&st->timeouts);
	m->auth_inflight = atomic_load(&st->inflight);
	m->auth_latency_us_sum = atomic_load(&st->latency_us_sum);
	m->auth_latency_count = atomic_load(&st->latency_count);
}

static void
cluster_counts(struct server *srv, struct metrics_snapshot *m)
{
	const struct cluster_stats *st;

	if (srv->shared.cluster == NULL)
		return;
	st = cluster_stats(srv->shared.cluster);
	m->cluster = true;
	m->cluster_up = cluster_up(srv->shared.cluster);
	m->cluster_requests = atomic_load(&st->requests);
	m->cluster_errors = atomic_load(&st->errors);
	m->cluster_timeouts = atomic_load(&st->timeouts);
	m->cluster_unavailable = atomic_load(&st->unavailable);
	m->cluster_rtt_us_sum = atomic_load(&st->rtt_us_sum);
	m->cluster_rtt_count = atomic_load(&st->rtt_count);
}

int
server_snapshot_take(struct server *srv, struct server_snapshot *s)
{
	const struct config *cfg = srv->gen->cfg;
	struct metrics_snapshot *m = &s->m;

	*s = (struct server_snapshot){0};
	*m = (struct metrics_snapshot){
		.start_time_ms = srv->started_wall_ms,
		.generation = srv->gen->id,
		.reloads = srv->reloads,
		.reload_failures = srv->reload_failures,
		.last_reload_ok = srv->last_reload_ok,
		.last_config_time_ms = srv->loaded_wall_ms,
		.draining = srv->draining,
		.nworkers = srv->nworkers,
	};
	s->ls = calloc(COUNTERS_LISTENERS, sizeof(*s->ls));
	s->bs = calloc(COUNTERS_BACKENDS, sizeof(*s->bs));
	s->busy = calloc(srv->nworkers, sizeof(*s->busy));
	s->certs = calloc(cfg->ncerts + 1, sizeof(*s->certs));
	if (s->ls == NULL || s->bs == NULL || s->busy == NULL ||
	    s->certs == NULL) {
		server_snapshot_free(s);
		return -1;
	}
	for (unsigned i = 0; i < srv->reg->nlisteners; i++)
		s->ls[i].name = srv->reg->listener[i];
	sum_workers(srv, m, s->ls, s->bs, s->busy);
	sum_limits(srv, m);
	blocklist_counts(srv, m);
	backend_gauges(srv, s->bs);
	auth_counts(srv, m);
	cluster_counts(srv, m);
	memory_stats(m);
	for (size_t i = 0; i < cfg->ncerts; i++)
		s->certs[i] = cfg->certs[i].cert_file;
	m->cert_files = s->certs;
	m->cert_expiry = srv->gen->cert_expiry;
	m->ncerts = srv->gen->cert_expiry != NULL ? cfg->ncerts : 0;
	m->memory_limit = cfg->max_memory;
	m->listeners = s->ls;
	m->nlisteners = srv->reg->nlisteners;
	m->backends = s->bs;
	m->nbackends = srv->reg->nbackends;
	m->busy_ns = s->busy;
	return 0;
}

void
server_snapshot_free(struct server_snapshot *s)
{
	free(s->ls);
	free(s->bs);
	free(s->busy);
	free(s->certs);
	*s = (struct server_snapshot){0};
}

char *
server_metrics_body(void *arg, size_t *len)
{
	struct server_snapshot s;
	char *text = NULL;
	FILE *out;

	*len = 0;
	if (server_snapshot_take(arg, &s) != 0)
		return NULL;
	out = open_memstream(&text, len);
	if (out != NULL) {
		metrics_render(&s.m, out);
		if (fclose(out) != 0) {
			free(text);
			text = NULL;
		}
	}
	server_snapshot_free(&s);
	return text;
}
