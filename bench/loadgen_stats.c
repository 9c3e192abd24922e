/*
 * loadgen_stats.c - latency histograms and the JSON report of loadgen.
 *
 * Histograms are log-linear in nanoseconds: exact below 128 ns, then 64
 * sub-buckets per power of two (under 1.6 % error), fixed size, so memory
 * stays bounded however long the run; percentiles report the middle of
 * their bucket, capped by the exact maximum.  The report is one JSON object
 * on stdout; its fields are described in README.md.  Pure: no I/O besides
 * that printf, no clock.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#include "loadgen.h"

static const char *const phase_names[PH_MAX] = {
	"connect", "tls",  "greeting", "ehlo", "starttls", "auth", "mail",
	"rcpt",	   "data", "body",     "dot",  "hold",	   "quit",
};

static const char *const cause_names[CA_MAX] = {
	"connect",    "greeting", "tls",    "ehlo", "starttls",
	"auth",	      "mail",	  "rcpt",   "data", "quit",
	"unexpected", "timeout",  "closed", "io",   "protocol",
};

static const char *const tls_names[] = {"starttls", "implicit", "none"};

/* ---------------------------------------------------------------------
 * Latency histogram
 */

static unsigned
hist_index(uint64_t v)
{
	unsigned msb, shift, idx;

	if (v < 128)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - 6;
	idx = 128 + (shift - 1) * 64 + (unsigned)((v >> shift) - 64);
	return idx < HIST_N ? idx : HIST_N - 1;
}

/* The middle of a bucket's range. */
static uint64_t
hist_value(unsigned idx)
{
	unsigned shift;

	if (idx < 128)
		return idx;
	shift = (idx - 128) / 64 + 1;
	return ((uint64_t)((idx - 128) % 64 + 64) << shift) +
	       ((1ull << shift) >> 1);
}

void
stats_latency(struct hist *h, int64_t ns)
{
	uint64_t v = ns > 0 ? (uint64_t)ns : 0;

	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
	h->b[hist_index(v)]++;
}

static void
hist_merge(struct hist *to, const struct hist *from)
{
	to->n += from->n;
	to->sum += from->sum;
	if (from->max > to->max)
		to->max = from->max;
	for (unsigned i = 0; i < HIST_N; i++)
		to->b[i] += from->b[i];
}

static double
hist_pct(const struct hist *h, double q)
{
	uint64_t want, seen = 0, v;

	if (h->n == 0)
		return 0;
	want = (uint64_t)ceil(q * (double)h->n);
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < HIST_N; i++) {
		seen += h->b[i];
		if (seen >= want) {
			v = hist_value(i);
			return (double)(v < h->max ? v : h->max) / 1e6;
		}
	}
	return (double)h->max / 1e6;
}

static void
hist_json(const char *name, const struct hist *h, const char *sep)
{
	printf("\"%s\": {\"n\": %" PRIu64 ", \"p50\": %.3f, \"p90\": %.3f, "
	       "\"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f, "
	       "\"mean\": %.3f}%s",
	       name, h->n, hist_pct(h, 0.5), hist_pct(h, 0.9),
	       hist_pct(h, 0.99), hist_pct(h, 0.999), (double)h->max / 1e6,
	       h->n ? (double)h->sum / (double)h->n / 1e6 : 0.0, sep);
}

/* ---------------------------------------------------------------------
 * Report
 */

void
stats_merge(struct stats *to, const struct stats *from)
{
	to->ok += from->ok;
	to->failed += from->failed;
	to->messages += from->messages;
	to->bytes += from->bytes;
	to->handshakes += from->handshakes;
	to->resumed += from->resumed;
	to->skipped += from->skipped;
	for (int c = 0; c < CA_MAX; c++) {
		to->cause[c] += from->cause[c];
		for (int p = 0; p < PH_MAX; p++)
			to->detail[c][p] += from->detail[c][p];
	}
	for (int p = 0; p < PH_MAX; p++) {
		for (int k = 0; k < 1000; k++)
			to->codes[p][k] += from->codes[p][k];
	}
	hist_merge(&to->session, &from->session);
	hist_merge(&to->handshake, &from->handshake);
	hist_merge(&to->data, &from->data);
}

static void
json_string(const char *s)
{
	putchar('"');
	for (; s != NULL && *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* The one JSON object on stdout. */
void
stats_report(const struct stats *s, double wall, double cpu, long idle_ok,
	     bool interrupted)
{
	const char *sep = "";

	printf("{\"sessions_ok\": %" PRIu64 ", \"sessions_failed\": %" PRIu64
	       ", \"failures\": {",
	       s->ok, s->failed);
	for (int c = 0; c < CA_MAX; c++) {
		if (s->cause[c] == 0)
			continue;
		printf("%s\"%s\": %" PRIu64, sep, cause_names[c], s->cause[c]);
		sep = ", ";
	}
	printf("}, \"failure_detail\": {");
	sep = "";
	for (int c = 0; c < CA_MAX; c++) {
		for (int p = 0; p < PH_MAX; p++) {
			if (s->detail[c][p] == 0)
				continue;
			/* "data timeout", "greeting closed", "tls failed" */
			printf("%s\"%s %s\": %" PRIu64, sep, phase_names[p],
			       strcmp(cause_names[c], phase_names[p]) == 0
				       ? "failed"
				       : cause_names[c],
			       s->detail[c][p]);
			sep = ", ";
		}
	}
	for (int p = 0; p < PH_MAX; p++) {
		for (int k = 100; k < 1000; k++) {
			if (s->codes[p][k] == 0)
				continue;
			printf("%s\"%s %d\": %u", sep, phase_names[p], k,
			       s->codes[p][k]);
			sep = ", ";
		}
	}
	printf("}, \"messages\": %" PRIu64 ", \"bytes\": %" PRIu64
	       ", \"handshakes\": %" PRIu64 ", \"resumed\": %" PRIu64
	       ", \"skipped_arrivals\": %" PRIu64 ", \"wall_s\": %.3f"
	       ", \"sessions_per_s\": %.1f, \"messages_per_s\": %.1f"
	       ", \"mb_per_s\": %.2f, \"client_cpu_s\": %.3f, ",
	       s->messages, s->bytes, s->handshakes, s->resumed, s->skipped,
	       wall, wall > 0 ? (double)s->ok / wall : 0.0,
	       wall > 0 ? (double)s->messages / wall : 0.0,
	       wall > 0 ? (double)s->bytes / 1048576.0 / wall : 0.0, cpu);
	if (opt.idle > 0)
		printf("\"idle_established\": %ld, ", idle_ok);
	if (interrupted)
		printf("\"interrupted\": true, ");
	printf("\"latency_ms\": {");
	hist_json("session", &s->session, ", ");
	hist_json("handshake", &s->handshake, ", ");
	hist_json("data", &s->data, "");
	printf("}, \"params\": {\"host\": ");
	json_string(opt.host);
	printf(", \"port\": %d, \"tls\": \"%s\", \"tls_max\": \"%s\", "
	       "\"sni\": ",
	       opt.port, tls_names[opt.tls],
	       opt.tls_max == TLS1_2_VERSION ? "1.2" : "1.3");
	if (opt.sni != NULL)
		json_string(opt.sni);
	else
		printf("null");
	printf(", \"resume\": %s, \"auth\": %s, \"users\": %zu, "
	       "\"messages\": %ld, \"rcpts\": %ld, \"size\": %zu, "
	       "\"wire_bytes\": %zu, \"pipelining\": %s, \"threads\": %d, "
	       "\"concurrency\": %ld, \"sessions\": %ld, \"duration_s\": %.3f, "
	       "\"rate\": %.3f, \"arrivals\": \"%s\", \"max_inflight\": %ld, "
	       "\"idle\": %ld, \"hold_s\": %.3f, \"timeout_s\": %.3f, "
	       "\"think_s\": %.3f}}\n",
	       opt.resume ? "true" : "false", opt.no_auth ? "false" : "true",
	       nusers, opt.messages, opt.rcpts, msg_size, msg_wire_len,
	       opt.pipelining ? "true" : "false", opt.threads, opt.concurrency,
	       opt.sessions, opt.duration, opt.rate,
	       opt.arrivals == ARR_UNIFORM ? "uniform" : "poisson",
	       opt.max_inflight, opt.idle, opt.hold, opt.timeout, opt.think);
	fflush(stdout);
}
