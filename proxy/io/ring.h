/*
 * ring.h - one worker's io_uring and what every object on it shares: the
 * provided-buffer groups, the deadline heap, the counters, the shared
 * tables, the worker's sessions and the list of those woken to run.
 * Private to proxy/io/.
 *
 * worker.c owns a struct ring and runs the loop over it; sessions,
 * backend connections and health checks keep a pointer to it and never
 * call into worker.c.  A completion's user_data is {object pointer | op}:
 * every object on the ring is at least 16-byte aligned, so the op rides in
 * the low bits, and worker.c dispatches on it.  The backend leg wakes its
 * session through a ring_task; the worker runs woken sessions after each
 * batch of completions.
 */
#ifndef MSAPROXY_RING_H
#define MSAPROXY_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <liburing.h>

#include "io/backend_pool.h"
#include "lib/timer.h"
#include "limits/policy.h"
#include "ops/counters.h"

struct auth_backend;
struct auth_request;
struct bans;
struct caps;
struct cluster;
struct cluster_link;
struct cluster_request;
struct generation;
struct ratelimit;
struct session;

/* Ring operations, packed into the low bits of user_data. */
enum ring_op {
	OP_IGNORE = 0, /* cancels, closes: nothing to do */
	OP_ACCEPT,
	OP_CLIENT_RECV,
	OP_CLIENT_SEND,
	OP_BACKEND_CONNECT,
	OP_BACKEND_RECV,
	OP_BACKEND_SEND,
	OP_WAKE,
	OP_CHECK_CONNECT, /* health.c */
	OP_CHECK_RECV,
	OP_CHECK_SEND,
	OP_REFUSAL,	    /* a 421 to a connection refused at accept */
	OP_PROXY_RECV,	    /* proxy_in.c: a PROXY header's bytes */
	OP_CLUSTER_CONNECT, /* cluster_link.c */
	OP_CLUSTER_SEND,
	OP_CLUSTER_RECV,
};
#define OP_BITS 4u
#define OP_MASK ((1u << OP_BITS) - 1)
_Static_assert(OP_CLUSTER_RECV <= OP_MASK, "ring ops outgrew OP_BITS");

/* The counts are worker_buffers.receive and .data (config.h). */
#define RECV_BUF_SIZE 16384u /* one TLS record fits */
#define RECV_GROUP    0u     /* provided-buffer groups on the ring */
#define DATA_GROUP    1u     /* a TLS session's message bytes */
#define DATA_BUF_SIZE 65536u /* four TLS records */

/* What every worker shares with the others (all thread-safe). */
struct worker_shared {
	struct auth_backend *auth; /* auth.backend */
	struct ratelimit *limits;
	struct bans *bans;	 /* may be NULL */
	struct caps *caps;	 /* limits.max_sessions, limits.max_memory */
	struct cluster *cluster; /* cluster.redis; NULL: none */
	struct policy_shared cluster_policy; /* policy.c's way to it */
};

/* Counters the worker keeps and anyone may read (relaxed atomics; the
 * worker is the only writer, see counters.h). */
struct worker_counters {
	atomic_ullong accepted; /* connections taken */
	atomic_ullong refused;	/* closed at accept: caps, blocklist */
	atomic_ullong active;	/* sessions open now */
	atomic_uint generation; /* id of the generation in use */
	atomic_bool draining;	/* stopped accepting */

	/* For the metrics endpoint: sessions ended (or refused at accept)
	 * by listener slot and outcome. */
	atomic_ullong sessions[COUNTERS_LISTENERS][OUTCOME_COUNT];
	/* Sessions open now by listener slot: added at the start, taken
	 * off (a wrapping add) at the end; the sum over workers is exact. */
	atomic_ullong open[COUNTERS_LISTENERS];
	atomic_ullong refusals[COUNTERS_LISTENERS][REFUSAL_COUNT];
	atomic_ullong tls_resumed[TLSV_COUNT]; /* of tls_ok: resumptions */
	atomic_ullong tls_ok[TLSV_COUNT], tls_failed[TLSV_COUNT];
	atomic_ullong auth[MECH_COUNT][AUTH_RESULT_COUNT];
	atomic_ullong limits[LIMIT_HIT_COUNT];	/* the workers' kinds */
	atomic_ullong proxy_in[PROXY_IN_COUNT]; /* PROXY headers read */
	atomic_ullong data_bytes; /* message bytes handed to backends */
	atomic_ullong messages;	  /* acknowledged by a backend */
	atomic_ullong busy_ns;	  /* time outside the ring wait */
	struct counter_hist backend_connect[COUNTERS_BACKENDS];
	struct counter_hist backend_transaction[COUNTERS_BACKENDS];
};

/* A provided-buffer ring: group 0 (RECV_BUF_*) for every receive, group 1
 * (DATA_BUF_*) for a TLS session's message bytes, so a message arrives in
 * a quarter of the completions, wake-ups and backend sends. */
struct buf_ring {
	struct io_uring_buf_ring *br;
	char *bufs;
	size_t br_size;
	unsigned size, count;
};

/* Something to run after this batch of completions (a session). */
struct ring_task {
	struct ring_task *next;
	bool queued;
};

struct ring {
	unsigned id; /* the worker's */
	struct io_uring uring;
	bool uring_ok;
	struct buf_ring bufs[2]; /* by buffer group */

	struct generation *gen; /* for new sessions, held by the worker */
	struct backend_pool_cursor cursor; /* balancing state for gen */
	struct worker_shared shared;
	struct worker_counters counters;
	struct timer_heap timers;

	struct session *sessions; /* open ones, through s->prev/next */
	size_t nsessions;
	size_t objects; /* sessions, backend connections: not yet freed */
	struct ring_task *woken, **woken_tail;

	/* The auth pool's and the cluster's answers go to the worker's
	 * mailbox. */
	void (*auth_done)(struct auth_request *req);
	void (*cluster_done)(struct cluster_request *req);
	/* The worker's own connection to the cluster (cluster_link.h; NULL:
	 * none), and its answers, for their sessions after this batch. */
	struct cluster_link *cluster_link;
	struct cluster_request *answered, **answered_tail;
};

/* The ring and its buffer groups, on the worker's own thread. */
int ring_setup(struct ring *r, char *err, size_t errlen);
void ring_free(struct ring *r);

/* A submission entry, flushing the queue to the kernel when it is full. */
struct io_uring_sqe *ring_sqe(struct ring *r);
/* Tag sqe with its object and op.  The caller counts the reference the
 * completion will drop (s->inflight, be->refs, ...). */
void ring_prep(struct io_uring_sqe *sqe, void *ptr, enum ring_op op);

/* A completed receive's buffer, and giving it back to its group. */
const char *ring_buf(const struct ring *r, unsigned group, unsigned bid);
void ring_buf_return(struct ring *r, unsigned group, unsigned bid);

/* t runs after this batch (queued once however often it is woken). */
void ring_wake(struct ring *r, struct ring_task *t);
/* The next woken task, or NULL. */
struct ring_task *ring_next_woken(struct ring *r);

/* A server of gen for a new backend connection (backends.balance among
 * those not in tried), or BACKEND_POOL_NONE.  A generation other than the
 * worker's balances with a cursor of its own for the pick. */
size_t ring_pick_backend(struct ring *r, struct generation *gen,
			 const char *login, uint64_t tried);

#endif
