/*
 * metrics.c - render a metrics snapshot as Prometheus text (see metrics.h).
 *
 * Every family is written whole, HELP and TYPE first, in a fixed order;
 * counters of a labelled family are written for every label value (zeros
 * included), so rate() has a series from the first scrape on.  The XDP and
 * memory families appear only when there is something to read (XDP
 * attached, jemalloc linked).
 *
 * Security stance: label values come from the configuration (addresses)
 * and fixed tables, never from clients; they are escaped all the same.
 */
#include <inttypes.h>
#include <string.h>

#include "ops/metrics.h"

static const char *const outcome_labels[OUTCOME_COUNT] = {
	[OUTCOME_OK] = "ok",
	[OUTCOME_REFUSED] = "refused",
	[OUTCOME_TIMEOUT] = "timeout",
	[OUTCOME_TLS_FAILED] = "tls_failed",
	[OUTCOME_SHUTDOWN] = "shutdown",
	[OUTCOME_ERROR] = "error",
};

static const char *const tls_labels[TLSV_COUNT] = {
	[TLSV_1_3] = "TLSv1.3",
	[TLSV_1_2] = "TLSv1.2",
	[TLSV_UNKNOWN] = "unknown",
};

static const char *const mech_labels[MECH_COUNT] = {
	[MECH_PLAIN] = "plain",
	[MECH_LOGIN] = "login",
	[MECH_OAUTHBEARER] = "oauthbearer",
	[MECH_XOAUTH2] = "xoauth2",
};

static const char *const auth_labels[AUTH_RESULT_COUNT] = {
	[AUTH_SUCCESS] = "success",
	[AUTH_FAILURE] = "failure",
};

static const char *const proxy_in_labels[PROXY_IN_COUNT] = {
	[PROXY_IN_CLIENT] = "client",
	[PROXY_IN_LOCAL] = "local",
	[PROXY_IN_UNTRUSTED] = "untrusted",
	[PROXY_IN_MISSING] = "missing",
	[PROXY_IN_MALFORMED] = "malformed",
	[PROXY_IN_OVERSIZE] = "oversize",
	[PROXY_IN_UNSUPPORTED] = "unsupported",
	[PROXY_IN_TRUNCATED] = "truncated",
	[PROXY_IN_TIMEOUT] = "timeout",
	[PROXY_IN_CLOSED] = "closed",
};

static const char *const limit_labels[LIMIT_HIT_COUNT] = {
	[LIMIT_HIT_MESSAGES] = "messages",
	[LIMIT_HIT_RECIPIENTS] = "recipients",
	[LIMIT_HIT_BYTES] = "bytes",
	[LIMIT_HIT_MESSAGES_QUOTA] = "messages_quota",
	[LIMIT_HIT_IP_BANNED] = "ip_banned",
	[LIMIT_HIT_IP_CONNECTION_RATE] = "ip_connection_rate",
	[LIMIT_HIT_IP_CONCURRENCY] = "ip_concurrency",
	[LIMIT_HIT_IP_TABLE_FULL] = "ip_table_full",
	[LIMIT_HIT_MAX_SESSIONS] = "max_sessions",
	[LIMIT_HIT_MAX_MEMORY] = "max_memory",
	[LIMIT_HIT_MESSAGE_SIZE] = "message_size",
	[LIMIT_HIT_RECIPIENTS_PER_MESSAGE] = "recipients_per_message",
	[LIMIT_HIT_LINE_LENGTH] = "line_length",
	[LIMIT_HIT_MAX_ERRORS] = "max_errors",
	[LIMIT_HIT_AUTH_FAILURES] = "auth_failures",
	[LIMIT_HIT_COMMAND_TIMEOUT] = "command_timeout",
	[LIMIT_HIT_DATA_TIMEOUT] = "data_timeout",
	[LIMIT_HIT_HANDSHAKE_TIMEOUT] = "handshake_timeout",
};

static const char *const refusal_labels[REFUSAL_COUNT] = {
	[REFUSAL_BLOCKLIST] = "blocklist",
	[REFUSAL_MAX_SESSIONS] = "max_sessions",
	[REFUSAL_MAX_MEMORY] = "max_memory",
	[REFUSAL_PROXY] = "proxy_header",
	[REFUSAL_IP_BANNED] = "ip_banned",
	[REFUSAL_IP_RATE] = "ip_connection_rate",
	[REFUSAL_IP_CONCURRENCY] = "ip_concurrency",
	[REFUSAL_IP_TABLE_FULL] = "ip_table_full",
	[REFUSAL_LISTENER_DENIED] = "listener_denied",
	[REFUSAL_OTHER] = "other",
};

/* enum blocklist_reason, in order. */
static const char *const reason_labels[METRICS_XDP_REASONS] = {
	"file",
	"manual",
	"auto",
};

const char *
metrics_label(enum metrics_label_kind kind, int i)
{
	switch (kind) {
	case METRICS_LABEL_OUTCOME:
		return i >= 0 && i < OUTCOME_COUNT ? outcome_labels[i] : NULL;
	case METRICS_LABEL_TLS:
		return i >= 0 && i < TLSV_COUNT ? tls_labels[i] : NULL;
	case METRICS_LABEL_MECH:
		return i >= 0 && i < MECH_COUNT ? mech_labels[i] : NULL;
	case METRICS_LABEL_AUTH:
		return i >= 0 && i < AUTH_RESULT_COUNT ? auth_labels[i] : NULL;
	case METRICS_LABEL_LIMIT:
		return i >= 0 && i < LIMIT_HIT_COUNT ? limit_labels[i] : NULL;
	case METRICS_LABEL_REFUSAL:
		return i >= 0 && i < REFUSAL_COUNT ? refusal_labels[i] : NULL;
	}
	return NULL;
}

double
metrics_hist_quantile(const struct metrics_hist *h, double q)
{
	uint64_t total = 0, cum = 0;
	double rank;

	for (int i = 0; i <= COUNTERS_HIST_BOUNDS; i++)
		total += h->bucket[i];
	if (total == 0)
		return -1;
	rank = q * (double)total;
	for (int i = 0; i < COUNTERS_HIST_BOUNDS; i++) {
		double lo = i ? (double)counters_hist_bound_us[i - 1] : 0;
		double hi = (double)counters_hist_bound_us[i];

		if (h->bucket[i] > 0 && (double)(cum + h->bucket[i]) >= rank)
			return lo + (hi - lo) * (rank - (double)cum) /
					    (double)h->bucket[i];
		cum += h->bucket[i];
	}
	return (double)counters_hist_bound_us[COUNTERS_HIST_BOUNDS - 1];
}

/* ---------------------------------------------------------------------
 * Pieces
 */

static void
family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the text format wants. */
static void
label_value(FILE *out, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(out, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", out);
		else
			fputc(*v, out);
	}
}

/* name{label="value"} n, or name n when label is NULL. */
static void
sample(FILE *out, const char *name, const char *label, const char *value,
       uint64_t n)
{
	fputs(name, out);
	if (label != NULL) {
		fprintf(out, "{%s=\"", label);
		label_value(out, value);
		fputs("\"}", out);
	}
	fprintf(out, " %" PRIu64 "\n", n);
}

/* A whole number of units as a decimal of seconds: 1500 ms -> "1.5". */
static void
seconds(FILE *out, uint64_t n, uint64_t per_second, int digits)
{
	uint64_t frac = n % per_second;
	char text[24];
	int len;

	fprintf(out, "%" PRIu64, n / per_second);
	if (frac == 0)
		return;
	len = snprintf(text, sizeof(text), "%0*" PRIu64, digits, frac);

	while (len > 0 && text[len - 1] == '0')
		text[--len] = '\0';
	fprintf(out, ".%s", text);
}

/* A family with one sample per label value: values[i] under labels[i]. */
static void
labelled(FILE *out, const char *name, const char *type, const char *help,
	 const char *label, const char *const *labels, const uint64_t *values,
	 int n)
{
	family(out, name, type, help);
	for (int i = 0; i < n; i++)
		sample(out, name, label, labels[i], values[i]);
}

static void
gauge_seconds_ms(FILE *out, const char *name, const char *help, uint64_t ms)
{
	family(out, name, "gauge", help);
	fprintf(out, "%s ", name);
	seconds(out, ms, 1000, 3);
	fputc('\n', out);
}

static void
scalar(FILE *out, const char *name, const char *type, const char *help,
       uint64_t n)
{
	family(out, name, type, help);
	sample(out, name, NULL, NULL, n);
}

/* One histogram series: cumulative buckets, +Inf, sum (s) and count. */
static void
histogram(FILE *out, const char *name, const char *label, const char *value,
	  const struct metrics_hist *h)
{
	uint64_t cum = 0;

	for (int i = 0; i <= COUNTERS_HIST_BOUNDS; i++) {
		cum += h->bucket[i];
		fprintf(out, "%s_bucket{%s=\"", name, label);
		label_value(out, value);
		fputs("\",le=\"", out);
		if (i < COUNTERS_HIST_BOUNDS)
			seconds(out, counters_hist_bound_us[i], 1000000, 6);
		else
			fputs("+Inf", out);
		fprintf(out, "\"} %" PRIu64 "\n", cum);
	}
	fprintf(out, "%s_sum{%s=\"", name, label);
	label_value(out, value);
	fputs("\"} ", out);
	seconds(out, h->sum_us, 1000000, 6);
	fprintf(out, "\n%s_count{%s=\"", name, label);
	label_value(out, value);
	fprintf(out, "\"} %" PRIu64 "\n", h->count);
}

/* ---------------------------------------------------------------------
 * Families
 */

static void
render_process(const struct metrics_snapshot *m, FILE *out)
{
	gauge_seconds_ms(out, "msaproxy_process_start_time_seconds",
			 "Start time of the process since the Unix epoch.",
			 m->start_time_ms);
	scalar(out, "msaproxy_config_generation", "gauge",
	       "Configuration generation in use for new sessions (1 at start, "
	       "+1 per successful reload).",
	       m->generation);
	family(out, "msaproxy_config_reloads_total", "counter",
	       "Reloads asked for (SIGHUP, msaproxyctl reload), by result.");
	sample(out, "msaproxy_config_reloads_total", "result", "success",
	       m->reloads);
	sample(out, "msaproxy_config_reloads_total", "result", "failure",
	       m->reload_failures);
	scalar(out, "msaproxy_config_last_reload_successful", "gauge",
	       "1 if the last reload succeeded or there was none yet, 0 if it "
	       "failed (the previous configuration is still running).",
	       m->last_reload_ok ? 1 : 0);
	gauge_seconds_ms(out, "msaproxy_config_last_load_timestamp_seconds",
			 "Time of the last successful configuration load (the "
			 "start or a reload) since the Unix epoch.",
			 m->last_config_time_ms);
	scalar(out, "msaproxy_draining", "gauge",
	       "1 while draining (no new sessions, the process is stopping).",
	       m->draining ? 1 : 0);
	if (m->ncerts == 0)
		return;
	family(out, "msaproxy_tls_certificate_expiry_seconds", "gauge",
	       "notAfter of each tls.certificates entry of the running "
	       "configuration (its first certificate) since the Unix epoch, "
	       "read at the load.");
	for (size_t i = 0; i < m->ncerts; i++)
		if (m->cert_expiry[i] > 0)
			sample(out, "msaproxy_tls_certificate_expiry_seconds",
			       "cert", m->cert_files[i],
			       (uint64_t)m->cert_expiry[i]);
}

static void
render_sessions(const struct metrics_snapshot *m, FILE *out)
{
	scalar(out, "msaproxy_connections_accepted_total", "counter",
	       "TCP connections accepted on the listeners, refused ones "
	       "included.",
	       m->accepted);
	scalar(out, "msaproxy_sessions_active", "gauge",
	       "Client sessions open now.", m->active);
	family(out, "msaproxy_sessions_total", "counter",
	       "Client sessions ended, by listener address and outcome "
	       "(refused: closed at connect by the blocklist, a limit or the "
	       "listener's lists).");
	for (size_t i = 0; i < m->nlisteners; i++) {
		for (int o = 0; o < OUTCOME_COUNT; o++) {
			fputs("msaproxy_sessions_total{listener=\"", out);
			label_value(out, m->listeners[i].name);
			fprintf(out, "\",outcome=\"%s\"} %" PRIu64 "\n",
				outcome_labels[o], m->listeners[i].sessions[o]);
		}
	}
	family(out, "msaproxy_listener_sessions_open", "gauge",
	       "Client sessions open now, by listener address.");
	for (size_t i = 0; i < m->nlisteners; i++)
		sample(out, "msaproxy_listener_sessions_open", "listener",
		       m->listeners[i].name, m->listeners[i].open);
	family(out, "msaproxy_listener_refusals_total", "counter",
	       "Sessions refused at connect, by listener address and reason "
	       "(the outcome=\"refused\" sessions, split).");
	for (size_t i = 0; i < m->nlisteners; i++) {
		for (int r = 0; r < REFUSAL_COUNT; r++) {
			fputs("msaproxy_listener_refusals_total{listener=\"",
			      out);
			label_value(out, m->listeners[i].name);
			fprintf(out, "\",reason=\"%s\"} %" PRIu64 "\n",
				refusal_labels[r], m->listeners[i].refusals[r]);
		}
	}
	labelled(out, "msaproxy_tls_handshakes_total", "counter",
		 "Client TLS handshakes completed, by protocol version.",
		 "version", tls_labels, m->tls_ok, TLSV_COUNT);
	labelled(out, "msaproxy_tls_resumed_total", "counter",
		 "Client TLS handshakes that resumed a session (ticket or "
		 "cache), by protocol version: part of "
		 "msaproxy_tls_handshakes_total.",
		 "version", tls_labels, m->tls_resumed, TLSV_COUNT);
	labelled(out, "msaproxy_tls_handshake_failures_total", "counter",
		 "Client TLS handshakes that failed or timed out, by protocol "
		 "version (unknown: before one was agreed).",
		 "version", tls_labels, m->tls_failed, TLSV_COUNT);
	family(out, "msaproxy_auth_total", "counter",
	       "SMTP AUTH attempts checked, by mechanism and result.");
	for (int k = 0; k < MECH_COUNT; k++)
		for (int r = 0; r < AUTH_RESULT_COUNT; r++)
			fprintf(out,
				"msaproxy_auth_total{mechanism=\"%s\","
				"result=\"%s\"} %" PRIu64 "\n",
				mech_labels[k], auth_labels[r], m->auth[k][r]);
	labelled(out, "msaproxy_limit_hits_total", "counter",
		 "Times a limit answered a client, by kind (user rate limits, "
		 "network limits, session limits, timeouts).",
		 "kind", limit_labels, m->limits, LIMIT_HIT_COUNT);
	labelled(
		out, "msaproxy_proxy_headers_total", "counter",
		"PROXY protocol headers on proxy_protocol listeners, by result "
		"(client, local: taken; the others: the connection was "
		"closed).",
		"result", proxy_in_labels, m->proxy_in, PROXY_IN_COUNT);
	scalar(out, "msaproxy_messages_total", "counter",
	       "Messages a backend accepted (2xx after the end of data).",
	       m->messages);
	scalar(out, "msaproxy_data_bytes_total", "counter",
	       "Message bytes relayed from clients to backends.",
	       m->data_bytes);
}

static void
render_blocklist(const struct metrics_snapshot *m, FILE *out)
{
	labelled(out, "msaproxy_blocklist_entries", "gauge",
		 "Blocked prefixes now, by source (file, manual: msaproxyctl "
		 "ban, auto: failed logins or floods).",
		 "source", reason_labels, m->block_entries,
		 METRICS_XDP_REASONS);
	scalar(out, "msaproxy_allowlist_entries", "gauge",
	       "Prefixes on the blocklist's allowlist now.", m->allow_entries);
	labelled(out, "msaproxy_bans_total", "counter",
		 "Prefixes added to the blocklist (or whose ban was extended), "
		 "by source.",
		 "source", reason_labels, m->bans_added, METRICS_XDP_REASONS);
	scalar(out, "msaproxy_blocklist_refused_connections_total", "counter",
	       "Connections closed at accept because the source is blocked.",
	       m->blocklist_refused);
	if (!m->xdp)
		return;
	labelled(out, "msaproxy_xdp_dropped_packets_total", "counter",
		 "Packets the XDP program dropped, by the reason of the entry "
		 "that matched.",
		 "reason", reason_labels, m->xdp_dropped_packets,
		 METRICS_XDP_REASONS);
	labelled(out, "msaproxy_xdp_dropped_bytes_total", "counter",
		 "Bytes of the packets the XDP program dropped, by reason.",
		 "reason", reason_labels, m->xdp_dropped_bytes,
		 METRICS_XDP_REASONS);
	scalar(out, "msaproxy_xdp_passed_packets_total", "counter",
	       "Packets the XDP program passed.", m->xdp_passed_packets);
	scalar(out, "msaproxy_xdp_allowed_packets_total", "counter",
	       "Packets passed because their source is on the allowlist.",
	       m->xdp_allowed_packets);
}

static void
render_backends(const struct metrics_snapshot *m, FILE *out)
{
	static const struct {
		const char *name, *help;
		int field;
	} gauges[] = {
		{"msaproxy_backend_up",
		 "1 if the backend is up (health checks and sessions), else 0.",
		 0},
		{"msaproxy_backend_enabled",
		 "1 if the backend is in rotation, 0 if an operator disabled "
		 "it "
		 "(msaproxyctl backend disable).",
		 1},
		{"msaproxy_backend_connections",
		 "Backend connections open now, all workers.", 2},
	};

	for (size_t g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
		family(out, gauges[g].name, "gauge", gauges[g].help);
		for (size_t i = 0; i < m->nbackends; i++) {
			const struct metrics_backend *b = &m->backends[i];
			uint64_t v = gauges[g].field == 0   ? b->up
				     : gauges[g].field == 1 ? b->enabled
							    : b->connections;

			if (b->configured)
				sample(out, gauges[g].name, "backend", b->name,
				       v);
		}
	}
	family(out, "msaproxy_backend_state_changes_total", "counter",
	       "Times the backend went down or came back up (since the start, "
	       "or since it was last added to the configuration).");
	for (size_t i = 0; i < m->nbackends; i++)
		if (m->backends[i].configured)
			sample(out, "msaproxy_backend_state_changes_total",
			       "backend", m->backends[i].name,
			       m->backends[i].changes);
	family(out, "msaproxy_backend_connect_seconds", "histogram",
	       "Time from connect() to a backend ready for the first command "
	       "(greeting, EHLO, STARTTLS, XCLIENT).");
	for (size_t i = 0; i < m->nbackends; i++)
		histogram(out, "msaproxy_backend_connect_seconds", "backend",
			  m->backends[i].name, &m->backends[i].connect);
	family(out, "msaproxy_backend_transaction_seconds", "histogram",
	       "Time from the end of a message's data to the backend's final "
	       "reply (its commit of the transaction).");
	for (size_t i = 0; i < m->nbackends; i++)
		histogram(out, "msaproxy_backend_transaction_seconds",
			  "backend", m->backends[i].name,
			  &m->backends[i].transaction);
}

static void
render_runtime(const struct metrics_snapshot *m, FILE *out)
{
	static const char name[] = "msaproxy_worker_busy_seconds_total";

	family(out, name, "counter",
	       "Time each worker spent processing (outside its io_uring "
	       "wait): its saturation is the rate of this.");
	for (unsigned k = 0; k < m->nworkers; k++) {
		fprintf(out, "%s{worker=\"%u\"} ", name, k);
		seconds(out, m->busy_ns[k], 1000000000, 9);
		fputc('\n', out);
	}
	scalar(out, "msaproxy_memory_limit_bytes", "gauge",
	       "limits.max_memory (0: no limit), the cap on the bytes "
	       "allocated.",
	       m->memory_limit);
	if (!m->memory)
		return;
	scalar(out, "msaproxy_memory_allocated_bytes", "gauge",
	       "Bytes allocated by the application (jemalloc "
	       "stats.allocated).",
	       m->mem_allocated);
	scalar(out, "msaproxy_memory_active_bytes", "gauge",
	       "Bytes in active pages (jemalloc stats.active).", m->mem_active);
	scalar(out, "msaproxy_memory_resident_bytes", "gauge",
	       "Bytes in physically resident pages the allocator maps "
	       "(jemalloc stats.resident).",
	       m->mem_resident);
	scalar(out, "msaproxy_memory_mapped_bytes", "gauge",
	       "Bytes in extents the allocator maps (jemalloc stats.mapped).",
	       m->mem_mapped);
}

static void
render_auth_backend(const struct metrics_snapshot *m, FILE *out)
{
	const char *lat = "msaproxy_auth_backend_seconds_total";
	const char *res = "msaproxy_auth_backend_requests_total";

	if (m->auth_backend == NULL)
		return;
	family(out, res, "counter",
	       "Logins the auth back end (auth.backend) answered, by result "
	       "(temp: down, slow or said so: 454).");
	fprintf(out,
		"%s{backend=\"%s\",result=\"ok\"} %" PRIu64 "\n"
		"%s{backend=\"%s\",result=\"refused\"} %" PRIu64 "\n"
		"%s{backend=\"%s\",result=\"temp\"} %" PRIu64 "\n",
		res, m->auth_backend, m->auth_ok, res, m->auth_backend,
		m->auth_refused, res, m->auth_backend, m->auth_temp);
	scalar(out, "msaproxy_auth_backend_timeouts_total", "counter",
	       "Logins the back end did not answer within its timeout "
	       "(auth.dovecot.timeout, auth.http.timeout).",
	       m->auth_timeouts);
	family(out, "msaproxy_auth_backend_inflight", "gauge",
	       "Logins submitted to the back end and not answered yet.");
	fprintf(out, "msaproxy_auth_backend_inflight %" PRId64 "\n",
		m->auth_inflight > 0 ? m->auth_inflight : 0);
	scalar(out, "msaproxy_auth_cache_hits_total", "counter",
	       "Logins answered from the cache of verified logins "
	       "(auth.cache_ttl; passwd back end).",
	       m->auth_cache_hits);
	family(out, lat, "counter",
	       "Time the answered logins waited for the back end, summed "
	       "(divided by the requests' increase: the mean latency).");
	fprintf(out, "%s{backend=\"%s\"} ", lat, m->auth_backend);
	seconds(out, m->auth_latency_us_sum, 1000000, 6);
	fputc('\n', out);
}

static void
render_cluster(const struct metrics_snapshot *m, FILE *out)
{
	const char *rtt = "msaproxy_cluster_rtt_seconds";

	if (!m->cluster)
		return;
	scalar(out, "msaproxy_cluster_up", "gauge",
	       "1 while the connection to Redis (cluster.redis) is up.",
	       m->cluster_up ? 1 : 0);
	scalar(out, "msaproxy_cluster_requests_total", "counter",
	       "Calls sent to Redis.", m->cluster_requests);
	scalar(out, "msaproxy_cluster_errors_total", "counter",
	       "Error replies from Redis (each drops the connection).",
	       m->cluster_errors);
	scalar(out, "msaproxy_cluster_timeouts_total", "counter",
	       "Calls Redis did not answer within cluster.timeout.",
	       m->cluster_timeouts);
	scalar(out, "msaproxy_cluster_fallbacks_total", "counter",
	       "Calls answered without Redis (down or timed out): the node's "
	       "own tables decided (fail open) or MAIL was refused (fail "
	       "closed).",
	       m->cluster_unavailable);
	family(out, rtt, "summary",
	       "Time from a worker's request to Redis's answer.");
	fprintf(out, "%s_sum ", rtt);
	seconds(out, m->cluster_rtt_us_sum, 1000000, 6);
	fprintf(out, "\n%s_count %" PRIu64 "\n", rtt, m->cluster_rtt_count);
}

void
metrics_render(const struct metrics_snapshot *m, FILE *out)
{
	render_process(m, out);
	render_sessions(m, out);
	render_blocklist(m, out);
	render_backends(m, out);
	render_auth_backend(m, out);
	render_cluster(m, out);
	render_runtime(m, out);
}
