/*
 * health.c - active health checks: connect, expect 220, EHLO, QUIT.
 * The dialogue is the sessions' own (smtp/upstream.c) in its check mode,
 * which stops after the first EHLO with a verdict; this file is its I/O.
 *
 * Each server has one check object; a check starts every
 * backends.health_check.interval after the previous one ended and must be
 * done within health_check.timeout.  A check is good when the server
 * greets with 220 and answers EHLO with 250 listing what this proxy needs
 * from it: XCLIENT for identity xclient, STARTTLS when tls asks for it.
 * A server that does not offer what it is configured for is as good as
 * down.  A proxy-v2 server first gets a LOCAL header (the proxy speaking
 * for itself).  Results go to the shared pool (backend_pool.c: rise, fall); a
 * change of state is logged as backend-up / backend-down with the reason.
 *
 * Every socket operation runs on the owning worker's ring and holds a
 * reference on the check; a check that ends with operations in flight
 * shuts its socket down and closes it when the last one completes.
 *
 * Trusts nothing the server says: replies go through the bounded
 * smtp_reply parser; a malformed reply fails the check.
 *
 * Config keys: backends.health_check.{interval,timeout},
 * backends.servers[].{address,identity,tls}, hostname (our EHLO name).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/backend.h"
#include "io/backend_pool.h"
#include "io/health.h"
#include "io/ring.h"
#include "lib/log.h"
#include "lib/timer.h"
#include "smtp/proxy_v2.h"
#include "smtp/smtp_reply.h"
#include "smtp/upstream.h"

/* The check object's life; while it runs, up.state is the dialogue's
 * (connecting, greeting, EHLO, QUIT). */
enum check_state {
	HC_IDLE,    /* waiting for next_ms */
	HC_RUNNING, /* connect, dialogue, QUIT */
	HC_CLOSING, /* verdict given; waiting for the ring to let go */
};

struct health_check {
	struct health *h;
	size_t server;
	int fd;
	enum check_state state;
	unsigned refs;
	bool recv_armed;
	uint64_t next_ms;     /* HC_IDLE: when to start */
	uint64_t deadline_ms; /* running: when it fails */
	size_t inlen;
	char in[1024];
	char out[320];
	uint8_t hdr[PROXY_V2_HEADER_MIN]; /* LOCAL, for proxy-v2 servers */
	struct smtp_reply reply;
	struct upstream up;
} __attribute__((aligned(1u << OP_BITS)));

struct health {
	struct ring *ring;
	struct backend_pool *pool;
	const struct config *cfg;
	size_t n;
	struct health_check *v;
};

static const struct config_backend *
server_cfg(const struct health_check *c)
{
	return &c->h->cfg->backends[c->server];
}

/* ---------------------------------------------------------------------
 * Ending a check
 */

static void
maybe_idle(struct health_check *c)
{
	if (c->state != HC_CLOSING || c->refs > 0)
		return;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = HC_IDLE;
	c->next_ms = timer_now_ms() + c->h->cfg->health_interval_ms;
}

static void
finish(struct health_check *c, bool ok, const char *reason)
{
	enum backend_pool_change change =
		backend_pool_checked(c->h->pool, c->server, ok, timer_now_ms());

	log_debug("backend-check", " backend=%s result=%s reason=\"%s\"",
		  server_cfg(c)->addr.text, ok ? "ok" : "failed", reason);
	backend_health_log(c->h->pool, c->server, server_cfg(c), change,
			   "check", reason);
	c->state = HC_CLOSING;
	if (c->fd >= 0 && c->refs > 0) {
		struct io_uring_sqe *sqe = ring_sqe(c->h->ring);
		shutdown(c->fd, SHUT_RDWR);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		ring_prep(sqe, NULL, OP_IGNORE);
	}
	maybe_idle(c);
}

static void
fail_errno(struct health_check *c, const char *step, int err)
{
	char reason[128];

	snprintf(reason, sizeof(reason), "%s: %s", step, strerror(err));
	finish(c, false, reason);
}

/* ---------------------------------------------------------------------
 * I/O
 */

static void
health_arm_recv(struct health_check *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed)
		return;
	sqe = ring_sqe(c->h->ring);
	io_uring_prep_recv(sqe, c->fd, c->in + c->inlen,
			   sizeof(c->in) - c->inlen, 0);
	ring_prep(sqe, c, OP_CHECK_RECV);
	c->recv_armed = true;
	c->refs++;
}

static void
send_text(struct health_check *c, const char *text, size_t len)
{
	struct io_uring_sqe *sqe;

	if (len > sizeof(c->out)) { /* a check's lines are EHLO and QUIT */
		finish(c, false, "write: line too long");
		return;
	}
	sqe = ring_sqe(c->h->ring);
	memcpy(c->out, text, len);
	io_uring_prep_send(sqe, c->fd, c->out, len, MSG_NOSIGNAL);
	ring_prep(sqe, c, OP_CHECK_SEND);
	c->refs++;
}

/* Is the dialogue reading replies (greeting, EHLO)? */
static bool
reading(const struct health_check *c)
{
	return c->state == HC_RUNNING && upstream_in_handshake(&c->up) &&
	       c->up.state != UPSTREAM_CONNECTING;
}

static void
start(struct health_check *c, uint64_t now)
{
	const struct config_backend *b = server_cfg(c);
	const struct config_addr *a = &b->addr;
	struct upstream_params p = {
		.mode = UPSTREAM_CHECK,
		.identity = b->identity,
		.starttls = b->tls != BACKEND_TLS_NONE,
		.hostname = c->h->cfg->hostname,
	};
	struct io_uring_sqe *sqe;
	int one = 1;

	c->inlen = 0;
	c->recv_armed = false;
	smtp_reply_init(&c->reply);
	upstream_init(&c->up, &p);
	c->deadline_ms = now + c->h->cfg->health_timeout_ms;
	c->fd = socket(a->ss.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->state = HC_CLOSING;
		fail_errno(c, "socket", errno);
		return;
	}
	if (a->ss.ss_family != AF_UNIX)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->state = HC_RUNNING;
	upstream_connecting(&c->up);
	sqe = ring_sqe(c->h->ring);
	io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)&a->ss,
			      a->len);
	ring_prep(sqe, c, OP_CHECK_CONNECT);
	c->refs++;
}

/* The dialogue's next step: a line, the verdict good once QUIT is out
 * (health_on_send()), or the verdict bad with its reason ("ehlo: XCLIENT
 * not offered", "greeting: 554"). */
static void
on_reply(struct health_check *c, const struct smtp_reply *r)
{
	char reason[128];

	switch (upstream_reply(&c->up, r)) {
	case UPSTREAM_ACT_SEND:
		send_text(c, c->up.line, c->up.len);
		return;
	case UPSTREAM_ACT_GOOD: {
		uint64_t size;
		unsigned ext = backend_pool_ehlo_caps(r, &size);
		backend_pool_learn(c->h->pool, c->server, ext, size);
		if (server_cfg(c)->identity == IDENTITY_XCLIENT)
			backend_pool_learn_xclient(
				c->h->pool, c->server,
				xclient_attr_bits(c->up.xclient_attrs));
		send_text(c, c->up.line, c->up.len);
		return;
	}
	case UPSTREAM_ACT_FAIL:
		snprintf(reason, sizeof(reason), "%s: %s", c->up.step,
			 c->up.detail);
		finish(c, false, reason);
		return;
	default:
		return; /* a check's dialogue asks for nothing else */
	}
}

void
health_on_connect(struct health_check *c, int res)
{
	c->refs--;
	if (c->state != HC_RUNNING || c->up.state != UPSTREAM_CONNECTING) {
		maybe_idle(c);
		return;
	}
	if (res < 0) {
		fail_errno(c, "connect", -res);
		return;
	}
	upstream_connected(&c->up);
	if (upstream_proxy_header(&c->up) &&
	    proxy_v2_write_local(c->hdr, sizeof(c->hdr)) > 0) {
		struct io_uring_sqe *sqe = ring_sqe(c->h->ring);
		io_uring_prep_send(sqe, c->fd, c->hdr, sizeof(c->hdr),
				   MSG_NOSIGNAL);
		ring_prep(sqe, c, OP_CHECK_SEND);
		c->refs++;
	}
	health_arm_recv(c);
}

void
health_on_recv(struct health_check *c, int res)
{
	c->refs--;
	c->recv_armed = false;
	if (!reading(c)) {
		maybe_idle(c);
		return;
	}
	if (res <= 0) {
		if (res == 0)
			finish(c, false, "read: connection closed");
		else
			fail_errno(c, "read", -res);
		return;
	}
	c->inlen += (size_t)res;
	while (c->inlen > 0 && reading(c)) {
		size_t used;
		enum smtp_reply_status st =
			smtp_reply_feed(&c->reply, c->in, c->inlen, &used);

		memmove(c->in, c->in + used, c->inlen - used);
		c->inlen -= used;
		if (st == SMTP_REPLY_MORE)
			break;
		if (st == SMTP_REPLY_ERROR) {
			finish(c, false, "malformed reply");
			return;
		}
		on_reply(c, &c->reply);
		smtp_reply_init(&c->reply);
	}
	if (reading(c))
		health_arm_recv(c);
}

void
health_on_send(struct health_check *c, int res)
{
	c->refs--;
	if (c->state == HC_RUNNING && c->up.state == UPSTREAM_QUIT) {
		finish(c, true, c->up.detail);
		return;
	}
	if (c->state == HC_CLOSING || c->state == HC_IDLE) {
		maybe_idle(c);
		return;
	}
	if (res < 0)
		fail_errno(c, "write", -res);
}

/* ---------------------------------------------------------------------
 * Scheduling
 */

uint64_t
health_next(const struct health *h)
{
	uint64_t next = TIMER_NONE;

	if (h == NULL)
		return next;
	for (size_t i = 0; i < h->n; i++) {
		const struct health_check *c = &h->v[i];
		uint64_t t = c->state == HC_IDLE      ? c->next_ms
			     : c->state == HC_CLOSING ? TIMER_NONE
						      : c->deadline_ms;
		if (t < next)
			next = t;
	}
	return next;
}

void
health_run(struct health *h, uint64_t now_ms, bool stopping)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n; i++) {
		struct health_check *c = &h->v[i];

		if (c->state == HC_IDLE) {
			if (!stopping && now_ms >= c->next_ms)
				start(c, now_ms);
		} else if (c->state != HC_CLOSING && now_ms >= c->deadline_ms) {
			finish(c, false, "timeout");
		}
	}
}

bool
health_busy(const struct health *h)
{
	for (size_t i = 0; h != NULL && i < h->n; i++) {
		if (h->v[i].state != HC_IDLE)
			return true;
	}
	return false;
}

struct health *
health_new(struct ring *ring, struct backend_pool *pool,
	   const struct config *cfg, bool *oom)
{
	struct health *h;
	uint64_t now = timer_now_ms();

	*oom = false;
	if (cfg->health_interval_ms == 0)
		return NULL;
	h = calloc(1, sizeof(*h));
	if (h != NULL)
		h->v = aligned_alloc(1u << OP_BITS,
				     cfg->nbackends * sizeof(*h->v));
	if (h == NULL || h->v == NULL) {
		free(h);
		*oom = true;
		return NULL;
	}
	memset(h->v, 0, cfg->nbackends * sizeof(*h->v));
	h->ring = ring;
	h->pool = pool;
	h->cfg = cfg;
	h->n = cfg->nbackends;
	for (size_t i = 0; i < h->n; i++) {
		h->v[i].h = h;
		h->v[i].server = i;
		h->v[i].fd = -1;
		h->v[i].state = HC_IDLE;
		h->v[i].next_ms = now; /* first checks right away */
	}
	return h;
}

void
health_free(struct health *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n; i++)
		if (h->v[i].fd >= 0)
			close(h->v[i].fd);
	free(h->v);
	free(h);
}
