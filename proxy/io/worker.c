/*
 * worker.c - the per-core event loop.
 *
 * One io_uring per thread (ring.c), multishot accept on this worker's own
 * SO_REUSEPORT sockets, every socket operation on the ring.  The loop
 * sleeps in io_uring_submit_and_wait_timeout() until a completion or the
 * earliest deadline, hands the completions of a batch to their sessions,
 * backend connections and health checks, then runs the sessions their
 * backend leg woke (ring_wake()), then fires due timers.  Only this file
 * runs sessions; nothing below it calls back up.
 *
 * Password checks come back from the auth pool through a mailbox (mutex +
 * list) and an eventfd read on the ring; so do the main thread's requests
 * (a new generation after a reload, a drain, a question from the control
 * socket).
 *
 * Connections are refused at accept, before any session or TLS work,
 * when their source is blocklisted (closed) or a process-wide cap is
 * reached (caps.h: 421 4.3.2 on a starttls listener, closed on an implicit
 * one); those refusals are logged at most once a second per reason.  On a
 * listener with proxy_protocol the connection first reads its PROXY
 * header (proxy_in.c, from a trusted source only), and these checks and
 * the session then take the header's client as the peer; a header that
 * fails is such a refusal too (reason=proxy-...).
 *
 * Config keys: workers, listeners (proxy_protocol: proxy_in.c),
 * limits.max_sessions, limits.max_memory,
 * hostname (the 421), backends.balance (through backend_pool.c),
 * backends.health_check (worker 0, health.c).
 */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bans/bans.h"
#include "cluster/cluster.h"
#include "config/generation.h"
#include "io/backend.h"
#include "io/backend_pool.h"
#include "io/cluster_link.h"
#include "io/health.h"
#include "io/proxy_in.h"
#include "io/ring.h"
#include "io/session.h"
#include "io/tls.h"
#include "io/worker.h"
#include "lib/log.h"
#include "limits/caps.h"
#include "ops/sandbox.h"

#define EXIT_GRACE_MS 2000 /* for the last completions after a drain */
#define REFUSE_LOG_MS 1000 /* one line per refusal reason at most */

/* Why a connection was closed at accept. */
enum refuse_reason {
	REFUSE_BLOCKLIST,
	REFUSE_SESSIONS, /* limits.max_sessions */
	REFUSE_MEMORY,	 /* limits.max_memory */
	REFUSE_OOM,
	REFUSE_PROXY_UNTRUSTED, /* listeners[].proxy_protocol: proxy_in.c */
	REFUSE_PROXY_MISSING,
	REFUSE_PROXY_MALFORMED,
	REFUSE_PROXY_OVERSIZE,
	REFUSE_PROXY_UNSUPPORTED,
	REFUSE_PROXY_TRUNCATED,
	REFUSE_PROXY_TIMEOUT,
	REFUSE_PROXY_CLOSED,
	REFUSE_REASONS,
};

/* A refusal at accept as the status page counts it per listener. */
static const enum counter_refusal refusal_kind[REFUSE_REASONS] = {
	[REFUSE_BLOCKLIST] = REFUSAL_BLOCKLIST,
	[REFUSE_SESSIONS] = REFUSAL_MAX_SESSIONS,
	[REFUSE_MEMORY] = REFUSAL_MAX_MEMORY,
	[REFUSE_OOM] = REFUSAL_OTHER,
	[REFUSE_PROXY_UNTRUSTED] = REFUSAL_PROXY,
	[REFUSE_PROXY_MISSING] = REFUSAL_PROXY,
	[REFUSE_PROXY_MALFORMED] = REFUSAL_PROXY,
	[REFUSE_PROXY_OVERSIZE] = REFUSAL_PROXY,
	[REFUSE_PROXY_UNSUPPORTED] = REFUSAL_PROXY,
	[REFUSE_PROXY_TRUNCATED] = REFUSAL_PROXY,
	[REFUSE_PROXY_TIMEOUT] = REFUSAL_PROXY,
	[REFUSE_PROXY_CLOSED] = REFUSAL_PROXY,
};

/* A PROXY header's failure as a refusal. */
static const enum refuse_reason proxy_refusal[PROXY_IN_COUNT] = {
	[PROXY_IN_UNTRUSTED] = REFUSE_PROXY_UNTRUSTED,
	[PROXY_IN_MISSING] = REFUSE_PROXY_MISSING,
	[PROXY_IN_MALFORMED] = REFUSE_PROXY_MALFORMED,
	[PROXY_IN_OVERSIZE] = REFUSE_PROXY_OVERSIZE,
	[PROXY_IN_UNSUPPORTED] = REFUSE_PROXY_UNSUPPORTED,
	[PROXY_IN_TRUNCATED] = REFUSE_PROXY_TRUNCATED,
	[PROXY_IN_TIMEOUT] = REFUSE_PROXY_TIMEOUT,
	[PROXY_IN_CLOSED] = REFUSE_PROXY_CLOSED,
};

/* Log lines about one kind of event, at most one per period. */
struct log_gate {
	uint64_t next_ms;
	unsigned long long skipped; /* since the last line */
};

/* Aligned so its address leaves the low OP_BITS free for the op tag. */
struct listen_sock {
	struct worker *w;
	const struct config_listener *cl; /* NULL once closing */
	int fd;
	bool armed;   /* a multishot accept is on the ring */
	bool closing; /* cancelled: close when the accept ends */
	struct listen_sock *next;
} __attribute__((aligned(1u << OP_BITS)));

/* A new generation and listener set from the main thread. */
struct worker_update {
	struct generation *gen;
	struct worker_listener *ls;
	size_t nls;
	struct worker_update *next; /* applied in order */
};

/* A question from the main thread, answered on the worker thread. */
struct worker_query {
	atomic_int refs; /* asker and worker */
	bool json;
	char *text;
	sem_t done;
	struct worker_query *next;
};

/* The checks of a replaced generation, finishing what is in flight. */
struct retired_health {
	struct health *health;
	struct generation *gen; /* held: its pool */
	struct retired_health *next;
};

struct worker {
	struct ring ring; /* what its sessions see: ring.h */

	struct listen_sock *ls;

	int efd; /* wake-ups: auth results, updates, queries, drain */
	uint64_t efd_val;
	pthread_mutex_t mbox_lock; /* guards the five below */
	struct auth_request *mbox;
	struct cluster_request *cmbox; /* the cluster's answers */
	struct worker_update *updates; /* oldest first */
	struct worker_query *queries;
	uint64_t drain_deadline; /* 0: not asked to drain */

	bool stopping;	   /* draining: no more accepts */
	uint64_t deadline; /* of the drain */
	bool cut;	   /* the deadline passed: sessions were cut */

	struct proxy_in *proxy_waits; /* connections reading their header */

	struct health *health;		/* worker 0: the active checks */
	struct retired_health *retired; /* older generations' checks */

	struct log_gate refuse_log[REFUSE_REASONS];

	pthread_t thread;
	sem_t started;
	int start_status;
	char start_err[256];
};

const struct worker_counters *
worker_counters(const struct worker *w)
{
	return &w->ring.counters;
}

/* Sessions woken by their backend leg (ring_wake), in order; one woken
 * again while it runs goes to the back and runs again. */
static void
run_woken(struct worker *w)
{
	struct ring_task *t;

	while ((t = ring_next_woken(&w->ring)) != NULL)
		session_woken(
			(struct session *)((char *)t -
					   offsetof(struct session, wake)));
}

/* ---------------------------------------------------------------------
 * Listening sockets
 */

static void
arm_accept(struct worker *w, struct listen_sock *l)
{
	struct io_uring_sqe *sqe = ring_sqe(&w->ring);

	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL,
				       SOCK_NONBLOCK | SOCK_CLOEXEC);
	ring_prep(sqe, l, OP_ACCEPT);
	l->armed = true;
}

static void
free_listener(struct worker *w, struct listen_sock *l)
{
	struct listen_sock **pp = &w->ls;

	while (*pp != l)
		pp = &(*pp)->next;
	*pp = l->next;
	if (l->fd >= 0)
		close(l->fd);
	free(l);
}

/* Stop accepting on l.  With an accept on the ring, the socket closes when
 * that accept has ended (the cancel needs the fd open to find it): l may
 * outlive this call; without one, l is gone at once. */
static void
close_listener(struct worker *w, struct listen_sock *l)
{
	if (l->closing)
		return;
	l->closing = true;
	l->cl = NULL;
	if (l->armed) {
		struct io_uring_sqe *sqe = ring_sqe(&w->ring);

		io_uring_prep_cancel_fd(sqe, l->fd, 0);
		ring_prep(sqe, NULL, OP_IGNORE);
	} else {
		free_listener(w, l);
	}
}

static struct listen_sock *
add_listener(struct worker *w, const struct worker_listener *wl)
{
	struct listen_sock *l = aligned_alloc(1u << OP_BITS, sizeof(*l));

	if (l == NULL)
		return NULL;
	memset(l, 0, sizeof(*l));
	l->w = w;
	l->cl = wl->cl;
	l->fd = wl->fd;
	l->next = w->ls;
	w->ls = l;
	return l;
}

/* ---------------------------------------------------------------------
 * Requests from the main thread
 */

static void
update_free(struct worker_update *u)
{
	if (u == NULL)
		return;
	generation_drop(u->gen);
	free(u->ls);
	free(u);
}

static void
query_drop(struct worker_query *q)
{
	if (atomic_fetch_sub(&q->refs, 1) == 1) {
		sem_destroy(&q->done);
		free(q->text);
		free(q);
	}
}

static void
wake(struct worker *w)
{
	uint64_t one = 1;

	if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("worker-wake-failed", " worker=%u error=\"%s\"",
			  w->ring.id, strerror(errno));
}

/* Worker 0: checks for gen's servers; the old ones finish theirs first. */
static void
swap_health(struct worker *w, struct generation *gen)
{
	struct retired_health *r;
	bool oom;

	if (w->health != NULL) {
		r = calloc(1, sizeof(*r));
		if (r == NULL) {
			log_error("health-retire-failed",
				  " error=out-of-memory");
		} else {
			r->health = w->health;
			r->gen = generation_hold(w->ring.gen);
			r->next = w->retired;
			w->retired = r;
		}
	}
	w->health = health_new(&w->ring, gen->backend_pool, gen->cfg, &oom);
	if (oom)
		log_error("health-failed", " error=out-of-memory");
}

/* Free retired checks with nothing left on the ring. */
static void
run_retired_health(struct worker *w, uint64_t now)
{
	struct retired_health **pp = &w->retired, *r;

	while ((r = *pp) != NULL) {
		health_run(r->health, now, true);
		if (health_busy(r->health)) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		health_free(r->health);
		generation_drop(r->gen);
		free(r);
	}
}

/* Take the new generation and listener set (on the worker thread). */
static void
apply_update(struct worker *w, struct worker_update *u)
{
	struct backend_pool_cursor cursor;

	for (struct listen_sock *l = w->ls, *next; l != NULL; l = next) {
		size_t i;

		next = l->next; /* close_listener() may free l */
		for (i = 0; i < u->nls && u->ls[i].fd != l->fd; i++)
			;
		if (i == u->nls)
			close_listener(w, l);
		else if (!l->closing)
			l->cl = u->ls[i].cl;
	}
	for (size_t i = 0; i < u->nls; i++) {
		struct listen_sock *l;

		for (l = w->ls; l != NULL && l->fd != u->ls[i].fd; l = l->next)
			;
		if (l != NULL)
			continue;
		l = add_listener(w, &u->ls[i]);
		if (l == NULL) {
			log_error("listener-failed",
				  " worker=%u listener=%s error=out-of-memory",
				  w->ring.id, u->ls[i].cl->addr.text);
			close(u->ls[i].fd);
		} else if (!w->stopping) {
			arm_accept(w, l);
		}
	}
	if (backend_pool_cursor_init(&cursor, u->gen->backend_pool) == 0) {
		backend_pool_cursor_free(&w->ring.cursor);
		w->ring.cursor = cursor;
	}
	if (w->ring.id == 0)
		swap_health(w, u->gen);
	/* Swap: the old generation stays alive in its sessions. */
	struct generation *old = w->ring.gen;
	w->ring.gen = u->gen;
	u->gen = old;
	atomic_store(&w->ring.counters.generation, w->ring.gen->id);
	update_free(u);
}

static void
answer_query(struct worker *w, struct worker_query *q)
{
	size_t len = 0;
	FILE *f = open_memstream(&q->text, &len);

	if (f != NULL) {
		for (struct session *s = w->ring.sessions; s != NULL;
		     s = s->next)
			session_describe(s, f, q->json);
		if (fclose(f) != 0) {
			free(q->text);
			q->text = NULL;
		}
	}
	sem_post(&q->done);
	query_drop(q);
}

/* Every session is told: idle ones end now, busy ones after their
 * transaction.  Listeners stop accepting. */
static void
begin_drain(struct worker *w)
{
	struct session *s, *next;

	w->stopping = true;
	atomic_store(&w->ring.counters.draining, true);
	for (struct listen_sock *l = w->ls, *lnext; l != NULL; l = lnext) {
		lnext = l->next;
		close_listener(w, l);
	}
	for (s = w->ring.sessions; s != NULL; s = next) {
		next = s->next;
		session_drain(s);
	}
	for (struct proxy_in *p = w->proxy_waits; p != NULL; p = p->next)
		proxy_in_stop(p);
}

/* The drain deadline passed: cut whatever is left. */
static void
cut_sessions(struct worker *w)
{
	struct session *s, *next;

	w->cut = true;
	if (w->ring.nsessions > 0)
		log_warn("drain-deadline", " worker=%u sessions=%zu",
			 w->ring.id, w->ring.nsessions);
	for (s = w->ring.sessions; s != NULL; s = next) {
		next = s->next;
		session_shutdown(s);
	}
}

static void
on_main_requests(struct worker *w)
{
	struct worker_update *u;
	struct worker_query *q;
	uint64_t deadline;

	pthread_mutex_lock(&w->mbox_lock);
	u = w->updates;
	w->updates = NULL;
	q = w->queries;
	w->queries = NULL;
	deadline = w->drain_deadline;
	pthread_mutex_unlock(&w->mbox_lock);

	while (u != NULL) {
		struct worker_update *next = u->next;
		apply_update(w, u);
		u = next;
	}
	while (q != NULL) {
		struct worker_query *next = q->next;
		answer_query(w, q);
		q = next;
	}
	if (deadline != 0 && (!w->stopping || deadline < w->deadline)) {
		w->deadline = deadline;
		if (!w->stopping)
			begin_drain(w);
	}
}

int
worker_adopt(struct worker *w, struct generation *gen,
	     const struct worker_listener *ls, size_t nls)
{
	struct worker_update *u = calloc(1, sizeof(*u)), **pp;

	if (u == NULL || (u->ls = calloc(nls ? nls : 1, sizeof(*ls))) == NULL) {
		free(u);
		return -1;
	}
	memcpy(u->ls, ls, nls * sizeof(*ls));
	u->nls = nls;
	u->gen = generation_hold(gen);
	pthread_mutex_lock(&w->mbox_lock);
	for (pp = &w->updates; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = u;
	pthread_mutex_unlock(&w->mbox_lock);
	wake(w);
	return 0;
}

void
worker_drain(struct worker *w, uint64_t deadline_ms)
{
	if (deadline_ms == 0)
		deadline_ms = 1;
	pthread_mutex_lock(&w->mbox_lock);
	if (w->drain_deadline == 0 || deadline_ms < w->drain_deadline)
		w->drain_deadline = deadline_ms;
	pthread_mutex_unlock(&w->mbox_lock);
	wake(w);
}

char *
worker_sessions(struct worker *w, bool json, int timeout_ms)
{
	struct worker_query *q = calloc(1, sizeof(*q));
	struct timespec ts;
	char *text = NULL;
	int r;

	if (q == NULL)
		return NULL;
	atomic_init(&q->refs, 2);
	q->json = json;
	sem_init(&q->done, 0, 0);
	pthread_mutex_lock(&w->mbox_lock);
	q->next = w->queries;
	w->queries = q;
	pthread_mutex_unlock(&w->mbox_lock);
	wake(w);

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	while ((r = sem_timedwait(&q->done, &ts)) != 0 && errno == EINTR)
		;
	if (r == 0) {
		text = q->text;
		q->text = NULL;
	}
	query_drop(q);
	return text;
}

/* ---------------------------------------------------------------------
 * Auth results: pool thread -> mailbox -> eventfd -> this ring
 */

/* A request's cookie is the session's ring, which is its worker's. */
static struct worker *
worker_of_cookie(uint64_t cookie)
{
	return (struct worker *)((char *)(uintptr_t)cookie -
				 offsetof(struct worker, ring));
}

static void
worker_auth_done(struct auth_request *req)
{
	struct worker *w = worker_of_cookie(req->cookie);

	pthread_mutex_lock(&w->mbox_lock);
	req->next = w->mbox;
	w->mbox = req;
	pthread_mutex_unlock(&w->mbox_lock);
	wake(w);
}

static void
worker_cluster_done(struct cluster_request *req)
{
	struct worker *w = worker_of_cookie(req->cookie);

	pthread_mutex_lock(&w->mbox_lock);
	req->next = w->cmbox;
	w->cmbox = req;
	pthread_mutex_unlock(&w->mbox_lock);
	wake(w);
}

/* Answers from the worker's own link (cluster_link.c), in order. */
static void
run_link_answers(struct worker *w)
{
	struct cluster_request *req;

	while ((req = w->ring.answered) != NULL) {
		struct session *s = req->owner;

		w->ring.answered = req->next;
		if (w->ring.answered == NULL)
			w->ring.answered_tail = &w->ring.answered;
		session_on_cluster(s, req);
		session_release(s);
	}
}

/* The cluster thread's answers, in the order they came. */
static void
on_cluster_answers(struct worker *w)
{
	struct cluster_request *list, *req, *rev = NULL;

	pthread_mutex_lock(&w->mbox_lock);
	list = w->cmbox;
	w->cmbox = NULL;
	pthread_mutex_unlock(&w->mbox_lock);
	while (list != NULL) {
		req = list;
		list = req->next;
		req->next = rev;
		rev = req;
	}
	while ((req = rev) != NULL) {
		struct session *s = req->owner;

		rev = req->next;
		session_on_cluster(s, req);
		session_release(s);
	}
}

static void
arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = ring_sqe(&w->ring);

	io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof(w->efd_val), 0);
	ring_prep(sqe, w, OP_WAKE);
}

static void
on_wake(struct worker *w, int res)
{
	struct auth_request *list, *req, *rev = NULL;

	(void)res;
	pthread_mutex_lock(&w->mbox_lock);
	list = w->mbox;
	w->mbox = NULL;
	pthread_mutex_unlock(&w->mbox_lock);
	while (list != NULL) { /* restore arrival order */
		req = list;
		list = req->next;
		req->next = rev;
		rev = req;
	}
	while ((req = rev) != NULL) {
		struct session *s = req->owner;
		rev = req->next;
		session_on_auth(s, req);
		session_release(s);
	}
	on_cluster_answers(w);
	on_main_requests(w);
	arm_wake(w);
}

/* ---------------------------------------------------------------------
 * Accept
 */

/* A connection refused for a cap gets this, then the close (starttls
 * listeners only: on an implicit one it would be garbage to TLS). */
struct refusal {
	struct worker *w;
	int fd;
	unsigned len;
	char text[320]; /* "421 4.3.2 " hostname (<= 255) " ..." */
} __attribute__((aligned(1u << OP_BITS)));

static void
send_refusal(struct worker *w, int fd, const char *why)
{
	struct refusal *r = aligned_alloc(1u << OP_BITS, sizeof(*r));
	struct io_uring_sqe *sqe;
	int n;

	if (r == NULL) {
		close(fd);
		return;
	}
	n = snprintf(r->text, sizeof(r->text),
		     "421 4.3.2 %s %s, try again later\r\n",
		     w->ring.gen->cfg->hostname, why);
	if (n < 0 || (size_t)n >= sizeof(r->text)) {
		free(r);
		close(fd);
		return;
	}
	r->w = w;
	r->fd = fd;
	r->len = (unsigned)n;
	w->ring.objects++;
	sqe = ring_sqe(&w->ring);
	io_uring_prep_send(sqe, fd, r->text, r->len, MSG_NOSIGNAL);
	ring_prep(sqe, r, OP_REFUSAL);
}

/* Sent or not (the client may be gone already): close. */
static void
on_refusal_sent(struct refusal *r)
{
	close(r->fd);
	r->w->ring.objects--;
	free(r);
}

/* A flood of refusals must not become a flood of log lines: each reason
 * is logged at most once per REFUSE_LOG_MS per worker, and the next line
 * says how many were left out (the counters have every one).  A line
 * names the client of the refusal it is written for, not the others. */
static void
worker_refuse(struct worker *w, int fd, const struct config_listener *cl,
	      const struct sockaddr *peer, enum refuse_reason why)
{
	static const char *const names[REFUSE_REASONS] = {
		[REFUSE_BLOCKLIST] = "blocklist",
		[REFUSE_SESSIONS] = "max-sessions",
		[REFUSE_MEMORY] = "max-memory",
		[REFUSE_OOM] = "out-of-memory",
		[REFUSE_PROXY_UNTRUSTED] = "proxy-untrusted",
		[REFUSE_PROXY_MISSING] = "proxy-missing",
		[REFUSE_PROXY_MALFORMED] = "proxy-malformed",
		[REFUSE_PROXY_OVERSIZE] = "proxy-oversize",
		[REFUSE_PROXY_UNSUPPORTED] = "proxy-unsupported",
		[REFUSE_PROXY_TRUNCATED] = "proxy-truncated",
		[REFUSE_PROXY_TIMEOUT] = "proxy-timeout",
		[REFUSE_PROXY_CLOSED] = "proxy-closed",
	};
	const struct config *cfg = w->ring.gen->cfg;
	struct log_gate *g = &w->refuse_log[why];
	uint64_t now = timer_now_ms();
	const struct caps *c = w->ring.shared.caps;
	char detail[128] = "", client[INET6_ADDRSTRLEN];
	unsigned port, slot;

	atomic_fetch_add_explicit(&w->ring.counters.refused, 1,
				  memory_order_relaxed);
	slot = generation_listener_slot(w->ring.gen, cl);
	counter_add(&w->ring.counters.sessions[slot][OUTCOME_REFUSED], 1);
	counter_add(&w->ring.counters.refusals[slot][refusal_kind[why]], 1);
	if (why == REFUSE_SESSIONS)
		counter_add(&w->ring.counters.limits[LIMIT_HIT_MAX_SESSIONS],
			    1);
	else if (why == REFUSE_MEMORY)
		counter_add(&w->ring.counters.limits[LIMIT_HIT_MAX_MEMORY], 1);
	if (why == REFUSE_PROXY_CLOSED) {
		/* A balancer's TCP check: connect, close.  Counted only. */
		if (log_enabled(LOG_DEBUG) &&
		    ipnet_sockaddr_text(peer, client, sizeof(client), &port))
			log_debug("session-refused",
				  " worker=%u listener=%s client=%s "
				  "reason=%s",
				  w->ring.id, cl->addr.text, client,
				  names[why]);
	} else if (now >= g->next_ms) {
		if (why == REFUSE_SESSIONS)
			snprintf(detail, sizeof(detail),
				 " sessions=%u limit=%u",
				 atomic_load(&c->sessions), cfg->max_sessions);
		else if (why == REFUSE_MEMORY)
			snprintf(detail, sizeof(detail),
				 " allocated=%llu limit=%llu",
				 (unsigned long long)atomic_load(&c->allocated),
				 (unsigned long long)cfg->max_memory);
		if (!ipnet_sockaddr_text(peer, client, sizeof(client), &port))
			snprintf(client, sizeof(client), "-");
		log_warn("session-refused",
			 " worker=%u listener=%s client=%s reason=%s%s "
			 "suppressed=%llu",
			 w->ring.id, cl->addr.text, client, names[why], detail,
			 g->skipped);
		g->next_ms = now + REFUSE_LOG_MS;
		g->skipped = 0;
	} else {
		g->skipped++;
	}
	if (cl->mode == LISTENER_STARTTLS && why == REFUSE_SESSIONS)
		send_refusal(w, fd, "Too many connections");
	else if (cl->mode == LISTENER_STARTTLS && why == REFUSE_MEMORY)
		send_refusal(w, fd, "Insufficient system resources");
	else
		close(fd);
}

/* The client at fd (the socket's peer, or the one a PROXY header named,
 * then via is the balancer) is checked against the blocklist and the
 * process-wide caps, then becomes a session. */
static void
admit(struct worker *w, int fd, const struct config_listener *cl,
      const union sockaddr_ip *peer, const union sockaddr_ip *via)
{
	if (w->ring.shared.bans != NULL &&
	    !bans_admit(w->ring.shared.bans, &peer->sa)) {
		worker_refuse(w, fd, cl, &peer->sa, REFUSE_BLOCKLIST);
		return;
	}
	/* Before anything is spent on it: no session, no TLS. */
	switch (caps_enter(w->ring.shared.caps,
			   w->ring.gen->cfg->max_sessions)) {
	case CAPS_OK:
		break;
	case CAPS_SESSIONS:
		worker_refuse(w, fd, cl, &peer->sa, REFUSE_SESSIONS);
		return;
	case CAPS_MEMORY:
		worker_refuse(w, fd, cl, &peer->sa, REFUSE_MEMORY);
		return;
	}
	/* TCP_NODELAY comes from the listening socket (listen.c). */
	struct session *s = session_new(&w->ring, fd, cl, peer, via);
	if (s == NULL) {
		caps_leave(w->ring.shared.caps);
		worker_refuse(w, fd, cl, &peer->sa, REFUSE_OOM);
		return;
	}
	s->inflight++;
	session_run(s);
	session_release(s);
}

static void
unlink_proxy_in(struct worker *w, struct proxy_in *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		w->proxy_waits = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
}

/* A proxy_protocol listener's connection: its header first, from a
 * trusted source only (nothing is read from the others). */
static void
start_proxy_in(struct worker *w, int fd, const struct config_listener *cl,
	       const union sockaddr_ip *peer)
{
	struct proxy_in *p;

	if (!proxy_in_trusted(cl, peer)) {
		counter_add(&w->ring.counters.proxy_in[PROXY_IN_UNTRUSTED], 1);
		worker_refuse(w, fd, cl, &peer->sa, REFUSE_PROXY_UNTRUSTED);
		return;
	}
	p = proxy_in_new(&w->ring, fd, cl, peer);
	if (p == NULL) {
		worker_refuse(w, fd, cl, &peer->sa, REFUSE_OOM);
		return;
	}
	p->next = w->proxy_waits;
	if (p->next != NULL)
		p->next->prev = p;
	w->proxy_waits = p;
}

/* cl of gen, in the worker's generation now: the same listener after a
 * reload (by address), or NULL when it is gone. */
static const struct config_listener *
current_listener(struct worker *w, const struct generation *gen,
		 const struct config_listener *cl)
{
	const struct config *cfg = w->ring.gen->cfg;

	if (gen == w->ring.gen)
		return cl;
	for (size_t i = 0; i < cfg->nlisteners; i++)
		if (strcmp(cfg->listeners[i].addr.text, cl->addr.text) == 0)
			return &cfg->listeners[i];
	return NULL;
}

static void
on_accept(struct worker *w, struct listen_sock *l, int res, unsigned flags)
{
	union sockaddr_ip peer; /* listeners are IPv4 or IPv6 */
	socklen_t plen = sizeof(peer);

	if (!(flags & IORING_CQE_F_MORE)) {
		l->armed = false;
		if (l->closing) {
			if (res >= 0)
				close(res);
			free_listener(w, l);
			return;
		}
		if (!w->stopping)
			arm_accept(w, l);
	}
	if (res < 0) {
		if (res != -ECANCELED)
			log_warn("accept-failed",
				 " worker=%u listener=%s error=\"%s\"",
				 w->ring.id, l->cl ? l->cl->addr.text : "-",
				 strerror(-res));
		return;
	}
	if (w->stopping || l->closing) {
		close(res); /* raced with the cancel: the listener is gone */
		return;
	}
	if (getpeername(res, &peer.sa, &plen) != 0) {
		close(res); /* already gone */
		return;
	}
	atomic_fetch_add_explicit(&w->ring.counters.accepted, 1,
				  memory_order_relaxed);
	if (l->cl->proxy_protocol) {
		start_proxy_in(w, res, l->cl, &peer);
		return;
	}
	admit(w, res, l->cl, &peer, NULL);
}

/* The PROXY header's read completed (proxy_in.c). */
static void
on_proxy_recv(struct worker *w, struct proxy_in *p, int res)
{
	enum proxy_in_step step = proxy_in_on_recv(p, res);
	const struct config_listener *cl;
	union sockaddr_ip client, via;
	int fd;

	if (step == PROXY_IN_WAIT)
		return;
	unlink_proxy_in(w, p);
	if (p->stop) { /* a drain: no refusal to tell */
		proxy_in_free(p);
		return;
	}
	counter_add(&w->ring.counters.proxy_in[p->reason], 1);
	cl = current_listener(w, p->gen, p->cl);
	if (step == PROXY_IN_FAIL) {
		/* Counted under its listener's slot now (a reload may have
		 * come in between); the old one if it is gone. */
		worker_refuse(w, p->fd, cl != NULL ? cl : p->cl, &p->peer.sa,
			      proxy_refusal[p->reason]);
		p->fd = -1; /* closed by worker_refuse() */
		proxy_in_free(p);
		return;
	}
	client = *proxy_in_client(p);
	via = p->peer;
	fd = p->fd;
	p->fd = -1;
	proxy_in_free(p);
	if (cl == NULL) {
		close(fd); /* its listener went away in a reload */
		return;
	}
	admit(w, fd, cl, &client, &via);
}

/* ---------------------------------------------------------------------
 * The loop
 */

static void
handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *ptr = (void *)(uintptr_t)(ud & ~(uint64_t)OP_MASK);
	int res = cqe->res;
	unsigned flags = cqe->flags;

	switch ((enum ring_op)(ud & OP_MASK)) {
	case OP_IGNORE:
		break;
	case OP_ACCEPT:
		on_accept(w, ptr, res, flags);
		break;
	case OP_CLIENT_RECV:
		session_on_client_recv(ptr, res, flags);
		session_release(ptr);
		break;
	case OP_CLIENT_SEND:
		session_on_client_send(ptr, res);
		session_release(ptr);
		break;
	case OP_BACKEND_CONNECT:
		backend_on_connect(ptr, res);
		backend_release(ptr);
		break;
	case OP_BACKEND_RECV:
		backend_on_recv(ptr, res, flags);
		backend_release(ptr);
		break;
	case OP_BACKEND_SEND:
		backend_on_send(ptr, res);
		backend_release(ptr);
		break;
	case OP_WAKE:
		on_wake(w, res);
		break;
	case OP_CHECK_CONNECT:
		health_on_connect(ptr, res);
		break;
	case OP_CHECK_RECV:
		health_on_recv(ptr, res);
		break;
	case OP_CHECK_SEND:
		health_on_send(ptr, res);
		break;
	case OP_REFUSAL:
		on_refusal_sent(ptr);
		break;
	case OP_CLUSTER_CONNECT:
		cluster_link_on_connect(ptr, res);
		break;
	case OP_CLUSTER_SEND:
		cluster_link_on_send(ptr, res);
		break;
	case OP_CLUSTER_RECV:
		cluster_link_on_recv(ptr, res);
		break;
	case OP_PROXY_RECV:
		on_proxy_recv(w, ptr, res);
		break;
	}
}

static void
fire_timers(struct worker *w)
{
	uint64_t now = timer_now_ms();
	struct timer *t;

	while ((t = timer_pop_due(&w->ring.timers, now)) != NULL) {
		struct session *s =
			(struct session *)((char *)t -
					   offsetof(struct session, timer));
		session_on_timer(s);
	}
	if (w->stopping && !w->cut && now >= w->deadline)
		cut_sessions(w);
}

/* CLOCK_MONOTONIC in nanoseconds, for the busy time (vDSO: no syscall). */
static uint64_t
clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Busy time (counters.busy_ns): everything outside
 * io_uring_submit_and_wait_timeout() (which submits and sleeps), i.e.
 * completions, timers, health checks. */
static void
worker_loop(struct worker *w)
{
	/* Ends when drained: no session left, every listening socket closed
	 * (not only cancelled: an open one would still take connections into
	 * its queue), and the last completions of closed sessions and
	 * backend connections in (a short grace: a peer that never lets go
	 * costs a leak at exit, not a hang). */
	uint64_t grace = TIMER_NONE, busy_since = clock_ns();

	while (!(w->stopping && w->ring.nsessions == 0 && w->ls == NULL &&
		 (w->ring.objects == 0 || timer_now_ms() >= grace))) {
		struct __kernel_timespec ts, *tsp = NULL;
		struct io_uring_cqe *cqe;
		uint64_t next = timer_next(&w->ring.timers),
			 now = timer_now_ms();
		uint64_t hnext = health_next(w->health);
		uint64_t lnext = cluster_link_next(w->ring.cluster_link);
		unsigned head, n = 0;
		int r;

		if (w->stopping && w->ring.nsessions == 0 &&
		    grace == TIMER_NONE)
			grace = now + EXIT_GRACE_MS;
		if (grace < next)
			next = grace;
		if (hnext < next)
			next = hnext;
		if (lnext < next)
			next = lnext;
		if (w->retired != NULL && now + 100 < next)
			next = now + 100; /* retired checks: poll them */
		if (w->stopping && !w->cut && w->deadline < next)
			next = w->deadline;
		if (next != TIMER_NONE) {
			uint64_t d = next > now ? next - now : 0;
			ts.tv_sec = (long long)(d / 1000);
			ts.tv_nsec = (long long)(d % 1000) * 1000000;
			tsp = &ts;
		}
		counter_add(&w->ring.counters.busy_ns, clock_ns() - busy_since);
		r = io_uring_submit_and_wait_timeout(&w->ring.uring, &cqe, 1,
						     tsp, NULL);
		busy_since = clock_ns();
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY) {
			log_error("ring-wait-failed", " worker=%u error=\"%s\"",
				  w->ring.id, strerror(-r));
			break;
		}
		io_uring_for_each_cqe(&w->ring.uring, head, cqe)
		{
			handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring.uring, n);
		run_link_answers(w);
		run_woken(w);
		cluster_link_tick(w->ring.cluster_link, timer_now_ms());
		run_link_answers(w);
		if (w->stopping && w->ring.nsessions == 0 &&
		    w->ring.cluster_link != NULL) {
			/* Freed by its last completion; anything given back
			 * from now on goes through the thread. */
			cluster_link_close(w->ring.cluster_link);
			w->ring.cluster_link = NULL;
			w->ring.shared.cluster_policy.give = cluster_give;
			w->ring.shared.cluster_policy.arg =
				w->ring.shared.cluster;
		}
		fire_timers(w);
		health_run(w->health, timer_now_ms(), w->stopping);
		run_retired_health(w, timer_now_ms());
		run_woken(w); /* a timer's failover */
	}
}

/* ---------------------------------------------------------------------
 * Set-up and tear-down
 */

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	snprintf(name, sizeof(name), "msa-worker-%u", w->ring.id);
	pthread_setname_np(pthread_self(), name);

	if (ring_setup(&w->ring, w->start_err, sizeof(w->start_err)) != 0 ||
	    sandbox_enter(w->ring.gen->cfg->seccomp, name, w->start_err,
			  sizeof(w->start_err)) != 0) {
		w->start_status = -1;
		sem_post(&w->started);
		return NULL;
	}
	for (struct listen_sock *l = w->ls; l != NULL; l = l->next)
		arm_accept(w, l);
	arm_wake(w);
	if (w->ring.shared.cluster != NULL &&
	    (w->ring.cluster_link = cluster_link_new(
		     &w->ring, w->ring.shared.cluster)) != NULL) {
		/* What goes back without waiting goes on the link too. */
		w->ring.shared.cluster_policy.give = cluster_link_give;
		w->ring.shared.cluster_policy.arg = w->ring.cluster_link;
	}
	w->start_status = 0;
	sem_post(&w->started);

	worker_loop(w);
	return NULL;
}

struct worker *
worker_new(unsigned id, struct generation *gen,
	   const struct worker_listener *ls, size_t nls,
	   const struct worker_shared *shared, char *err, size_t errlen)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (w == NULL)
		goto fail;
	w->ring.id = id;
	w->ring.gen = generation_hold(gen);
	atomic_init(&w->ring.counters.generation, gen->id);
	w->ring.shared = *shared;
	w->ring.answered_tail = &w->ring.answered;
	w->efd = -1;
	pthread_mutex_init(&w->mbox_lock, NULL);
	sem_init(&w->started, 0, 0);
	timer_heap_init(&w->ring.timers);
	w->ring.woken_tail = &w->ring.woken;
	w->ring.auth_done = worker_auth_done;
	w->ring.cluster_done = worker_cluster_done;
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (backend_pool_cursor_init(&w->ring.cursor, gen->backend_pool) != 0 ||
	    w->efd < 0)
		goto fail;
	if (id == 0) {
		bool oom;

		w->health =
			health_new(&w->ring, gen->backend_pool, gen->cfg, &oom);
		if (oom)
			goto fail;
	}
	for (size_t i = 0; i < nls; i++) {
		if (add_listener(w, &ls[i]) == NULL)
			goto fail;
	}
	return w;
fail:
	snprintf(err, errlen, "worker %u: %s", id,
		 w && w->efd < 0 ? strerror(errno) : "out of memory");
	/* The sockets stay the caller's. */
	for (struct listen_sock *l = w ? w->ls : NULL; l != NULL; l = l->next)
		l->fd = -1;
	worker_free(w);
	return NULL;
}

int
worker_start(struct worker *w, char *err, size_t errlen)
{
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		snprintf(err, errlen, "cannot start worker thread");
		return -1;
	}
	sem_wait(&w->started);
	if (w->start_status != 0) {
		snprintf(err, errlen, "worker %u: %s", w->ring.id,
			 w->start_err);
		pthread_join(w->thread, NULL);
		w->thread = 0;
		return -1;
	}
	return 0;
}

bool
worker_tryjoin(struct worker *w)
{
	if (w->thread && pthread_tryjoin_np(w->thread, NULL) == 0)
		w->thread = 0;
	return w->thread == 0;
}

void
worker_join(struct worker *w)
{
	if (w->thread) {
		pthread_join(w->thread, NULL);
		w->thread = 0;
	}
}

/* After worker_join (or when it never started): the sockets it holds,
 * also those of an update it never took, are closed. */
void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	w->stopping = true; /* nothing is armed any more */
	/* Updates it never took: their sockets become its own first. */
	while (w->updates != NULL) {
		struct worker_update *u = w->updates;

		w->updates = u->next;
		apply_update(w, u);
	}
	while (w->ls != NULL)
		free_listener(w, w->ls);
	while (w->queries != NULL) {
		struct worker_query *q = w->queries;
		w->queries = q->next;
		query_drop(q);
	}
	ring_free(&w->ring);
	health_free(w->health); /* after the ring: nothing in flight */
	while (w->proxy_waits != NULL) {
		struct proxy_in *p = w->proxy_waits;

		unlink_proxy_in(w, p);
		proxy_in_free(p);
	}
	while (w->retired != NULL) {
		struct retired_health *r = w->retired;

		w->retired = r->next;
		health_free(r->health);
		generation_drop(r->gen);
		free(r);
	}
	if (w->efd >= 0)
		close(w->efd);
	timer_heap_free(&w->ring.timers);
	pthread_mutex_destroy(&w->mbox_lock);
	sem_destroy(&w->started);
	backend_pool_cursor_free(&w->ring.cursor);
	generation_drop(w->ring.gen);
	free(w);
}
