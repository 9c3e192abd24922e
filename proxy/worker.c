/*
 * worker.c - the per-core event loop.
 *
 * One io_uring per thread (SINGLE_ISSUER | DEFER_TASKRUN where the kernel
 * has them), multishot accept on this worker's own SO_REUSEPORT sockets,
 * receives into a provided-buffer ring, every socket operation on the
 * ring.  The loop sleeps in io_uring_submit_and_wait_timeout() until a
 * completion or the earliest session deadline, handles the completions as
 * a batch, then fires due timers.
 *
 * Password checks come back from the auth pool through a mailbox (mutex +
 * list) and an eventfd read on the ring.
 *
 * Config keys: workers, listeners, limits.max_sessions, backends.balance
 * (through pool.c).
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "pool.h"
#include "session.h"
#include "tls.h"
#include "worker.h"

#define RING_ENTRIES 1024
#define BUF_GROUP    0

/* Aligned so its address leaves the low OP_BITS free for the op tag. */
struct listen_sock {
	struct worker *w;
	const struct config_listener *cl;
	int fd;
} __attribute__((aligned(1u << OP_BITS)));

struct worker {
	unsigned id;
	const struct config *cfg;
	struct worker_shared shared;
	struct tls_server *tls;
	SSL_CTX **backend_tls;	      /* per server, NULL where tls is none */
	struct smtp_params params[2]; /* by enum listener_mode */

	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *br;
	char *bufs;
	size_t br_size;

	struct listen_sock *ls;
	size_t nls;

	int efd; /* wake-ups: auth results, stop */
	uint64_t efd_val;
	pthread_mutex_t mbox_lock;
	struct auth_request *mbox;

	struct timer_heap timers;
	struct session *sessions;
	size_t nsessions;
	bool stopping;
	atomic_bool stop;

	struct pool_cursor cursor; /* this worker's balancing state */
	struct health *health;	   /* worker 0: the active checks */

	pthread_t thread;
	sem_t started;
	int start_status;
	char start_err[256];
};

/* ---------------------------------------------------------------------
 * Ring helpers used by session.c and backend.c
 */

struct io_uring_sqe *
worker_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (sqe == NULL) {
		/* Submission queue full: hand the batch to the kernel. */
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

void
worker_prep(struct io_uring_sqe *sqe, void *ptr, enum ring_op op)
{
	/* Objects on the ring are at least 16-byte aligned (malloc, or
	 * declared so): the op rides in the low bits. */
	assert(((uintptr_t)ptr & OP_MASK) == 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)ptr | op);
}

const struct config *
worker_config(const struct worker *w)
{
	return w->cfg;
}

struct tls_server *
worker_tls(const struct worker *w)
{
	return w->tls;
}

SSL_CTX *
worker_backend_tls(const struct worker *w, size_t server)
{
	return w->backend_tls[server];
}

/* Client contexts for the servers that want TLS. */
static int
setup_backend_tls(struct worker *w, char *err, size_t errlen)
{
	const struct config *cfg = w->cfg;
	char e[200];

	w->backend_tls = calloc(cfg->nbackends, sizeof(*w->backend_tls));
	if (w->backend_tls == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < cfg->nbackends; i++) {
		if (cfg->backends[i].tls == BACKEND_TLS_NONE)
			continue;
		w->backend_tls[i] =
			tls_backend_ctx_new(&cfg->backends[i], e, sizeof(e));
		if (w->backend_tls[i] == NULL) {
			snprintf(err, errlen, "backends.servers[%zu]: %s", i,
				 e);
			return -1;
		}
	}
	return 0;
}

struct auth_pool *
worker_auth(const struct worker *w)
{
	return w->shared.auth;
}

struct ratelimit *
worker_limits(const struct worker *w)
{
	return w->shared.limits;
}

const struct passwd_db *
worker_users(const struct worker *w)
{
	return w->shared.users;
}

struct timer_heap *
worker_timers(struct worker *w)
{
	return &w->timers;
}

unsigned
worker_id(const struct worker *w)
{
	return w->id;
}

const struct smtp_params *
worker_smtp_params(const struct worker *w, enum listener_mode mode)
{
	return &w->params[mode];
}

const char *
worker_recv_buf(const struct worker *w, unsigned bid)
{
	return w->bufs + (size_t)bid * RECV_BUF_SIZE;
}

void
worker_recv_buf_return(struct worker *w, unsigned bid)
{
	io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * RECV_BUF_SIZE,
			      RECV_BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(RECV_BUF_COUNT), 0);
	io_uring_buf_ring_advance(w->br, 1);
}

struct pool *
worker_pool(const struct worker *w)
{
	return w->shared.pool;
}

/* backends.balance among the servers not yet tried (pool.c). */
size_t
worker_pick_backend(struct worker *w, const char *login, uint64_t tried)
{
	return pool_pick(w->shared.pool, &w->cursor, login, tried,
			 timer_now_ms());
}

/* ---------------------------------------------------------------------
 * Session list
 */

static void
session_link(struct worker *w, struct session *s)
{
	s->next = w->sessions;
	s->prev = NULL;
	if (w->sessions)
		w->sessions->prev = s;
	w->sessions = s;
	w->nsessions++;
}

void
worker_session_gone(struct worker *w, struct session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	w->nsessions--;
}

/* ---------------------------------------------------------------------
 * Auth results: pool thread -> mailbox -> eventfd -> this ring
 */

void
worker_auth_done(struct auth_request *req)
{
	struct worker *w = (struct worker *)(uintptr_t)req->cookie;
	uint64_t one = 1;

	pthread_mutex_lock(&w->mbox_lock);
	req->next = w->mbox;
	w->mbox = req;
	pthread_mutex_unlock(&w->mbox_lock);
	if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("worker-wake-failed", " worker=%u error=\"%s\"",
			  w->id, strerror(errno));
}

static void
arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = worker_sqe(w);

	io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof(w->efd_val), 0);
	worker_prep(sqe, w, OP_WAKE);
}

static void
begin_stop(struct worker *w)
{
	struct session *s, *next;

	w->stopping = true;
	for (size_t i = 0; i < w->nls; i++) {
		if (w->ls[i].fd >= 0) {
			struct io_uring_sqe *sqe = worker_sqe(w);
			io_uring_prep_cancel_fd(sqe, w->ls[i].fd, 0);
			worker_prep(sqe, NULL, OP_IGNORE);
		}
	}
	for (s = w->sessions; s != NULL; s = next) {
		next = s->next;
		session_shutdown(s);
	}
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
	if (atomic_load(&w->stop) && !w->stopping)
		begin_stop(w);
	arm_wake(w);
}

/* ---------------------------------------------------------------------
 * Accept
 */

static void
arm_accept(struct worker *w, struct listen_sock *l)
{
	struct io_uring_sqe *sqe = worker_sqe(w);

	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL,
				       SOCK_NONBLOCK | SOCK_CLOEXEC);
	worker_prep(sqe, l, OP_ACCEPT);
}

static void
on_accept(struct worker *w, struct listen_sock *l, int res, unsigned flags)
{
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	int one = 1;

	if (!(flags & IORING_CQE_F_MORE) && !w->stopping)
		arm_accept(w, l);
	if (res < 0) {
		if (res != -ECANCELED)
			log_warn("accept-failed",
				 " worker=%u listener=%s error=\"%s\"", w->id,
				 l->cl->addr.text, strerror(-res));
		return;
	}
	if (w->stopping) {
		close(res);
		return;
	}
	if (getpeername(res, (struct sockaddr *)&peer, &plen) != 0) {
		close(res); /* already gone */
		return;
	}
	setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (w->nsessions >= w->cfg->max_sessions) {
		log_warn("session-refused",
			 " worker=%u listener=%s reason=max-sessions", w->id,
			 l->cl->addr.text);
		close(res);
		return;
	}
	struct session *s = session_new(w, res, l->cl, &peer);
	if (s == NULL) {
		log_error("session-refused", " worker=%u reason=out-of-memory",
			  w->id);
		close(res);
		return;
	}
	plen = sizeof(s->local); /* for PROXY v2 headers */
	if (getsockname(res, (struct sockaddr *)&s->local, &plen) != 0)
		s->local.ss_family = AF_UNSPEC;
	session_link(w, s);
	s->inflight++;
	session_run(s);
	session_release(s);
}

/* ---------------------------------------------------------------------
 * The loop
 */

/* The session a backend completion concerns, held for the callback. */
static struct session *
hold_backend_session(struct backend_conn *be)
{
	if (be->s != NULL)
		be->s->inflight++;
	return be->s;
}

static void
release_held(struct session *s)
{
	if (s != NULL)
		session_release(s);
}

static void
handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *ptr = (void *)(uintptr_t)(ud & ~(uint64_t)OP_MASK);
	int res = cqe->res;
	unsigned flags = cqe->flags;
	struct session *held;

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
		held = hold_backend_session(ptr);
		backend_on_connect(ptr, res);
		backend_release(ptr);
		release_held(held);
		break;
	case OP_BACKEND_RECV:
		held = hold_backend_session(ptr);
		backend_on_recv(ptr, res, flags);
		backend_release(ptr);
		release_held(held);
		break;
	case OP_BACKEND_SEND:
		held = hold_backend_session(ptr);
		backend_on_send(ptr, res);
		backend_release(ptr);
		release_held(held);
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
	}
}

static void
fire_timers(struct worker *w)
{
	uint64_t now = timer_now_ms();
	struct timer *t;

	while ((t = timer_pop_due(&w->timers, now)) != NULL) {
		struct session *s =
			(struct session *)((char *)t -
					   offsetof(struct session, timer));
		session_on_timer(s);
	}
}

static void
worker_loop(struct worker *w)
{
	while (!(w->stopping && w->nsessions == 0)) {
		struct __kernel_timespec ts, *tsp = NULL;
		struct io_uring_cqe *cqe;
		uint64_t next = timer_next(&w->timers), now = timer_now_ms();
		uint64_t hnext = health_next(w->health);
		unsigned head, n = 0;
		int r;

		if (hnext < next)
			next = hnext;
		if (next != TIMER_NONE) {
			uint64_t d = next > now ? next - now : 0;
			ts.tv_sec = (long long)(d / 1000);
			ts.tv_nsec = (long long)(d % 1000) * 1000000;
			tsp = &ts;
		}
		r = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, tsp,
						     NULL);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY) {
			log_error("ring-wait-failed", " worker=%u error=\"%s\"",
				  w->id, strerror(-r));
			break;
		}
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		fire_timers(w);
		health_run(w->health, timer_now_ms(), w->stopping);
	}
}

/* ---------------------------------------------------------------------
 * Set-up and tear-down
 */

static int
setup_ring(struct worker *w, char *err, size_t errlen)
{
	struct io_uring_params p;
	struct io_uring_buf_reg reg;
	int r;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_SUBMIT_ALL;
	r = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	if (r == -EINVAL) {
		/* Older kernel: cooperative task running is enough. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_COOP_TASKRUN;
		r = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	}
	if (r < 0) {
		snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-r));
		return -1;
	}
	w->ring_ok = true;

	w->br_size = sizeof(struct io_uring_buf) * RECV_BUF_COUNT;
	w->br = mmap(NULL, w->br_size, PROT_READ | PROT_WRITE,
		     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	w->bufs = malloc((size_t)RECV_BUF_COUNT * RECV_BUF_SIZE);
	if (w->br == MAP_FAILED || w->bufs == NULL) {
		w->br = NULL;
		snprintf(err, errlen, "out of memory for receive buffers");
		return -1;
	}
	io_uring_buf_ring_init(w->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)w->br;
	reg.ring_entries = RECV_BUF_COUNT;
	reg.bgid = BUF_GROUP;
	r = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (r < 0) {
		snprintf(err, errlen, "io_uring_register_buf_ring: %s",
			 strerror(-r));
		return -1;
	}
	for (unsigned i = 0; i < RECV_BUF_COUNT; i++)
		io_uring_buf_ring_add(
			w->br, w->bufs + (size_t)i * RECV_BUF_SIZE,
			RECV_BUF_SIZE, (unsigned short)i,
			io_uring_buf_ring_mask(RECV_BUF_COUNT), (int)i);
	io_uring_buf_ring_advance(w->br, RECV_BUF_COUNT);
	return 0;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	snprintf(name, sizeof(name), "msa-worker-%u", w->id);
	pthread_setname_np(pthread_self(), name);

	w->tls = tls_server_new(w->cfg, w->start_err, sizeof(w->start_err));
	if (w->tls == NULL ||
	    setup_backend_tls(w, w->start_err, sizeof(w->start_err)) != 0 ||
	    setup_ring(w, w->start_err, sizeof(w->start_err)) != 0) {
		w->start_status = -1;
		sem_post(&w->started);
		return NULL;
	}
	for (size_t i = 0; i < w->nls; i++)
		arm_accept(w, &w->ls[i]);
	arm_wake(w);
	w->start_status = 0;
	sem_post(&w->started);

	worker_loop(w);
	return NULL;
}

/* Errors name the listener's place in the config: "FILE:LINE: ...". */
static int
listen_on(const struct config *cfg, const struct config_listener *cl, char *err,
	  size_t errlen)
{
	int fd, one = 1, zero = 0, e;

	fd = socket(cl->addr.ss.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto fail;
	if (cl->addr.ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (const struct sockaddr *)&cl->addr.ss, cl->addr.len) !=
		    0 ||
	    listen(fd, 1024) != 0)
		goto fail;
	return fd;
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	snprintf(err, errlen, "%s:%d: listener %s: %s",
		 cfg->path ? cfg->path : "config", cl->line, cl->addr.text,
		 strerror(e));
	return -1;
}

static void
init_params(struct worker *w)
{
	const struct config *cfg = w->cfg;

	for (int m = 0; m < 2; m++) {
		struct smtp_params *p = &w->params[m];
		p->hostname = cfg->hostname;
		p->mode = (enum listener_mode)m;
		p->auth_mechs = cfg->auth_mechs;
		p->max_line = cfg->max_line;
		p->max_auth_line = cfg->max_auth_line;
		p->max_message_size = cfg->max_message_size;
		p->max_recipients = cfg->max_recipients;
		p->max_errors = cfg->max_errors;
	}
}

struct worker *
worker_new(unsigned id, const struct config *cfg,
	   const struct worker_shared *shared, char *err, size_t errlen)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (w == NULL)
		goto oom;
	w->id = id;
	w->cfg = cfg;
	w->shared = *shared;
	w->efd = -1;
	pthread_mutex_init(&w->mbox_lock, NULL);
	sem_init(&w->started, 0, 0);
	timer_heap_init(&w->timers);
	init_params(w);
	w->ls = calloc(cfg->nlisteners, sizeof(*w->ls));
	if (pool_cursor_init(&w->cursor, shared->pool) != 0 || w->ls == NULL)
		goto oom;
	if (id == 0) {
		bool oom;
		w->health = health_new(w, shared->pool, cfg, &oom);
		if (oom)
			goto oom;
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		w->ls[i].w = w;
		w->ls[i].cl = &cfg->listeners[i];
		w->ls[i].fd = listen_on(cfg, &cfg->listeners[i], err, errlen);
		w->nls++;
		if (w->ls[i].fd < 0) {
			worker_free(w);
			return NULL;
		}
	}
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		worker_free(w);
		return NULL;
	}
	return w;
oom:
	snprintf(err, errlen, "out of memory");
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
		snprintf(err, errlen, "worker %u: %s", w->id, w->start_err);
		pthread_join(w->thread, NULL);
		w->thread = 0;
		return -1;
	}
	return 0;
}

void
worker_stop(struct worker *w)
{
	uint64_t one = 1;

	atomic_store(&w->stop, true);
	if (write(w->efd, &one, sizeof(one)) < 0)
		log_error("worker-wake-failed", " worker=%u error=\"%s\"",
			  w->id, strerror(errno));
}

void
worker_join(struct worker *w)
{
	if (w->thread) {
		pthread_join(w->thread, NULL);
		w->thread = 0;
	}
}

void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->nls; i++) {
		if (w->ls[i].fd >= 0)
			close(w->ls[i].fd);
	}
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	health_free(w->health); /* after the ring: nothing in flight */
	if (w->br != NULL)
		munmap(w->br, w->br_size);
	free(w->bufs);
	tls_server_free(w->tls);
	for (size_t i = 0; w->backend_tls && i < w->cfg->nbackends; i++)
		SSL_CTX_free(w->backend_tls[i]);
	free(w->backend_tls);
	if (w->efd >= 0)
		close(w->efd);
	timer_heap_free(&w->timers);
	pthread_mutex_destroy(&w->mbox_lock);
	sem_destroy(&w->started);
	pool_cursor_free(&w->cursor);
	free(w->ls);
	free(w);
}
