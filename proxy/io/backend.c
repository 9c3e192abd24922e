/*
 * backend.c - the session's connection to a backend MTA.  Read backend.h
 * first.
 *
 * Opened at the first command that needs it (MAIL after AUTH), on the
 * worker's ring: connect, then the dialogue smtp/upstream.c holds as a
 * table (220, EHLO, [STARTTLS, 220, TLS, EHLO], [XCLIENT with the
 * client's identity as xclient.c builds it, 220 or 250, EHLO]); this file
 * does what it asks (send a line, run the TLS handshake, supply the
 * client's facts) and reports what it cannot see (connect, read, write,
 * TLS and timeout failures).  Then it is ready and the session sends the
 * client's command.  Any failure before the client's command has been
 * answered moves on to the next backend; when none is left the session
 * answers 451 4.4.1.  After that, a lost backend costs the client its
 * current transaction (451 4.4.2) and nothing else: the next MAIL
 * reconnects.
 *
 * The client gets 250 for a message only when the backend said 2xx for it:
 * the verdict after the end of data is the backend's own reply, which the
 * session relays.
 *
 * Which server: backend_pool.c (backends.balance, health).  Handshake
 * failures and timeouts count toward the server's fall (passive health);
 * a completed handshake brings back a server that was retried after
 * down_time.
 *
 * Config keys: backends.servers (address, identity, tls),
 * backends.*_timeout, hostname (our EHLO name).
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/generation.h"
#include "io/backend.h"
#include "io/backend_pool.h"
#include "io/ring.h"
#include "io/tls.h"
#include "lib/log.h"
#include "smtp/proxy_v2.h"
#include "smtp/xclient.h"

static void connect_next(const struct backend_owner *o, uint64_t tried,
			 unsigned attempts);

static const struct config *
config_of(const struct backend_conn *be)
{
	return be->gen->cfg;
}

static const struct config_backend *
server_of(const struct backend_conn *be)
{
	return &config_of(be)->backends[be->server];
}

const char *
backend_name(const struct backend_conn *be)
{
	return server_of(be)->addr.text;
}

/* The session's id, for log lines. */
static unsigned long long
session_id(const struct backend_conn *be)
{
	return (unsigned long long)be->owner.client.id;
}

/* upstream.c's trace hook: every change of state, at debug level. */
static void
trace_state(void *ctx, enum upstream_state from, enum upstream_state to)
{
	const struct backend_conn *be = ctx;

	log_debug("backend-state", " session=%llx backend=%s from=%s to=%s",
		  session_id(be), backend_name(be), upstream_state_name(from),
		  upstream_state_name(to));
}

static void
wake_session(struct backend_conn *be)
{
	if (be->owner.link != NULL)
		ring_wake(be->owner.ring, be->owner.wake);
}

/* ---------------------------------------------------------------------
 * Connection lifetime
 */

static void
backend_free(struct backend_conn *be)
{
	backend_pool_conn_close(be->gen->backend_pool, be->server);
	if (be->fd >= 0)
		close(be->fd);
	SSL_free(be->ssl);
	buf_free(&be->in);
	buf_free(&be->out);
	buf_free(&be->wire);
	generation_drop(be->gen);
	be->owner.ring->objects--;
	free(be);
}

void
backend_release(struct backend_conn *be)
{
	/* An invariant, not input: a completion without its reference. */
	if (be->refs == 0)
		abort();
	if (--be->refs == 0 && be->owner.link == NULL && !be->sending)
		backend_free(be);
}

/* Stop what is in flight on the socket: shutdown() wakes it, the cancel
 * takes a receive that would wait for ever.  The fd stays open until the
 * last completion, so it cannot be reused early. */
static void
cut(struct backend_conn *be)
{
	if (be->fd >= 0)
		shutdown(be->fd, SHUT_RDWR);
	if (be->recv_armed) {
		struct io_uring_sqe *sqe = ring_sqe(be->owner.ring);
		io_uring_prep_cancel_fd(sqe, be->fd, IORING_ASYNC_CANCEL_ALL);
		ring_prep(sqe, NULL, OP_IGNORE);
	}
}

static void send_out(struct backend_conn *be);

void
backend_close(struct backend_conn **link, bool polite)
{
	struct backend_conn *be = *link;
	if (be == NULL)
		return;
	*link = NULL;
	be->owner.link = NULL;
	if (polite && be->up.state == UPSTREAM_READY && !be->reply_ready &&
	    !be->quit_sent && buf_append_all(&be->out, "QUIT\r\n", 6) == 0) {
		be->quit_sent = true;
		send_out(be);
	} else if (be->fd >= 0) {
		shutdown(be->fd, SHUT_RDWR);
	}
	if (be->refs == 0) {
		backend_free(be);
		return;
	}
	if (be->recv_armed && !be->quit_sent) {
		struct io_uring_sqe *sqe = ring_sqe(be->owner.ring);
		io_uring_prep_cancel_fd(sqe, be->fd, IORING_ASYNC_CANCEL_ALL);
		ring_prep(sqe, NULL, OP_IGNORE);
	}
}

/* ---------------------------------------------------------------------
 * What the session asks
 */

static bool
in_handshake(const struct backend_conn *be)
{
	return upstream_in_handshake(&be->up);
}

/* A reply held for the session still counts as the wait for it. */
bool
backend_waiting(const struct backend_conn *be)
{
	return upstream_waiting(&be->up) || be->reply_ready;
}

uint64_t
backend_deadline(const struct backend_conn *be)
{
	return be->deadline;
}

uint64_t
backend_sent_ms(const struct backend_conn *be)
{
	return be->sent_ms;
}

uint64_t
backend_size_max(const struct backend_conn *be)
{
	return be->size_max;
}

bool
backend_ready(const struct backend_conn *be)
{
	return be->up.state == UPSTREAM_READY && !be->reply_ready;
}

bool
backend_hello(struct backend_conn *be, uint64_t *size, bool *chunking)
{
	if (!be->hello)
		return false;
	be->hello = false;
	*size = be->size_max;
	*chunking = be->chunking;
	return true;
}

const struct smtp_reply *
backend_reply(const struct backend_conn *be)
{
	return be->reply_ready ? &be->reply : NULL;
}

bool
backend_failed(const struct backend_conn *be, enum smtp_backend_failure *why)
{
	if (be->up.state != UPSTREAM_FAILED)
		return false;
	*why = be->failure;
	return true;
}

struct buf *
backend_outbox(struct backend_conn *be)
{
	return &be->out;
}

/* ---------------------------------------------------------------------
 * I/O
 */

/* A prepared operation on be's socket: tagged with be, it holds a
 * reference until it completes (backend_release()). */
static void
backend_submit(struct backend_conn *be, struct io_uring_sqe *sqe,
	       enum ring_op op)
{
	ring_prep(sqe, be, op);
	be->refs++;
}

/* TLS: plaintext from be->out through the SSL into be->wire, a record's
 * worth ahead at most (the write BIO never holds much). */
static void
tls_pump_out(struct backend_conn *be)
{
	BIO *wbio = SSL_get_wbio(be->ssl);

	while (be->tls_up && buf_used(&be->out) > 0 &&
	       BIO_ctrl_pending(wbio) < RECV_BUF_SIZE) {
		size_t n = buf_used(&be->out);
		int r = SSL_write(be->ssl, buf_head(&be->out),
				  (int)(n > 16384 ? 16384 : n));
		if (r <= 0)
			break;
		buf_consume(&be->out, (size_t)r);
	}
	while (BIO_ctrl_pending(wbio) > 0) {
		size_t room = buf_room(&be->wire);
		char *t;
		int n;

		if (room == 0 || (t = buf_tail(&be->wire)) == NULL)
			break;
		n = BIO_read(wbio, t, (int)(room > INT_MAX ? INT_MAX : room));
		if (n <= 0)
			break;
		buf_commit(&be->wire, (size_t)n);
	}
}

static void
send_out(struct backend_conn *be)
{
	struct io_uring_sqe *sqe;
	struct buf *src = be->ssl != NULL ? &be->wire : &be->out;

	if (be->sending || be->fd < 0 || be->up.state == UPSTREAM_CONNECTING)
		return;
	if (be->ssl != NULL)
		tls_pump_out(be);
	if (buf_used(src) == 0)
		return;
	sqe = ring_sqe(be->owner.ring);
	src->pinned = true;
	io_uring_prep_send(sqe, be->fd, buf_head(src), buf_used(src),
			   MSG_NOSIGNAL);
	backend_submit(be, sqe, OP_BACKEND_SEND);
	be->sending = true;
	be->send_wire = be->ssl != NULL;
}

void
backend_flush(struct backend_conn *be)
{
	send_out(be);
}

/* A receive when there is room for one and no reply is waiting for the
 * session (which would leave it nowhere to go). */
static void
backend_arm_recv(struct backend_conn *be)
{
	struct io_uring_sqe *sqe;

	if (be->recv_armed || be->reply_ready ||
	    be->up.state == UPSTREAM_FAILED ||
	    buf_room(&be->in) < RECV_BUF_SIZE)
		return;
	sqe = ring_sqe(be->owner.ring);
	io_uring_prep_recv(sqe, be->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RECV_GROUP;
	backend_submit(be, sqe, OP_BACKEND_RECV);
	be->recv_armed = true;
}

static void
set_deadline(struct backend_conn *be, uint64_t ms)
{
	be->deadline = timer_now_ms() + ms;
}

static void
send_line(struct backend_conn *be, const char *line, size_t len)
{
	if (buf_append_all(&be->out, line, len) != 0) {
		log_error("backend-overflow", " session=%llx", session_id(be));
		return;
	}
	send_out(be);
}

/* ---------------------------------------------------------------------
 * Failure handling
 */

void
backend_health_log(struct backend_pool *pool, size_t i,
		   const struct config_backend *b, int change,
		   const char *source, const char *reason)
{
	if (change != BACKEND_POOL_SAME)
		backend_pool_note(
			pool, i,
			backend_pool_why_of(change == BACKEND_POOL_WENT_UP,
					    reason),
			strcmp(source, "check") == 0, timer_now_ms());
	if (change == BACKEND_POOL_WENT_DOWN)
		log_warn("backend-down", " backend=%s source=%s reason=\"%s\"",
			 b->addr.text, source, reason);
	else if (change == BACKEND_POOL_WENT_UP)
		log_info("backend-up", " backend=%s source=%s reason=\"%s\"",
			 b->addr.text, source, reason);
}

/* A failure that says the server is unwell counts toward its fall. */
static void
mark_failed(struct backend_conn *be, const char *step, const char *detail)
{
	char reason[160];
	enum backend_pool_change c = backend_pool_failed(
		be->gen->backend_pool, be->server, timer_now_ms());

	snprintf(reason, sizeof(reason), "%s: %s", step, detail);
	backend_health_log(be->gen->backend_pool, be->server, server_of(be), c,
			   "session", reason);
}

/* Open a connection to the next server that may take one.  None left:
 * *o->link stays NULL and the session answers 451 4.4.1. */
static bool backend_connect(const struct backend_owner *o, size_t server,
			    uint64_t tried, unsigned attempts);

static void
connect_next(const struct backend_owner *o, uint64_t tried, unsigned attempts)
{
	size_t next =
		ring_pick_backend(o->ring, o->gen, o->client.login, tried);

	if (next != BACKEND_POOL_NONE) {
		backend_connect(o, next, tried, attempts);
		return;
	}
	log_warn("backend-unavailable",
		 " session=%llx tried=%u detail=\"no backend left to try\"",
		 (unsigned long long)o->client.id, attempts);
}

void
backend_open(const struct backend_owner *o)
{
	/* A pinned session: every other server counts as tried already, so
	 * the pool's pick (and failover) can only give the pinned one. */
	connect_next(o,
		     o->client.pin > 0 && o->client.pin <= 64
			     ? ~(UINT64_C(1) << (o->client.pin - 1))
			     : 0,
		     0);
}

/* Before the client's command was answered: try the next backend.  be is
 * detached from its session (which now has the next one, or none). */
static void
failover(struct backend_conn *be, const char *step, const char *detail)
{
	struct backend_owner o = be->owner; /* be may be gone below */
	uint64_t tried = be->tried;
	unsigned attempts = be->attempts;

	log_warn("backend-failed",
		 " session=%llx backend=%s step=%s error=\"%s\" attempt=%u",
		 (unsigned long long)o.client.id, backend_name(be), step,
		 detail, attempts);
	mark_failed(be, step, detail);
	backend_close(o.link, false);
	connect_next(&o, tried, attempts);
	ring_wake(o.ring, o.wake);
}

/* Broken after the handshake: the session learns it when it runs
 * (backend_failed()) and loses its current transaction. */
static void
backend_fail(struct backend_conn *be, enum smtp_backend_failure why,
	     const char *step, const char *detail)
{
	be->failure = why;
	upstream_fail(&be->up, step, detail);
	cut(be);
	wake_session(be);
}

/* After it was in use: the current transaction is lost.  was: the state
 * it was lost in (the log shows its number). */
static void
lost(struct backend_conn *be, enum upstream_state was, const char *step,
     const char *detail)
{
	log_warn("backend-lost",
		 " session=%llx backend=%s error=\"%s\" state=%d",
		 session_id(be), backend_name(be), detail, (int)was);
	backend_fail(be, SMTP_BACKEND_LOST, step, detail);
}

static void
broken(struct backend_conn *be, const char *step, const char *detail)
{
	if (in_handshake(be))
		failover(be, step, detail);
	else
		lost(be, be->up.state, step, detail);
}

void
backend_on_timer(struct backend_conn *be)
{
	if (in_handshake(be)) {
		failover(be, "timeout", "no answer in time");
		return;
	}
	/* Waiting for the verdict after the data, the backend may still
	 * deliver and the client will retry: RFC 1047's duplicate.
	 * backends.data_timeout is long to keep that rare. */
	log_warn("backend-timeout", " session=%llx backend=%s state=%s",
		 session_id(be), backend_name(be),
		 be->up.state == UPSTREAM_WAIT_DATA_END ||
				 (be->reply_ready && be->verdict)
			 ? "wait-data-end"
			 : "wait-reply");
	mark_failed(be, "timeout", "no reply in time");
	backend_fail(be, SMTP_BACKEND_TIMEOUT, "timeout", "no reply in time");
}

/* ---------------------------------------------------------------------
 * Handshake
 */

/* The client's facts, as far as this backend's XCLIENT takes them
 * (upstream.c builds the line; the EHLO after it carries the client's
 * EHLO name, which smtp.c let through only without spaces or control
 * bytes).  Returns false when it failed over. */
static bool
send_xclient(struct backend_conn *be)
{
	const struct backend_client *c = &be->owner.client;
	struct sockaddr_storage local = {.ss_family = AF_UNSPEC};
	socklen_t llen = sizeof(local);
	struct xclient_info info = {
		.client = c->addr,
		.dest = (const struct sockaddr *)&local,
		.helo = c->helo != NULL ? c->helo : "",
		.login = c->login,
	};

	/* The listener's address, asked only of a backend that takes it
	 * (sessions keep no copy: docs/PERFORMANCE.md). */
	if ((xclient_offers(be->up.xclient_attrs, "DESTADDR") ||
	     xclient_offers(be->up.xclient_attrs, "DESTPORT")) &&
	    getsockname(c->fd, (struct sockaddr *)&local, &llen) != 0)
		local.ss_family = AF_UNSPEC;
	if (upstream_xclient(&be->up, &info) != UPSTREAM_ACT_SEND) {
		failover(be, be->up.step, be->up.detail);
		return false;
	}
	send_line(be, be->up.line, be->up.len);
	return true;
}

/* After STARTTLS's 220: anything the server sent after it is dropped
 * (command injection, CVE-2011-0411 class), then the handshake.  Returns
 * false when it failed over. */
static bool
backend_start_tls(struct backend_conn *be)
{
	be->ssl = tls_backend_ssl_new(be->gen->backend_tls[be->server],
				      server_of(be));
	if (be->ssl == NULL) {
		failover(be, "starttls", "cannot create the TLS session");
		return false;
	}
	buf_clear(&be->in);
	SSL_do_handshake(be->ssl); /* the ClientHello */
	send_out(be);
	set_deadline(be, config_of(be)->backend_reply_timeout_ms);
	return true;
}

/* Handshake bytes arrived: go on, or fail over (a certificate that does
 * not verify ends here).  Returns false when it failed over. */
static bool
tls_handshake(struct backend_conn *be)
{
	char e[256];
	int r = SSL_do_handshake(be->ssl);

	if (r != 1) {
		if (SSL_get_error(be->ssl, r) == SSL_ERROR_WANT_READ) {
			send_out(be);
			return true;
		}
		failover(be, "tls", tls_error_string(e, sizeof(e)));
		return false;
	}
	be->tls_up = true;
	log_debug("backend-tls",
		  " session=%llx backend=%s version=%s cipher=%s",
		  session_id(be), backend_name(be), SSL_get_version(be->ssl),
		  SSL_get_cipher_name(be->ssl));
	if (upstream_tls_done(&be->up) != UPSTREAM_ACT_SEND) {
		failover(be, be->up.step, be->up.detail);
		return false;
	}
	send_line(be, be->up.line, be->up.len);
	set_deadline(be, config_of(be)->backend_reply_timeout_ms);
	return true;
}

/* Decrypt what the read BIO holds into be->in.  Returns false when there
 * is nothing to parse: the handshake goes on, or the connection broke (the
 * session has been told). */
static bool
backend_tls_read(struct backend_conn *be)
{
	char e[256];

	if (be->up.state == UPSTREAM_TLS &&
	    (!tls_handshake(be) || be->up.state == UPSTREAM_TLS))
		return false;
	while (buf_room(&be->in) > 0) {
		char *t = buf_tail(&be->in);
		size_t room = buf_room(&be->in);
		int r, err;

		if (t == NULL)
			break;
		r = SSL_read(be->ssl, t,
			     (int)(room > INT_MAX ? INT_MAX : room));
		if (r > 0) {
			buf_commit(&be->in, (size_t)r);
			continue;
		}
		err = SSL_get_error(be->ssl, r);
		if (err == SSL_ERROR_WANT_READ)
			break;
		broken(be, "tls",
		       err == SSL_ERROR_ZERO_RETURN
			       ? "connection closed"
			       : tls_error_string(e, sizeof(e)));
		return false;
	}
	return true;
}

/* The server works: a down one (retried after down_time) is up again.
 * r is its last EHLO reply: what it offers, for this connection and for
 * the pool's view of the servers.  The session sends its command when it
 * runs. */
static void
handshake_done(struct backend_conn *be, const struct smtp_reply *r)
{
	struct backend_pool *pool = be->gen->backend_pool;
	unsigned ext = backend_pool_ehlo_caps(r, &be->size_max);

	backend_pool_learn(pool, be->server, ext, be->size_max);
	counter_observe(
		&be->owner.ring->counters
			 .backend_connect[backend_pool_slot(pool, be->server)],
		timer_now_us() - be->began_us);
	backend_health_log(
		pool, be->server, server_of(be),
		backend_pool_succeeded(pool, be->server, timer_now_ms()),
		"session", "handshake completed");
	be->chunking = (ext & BACKEND_POOL_EXT_CHUNKING) != 0;
	be->hello = true;
	be->attempts = 0;
	wake_session(be);
}

/* One reply of the handshake: do what upstream.c asks.  Returns false
 * when the connection failed over (be is detached). */
static bool
backend_handshake_reply(struct backend_conn *be, const struct smtp_reply *r)
{
	switch (upstream_reply(&be->up, r)) {
	case UPSTREAM_ACT_SEND:
		send_line(be, be->up.line, be->up.len);
		break;
	case UPSTREAM_ACT_START_TLS:
		return backend_start_tls(be);
	case UPSTREAM_ACT_XCLIENT:
		/* Early, the list is the pool's own: nothing to learn. */
		if (!upstream_early(&be->up))
			backend_pool_learn_xclient(
				be->gen->backend_pool, be->server,
				xclient_attr_bits(be->up.xclient_attrs));
		if (!send_xclient(be))
			return false;
		break;
	case UPSTREAM_ACT_EHLO_FIRST:
		if (backend_pool_refuse_early(be->gen->backend_pool,
					      be->server))
			log_info("backend-xclient-early",
				 " backend=%s reply=%d reason=\"XCLIENT before "
				 "EHLO refused: EHLO first from now on\"",
				 backend_name(be), be->up.early_code);
		send_line(be, be->up.line, be->up.len);
		break;
	case UPSTREAM_ACT_READY:
		handshake_done(be, r);
		return true;
	case UPSTREAM_ACT_FAIL:
		failover(be, be->up.step, be->up.detail);
		return false;
	default:
		return true;
	}
	set_deadline(be, config_of(be)->backend_reply_timeout_ms);
	return true;
}

/* ---------------------------------------------------------------------
 * Commands and replies
 */

void
backend_command(struct backend_conn *be, const char *line, size_t len,
		bool bdat)
{
	/* A BDAT's chunk follows the line at once: its reply is waited
	 * for once the chunk has all gone (backend_data_sent()). */
	if (!upstream_forward(&be->up,
			      bdat ? UPSTREAM_FWD_CHUNK : UPSTREAM_FWD_COMMAND))
		return; /* not ready: the session asks backend_ready() */
	send_line(be, line, len);
	if (!bdat)
		set_deadline(be, config_of(be)->backend_reply_timeout_ms);
}

void
backend_data_sent(struct backend_conn *be, bool last)
{
	upstream_data_sent(&be->up, last);
	if (last) {
		be->began_us = timer_now_us();
		set_deadline(be, config_of(be)->backend_data_timeout_ms);
	} else {
		set_deadline(be, config_of(be)->backend_reply_timeout_ms);
	}
}

/* A reply to a command: held for the session.  Returns false when it
 * broke the connection instead (unsolicited, e.g. "421 timeout" while
 * idle, or a 421 for an answer: upstream.c says which). */
static bool
command_reply(struct backend_conn *be, const struct smtp_reply *r)
{
	enum upstream_state was = be->up.state;
	enum upstream_action act = upstream_reply(&be->up, r);

	if (act == UPSTREAM_ACT_FAIL) {
		lost(be, was, be->up.step, be->up.detail);
		return false;
	}
	be->verdict = act == UPSTREAM_ACT_VERDICT;
	if (be->verdict)
		counter_observe(
			&be->owner.ring->counters
				 .backend_transaction[backend_pool_slot(
					 be->gen->backend_pool, be->server)],
			timer_now_us() - be->began_us);
	be->reply_ready = true;
	wake_session(be);
	return true;
}

static void parse_replies(struct backend_conn *be);

void
backend_reply_done(struct backend_conn *be, bool data)
{
	be->reply_ready = false;
	smtp_reply_init(&be->reply);
	if (data)
		upstream_data_begin(&be->up);
	parse_replies(be);
}

/* Replies out of be->in, one at a time: a reply for the session waits
 * there until it took it (backend_reply_done()). */
static void
parse_replies(struct backend_conn *be)
{
	unsigned rounds = 0;

	if (be->owner.link == NULL)
		return;
more:
	if (be->ssl != NULL && !backend_tls_read(be)) {
		if (be->owner.link != NULL && be->up.state != UPSTREAM_FAILED)
			backend_arm_recv(be); /* handshake: wait for more */
		return;
	}
	while (!be->reply_ready && buf_used(&be->in) > 0) {
		size_t used;
		enum smtp_reply_status st =
			smtp_reply_feed(&be->reply, buf_head(&be->in),
					buf_used(&be->in), &used);
		bool go_on;

		buf_consume(&be->in, used);
		if (st == SMTP_REPLY_MORE)
			break;
		if (st == SMTP_REPLY_ERROR) {
			broken(be, "reply", "malformed reply");
			return;
		}
		log_debug("backend-reply", " session=%llx backend=%s code=%d",
			  session_id(be), backend_name(be), be->reply.code);
		if (in_handshake(be)) {
			go_on = backend_handshake_reply(be, &be->reply);
			if (go_on)
				smtp_reply_init(&be->reply);
		} else {
			go_on = command_reply(be, &be->reply);
		}
		if (!go_on)
			return;
	}
	/* TLS may hold more plaintext than be->in had room for. */
	if (!be->reply_ready && be->ssl != NULL && be->tls_up &&
	    buf_used(&be->in) == 0 && ++rounds < 64 &&
	    (SSL_pending(be->ssl) > 0 ||
	     BIO_ctrl_pending(SSL_get_rbio(be->ssl)) > 0))
		goto more;
	backend_arm_recv(be);
}

/* ---------------------------------------------------------------------
 * Completions
 */

void
backend_on_recv(struct backend_conn *be, int res, unsigned flags)
{
	struct ring *r = be->owner.ring;
	bool have_buf = (flags & IORING_CQE_F_BUFFER) != 0;
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	char detail[64];

	be->recv_armed = false;
	if (be->owner.link == NULL || be->up.state == UPSTREAM_FAILED) {
		/* Detached (the answer to our QUIT, or the close), or cut. */
		if (have_buf)
			ring_buf_return(r, RECV_GROUP, bid);
		return;
	}
	if (res <= 0) {
		if (have_buf)
			ring_buf_return(r, RECV_GROUP, bid);
		if (res == -ENOBUFS) {
			backend_arm_recv(be);
			return;
		}
		snprintf(detail, sizeof(detail), "%s",
			 res == 0 ? "connection closed" : strerror(-res));
		broken(be, "read", detail);
		return;
	}
	if (be->ssl != NULL)
		BIO_write(SSL_get_rbio(be->ssl), ring_buf(r, RECV_GROUP, bid),
			  res);
	else
		buf_append(&be->in, ring_buf(r, RECV_GROUP, bid), (size_t)res);
	ring_buf_return(r, RECV_GROUP, bid);
	parse_replies(be);
}

void
backend_on_send(struct backend_conn *be, int res)
{
	struct buf *src = be->send_wire ? &be->wire : &be->out;

	be->sending = false;
	buf_unpin(src);
	if (res > 0)
		buf_consume(src, (size_t)res);
	if (be->owner.link == NULL) {
		/* Detached: after the QUIT, close our side. */
		if (be->fd >= 0)
			shutdown(be->fd, SHUT_RDWR);
		return;
	}
	if (be->up.state == UPSTREAM_FAILED)
		return;
	if (res < 0) {
		broken(be, "write", strerror(-res));
		return;
	}
	if (buf_used(&be->out) > 0 || buf_used(&be->wire) > 0)
		send_out(be);
	be->sent_ms = timer_now_ms(); /* the message is moving */
	wake_session(be);	      /* room for more of it */
}

void
backend_on_connect(struct backend_conn *be, int res)
{
	if (be->owner.link == NULL)
		return;
	if (res < 0) {
		failover(be, "connect", strerror(-res));
		return;
	}
	/* The greeting must come within what is left of connect_timeout. */
	upstream_connected(&be->up);
	backend_arm_recv(be);
	send_out(be);
}

/* ---------------------------------------------------------------------
 * Connecting
 */

/* identity proxy-v2: the header goes out as soon as the connection is
 * up, ahead of everything else. */
static int
queue_proxy_header(struct backend_conn *be)
{
	const struct backend_client *c = &be->owner.client;
	char id[32];
	uint8_t hdr[PROXY_V2_MAX];
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	struct proxy_v2_info info = {
		.src = c->addr,
		.dst = (const struct sockaddr *)&local,
		.login = c->login,
		.unique_id = id,
		.sni = c->sni,
		.tls_version = c->tls_version,
		.tls_cipher = c->tls_cipher,
	};
	ssize_t n;

	/* The address the client reached, asked only here (a syscall per
	 * session otherwise, and 128 bytes kept by each). */
	if (getsockname(c->fd, (struct sockaddr *)&local, &llen) != 0)
		local.ss_family = AF_UNSPEC;
	snprintf(id, sizeof(id), "%llx", (unsigned long long)c->id);
	n = proxy_v2_write(&info, hdr, sizeof(hdr));
	if (n < 0 || buf_append_all(&be->out, hdr, (size_t)n) != 0)
		return -1;
	return 0;
}

/* A connection to server for the owner (*o->link).  False when there is
 * no memory for one (*o->link stays NULL) or it failed over at once. */
static bool
backend_connect(const struct backend_owner *o, size_t server, uint64_t tried,
		unsigned attempts)
{
	const struct config *cfg = o->gen->cfg;
	const struct config_backend *b = &cfg->backends[server];
	const struct config_addr *a = &b->addr;
	const struct upstream_params up = {
		.mode = UPSTREAM_SESSION,
		.identity = b->identity,
		.starttls = b->tls != BACKEND_TLS_NONE,
		.hostname = cfg->hostname,
		.xclient_early = backend_pool_xclient_early(
			o->gen->backend_pool, server),
	};
	struct backend_conn *be = calloc(1, sizeof(*be));
	struct io_uring_sqe *sqe;
	int one = 1;

	if (be == NULL)
		return false;
	be->owner = *o;
	be->gen = generation_hold(o->gen); /* may outlive the session */
	o->ring->objects++;
	be->server = server;
	be->attempts = attempts + 1;
	be->tried = tried | (server < 64 ? UINT64_C(1) << server : 0);
	be->fd = -1;
	backend_pool_conn_open(o->gen->backend_pool, server);
	buf_init(&be->in, BACKEND_IN_CAP);
	buf_init(&be->out, BACKEND_OUT_CAP);
	buf_init(&be->wire, BACKEND_WIRE_CAP);
	smtp_reply_init(&be->reply);
	upstream_init(&be->up, &up);
	if (log_enabled(LOG_DEBUG)) {
		be->up.trace = trace_state;
		be->up.trace_ctx = be;
	}
	*o->link = be;
	be->fd = socket(a->ss.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (be->fd < 0) {
		failover(be, "socket", strerror(errno));
		return false;
	}
	if (a->ss.ss_family != AF_UNIX)
		setsockopt(be->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (upstream_proxy_header(&be->up) && queue_proxy_header(be) != 0) {
		failover(be, "proxy-v2", "header does not fit");
		return false;
	}
	upstream_connecting(&be->up);
	be->began_us = timer_now_us();
	sqe = ring_sqe(o->ring);
	io_uring_prep_connect(sqe, be->fd, (const struct sockaddr *)&a->ss,
			      a->len);
	backend_submit(be, sqe, OP_BACKEND_CONNECT);
	set_deadline(be, cfg->backend_connect_timeout_ms);
	return true;
}
