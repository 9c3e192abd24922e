/*
 * counters.h - what a worker counts for the metrics endpoint: the kinds
 * (session outcomes, TLS versions, AUTH mechanisms and results, limits),
 * latency histograms, and the two ways to bump a counter.
 *
 * Every counter has exactly one writer, the worker that owns it, and any
 * number of readers (the main thread sums all workers on a scrape).  So a
 * relaxed load and store is enough to add (no locked instruction, no
 * contended cache line); readers see each value whole, possibly a moment
 * old.  Pure: no I/O, no clock.
 *
 * Listener and backend counters are indexed by slot (registry.h), which
 * stays the same for the same address across reloads.
 */
#ifndef MSAPROXY_COUNTERS_H
#define MSAPROXY_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

#define COUNTERS_LISTENERS 64  /* listener slots; the last: "other" */
#define COUNTERS_BACKENDS  128 /* backend slots; the last: "other" */

/* How a session ended (session.c's outcome=, and refusals at accept). */
enum counter_outcome {
	OUTCOME_OK,	    /* QUIT, or the client hung up */
	OUTCOME_REFUSED,    /* at connect: blocklist, caps, limits, lists */
	OUTCOME_TIMEOUT,    /* a client or handshake timeout */
	OUTCOME_TLS_FAILED, /* handshake or TLS record error */
	OUTCOME_SHUTDOWN,   /* a drain ended it */
	OUTCOME_ERROR,	    /* anything else */
	OUTCOME_COUNT,
};

/* Why a listener refused a connection (at accept, or by policy at
 * connect): the status page's refusals per listener. */
enum counter_refusal {
	REFUSAL_BLOCKLIST,	 /* a ban or the blocklist files */
	REFUSAL_MAX_SESSIONS,	 /* limits.max_sessions */
	REFUSAL_MAX_MEMORY,	 /* limits.max_memory */
	REFUSAL_PROXY,		 /* a PROXY header missing or bad */
	REFUSAL_IP_BANNED,	 /* failed logins earned the network a ban */
	REFUSAL_IP_RATE,	 /* limits.ip.connections */
	REFUSAL_IP_CONCURRENCY,	 /* limits.ip.concurrency */
	REFUSAL_IP_TABLE_FULL,	 /* limits.ip.max_entries */
	REFUSAL_LISTENER_DENIED, /* the listener's allow/deny lists */
	REFUSAL_OTHER,		 /* out of memory */
	REFUSAL_COUNT,
};

/* The TLS version a handshake settled on; UNKNOWN: it failed before. */
enum counter_tls {
	TLSV_1_3,
	TLSV_1_2,
	TLSV_UNKNOWN,
	TLSV_COUNT,
};

enum counter_mech {
	MECH_PLAIN,
	MECH_LOGIN,
	MECH_OAUTHBEARER,
	MECH_XOAUTH2,
	MECH_COUNT,
};

enum counter_auth_result {
	AUTH_SUCCESS,
	AUTH_FAILURE,
	AUTH_RESULT_COUNT,
};

/*
 * Limits that answered a client.  The first eight are counted by the
 * shared limit tables (ratelimit.h: user buckets and network verdicts),
 * the rest by the workers.
 */
enum counter_limit {
	LIMIT_HIT_MESSAGES,
	LIMIT_HIT_RECIPIENTS,
	LIMIT_HIT_BYTES,
	LIMIT_HIT_MESSAGES_QUOTA,
	LIMIT_HIT_IP_BANNED,
	LIMIT_HIT_IP_CONNECTION_RATE,
	LIMIT_HIT_IP_CONCURRENCY,
	LIMIT_HIT_IP_TABLE_FULL,
	LIMIT_HIT_MAX_SESSIONS,		  /* limits.max_sessions, at accept */
	LIMIT_HIT_MAX_MEMORY,		  /* limits.max_memory, at accept */
	LIMIT_HIT_MESSAGE_SIZE,		  /* limits.max_message_size */
	LIMIT_HIT_RECIPIENTS_PER_MESSAGE, /* limits.max_recipients */
	LIMIT_HIT_LINE_LENGTH,		  /* limits.max_line, max_auth_line */
	LIMIT_HIT_MAX_ERRORS,		  /* limits.max_errors */
	LIMIT_HIT_AUTH_FAILURES,	  /* auth.max_failures */
	LIMIT_HIT_COMMAND_TIMEOUT,	  /* limits.command_timeout */
	LIMIT_HIT_DATA_TIMEOUT,		  /* limits.data_timeout */
	LIMIT_HIT_HANDSHAKE_TIMEOUT,	  /* tls.handshake_timeout */
	LIMIT_HIT_COUNT,
};

/* What a proxy_protocol listener made of a connection's PROXY header
 * (io/proxy_in.c): taken (naming the client, or LOCAL: the balancer
 * itself), or the reason it was closed. */
enum counter_proxy {
	PROXY_IN_CLIENT,      /* a header naming the client */
	PROXY_IN_LOCAL,	      /* v2 LOCAL, v1 UNKNOWN, v2 AF_UNSPEC */
	PROXY_IN_UNTRUSTED,   /* the peer is not in the trusted list */
	PROXY_IN_MISSING,     /* the first bytes are no PROXY signature */
	PROXY_IN_MALFORMED,   /* a signature, then something else */
	PROXY_IN_OVERSIZE,    /* a v2 length over 1 KiB */
	PROXY_IN_UNSUPPORTED, /* v2 over UNIX sockets or datagrams */
	PROXY_IN_TRUNCATED,   /* part of a header, then the end or timeout */
	PROXY_IN_TIMEOUT,     /* nothing at all within the timeout */
	PROXY_IN_CLOSED,      /* closed before any byte (a TCP check) */
	PROXY_IN_COUNT,
};

/* Histogram bucket upper bounds in microseconds (plus +Inf). */
#define COUNTERS_HIST_BOUNDS 15
static const uint64_t counters_hist_bound_us[COUNTERS_HIST_BOUNDS] = {
	250,	500,	1000,	2500,	 5000,	  10000,   25000,    50000,
	100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

/* A latency histogram: bucket[i] counts observations <= bound i (not
 * cumulative; the last bucket is +Inf), sum in microseconds. */
struct counter_hist {
	atomic_ullong bucket[COUNTERS_HIST_BOUNDS + 1];
	atomic_ullong count;
	atomic_ullong sum_us;
};

/* Add n to a counter only the calling thread writes. */
static inline void
counter_add(atomic_ullong *c, unsigned long long n)
{
	atomic_store_explicit(c,
			      atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline unsigned long long
counter_read(const atomic_ullong *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* One observation of us microseconds, by the histogram's only writer. */
static inline void
counter_observe(struct counter_hist *h, uint64_t us)
{
	unsigned i = 0;

	while (i < COUNTERS_HIST_BOUNDS && us > counters_hist_bound_us[i])
		i++;
	counter_add(&h->bucket[i], 1);
	counter_add(&h->sum_us, us);
	counter_add(&h->count, 1);
}

#endif
