/*
 * metrics.h - the Prometheus text exposition of the proxy's counters.
 *
 * Pure: metrics_render() takes a snapshot (every counter already summed
 * over the workers by server_metrics.c) and writes the text format
 * 0.0.4, nothing else: no clock, no locks, no sockets.  The endpoint that
 * serves it is metrics_http.c.
 *
 * Conventions (https://prometheus.io/docs/practices/naming/): every name
 * starts with msaproxy_, counters end in _total, times are seconds and
 * sizes bytes, label names are lower_snake_case; each family has its HELP
 * and TYPE lines and its samples together.  Label values are escaped
 * (backslash, double quote, newline).
 */
#ifndef MSAPROXY_METRICS_H
#define MSAPROXY_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ops/counters.h"

#define METRICS_XDP_REASONS 3 /* file, manual, auto: enum blocklist_reason */

/* A latency histogram, summed: bucket[i] not cumulative (as counters.h). */
struct metrics_hist {
	uint64_t bucket[COUNTERS_HIST_BOUNDS + 1];
	uint64_t count;
	uint64_t sum_us;
};

struct metrics_listener {
	const char *name; /* the address as configured, or "other" */
	uint64_t sessions[OUTCOME_COUNT];
	uint64_t open;			  /* sessions open now */
	uint64_t refusals[REFUSAL_COUNT]; /* of sessions[OUTCOME_REFUSED] */
};

struct metrics_backend {
	const char *name; /* the address as configured, or "other" */
	bool configured;  /* in the running configuration: the gauges */
	bool up;	  /* health (backend_pool.c) */
	bool enabled;	  /* the operator's state (msaproxyctl backend) */
	unsigned connections;
	uint64_t changes; /* up/down flips (backend_pool_changes()) */
	struct metrics_hist connect, transaction;
};

struct metrics_snapshot {
	uint64_t start_time_ms; /* wall clock (Unix epoch) */
	unsigned generation;
	uint64_t reloads, reload_failures;
	bool last_reload_ok;	      /* the last reload (true if none yet) */
	uint64_t last_config_time_ms; /* wall clock of the last good load */
	bool draining;

	uint64_t accepted, active, messages, data_bytes;
	const struct metrics_listener *listeners;
	size_t nlisteners;
	uint64_t tls_ok[TLSV_COUNT], tls_failed[TLSV_COUNT];
	uint64_t tls_resumed[TLSV_COUNT]; /* of tls_ok */
	uint64_t auth[MECH_COUNT][AUTH_RESULT_COUNT];
	uint64_t limits[LIMIT_HIT_COUNT];
	uint64_t proxy_in[PROXY_IN_COUNT]; /* PROXY headers, by result */

	/* The blocklist (bans.c): entries now and additions, by reason. */
	uint64_t block_entries[METRICS_XDP_REASONS], allow_entries;
	uint64_t bans_added[METRICS_XDP_REASONS], blocklist_refused;
	bool xdp; /* attached: the kernel's counters below */
	uint64_t xdp_dropped_packets[METRICS_XDP_REASONS];
	uint64_t xdp_dropped_bytes[METRICS_XDP_REASONS];
	uint64_t xdp_passed_packets, xdp_allowed_packets;

	const struct metrics_backend *backends;
	size_t nbackends;

	const uint64_t *busy_ns; /* per worker */
	unsigned nworkers;

	/* The auth back end (auth_backend.h). */
	const char *auth_backend; /* "passwd", "dovecot", "http" */
	uint64_t auth_cache_hits, auth_requests, auth_ok, auth_refused;
	uint64_t auth_temp, auth_timeouts, auth_latency_us_sum;
	uint64_t auth_latency_count;
	int64_t auth_inflight;
	/* Fleet mode (cluster.h); cluster false: not configured. */
	bool cluster, cluster_up;
	uint64_t cluster_requests, cluster_errors, cluster_timeouts;
	uint64_t cluster_unavailable, cluster_rtt_us_sum, cluster_rtt_count;

	/* The current generation's certificates: file, notAfter (Unix). */
	const char *const *cert_files;
	const int64_t *cert_expiry;
	size_t ncerts;
	uint64_t memory_limit; /* limits.max_memory, 0: none */

	bool memory; /* jemalloc's statistics are there */
	uint64_t mem_allocated, mem_active, mem_resident, mem_mapped;
};

/* A label value as the exposition writes it (the status page's JSON uses
 * the same names): outcome, TLS version, mechanism, AUTH result, limit
 * kind, refusal reason; NULL past the end. */
enum metrics_label_kind {
	METRICS_LABEL_OUTCOME,
	METRICS_LABEL_TLS,
	METRICS_LABEL_MECH,
	METRICS_LABEL_AUTH,
	METRICS_LABEL_LIMIT,
	METRICS_LABEL_REFUSAL,
};
const char *metrics_label(enum metrics_label_kind kind, int i);

/* The q-quantile (0 < q < 1) of h in microseconds, by linear
 * interpolation inside the bucket it falls in (as Prometheus's
 * histogram_quantile()); in the +Inf bucket: the last finite bound.  -1
 * when h has no observation. */
double metrics_hist_quantile(const struct metrics_hist *h, double q);

/* The whole exposition of m, in the text format (version 0.0.4). */
void metrics_render(const struct metrics_snapshot *m, FILE *out);

/* The Content-Type of what metrics_render() writes. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
