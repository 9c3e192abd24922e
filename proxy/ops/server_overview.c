/*
 * server_overview.c - the status page's JSON: one object with the node,
 * its listeners, TLS, AUTH, limits, backends, bans, fleet mode and a
 * 15-minute history, served as GET /status.json by the metrics listener
 * (metrics_http.c) and as "msaproxyctl -j overview" by the control socket:
 * the same function writes both, so they never disagree.
 *
 * The parts msaproxyctl already answers are written by the very functions
 * that answer it: "status" is server_status(), "stats" server_stats(),
 * "backends" server_backends(), "bans" server_bans() (a JSON object per
 * line there, an array here) and "cluster" server_cluster().  The
 * per-listener, TLS, AUTH and limit counts are those a scrape shows
 * (server_snapshot_take(), the label names of metrics.c).
 *
 * Listeners also say how many sessions are open now (a per-listener
 * count the workers keep), their arrivals per second and the AUTH
 * results per minute over the last minute (from the history's samples:
 * the latest a minute old, or the oldest), and their refusals by reason;
 * backends their latency and last change (server_backends()), bans their
 * XDP drops (bans_list()); "users" the ten nearest their limits
 * (server_users.c).
 *
 * The history is a ring of SERIES_POINTS samples, one per SERIES_STEP_MS,
 * taken on the main thread (server_overview_tick(), called from the
 * metrics listener's poll loop): only a few counter sums, no allocation.
 *
 * Security stance: read-only, and no password or message content: the
 * bans are network prefixes the operator or the limits set, the users
 * nearest their limits logins (or their hashes, metrics.hash_logins), the
 * rest counts and configured addresses.  Strings from the configuration are
 * JSON-escaped.
 *
 * The admin actions (metrics.admin; metrics_http.c checks the peer, the
 * login and the CSRF token first) are the control socket's own: ban,
 * unban, backend enable and disable, through server_ban(),
 * server_unban() and server_backend_set(), each logged with the login;
 * the login is checked against metrics.admin_users when set, else the
 * users file.
 *
 * Config keys: metrics.status (whether the page is served at all, checked
 * by metrics_http.c through server_overview_enabled()), metrics.admin,
 * metrics.admin_users.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd_db.h"
#include "bans/bans.h"
#include "config/generation.h"
#include "io/worker.h"
#include "lib/ipnet.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/timer.h"
#include "ops/counters.h"
#include "ops/metrics.h"
#include "ops/server.h"
#include "ops/server_internal.h"

#ifndef MSAPROXY_VERSION
#define MSAPROXY_VERSION "dev"
#endif

#define SERIES_POINTS  91 /* 15 minutes of steps, and the start */
#define SERIES_STEP_MS 10000

#define RATE_WINDOW_MS 60000 /* the page's "now" rates: the last minute */

struct series_point {
	uint64_t wall_ms;
	uint64_t sessions, auth_failures, xdp_dropped, messages;
	/* for the last minute's rates: connections per listener slot
	 * (ended, refused or open), AUTH by mechanism and result */
	uint64_t arrivals[COUNTERS_LISTENERS];
	uint64_t auth[MECH_COUNT][AUTH_RESULT_COUNT];
};

/* Main thread only (the metrics listener's loop and its answers). */
static struct {
	struct series_point p[SERIES_POINTS];
	unsigned n, next;
	uint64_t last_ms;
} ring;

/* What fn writes to a memstream (NULL when out of memory). */
static char *
capture(struct server *srv, void (*fn)(struct server *, FILE *, bool))
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	fn(srv, f, true);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* A control answer of one JSON object, its newline dropped. */
static void
object_of(FILE *out, struct server *srv,
	  void (*fn)(struct server *, FILE *, bool))
{
	char *text = capture(srv, fn);
	size_t len = text ? strlen(text) : 0;

	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	if (len == 0)
		fputs("null", out);
	else
		fwrite(text, 1, len, out);
	free(text);
}

/* A control answer of one JSON object per line, as an array. */
static void
array_of(FILE *out, struct server *srv,
	 void (*fn)(struct server *, FILE *, bool))
{
	char *text = capture(srv, fn);
	const char *p = text;
	bool first = true;

	fputc('[', out);
	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len > 0) {
			if (!first)
				fputc(',', out);
			fwrite(p, 1, len, out);
			first = false;
		}
		p = nl ? nl + 1 : NULL;
	}
	fputc(']', out);
	free(text);
}

/* The counters the history follows, summed now. */
static void
sample(struct server *srv, struct series_point *p)
{
	struct bans_counts bc;

	*p = (struct series_point){.wall_ms = server_wall_ms()};
	for (unsigned k = 0; k < srv->nworkers; k++) {
		const struct worker_counters *c =
			worker_counters(srv->workers[k]);

		p->sessions += counter_read(&c->accepted);
		p->messages += counter_read(&c->messages);
		for (int i = 0; i < MECH_COUNT; i++) {
			p->auth_failures +=
				counter_read(&c->auth[i][AUTH_FAILURE]);
			for (int r = 0; r < AUTH_RESULT_COUNT; r++)
				p->auth[i][r] += counter_read(&c->auth[i][r]);
		}
		for (unsigned i = 0; i < COUNTERS_LISTENERS; i++) {
			p->arrivals[i] += counter_read(&c->open[i]);
			for (int o = 0; o < OUTCOME_COUNT; o++)
				p->arrivals[i] +=
					counter_read(&c->sessions[i][o]);
		}
	}
	if (srv->shared.bans != NULL) {
		bans_counts(srv->shared.bans, &bc);
		for (int r = 0; r < METRICS_XDP_REASONS; r++)
			p->xdp_dropped += bc.xdp_dropped_packets[r];
	}
}

/* The k-th point of the history, oldest first; k == ring.n is now. */
static const struct series_point *
point(unsigned k, const struct series_point *now)
{
	unsigned first = (ring.next + SERIES_POINTS - ring.n) % SERIES_POINTS;

	return k == ring.n ? now : &ring.p[(first + k) % SERIES_POINTS];
}

/* The latest sample at least a minute older than now (the oldest when
 * none is), for the "now" rates; now itself when there is no sample. */
static const struct series_point *
window_base(const struct series_point *now)
{
	const struct series_point *base = now;

	for (unsigned k = ring.n; k-- > 0;) {
		base = point(k, now);
		if (base->wall_ms + RATE_WINDOW_MS <= now->wall_ms)
			break;
	}
	return base;
}

/* b - a per second (per minute: per_min) from sample a to sample b. */
static double
rate_of(uint64_t a, uint64_t b, const struct series_point *pa,
	const struct series_point *pb, bool per_min)
{
	double dt = (double)(pb->wall_ms - pa->wall_ms) / 1000.0;

	if (dt < 1 || b < a)
		return 0;
	return (double)(b - a) / dt * (per_min ? 60.0 : 1.0);
}

static void
node(FILE *out, struct server *srv, const struct metrics_snapshot *m)
{
	fputs("{\"version\":", out);
	json_str(out, MSAPROXY_VERSION);
	fprintf(out,
		",\"now\":%" PRIu64 ",\"started\":%" PRIu64
		",\"last_load\":%" PRIu64 ",\"last_reload_ok\":%s"
		",\"draining\":%s,\"status\":",
		server_wall_ms() / 1000, m->start_time_ms / 1000,
		m->last_config_time_ms / 1000,
		m->last_reload_ok ? "true" : "false",
		m->draining ? "true" : "false");
	object_of(out, srv, server_status);
	fputc('}', out);
}

/* The configured listeners: sessions by outcome, open now, the last
 * minute's arrivals per second, refusals by reason. */
static void
listeners(FILE *out, struct server *srv, const struct server_snapshot *s,
	  const struct series_point *now, const struct series_point *base)
{
	const struct config *cfg = srv->gen->cfg;

	fputc('[', out);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		unsigned slot = generation_listener_slot(srv->gen, l);
		const struct metrics_listener *ml =
			slot < COUNTERS_LISTENERS ? &s->ls[slot] : NULL;
		uint64_t total = 0;

		fputs(i ? ",{\"address\":" : "{\"address\":", out);
		json_str(out, l->addr.text);
		fprintf(out,
			",\"mode\":\"%s\",\"proxy_protocol\":%s,"
			"\"sessions\":{",
			l->mode == LISTENER_IMPLICIT ? "implicit" : "starttls",
			l->proxy_protocol ? "true" : "false");
		for (int o = 0; o < OUTCOME_COUNT; o++) {
			uint64_t n = ml ? ml->sessions[o] : 0;

			total += n;
			fprintf(out, "%s\"%s\":%" PRIu64, o ? "," : "",
				metrics_label(METRICS_LABEL_OUTCOME, o), n);
		}
		fprintf(out,
			"},\"sessions_total\":%" PRIu64 ",\"open\":%" PRIu64
			",\"sessions_per_s\":%.3f,\"refusals\":{",
			total, ml ? ml->open : 0,
			slot < COUNTERS_LISTENERS
				? rate_of(base->arrivals[slot],
					  now->arrivals[slot], base, now, false)
				: 0.0);
		for (int r = 0; r < REFUSAL_COUNT; r++)
			fprintf(out, "%s\"%s\":%" PRIu64, r ? "," : "",
				metrics_label(METRICS_LABEL_REFUSAL, r),
				ml ? ml->refusals[r] : 0);
		fputs("}}", out);
	}
	fputc(']', out);
}

static void
counts(FILE *out, const struct metrics_snapshot *m,
       const struct series_point *now, const struct series_point *base)
{
	fputs(",\"tls\":{", out);
	for (int v = 0; v < TLSV_COUNT; v++)
		fprintf(out,
			"%s\"%s\":{\"handshakes\":%" PRIu64
			",\"failures\":%" PRIu64 ",\"resumed\":%" PRIu64 "}",
			v ? "," : "", metrics_label(METRICS_LABEL_TLS, v),
			m->tls_ok[v], m->tls_failed[v], m->tls_resumed[v]);
	fputs("},\"auth\":{", out);
	for (int i = 0; i < MECH_COUNT; i++) {
		fprintf(out, "%s\"%s\":{", i ? "," : "",
			metrics_label(METRICS_LABEL_MECH, i));
		for (int r = 0; r < AUTH_RESULT_COUNT; r++)
			fprintf(out, "%s\"%s\":%" PRIu64, r ? "," : "",
				metrics_label(METRICS_LABEL_AUTH, r),
				m->auth[i][r]);
		fputs(",\"per_min\":{", out);
		for (int r = 0; r < AUTH_RESULT_COUNT; r++)
			fprintf(out, "%s\"%s\":%.3f", r ? "," : "",
				metrics_label(METRICS_LABEL_AUTH, r),
				rate_of(base->auth[i][r], now->auth[i][r], base,
					now, true));
		fputs("}}", out);
	}
	fputs("},\"limits\":{", out);
	for (int i = 0; i < LIMIT_HIT_COUNT; i++)
		fprintf(out, "%s\"%s\":%" PRIu64, i ? "," : "",
			metrics_label(METRICS_LABEL_LIMIT, i), m->limits[i]);
	fprintf(out,
		"},\"sessions\":{\"active\":%" PRIu64 ",\"accepted\":%" PRIu64
		",\"messages\":%" PRIu64 ",\"data_bytes\":%" PRIu64
		",\"blocklist_refused\":%" PRIu64 "}",
		m->active, m->accepted, m->messages, m->data_bytes,
		m->blocklist_refused);
	fprintf(out, ",\"xdp\":{\"attached\":%s,\"dropped_packets\":{",
		m->xdp ? "true" : "false");
	for (int r = 0; r < METRICS_XDP_REASONS; r++)
		fprintf(out, "%s\"%s\":%" PRIu64, r ? "," : "",
			r == 0	 ? "file"
			: r == 1 ? "manual"
				 : "auto",
			m->xdp_dropped_packets[r]);
	fprintf(out,
		"}},\"memory\":{\"allocated\":%" PRIu64 ",\"resident\":%" PRIu64
		",\"limit\":%" PRIu64 "}",
		m->mem_allocated, m->mem_resident, m->memory_limit);
	fputs(",\"certificates\":[", out);
	for (size_t i = 0; i < m->ncerts; i++) {
		fputs(i ? ",{\"file\":" : "{\"file\":", out);
		json_str(out, m->cert_files[i]);
		fprintf(out, ",\"expires\":%" PRId64 "}", m->cert_expiry[i]);
	}
	fputc(']', out);
}

/* The history: per-second rates between samples (per minute for the
 * AUTH failures), oldest first, the last one from the latest sample to
 * now (when a second or more has passed since). */
static void
series(FILE *out, const struct series_point *at)
{
	static const char *const names[] = {
		"sessions_per_s", "auth_failures_per_min", "xdp_drops_per_s",
		"messages_per_s"};
	struct series_point now = *at;
	unsigned n = ring.n;

	if (n > 0 && now.wall_ms >= point(n - 1, &now)->wall_ms + 1000)
		n++; /* and the point "now" */
	fprintf(out, ",\"series\":{\"step_s\":%d,\"t\":[",
		SERIES_STEP_MS / 1000);
	for (unsigned k = 1; k < n; k++)
		fprintf(out, "%s%" PRIu64, k > 1 ? "," : "",
			point(k, &now)->wall_ms / 1000);
	for (int f = 0; f < 4; f++) {
		fprintf(out, "],\"%s\":[", names[f]);
		for (unsigned k = 1; k < n; k++) {
			const struct series_point *a = point(k - 1, &now);
			const struct series_point *b = point(k, &now);
			uint64_t va[] = {a->sessions, a->auth_failures,
					 a->xdp_dropped, a->messages};
			uint64_t vb[] = {b->sessions, b->auth_failures,
					 b->xdp_dropped, b->messages};
			double dt = (double)(b->wall_ms - a->wall_ms) / 1000.0;
			double d = vb[f] >= va[f] ? (double)(vb[f] - va[f]) : 0;

			if (dt <= 0)
				dt = 1;
			fprintf(out, "%s%.3f", k > 1 ? "," : "",
				f == 1 ? d * 60.0 / dt : d / dt);
		}
	}
	fputs("]}", out);
}

void
server_overview(struct server *srv, FILE *out)
{
	struct server_snapshot s;
	struct series_point now;
	const struct series_point *base;

	sample(srv, &now);
	base = window_base(&now);
	if (server_snapshot_take(srv, &s) != 0) {
		fputs("{\"error\":\"out of memory\"}\n", out);
		return;
	}
	fputs("{\"node\":", out);
	node(out, srv, &s.m);
	fputs(",\"listeners\":", out);
	listeners(out, srv, &s, &now, base);
	counts(out, &s.m, &now, base);
	fputs(",\"stats\":", out);
	object_of(out, srv, server_stats);
	fputs(",\"backends\":", out);
	array_of(out, srv, server_backends);
	fputs(",\"bans\":", out);
	array_of(out, srv, server_bans);
	fputs(",\"cluster\":", out);
	object_of(out, srv, server_cluster);
	fputs(",\"users\":", out);
	server_users_nearest(srv, out);
	series(out, &now);
	fputs("}\n", out);
	server_snapshot_free(&s);
}

char *
server_overview_body(void *arg, size_t *len)
{
	char *text = NULL;
	FILE *out = open_memstream(&text, len);

	*len = 0;
	if (out == NULL)
		return NULL;
	server_overview(arg, out);
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

bool
server_overview_enabled(void *arg)
{
	const struct server *srv = arg;

	return srv->gen->cfg->metrics_status;
}

void
server_overview_tick(void *arg)
{
	uint64_t now = timer_now_ms();

	if (ring.n > 0 && now - ring.last_ms < SERIES_STEP_MS)
		return;
	ring.last_ms = now;
	sample(arg, &ring.p[ring.next]);
	ring.next = (ring.next + 1) % SERIES_POINTS;
	if (ring.n < SERIES_POINTS)
		ring.n++;
}

bool
server_overview_admin_on(void *arg)
{
	const struct server *srv = arg;

	return srv->gen->cfg->metrics_status && srv->gen->cfg->metrics_admin;
}

/* On the main thread: one crypt(3) per admin request, loopback only. */
int
server_overview_login(void *arg, const char *user, const char *pass)
{
	const struct server *srv = arg;

	return passwd_db_verify(srv->gen->admin_users != NULL
					? srv->gen->admin_users
					: srv->gen->users,
				user, pass);
}

int
server_overview_action(void *arg, const char *user, const char *op,
		       const char *target, const char *ttl, char *err,
		       size_t errlen)
{
	struct server *srv = arg;
	char quoted[4 * 128 + 3], why[256] = "";
	struct ipnet net;
	uint64_t ttl_ms = 0;
	const char *bad;
	int r = -1;

	log_quote(quoted, sizeof(quoted), user, strlen(user));
	if (strcmp(op, "ban") == 0 || strcmp(op, "unban") == 0) {
		if ((bad = ipnet_parse(target, &net)) != NULL)
			snprintf(why, sizeof(why), "%.64s: %s", target, bad);
		else if (ttl[0] != '\0' &&
			 (config_parse_duration(ttl, &ttl_ms) != 0 ||
			  ttl_ms == 0))
			snprintf(why, sizeof(why),
				 "ttl: expected a duration such as 30s, 10m, "
				 "1h, 7d");
		else if (op[0] == 'b')
			r = server_ban(srv, &net, ttl_ms, why, sizeof(why));
		else
			r = server_unban(srv, &net, why, sizeof(why));
	} else if (strcmp(op, "enable") == 0 || strcmp(op, "disable") == 0) {
		FILE *sink = fopen("/dev/null", "w");

		r = server_backend_set(srv, target, op[0] == 'e',
				       sink ? sink : stderr, why, sizeof(why));
		if (sink != NULL)
			fclose(sink);
	} else {
		snprintf(why, sizeof(why),
			 "op: expected ban, unban, enable or disable");
	}
	log_info("status-admin", " user=%s op=%.16s target=%.64s result=%s",
		 quoted, op, target, r == 0 ? "ok" : "refused");
	if (r != 0)
		snprintf(err, errlen, "%s", why[0] ? why : "refused");
	return r;
}
