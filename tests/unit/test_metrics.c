/*
 * test_metrics.c - the Prometheus rendering (metrics.c), the endpoint's
 * request parser (metrics_http_parse()) and the slot registry
 * (registry.c).
 *
 * The rendering is checked twice: exact lines for known values (number
 * and seconds formats, label escaping, cumulative histogram buckets), and
 * the whole text against the format's rules (every sample under its own
 * HELP and TYPE, valid names, no series twice, counters named _total).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ops/metrics.h"
#include "ops/metrics_http.h"
#include "ops/registry.h"

/* ---- rendering ------------------------------------------------------- */

static char *
render(const struct metrics_snapshot *m)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	metrics_render(m, f);
	assert_int_equal(fclose(f), 0);
	return text;
}

static void
assert_line(const char *text, const char *line)
{
	const char *p = text;
	size_t n = strlen(line);

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
		p++;
	}
	fail_msg("no line \"%s\" in:\n%s", line, text);
}

static bool
valid_name(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* The family a sample belongs to: histograms' _bucket/_sum/_count. */
static size_t
family_len(const char *name, size_t n, const char *type)
{
	static const char *const suffixes[] = {"_bucket", "_sum", "_count"};

	if (strcmp(type, "histogram") != 0)
		return n;
	for (size_t i = 0; i < 3; i++) {
		size_t sl = strlen(suffixes[i]);
		if (n > sl && memcmp(name + n - sl, suffixes[i], sl) == 0)
			return n - sl;
	}
	return n;
}

/*
 * The text format's rules: "# HELP name text", then "# TYPE name type",
 * then that family's samples and no other; names valid and msaproxy_;
 * counters end in _total; label names lower case; no series twice.
 */
static void
check_exposition(const char *text)
{
	static char families[128][128], series[1024][512];
	char family[128] = "", type[16] = "";
	size_t nfamilies = 0, nseries = 0;
	const char *line = text;
	bool have_help = false;

	assert_true(text[0] != '\0' && text[strlen(text) - 1] == '\n');
	while (*line != '\0') {
		const char *nl = strchr(line, '\n');
		size_t len = (size_t)(nl - line);
		char buf[512];

		assert_true(len > 0 && len < sizeof(buf));
		memcpy(buf, line, len);
		buf[len] = '\0';
		line = nl + 1;
		if (strncmp(buf, "# HELP ", 7) == 0) {
			const char *sp = strchr(buf + 7, ' ');
			assert_non_null(sp);
			assert_true(
				valid_name(buf + 7, (size_t)(sp - buf - 7)));
			assert_true(strncmp(buf + 7, "msaproxy_", 9) == 0);
			snprintf(family, sizeof(family), "%.*s",
				 (int)(sp - buf - 7), buf + 7);
			/* a family is written once */
			for (size_t i = 0; i < nfamilies; i++)
				assert_string_not_equal(families[i], family);
			assert_true(nfamilies < 128);
			snprintf(families[nfamilies++], sizeof(families[0]),
				 "%s", family);
			have_help = true;
			type[0] = '\0';
			continue;
		}
		if (strncmp(buf, "# TYPE ", 7) == 0) {
			size_t fl = strlen(family);
			assert_true(have_help);
			assert_true(strncmp(buf + 7, family, fl) == 0 &&
				    buf[7 + fl] == ' ');
			snprintf(type, sizeof(type), "%s", buf + 8 + fl);
			assert_true(strcmp(type, "counter") == 0 ||
				    strcmp(type, "gauge") == 0 ||
				    strcmp(type, "histogram") == 0);
			if (strcmp(type, "counter") == 0)
				assert_true(fl > 6 && strcmp(family + fl - 6,
							     "_total") == 0);
			else
				assert_null(strstr(family, "_total"));
			continue;
		}
		assert_true(buf[0] != '#' && type[0] != '\0');
		/* name{labels} value */
		size_t nlen = strcspn(buf, "{ ");
		assert_true(valid_name(buf, nlen));
		assert_int_equal(family_len(buf, nlen, type), strlen(family));
		assert_true(strncmp(buf, family, strlen(family)) == 0);
		const char *v = buf + nlen;
		if (*v == '{') {
			const char *p = v + 1;
			while (*p != '}') {
				size_t ln = strcspn(p, "=");
				assert_true(valid_name(p, ln));
				for (size_t i = 0; i < ln; i++)
					assert_false(
						isupper((unsigned char)p[i]));
				p += ln;
				assert_true(p[0] == '=' && p[1] == '"');
				p += 2;
				while (*p != '"') {
					assert_true(*p != '\0');
					p += *p == '\\' ? 2 : 1;
				}
				p++;
				if (*p == ',')
					p++;
			}
			v = p + 1;
		}
		assert_true(*v == ' ');
		char *end;
		strtod(v + 1, &end);
		if (strcmp(v + 1, "+Inf") != 0)
			assert_true(*end == '\0' && end > v + 1);
		/* the series (everything before the value) once */
		buf[v - buf] = '\0';
		for (size_t i = 0; i < nseries; i++)
			assert_string_not_equal(series[i], buf);
		assert_true(nseries < 1024);
		snprintf(series[nseries++], sizeof(series[0]), "%s", buf);
	}
}

static struct metrics_listener listeners[2];
static struct metrics_backend backends[2];
static uint64_t busy[2];

static struct metrics_snapshot
sample_snapshot(void)
{
	struct metrics_snapshot m = {
		.start_time_ms = 1700000000123,
		.generation = 3,
		.reloads = 2,
		.reload_failures = 1,
		.last_reload_ok = false,
		.last_config_time_ms = 1700000100000,
		.accepted = 12,
		.active = 2,
		.messages = 5,
		.data_bytes = 123456,
		.nworkers = 2,
	};

	memset(listeners, 0, sizeof(listeners));
	memset(backends, 0, sizeof(backends));
	listeners[0].name = "127.0.0.1:587";
	listeners[0].sessions[OUTCOME_OK] = 3;
	listeners[1].name = "[::1]:465";
	listeners[1].sessions[OUTCOME_TLS_FAILED] = 1;
	backends[0] = (struct metrics_backend){
		.name = "10.0.0.1:25",
		.configured = true,
		.up = true,
		.enabled = false,
		.connections = 4,
		.changes = 2,
	};
	backends[0].connect.bucket[0] = 1;		      /* <= 250us */
	backends[0].connect.bucket[3] = 2;		      /* <= 2.5ms */
	backends[0].connect.bucket[COUNTERS_HIST_BOUNDS] = 1; /* > 10s */
	backends[0].connect.count = 4;
	backends[0].connect.sum_us = 12000250;
	backends[1].name = "a\"b\\c\nd"; /* removed since; escaped */
	m.listeners = listeners;
	m.nlisteners = 2;
	m.backends = backends;
	m.nbackends = 2;
	busy[0] = 1500000000;
	busy[1] = 7;
	m.busy_ns = busy;
	m.tls_ok[TLSV_1_3] = 9;
	m.tls_failed[TLSV_UNKNOWN] = 2;
	m.auth[MECH_LOGIN][AUTH_FAILURE] = 6;
	m.limits[LIMIT_HIT_MESSAGES] = 1;
	m.limits[LIMIT_HIT_LINE_LENGTH] = 8;
	m.proxy_in[PROXY_IN_CLIENT] = 5;
	m.proxy_in[PROXY_IN_OVERSIZE] = 2;
	m.block_entries[1] = 2;
	m.bans_added[2] = 3;
	m.blocklist_refused = 4;
	return m;
}

static void
test_render_values(void **state)
{
	struct metrics_snapshot m = sample_snapshot();
	char *text;

	(void)state;
	text = render(&m);
	check_exposition(text);
	assert_line(text, "msaproxy_process_start_time_seconds 1700000000.123");
	assert_line(text, "msaproxy_config_last_load_timestamp_seconds "
			  "1700000100");
	assert_line(text, "msaproxy_config_generation 3");
	assert_line(text,
		    "msaproxy_config_reloads_total{result=\"success\"} 2");
	assert_line(text,
		    "msaproxy_config_reloads_total{result=\"failure\"} 1");
	assert_line(text, "msaproxy_config_last_reload_successful 0");
	assert_line(text, "msaproxy_draining 0");
	assert_line(text, "msaproxy_connections_accepted_total 12");
	assert_line(text, "msaproxy_sessions_active 2");
	assert_line(text, "msaproxy_sessions_total{listener=\"127.0.0.1:587\","
			  "outcome=\"ok\"} 3");
	assert_line(text, "msaproxy_sessions_total{listener=\"127.0.0.1:587\","
			  "outcome=\"tls_failed\"} 0");
	assert_line(text, "msaproxy_sessions_total{listener=\"[::1]:465\","
			  "outcome=\"tls_failed\"} 1");
	assert_line(text, "msaproxy_tls_handshakes_total{version=\"TLSv1.3\"} "
			  "9");
	assert_line(text, "msaproxy_tls_handshake_failures_total{version="
			  "\"unknown\"} 2");
	assert_line(text, "msaproxy_auth_total{mechanism=\"login\",result="
			  "\"failure\"} 6");
	assert_line(text, "msaproxy_auth_total{mechanism=\"plain\",result="
			  "\"success\"} 0");
	assert_line(text, "msaproxy_limit_hits_total{kind=\"messages\"} 1");
	assert_line(text, "msaproxy_limit_hits_total{kind=\"line_length\"} 8");
	assert_line(text, "msaproxy_proxy_headers_total{result=\"client\"} 5");
	assert_line(text,
		    "msaproxy_proxy_headers_total{result=\"oversize\"} 2");
	assert_line(text, "msaproxy_proxy_headers_total{result=\"closed\"} 0");
	assert_line(text, "msaproxy_messages_total 5");
	assert_line(text, "msaproxy_data_bytes_total 123456");
	assert_line(text, "msaproxy_blocklist_entries{source=\"manual\"} 2");
	assert_line(text, "msaproxy_bans_total{source=\"auto\"} 3");
	assert_line(text, "msaproxy_blocklist_refused_connections_total 4");
	/* gauges only for configured backends; histograms for every one */
	assert_line(text, "msaproxy_backend_up{backend=\"10.0.0.1:25\"} 1");
	assert_line(text,
		    "msaproxy_backend_enabled{backend=\"10.0.0.1:25\"} 0");
	assert_line(text, "msaproxy_backend_connections{backend="
			  "\"10.0.0.1:25\"} 4");
	assert_null(strstr(text, "msaproxy_backend_up{backend=\"a"));
	assert_line(text, "msaproxy_backend_state_changes_total{backend="
			  "\"10.0.0.1:25\"} 2");
	assert_line(text, "msaproxy_backend_connect_seconds_bucket{backend="
			  "\"10.0.0.1:25\",le=\"0.00025\"} 1");
	assert_line(text, "msaproxy_backend_connect_seconds_bucket{backend="
			  "\"10.0.0.1:25\",le=\"0.001\"} 1");
	assert_line(text, "msaproxy_backend_connect_seconds_bucket{backend="
			  "\"10.0.0.1:25\",le=\"0.0025\"} 3");
	assert_line(text, "msaproxy_backend_connect_seconds_bucket{backend="
			  "\"10.0.0.1:25\",le=\"10\"} 3");
	assert_line(text, "msaproxy_backend_connect_seconds_bucket{backend="
			  "\"10.0.0.1:25\",le=\"+Inf\"} 4");
	assert_line(text, "msaproxy_backend_connect_seconds_sum{backend="
			  "\"10.0.0.1:25\"} 12.00025");
	assert_line(text, "msaproxy_backend_connect_seconds_count{backend="
			  "\"10.0.0.1:25\"} 4");
	assert_line(text, "msaproxy_backend_transaction_seconds_count{backend="
			  "\"a\\\"b\\\\c\\nd\"} 0");
	assert_line(text, "msaproxy_worker_busy_seconds_total{worker=\"0\"} "
			  "1.5");
	assert_line(text, "msaproxy_worker_busy_seconds_total{worker=\"1\"} "
			  "0.000000007");
	/* nothing to read: no family at all */
	assert_null(strstr(text, "msaproxy_xdp_"));
	assert_null(strstr(text, "msaproxy_memory_allocated"));
	assert_null(strstr(text, "msaproxy_tls_certificate_expiry"));
	/* the configured cap is always there (0: none) */
	assert_line(text, "msaproxy_memory_limit_bytes 0");
	free(text);
}

static void
test_render_optional_families(void **state)
{
	struct metrics_snapshot m = sample_snapshot();
	char *text;

	(void)state;
	m.xdp = true;
	m.xdp_dropped_packets[0] = 10;
	m.xdp_dropped_bytes[2] = 640;
	m.xdp_passed_packets = 99;
	m.xdp_allowed_packets = 1;
	m.memory = true;
	m.mem_allocated = 1000;
	m.mem_active = 4096;
	m.mem_resident = 8192;
	m.mem_mapped = 16384;
	m.draining = true;
	m.last_reload_ok = true;
	m.memory_limit = 1 << 30;
	m.cert_files = (const char *const[]){"/etc/a.pem", "b\"c.pem", "x"};
	m.cert_expiry = (const int64_t[]){1800000000, 1900000000, 0};
	m.ncerts = 3;
	text = render(&m);
	check_exposition(text);
	assert_line(text, "msaproxy_xdp_dropped_packets_total{reason=\"file\"} "
			  "10");
	assert_line(text, "msaproxy_xdp_dropped_bytes_total{reason=\"auto\"} "
			  "640");
	assert_line(text, "msaproxy_xdp_passed_packets_total 99");
	assert_line(text, "msaproxy_xdp_allowed_packets_total 1");
	assert_line(text, "msaproxy_memory_allocated_bytes 1000");
	assert_line(text, "msaproxy_memory_resident_bytes 8192");
	assert_line(text, "msaproxy_draining 1");
	assert_line(text, "msaproxy_config_last_reload_successful 1");
	assert_line(text, "msaproxy_memory_limit_bytes 1073741824");
	assert_line(text, "msaproxy_tls_certificate_expiry_seconds{cert="
			  "\"/etc/a.pem\"} 1800000000");
	assert_line(text, "msaproxy_tls_certificate_expiry_seconds{cert="
			  "\"b\\\"c.pem\"} 1900000000");
	/* unknown expiry (0): no sample */
	assert_null(strstr(text, "cert=\"x\""));
	free(text);
}

/* A snapshot of nothing (no listener ever, no traffic) is still valid. */
static void
test_render_empty(void **state)
{
	struct metrics_snapshot m = {.last_reload_ok = true};
	char *text;

	(void)state;
	text = render(&m);
	check_exposition(text);
	assert_line(text, "msaproxy_process_start_time_seconds 0");
	assert_line(text, "# TYPE msaproxy_sessions_total counter");
	free(text);
}

/* ---- the request ----------------------------------------------------- */

static int
parse(const char *req)
{
	return metrics_http_parse(req, strlen(req), METRICS_HTTP_REQUEST_MAX);
}

static void
test_parse_good(void **state)
{
	static const char *const good[] = {
		"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9587\r\n"
		"User-Agent: Prometheus/2.42.0\r\nAccept: text/plain\r\n"
		"Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds:"
		" 10\r\n\r\n",
		"GET /metrics HTTP/1.0\r\n\r\n",
		"GET /metrics HTTP/1.0\n\n",
		"GET /metrics?name[]=x HTTP/1.1\r\nHost: a\r\n\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		size_t len = strlen(good[i]);

		assert_int_equal(parse(good[i]), 200);
		/* resumable: any prefix is "more", never an answer */
		for (size_t k = 0; k < len; k++)
			assert_int_equal(
				metrics_http_parse(good[i], k,
						   METRICS_HTTP_REQUEST_MAX),
				0);
	}
	/* a body after the header is not read, and does not matter */
	assert_int_equal(parse("GET /metrics HTTP/1.1\r\nContent-Length: 3\r\n"
			       "\r\nabc"),
			 200);
}

static void
test_parse_refused(void **state)
{
	static const struct {
		const char *req;
		int status;
	} cases[] = {
		{"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405},
		{"HEAD /metrics HTTP/1.1\r\n\r\n", 405},
		{"DELETE /metrics HTTP/1.1\r\n\r\n", 405},
		{"GET / HTTP/1.1\r\n\r\n", 404},
		{"GET /metricsx HTTP/1.1\r\n\r\n", 404},
		{"GET /metrics/ HTTP/1.1\r\n\r\n", 404},
		{"POST /other HTTP/1.1\r\n\r\n", 404},
		{"GET /metrics HTTP/2.0\r\n\r\n", 400},
		{"GET /metrics HTTP/1.1 \r\n\r\n", 400},
		{"GET /metrics\r\n\r\n", 400},
		{"get /metrics HTTP/1.1\r\n\r\n", 400},
		{"GET  /metrics HTTP/1.1\r\n\r\n", 400},
		{"GET metrics HTTP/1.1\r\n\r\n", 400},
		{"GET http://x/metrics HTTP/1.1\r\n\r\n", 400},
		{"GET /met\trics HTTP/1.1\r\n\r\n", 400},
		{"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n", 400},
		{"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
		{"GET /metrics HTTP/1.1\r\n: empty\r\n\r\n", 400},
		{"HELLO\r\n\r\n", 400},
		{"\r\n\r\n", 400},
		{"GETTINGVERYLONGMETHOD /metrics HTTP/1.1\r\n\r\n", 400},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int got = parse(cases[i].req);

		if (got != cases[i].status)
			fail_msg("%zu: \"%s\": %d, expected %d", i,
				 cases[i].req, got, cases[i].status);
	}
	/* a NUL in the header */
	static const char nul[] = "GET /metrics HTTP/1.1\r\nA: \0\r\n\r\n";
	assert_int_equal(metrics_http_parse(nul, sizeof(nul) - 1,
					    METRICS_HTTP_REQUEST_MAX),
			 400);
}

/* The status page's paths: 200 with their route through
 * metrics_http_parse_route(), 404 through metrics_http_parse() (which
 * answers /metrics only). */
static void
test_parse_routes(void **state)
{
	static const struct {
		const char *req;
		int status;
		enum metrics_http_route route;
	} cases[] = {
		{"GET /metrics HTTP/1.1\r\n\r\n", 200, METRICS_ROUTE_METRICS},
		{"GET /status HTTP/1.1\r\n\r\n", 200, METRICS_ROUTE_STATUS},
		{"GET /status?refresh=2 HTTP/1.0\r\n\r\n", 200,
		 METRICS_ROUTE_STATUS},
		{"GET /status.json HTTP/1.1\r\nHost: a\r\n\r\n", 200,
		 METRICS_ROUTE_STATUS_JSON},
		{"POST /status HTTP/1.1\r\n\r\n", 405, 0},
		{"PUT /status.json HTTP/1.1\r\n\r\n", 405, 0},
		{"GET /status/ HTTP/1.1\r\n\r\n", 404, 0},
		{"GET /status/../metrics HTTP/1.1\r\n\r\n", 404, 0},
		{"GET /status.jso HTTP/1.1\r\n\r\n", 404, 0},
		{"GET /status.json/ HTTP/1.1\r\n\r\n", 404, 0},
		{"GET /Status HTTP/1.1\r\n\r\n", 404, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		enum metrics_http_route route = METRICS_ROUTE_METRICS;
		const char *req = cases[i].req;
		int got = metrics_http_parse_route(
			req, strlen(req), METRICS_HTTP_REQUEST_MAX, &route);

		if (got != cases[i].status)
			fail_msg("%zu: \"%s\": %d, expected %d", i, req, got,
				 cases[i].status);
		if (got == 200)
			assert_int_equal(route, cases[i].route);
		/* the /metrics-only parser refuses the page's paths */
		assert_int_equal(parse(req),
				 got == 200 && route != METRICS_ROUTE_METRICS
					 ? 404
					 : got);
	}
}

/* The admin actions' pure helpers: who is local, the form's fields. */
static void
test_admin_helpers(void **state)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	char out[32];

	(void)state;
	a4->sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", &a4->sin_addr);
	assert_true(metrics_http_local_peer(&ss));
	inet_pton(AF_INET, "127.9.8.7", &a4->sin_addr);
	assert_true(metrics_http_local_peer(&ss));
	inet_pton(AF_INET, "10.0.0.1", &a4->sin_addr);
	assert_false(metrics_http_local_peer(&ss));
	inet_pton(AF_INET, "128.0.0.1", &a4->sin_addr);
	assert_false(metrics_http_local_peer(&ss));
	memset(&ss, 0, sizeof(ss));
	a6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::1", &a6->sin6_addr);
	assert_true(metrics_http_local_peer(&ss));
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6->sin6_addr);
	assert_true(metrics_http_local_peer(&ss));
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &a6->sin6_addr);
	assert_false(metrics_http_local_peer(&ss));
	inet_pton(AF_INET6, "2001:db8::1", &a6->sin6_addr);
	assert_false(metrics_http_local_peer(&ss));
	ss.ss_family = AF_UNIX;
	assert_false(metrics_http_local_peer(&ss));

	static const char f[] = "csrf=ab12&op=ban&target=192.0.2.0%2F24"
				"&ttl=1+h&x=%zz&n=%00&top=no";
	assert_true(metrics_http_form_field(f, strlen(f), "op", out, 32));
	assert_string_equal(out, "ban");
	assert_true(metrics_http_form_field(f, strlen(f), "target", out, 32));
	assert_string_equal(out, "192.0.2.0/24");
	assert_true(metrics_http_form_field(f, strlen(f), "ttl", out, 32));
	assert_string_equal(out, "1 h");
	assert_false(metrics_http_form_field(f, strlen(f), "x", out, 32));
	assert_false(metrics_http_form_field(f, strlen(f), "n", out, 32));
	assert_false(metrics_http_form_field(f, strlen(f), "missing", out, 32));
	/* too long for out */
	assert_false(metrics_http_form_field(f, strlen(f), "target", out, 8));
	/* only within len */
	assert_false(metrics_http_form_field(f, 12, "op", out, 32));
}

static void
test_parse_too_large(void **state)
{
	char *big = malloc(METRICS_HTTP_REQUEST_MAX);

	(void)state;
	assert_non_null(big);
	memset(big, 'a', METRICS_HTTP_REQUEST_MAX);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	assert_int_equal(metrics_http_parse(big, METRICS_HTTP_REQUEST_MAX - 1,
					    METRICS_HTTP_REQUEST_MAX),
			 0);
	assert_int_equal(metrics_http_parse(big, METRICS_HTTP_REQUEST_MAX,
					    METRICS_HTTP_REQUEST_MAX),
			 431);
	free(big);
}

/* ---- the registry ---------------------------------------------------- */

static void
test_registry(void **state)
{
	struct registry *r = calloc(1, sizeof(*r));
	char name[32];

	(void)state;
	assert_non_null(r);
	assert_int_equal(registry_listener(r, "127.0.0.1:587"), 0);
	assert_int_equal(registry_listener(r, "127.0.0.1:465"), 1);
	assert_int_equal(registry_listener(r, "127.0.0.1:587"), 0);
	assert_int_equal(r->nlisteners, 2);

	assert_int_equal(registry_find_backend(r, "10.0.0.1:25"), -1);
	assert_int_equal(registry_backend(r, "10.0.0.1:25"), 0);
	assert_int_equal(registry_backend(r, "10.0.0.2:25"), 1);
	assert_int_equal(registry_find_backend(r, "10.0.0.2:25"), 1);
	assert_false(registry_backend_is_other(r, 1));
	/* fill up: the last slot is shared, named "other", never found */
	for (unsigned i = 2; i < COUNTERS_BACKENDS + 5; i++) {
		unsigned slot;

		snprintf(name, sizeof(name), "10.0.1.%u:25", i);
		slot = registry_backend(r, name);
		assert_int_equal(slot, i < COUNTERS_BACKENDS - 1
					       ? i
					       : COUNTERS_BACKENDS - 1);
		if (i >= COUNTERS_BACKENDS - 1) {
			assert_true(registry_backend_is_other(r, slot));
			assert_int_equal(registry_find_backend(r, name), -1);
		}
	}
	assert_int_equal(r->nbackends, COUNTERS_BACKENDS);
	assert_string_equal(r->backend[COUNTERS_BACKENDS - 1].name,
			    REGISTRY_OTHER);
	assert_int_equal(registry_backend(r, "10.0.0.2:25"), 1);
	for (unsigned i = 2; i < COUNTERS_LISTENERS + 3; i++) {
		snprintf(name, sizeof(name), "127.0.0.%u:587", i);
		registry_listener(r, name);
	}
	assert_int_equal(r->nlisteners, COUNTERS_LISTENERS);
	assert_string_equal(r->listener[COUNTERS_LISTENERS - 1],
			    REGISTRY_OTHER);
	assert_int_equal(registry_listener(r, "127.0.0.1:465"), 1);
	free(r);
}

/* The status page's p50/p99: linear inside the bucket, as Prometheus's
 * histogram_quantile(); the +Inf bucket gives the last finite bound. */
static void
test_hist_quantile(void **state)
{
	struct metrics_hist h = {0};

	(void)state;
	assert_true(metrics_hist_quantile(&h, 0.5) < 0);
	/* 4 in (0, 250], 4 in (500, 1000] us */
	h.bucket[0] = 4;
	h.bucket[2] = 4;
	h.count = 8;
	assert_true(metrics_hist_quantile(&h, 0.25) == 125.0);
	assert_true(metrics_hist_quantile(&h, 0.5) == 250.0);
	assert_true(metrics_hist_quantile(&h, 0.75) == 750.0);
	assert_true(metrics_hist_quantile(&h, 0.99) ==
		    500.0 + 500.0 * 3.92 / 4);
	h.bucket[COUNTERS_HIST_BOUNDS] = 100; /* past every bound */
	assert_true(metrics_hist_quantile(&h, 0.99) ==
		    (double)counters_hist_bound_us[COUNTERS_HIST_BOUNDS - 1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_values),
		cmocka_unit_test(test_render_optional_families),
		cmocka_unit_test(test_render_empty),
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_parse_routes),
		cmocka_unit_test(test_admin_helpers),
		cmocka_unit_test(test_parse_too_large),
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_hist_quantile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
