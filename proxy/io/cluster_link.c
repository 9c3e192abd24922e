/*
 * cluster_link.c - a worker's own connection to Redis, on its ring.  Read
 * cluster_link.h first.
 *
 * States: down (connect again at next_ms, if the cluster thread says Redis
 * is up), connecting, handshake (cluster.tls: the SSL runs over memory
 * BIOs, its records sent and received on the ring), up.  While up, one receive
 * is always armed and one send at most is in flight; calls queued meanwhile go
 * in the next send (pipelined).  Replies come in the order the calls went, so a
 * FIFO matches them up; the first replies after a connect answer its AUTH. The
 * oldest call not answered within cluster.timeout, an error reply or a broken
 * connection take the link down: every call in flight is answered
 * CLUSTER_UNAVAILABLE (the session falls back as cluster.fail says) and
 * the link connects again after a backoff.  Nothing here logs per call;
 * the thread's connection logs Redis going down and up, the link only an
 * error reply (NOSCRIPT after a Redis restart, OOM, READONLY).
 *
 * Config keys: cluster.* (through cluster.c).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cluster/cluster.h"
#include "cluster/redis_conn.h"
#include "io/cluster_link.h"
#include "io/ring.h"
#include "lib/log.h"
#include "lib/timer.h"

#define LINK_RECV_SIZE 16384u
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
/* Delivered messages' bytes wait this long to go as one call for every
 * user the worker delivered for meanwhile (or until CLUSTER_CHARGES_MAX):
 * a one-message session's own calls are then the two it waits for. */
#define CHARGE_DELAY_MS 100u

/* HANDSHAKE: cluster.tls, connected, the TLS handshake under way. */
enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_HANDSHAKE, LINK_UP };

struct cluster_link {
	struct ring *ring;
	struct cluster *cluster;
	enum link_state state;
	int fd;
	struct redis_conn conn; /* its reader and out buffer; fd is ours */
	size_t sending;		/* bytes in the send in flight */
	/* cluster.tls: the records go through memory BIOs (ssl owns them);
	 * wire holds the ciphertext to send. */
	SSL *ssl;
	BIO *rbio, *wbio;
	char *wire;
	size_t wire_len, wire_cap, wire_off;
	bool recv_armed;
	bool closing;  /* the worker stops: freed with the last completion */
	unsigned refs; /* ring operations in flight */
	unsigned skip; /* replies to a connect's AUTH still to come */
	struct cluster_request *head, *tail; /* in flight, oldest first */
	uint64_t next_ms, backoff_ms;	     /* the next connect */
	struct cluster_charge pending[CLUSTER_CHARGES_MAX];
	unsigned npending;
	uint64_t charge_ms; /* when pending[] goes */
	char rbuf[LINK_RECV_SIZE];
};

static void
submit(struct cluster_link *l, struct io_uring_sqe *sqe, enum ring_op op)
{
	ring_prep(sqe, l, op);
	l->refs++;
}

/* An answer for its session: after this batch (ring.h). */
static void
deliver(struct cluster_link *l, struct cluster_request *req,
	enum cluster_status status)
{
	cluster_count(l->cluster, req, status);
	if (req->owner == NULL) { /* nobody waits: a give, a charge */
		cluster_request_free(req);
		return;
	}
	req->next = NULL;
	*l->ring->answered_tail = req;
	l->ring->answered_tail = &req->next;
}

static void
link_free(struct cluster_link *l)
{
	SSL_free(l->ssl);
	free(l->wire);
	if (l->fd >= 0)
		close(l->fd);
	redis_conn_close(&l->conn);
	l->ring->objects--;
	free(l);
}

/* Down: the socket cut (its operations complete with errors), every call
 * in flight answered, the next attempt after the backoff; the thread is
 * asked to check Redis too, so that while Redis is gone every worker's
 * calls are answered at once instead of each waiting out a timeout. */
static void
go_down(struct cluster_link *l)
{
	struct cluster_request *req;

	if (l->state != LINK_DOWN && !l->closing)
		cluster_ping(l->cluster);
	if (l->fd >= 0)
		shutdown(l->fd, SHUT_RDWR);
	if (l->recv_armed) {
		struct io_uring_sqe *sqe = ring_sqe(l->ring);

		io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
		ring_prep(sqe, NULL, OP_IGNORE);
	}
	l->state = LINK_DOWN;
	while ((req = l->head) != NULL) {
		l->head = req->next;
		deliver(l, req, CLUSTER_UNAVAILABLE);
	}
	l->tail = NULL;
	l->backoff_ms =
		cluster_backoff(l->backoff_ms, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
	l->next_ms = timer_now_ms() + l->backoff_ms;
}

/* The fd is closed only once nothing is in flight on it (as backend.c):
 * a new one cannot take its number while a completion may still name
 * it. */
static void
settle(struct cluster_link *l)
{
	if (l->refs != 0)
		return;
	if (l->closing) {
		link_free(l);
		return;
	}
	if (l->state == LINK_DOWN && l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
		SSL_free(l->ssl); /* nothing in flight uses it any more */
		l->ssl = NULL;
		l->wire_len = l->wire_off = 0;
	}
}

static void
arm_recv(struct cluster_link *l)
{
	struct io_uring_sqe *sqe;

	if (l->recv_armed ||
	    (l->state != LINK_UP && l->state != LINK_HANDSHAKE))
		return;
	sqe = ring_sqe(l->ring);
	io_uring_prep_recv(sqe, l->fd, l->rbuf, sizeof(l->rbuf), 0);
	submit(l, sqe, OP_CLUSTER_RECV);
	l->recv_armed = true;
}

/* TLS: the plaintext queued (once the handshake is done) through the
 * SSL, and what it wrote, into wire.  false: no memory or a TLS error. */
static bool
seal(struct cluster_link *l)
{
	size_t pending;

	while (l->state == LINK_UP && l->conn.out_off < l->conn.out_len) {
		size_t left = l->conn.out_len - l->conn.out_off;
		int n = SSL_write(l->ssl, l->conn.out + l->conn.out_off,
				  left > INT32_MAX ? INT32_MAX : (int)left);

		if (n <= 0)
			return false; /* a memory BIO takes everything */
		l->conn.out_off += (size_t)n;
	}
	if (l->conn.out_off == l->conn.out_len)
		l->conn.out_off = l->conn.out_len = 0;
	pending = BIO_ctrl_pending(l->wbio);
	if (pending == 0)
		return true;
	if (l->wire_len + pending > l->wire_cap) {
		size_t cap = l->wire_cap ? l->wire_cap : 16384;
		char *p;

		while (cap < l->wire_len + pending)
			cap *= 2;
		if ((p = realloc(l->wire, cap)) == NULL)
			return false;
		l->wire = p;
		l->wire_cap = cap;
	}
	l->wire_len +=
		(size_t)BIO_read(l->wbio, l->wire + l->wire_len, (int)pending);
	return true;
}

static void
send_out(struct cluster_link *l)
{
	struct io_uring_sqe *sqe;
	const char *p;
	size_t left;

	if (l->sending != 0 ||
	    (l->state != LINK_UP && l->state != LINK_HANDSHAKE))
		return;
	if (l->ssl != NULL) {
		if (!seal(l)) {
			go_down(l);
			return;
		}
		p = l->wire + l->wire_off;
		left = l->wire_len - l->wire_off;
	} else {
		p = l->conn.out + l->conn.out_off;
		left = l->conn.out_len - l->conn.out_off;
	}
	if (left == 0)
		return;
	sqe = ring_sqe(l->ring);
	io_uring_prep_send(sqe, l->fd, p, left, MSG_NOSIGNAL);
	submit(l, sqe, OP_CLUSTER_SEND);
	l->sending = left;
}

/* Up: a new connection's AUTH first, then whatever is queued. */
static void
link_up(struct cluster_link *l)
{
	int skip = cluster_queue_login(l->cluster, &l->conn);

	if (skip < 0) {
		go_down(l);
		return;
	}
	l->state = LINK_UP;
	l->backoff_ms = 0;
	l->skip = (unsigned)skip;
	arm_recv(l);
	send_out(l);
}

/* TLS: the handshake one step on (its records out, a receive armed). */
static void
handshake(struct cluster_link *l)
{
	int r = SSL_do_handshake(l->ssl);

	if (r == 1) {
		link_up(l);
		return;
	}
	if (SSL_get_error(l->ssl, r) != SSL_ERROR_WANT_READ) {
		long v = SSL_get_verify_result(l->ssl);

		log_warn("cluster-link-error", " worker=%u error=\"tls: %s\"",
			 l->ring->id,
			 v != X509_V_OK ? X509_verify_cert_error_string(v)
					: "handshake failed");
		go_down(l);
		return;
	}
	arm_recv(l);
	send_out(l);
}

static void
connect_start(struct cluster_link *l)
{
	const struct config_addr *a = cluster_redis_addr(l->cluster);
	struct io_uring_sqe *sqe;
	int one = 1;

	redis_conn_close(&l->conn);
	l->conn.reader = redisReaderCreate();
	l->wire_len = l->wire_off = 0;
	l->fd = socket(a->ss.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->conn.reader == NULL || l->fd < 0) {
		go_down(l);
		return;
	}
	if (a->ss.ss_family != AF_UNIX)
		setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	l->state = LINK_CONNECTING;
	l->next_ms = timer_now_ms() + cluster_timeout_ms(l->cluster);
	sqe = ring_sqe(l->ring);
	io_uring_prep_connect(sqe, l->fd, (const struct sockaddr *)&a->ss,
			      a->len);
	submit(l, sqe, OP_CLUSTER_CONNECT);
}

struct cluster_link *
cluster_link_new(struct ring *r, struct cluster *c)
{
	struct cluster_link *l;

	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	l->ring = r;
	l->cluster = c;
	l->fd = -1;
	l->conn.fd = -1;
	l->state = LINK_DOWN;
	l->next_ms = 0; /* connect at the first tick */
	r->objects++;
	return l;
}

bool
cluster_link_submit(struct cluster_link *l, struct cluster_request *req)
{
	if (l == NULL || l->state != LINK_UP || l->closing)
		return false;
	if (cluster_queue(l->cluster, req, &l->conn) != 0)
		return false;
	req->submitted_us = timer_now_us();
	req->deadline_us =
		req->submitted_us + cluster_timeout_ms(l->cluster) * 1000u;
	req->next = NULL;
	if (l->tail != NULL)
		l->tail->next = req;
	else
		l->head = req;
	l->tail = req;
	send_out(l);
	return true;
}

/* The bytes gathered so far, as one call (through the thread while the
 * link is not up). */
static void
flush_charges(struct cluster_link *l)
{
	struct cluster_request *req;

	if (l->npending == 0)
		return;
	req = calloc(1, sizeof(*req));
	if (req == NULL ||
	    (req->charges = malloc(l->npending * sizeof(*req->charges))) ==
		    NULL) {
		free(req);
		return; /* lost: the bytes stay uncounted, the safe way round
			   for the sender, and only under memory pressure */
	}
	req->op = CLUSTER_CHARGE_MANY;
	memcpy(req->charges, l->pending, l->npending * sizeof(*req->charges));
	req->ncharges = l->npending;
	l->npending = 0;
	if (!cluster_link_submit(l, req))
		cluster_submit(l->cluster, req);
}

/* A delivered message's bytes, added to what waits for the next call. */
static void
add_charge(struct cluster_link *l, const char *login,
	   const struct config_user_limits *pol, uint64_t bytes)
{
	struct cluster_charge *ch = NULL;
	char user[CLUSTER_KEY_MAX];

	cluster_user_id(login, user);
	for (unsigned i = 0; i < l->npending && ch == NULL; i++)
		if (strcmp(l->pending[i].user, user) == 0)
			ch = &l->pending[i];
	if (ch == NULL) {
		if (l->npending == CLUSTER_CHARGES_MAX)
			flush_charges(l);
		if (l->npending == 0)
			l->charge_ms = timer_now_ms() + CHARGE_DELAY_MS;
		ch = &l->pending[l->npending++];
		memcpy(ch->user, user, sizeof(user));
		ch->bytes = 0;
	}
	ch->bytes += bytes;
	ch->rate = *ratelimit_rate(pol, LIMIT_BYTES);
}

void
cluster_link_give(void *link, const char *login,
		  const struct config_user_limits *pol,
		  const uint64_t amount[LIMIT_USER_KINDS], bool charge)
{
	struct cluster_link *l = link;
	struct cluster_request *req;

	if (l->closing) {
		cluster_give(l->cluster, login, pol, amount, charge);
		return;
	}
	if (charge && amount[LIMIT_BYTES] != 0) {
		add_charge(l, login, pol, amount[LIMIT_BYTES]);
		return;
	}
	req = cluster_give_request(login, pol, amount, charge);
	if (req != NULL && !cluster_link_submit(l, req))
		cluster_submit(l->cluster, req); /* done NULL: freed there */
}

uint64_t
cluster_link_next(const struct cluster_link *l)
{
	uint64_t next = TIMER_NONE;

	if (l == NULL || l->closing)
		return TIMER_NONE;
	if (l->head != NULL)
		next = l->head->deadline_us / 1000u + 1;
	else if (l->state != LINK_UP)
		next = l->next_ms;
	if (l->npending > 0 && l->charge_ms < next)
		next = l->charge_ms;
	return next;
}

void
cluster_link_tick(struct cluster_link *l, uint64_t now_ms)
{
	if (l == NULL || l->closing)
		return;
	if (l->npending > 0 && now_ms >= l->charge_ms)
		flush_charges(l);
	if (l->head != NULL && l->head->deadline_us / 1000u < now_ms) {
		go_down(l);
		settle(l);
		return;
	}
	if ((l->state == LINK_CONNECTING || l->state == LINK_HANDSHAKE) &&
	    now_ms >= l->next_ms) {
		go_down(l); /* the connect or the handshake takes too long */
		settle(l);
		return;
	}
	/* Down: try again when the thread's own connection says Redis is
	 * there (it logs the outage; the links follow quietly). */
	if (l->state == LINK_DOWN && l->fd < 0 && now_ms >= l->next_ms) {
		if (cluster_up(l->cluster))
			connect_start(l);
		else
			l->next_ms = now_ms + BACKOFF_MIN_MS;
	}
}

void
cluster_link_on_connect(struct cluster_link *l, int res)
{
	l->refs--;
	if (l->closing || l->state != LINK_CONNECTING) {
		settle(l);
		return;
	}
	if (res < 0) {
		go_down(l);
		settle(l);
		return;
	}
	if (!cluster_tls_on(l->cluster)) {
		link_up(l);
		settle(l);
		return;
	}
	l->ssl = cluster_link_tls(l->cluster);
	l->rbio = BIO_new(BIO_s_mem());
	l->wbio = BIO_new(BIO_s_mem());
	if (l->ssl == NULL || l->rbio == NULL || l->wbio == NULL) {
		BIO_free(l->rbio);
		BIO_free(l->wbio);
		go_down(l);
		settle(l);
		return;
	}
	SSL_set_bio(l->ssl, l->rbio, l->wbio);
	l->state = LINK_HANDSHAKE;
	l->next_ms = timer_now_ms() + cluster_timeout_ms(l->cluster);
	handshake(l);
	settle(l);
}

void
cluster_link_on_send(struct cluster_link *l, int res)
{
	size_t sent = l->sending;

	l->refs--;
	l->sending = 0;
	if (l->closing || (l->state != LINK_UP && l->state != LINK_HANDSHAKE)) {
		settle(l);
		return;
	}
	if (res <= 0) {
		go_down(l);
		settle(l);
		return;
	}
	/* A short send leaves the rest for the next one. */
	if (l->ssl != NULL) {
		l->wire_off += (size_t)res < sent ? (size_t)res : sent;
		if (l->wire_off == l->wire_len)
			l->wire_off = l->wire_len = 0;
	} else {
		l->conn.out_off += (size_t)res < sent ? (size_t)res : sent;
		if (l->conn.out_off == l->conn.out_len)
			l->conn.out_off = l->conn.out_len = 0;
	}
	send_out(l);
}

/* Received bytes to the reply reader (TLS: through the SSL first; during
 * the handshake they only feed it).  false on a TLS or protocol error. */
static bool
take_in(struct cluster_link *l, size_t n)
{
	int r;

	if (l->ssl == NULL)
		return redisReaderFeed(l->conn.reader, l->rbuf, n) == REDIS_OK;
	if (BIO_write(l->rbio, l->rbuf, (int)n) != (int)n)
		return false;
	if (l->state != LINK_UP)
		return true;
	/* rbuf is free again: the plaintext comes out into it. */
	while ((r = SSL_read(l->ssl, l->rbuf, sizeof(l->rbuf))) > 0)
		if (redisReaderFeed(l->conn.reader, l->rbuf, (size_t)r) !=
		    REDIS_OK)
			return false;
	return SSL_get_error(l->ssl, r) == SSL_ERROR_WANT_READ;
}

void
cluster_link_on_recv(struct cluster_link *l, int res)
{
	redisReply *r;
	int got;

	l->refs--;
	l->recv_armed = false;
	if (l->closing || (l->state != LINK_UP && l->state != LINK_HANDSHAKE)) {
		settle(l);
		return;
	}
	if (res <= 0 || !take_in(l, (size_t)res)) {
		go_down(l);
		settle(l);
		return;
	}
	if (l->state == LINK_HANDSHAKE) {
		handshake(l);
		settle(l);
		return;
	}
	while ((got = redis_conn_reply(&l->conn, &r)) > 0) {
		struct cluster_request *req = l->head;
		bool ok;

		if (l->skip > 0) { /* AUTH's */
			ok = r->type == REDIS_REPLY_STATUS;
			l->skip--;
			freeReplyObject(r);
			if (!ok)
				break;
			continue;
		}
		if (req == NULL) {
			freeReplyObject(r);
			break; /* a reply nobody asked for */
		}
		l->head = req->next;
		if (l->head == NULL)
			l->tail = NULL;
		ok = cluster_take_reply(req, r);
		if (!ok) /* the thread logs Redis down and up; this is rarer */
			log_warn("cluster-link-error",
				 " worker=%u error=\"%.*s\"", l->ring->id,
				 r->type == REDIS_REPLY_ERROR
					 ? (int)(r->len < 150 ? r->len : 150)
					 : 9,
				 r->type == REDIS_REPLY_ERROR ? r->str
							      : "bad reply");
		freeReplyObject(r);
		deliver(l, req, ok ? CLUSTER_OK : CLUSTER_UNAVAILABLE);
		if (!ok)
			break; /* NOSCRIPT, an error: a new connection */
	}
	if (got != 0) {
		go_down(l);
		settle(l);
		return;
	}
	arm_recv(l);
}

void
cluster_link_close(struct cluster_link *l)
{
	if (l == NULL || l->closing)
		return;
	l->closing = true;
	flush_charges(l); /* through the thread, which outlives the workers */
	if (l->state != LINK_DOWN)
		go_down(l);
	settle(l);
}
