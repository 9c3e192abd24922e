/*
 * session.c - the client side of a session, on its worker's ring.
 *
 * Bytes from the client go through TLS (when it is on; OpenSSL reads the
 * receive buffer in place and writes records straight into s->wire through
 * the session's BIO, tls.h) into s->in; session_run() feeds them to the SMTP
 * state machine or, during DATA and BDAT, to the relay (relay.c) and on to
 * the backend (under TLS, once s->in is empty, message bytes are decrypted
 * straight into the backend's buffer and scanned there: relay_in_place());
 * replies go back through TLS into s->wire and out with one
 * send at a time.  session_run() is also where the session takes what
 * its backend leg woke it for.
 * Reads are armed only while there is room for them, which bounds every buffer:
 * a client that sends faster than we can use it simply stops being read.
 *
 * Logs: one line at connect, TLS, AUTH and each message, and a summary at
 * the end (session_log(): session, client and user on each).  At debug
 * level every command verb, reply code and state change is traced
 * (smtp_trace_fn: never an argument).  Passwords are never logged.
 *
 * Secrets: s->in is a secret buffer (buf.h) and TLS cleanses each record's
 * plaintext (tls_authed()) until AUTH succeeds; the plaintext receive
 * buffers of a session without TLS are wiped once copied.
 *
 * Beside it: session_limits.c acts on the limits' verdicts,
 * session_backend.c takes the backend leg's news, session_log.c writes
 * the lines about a session.
 *
 * Config keys: tls.handshake_timeout, limits.command_timeout,
 * limits.data_timeout, limits.max_message_size, limits.bare_newlines,
 * auth.failure_delay.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "cluster/cluster.h"
#include "io/backend.h"
#include "io/backend_pool.h"
#include "io/ring.h"
#include "io/session.h"
#include "io/tls.h"
#include "lib/log.h"
#include "limits/caps.h"
#include "ops/metrics.h"

#define CLOSE_FLUSH_MS	  10000 /* time a closing session gets to flush */
#define SHUTDOWN_FLUSH_MS 1000	/* the same, cut at a drain deadline */
/* Room a record needs in s->wire beyond its plaintext: header, tag, TLS
 * 1.2's explicit nonce or 1.3's content type, and a KeyUpdate OpenSSL may
 * send first. */
#define TLS_RECORD_SLACK 64
#define TLS_RECORD_MAX	 16384

static _Thread_local uint64_t next_session;

static void session_free(struct session *s);

/* The worker's list of open sessions (drains and the control socket walk
 * it), and the counts that go with it. */
static void
link_session(struct session *s)
{
	struct ring *r = s->ring;

	s->next = r->sessions;
	s->prev = NULL;
	if (r->sessions)
		r->sessions->prev = s;
	r->sessions = s;
	r->nsessions++;
	atomic_fetch_add_explicit(&r->counters.active, 1, memory_order_relaxed);
	counter_add(&r->counters.open[s->listener_slot], 1);
}

static void
unlink_session(struct session *s)
{
	struct ring *r = s->ring;

	if (s->prev)
		s->prev->next = s->next;
	else
		r->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	r->nsessions--;
	atomic_fetch_sub_explicit(&r->counters.active, 1, memory_order_relaxed);
	caps_leave(r->shared.caps);
}

/* ---------------------------------------------------------------------
 * Creation
 */

/* Debug tracing of the SMTP dialogue (smtp.h). */
static void
trace_smtp(void *ctx, const char *verb, int code)
{
	const struct session *s = ctx;

	if (verb != NULL)
		session_log(s, LOG_DEBUG, "smtp-command", " verb=%s", verb);
	else
		session_log(s, LOG_DEBUG, "smtp-reply", " code=%d", code);
}

static void
trace_smtp_state(void *ctx, enum smtp_state from, enum smtp_state to)
{
	session_log(ctx, LOG_DEBUG, "smtp-state", " from=%s to=%s",
		    smtp_state_name(from), smtp_state_name(to));
}

static void
peer_to_text(struct session *s)
{
	ipnet_sockaddr_text(&s->peer.sa, s->peer_addr, sizeof(s->peer_addr),
			    &s->peer_port);
}

/* SIZE, DSN, SMTPUTF8 and CHUNKING as the backends (every one that is up and
 * was seen) take them: the client never sends what a backend would refuse for
 * that reason. */
static void
offer_backends(struct session *s)
{
	unsigned ext, offer = 0;
	uint64_t size;

	backend_pool_offer(s->gen->backend_pool, &ext, &size);
	if (ext & BACKEND_POOL_EXT_DSN)
		offer |= SMTP_OFFER_DSN;
	if (ext & BACKEND_POOL_EXT_SMTPUTF8)
		offer |= SMTP_OFFER_SMTPUTF8;
	if (ext & BACKEND_POOL_EXT_CHUNKING)
		offer |= SMTP_OFFER_CHUNKING;
	smtp_backend_offer(&s->smtp, size, offer);
}

struct session *
session_new(struct ring *r, int fd, const struct config_listener *l,
	    const union sockaddr_ip *peer, const union sockaddr_ip *via)
{
	char via_text[INET6_ADDRSTRLEN + 8] = "";
	unsigned via_port;
	struct generation *gen = r->gen;
	const struct config *cfg = gen->cfg;
	struct session *s = calloc(1, sizeof(*s));
	bool implicit = l->mode == LISTENER_IMPLICIT;

	if (s == NULL)
		return NULL;
	s->ring = r;
	r->objects++;
	s->gen = generation_hold(gen);
	s->id = ((uint64_t)r->id << 40) | ++next_session;
	s->fd = fd;
	s->listener = l;
	s->listener_slot = generation_listener_slot(gen, l);
	s->tls_agreed = TLSV_UNKNOWN;
	s->peer = *peer;
	peer_to_text(s);
	s->started_ms = s->last_read_ms = s->cmd_since_ms = timer_now_ms();
	s->timer.when = TIMER_NONE;
	buf_init(&s->in, cfg->max_auth_line + RECV_BUF_SIZE);
	s->in.secret = true; /* until AUTH succeeds */
	buf_init(&s->wire, WIRE_CAP);
	/* Ciphertext TLS could not take yet: up to a receive's worth was
	 * pending when the next receive was armed (want_read()). */
	buf_init(&s->tio.held, DATA_BUF_SIZE + RECV_BUF_SIZE);
	s->tio.out = &s->wire;
	smtp_init(&s->smtp, &gen->params[l->mode], implicit);
	offer_backends(s);
	if (log_enabled(LOG_DEBUG)) {
		s->smtp.trace = trace_smtp;
		s->smtp.trace_state = trace_smtp_state;
		s->smtp.trace_ctx = s;
	}
	if (via != NULL) {
		memcpy(via_text, " via=", 5);
		ipnet_sockaddr_text(&via->sa, via_text + 5,
				    sizeof(via_text) - 5, &via_port);
	}
	session_log(s, LOG_INFO, "session-start",
		    " port=%u listener=%s mode=%s%s", s->peer_port,
		    l->addr.text, implicit ? "implicit" : "starttls", via_text);
	if (!session_admit(s)) {
		/* Refused: it flushes any reply and closes on its first run. */
		s->deadline_ms = s->started_ms + CLOSE_FLUSH_MS;
		link_session(s);
		return s;
	}
	if (implicit) {
		s->ssl = tls_ssl_new(gen->tls[r->id], &s->tio);
		if (s->ssl == NULL) {
			session_policy_end(s);
			s->fd = -1; /* the caller closes it */
			session_free(s);
			return NULL;
		}
		s->deadline_ms = s->started_ms + cfg->handshake_timeout_ms;
	} else {
		smtp_start(&s->smtp);
	}
	link_session(s);
	return s;
}

/* ---------------------------------------------------------------------
 * TLS through the session's BIO (tls.h): its records are already in
 * s->wire when an OpenSSL call returns.
 */

static void
log_tls_failure(struct session *s, const char *what)
{
	char e[256];

	session_log(s, LOG_INFO, "tls-failed", " step=%s error=\"%s\"", what,
		    tls_error_string(e, sizeof(e)));
}

/* The version a handshake settled on, for the counters. */
static enum counter_tls
tls_version_of(SSL *ssl)
{
	switch (SSL_version(ssl)) {
	case TLS1_3_VERSION:
		return TLSV_1_3;
	case TLS1_2_VERSION:
		return TLSV_1_2;
	default:
		return TLSV_UNKNOWN;
	}
}

/* The version of a handshake in progress, once the server got past the
 * ClientHello (before, SSL_version() says the highest it would take). */
static void
note_tls_version(struct session *s)
{
	OSSL_HANDSHAKE_STATE st = SSL_get_state(s->ssl);

	if (st != TLS_ST_BEFORE && st != TLS_ST_SR_CLNT_HELLO)
		s->tls_agreed = tls_version_of(s->ssl);
}

static void
tls_ready(struct session *s)
{
	counter_add(&s->ring->counters.tls_ok[tls_version_of(s->ssl)], 1);
	if (SSL_session_reused(s->ssl))
		counter_add(
			&s->ring->counters.tls_resumed[tls_version_of(s->ssl)],
			1);
	s->tls_done = true;
	tls_established(s->ssl);
	s->deadline_ms = 0;
	s->cmd_since_ms = timer_now_ms(); /* after STARTTLS: a new turn */
	session_log(s, LOG_INFO, "tls", " version=%s cipher=%s resumed=%s",
		    SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl),
		    SSL_session_reused(s->ssl) ? "yes" : "no");
	if (s->listener->mode == LISTENER_IMPLICIT)
		smtp_start(&s->smtp);
	else
		smtp_tls_ready(&s->smtp);
}

static struct relay_io relay_io_of(struct session *s);

/* Message bytes go from TLS straight into the backend's buffer
 * (relay_in_place()), not through s->in. */
static bool
in_place(struct session *s)
{
	struct relay_io io;

	if (s->ssl == NULL || !s->tls_done || s->be == NULL ||
	    (s->smtp.state != SMTP_DATA &&
	     (s->smtp.state != SMTP_CHUNK || s->smtp.chunk_left == 0)))
		return false;
	io = relay_io_of(s);
	return relay_in_place_ok(&s->relay, &io);
}

/* Pull plaintext out of TLS into s->in while there is room (message bytes
 * that go in place excepted).  Returns false when the session ended. */
static bool
session_tls_read(struct session *s)
{
	int r, e;

	if (!s->tls_done) {
		/* Nothing from the client yet: OpenSSL would allocate its
		 * handshake buffers (~47 KiB) only to ask for more.  A
		 * connection that never sends a byte costs the SSL object
		 * alone. */
		if (BIO_ctrl_pending(SSL_get_rbio(s->ssl)) == 0)
			return true;
		r = SSL_do_handshake(s->ssl);
		if (r != 1) {
			e = SSL_get_error(s->ssl, r);
			if (e == SSL_ERROR_WANT_READ) {
				note_tls_version(s);
				return true;
			}
			note_tls_version(s);
			log_tls_failure(s, "handshake"); /* its alert is sent */
			s->closing = true;
			s->smtp.close_reason = "tls-handshake-failed";
			return true;
		}
		tls_ready(s);
	}
	while (buf_room(&s->in) > 0 && !in_place(s)) {
		char *t;
		size_t room;

		/* Nothing to decrypt: do not allocate s->in just to learn
		 * that (an idle session holds no input buffer). */
		if (tls_io_pending(&s->tio) == 0 && !SSL_has_pending(s->ssl))
			break;
		if ((t = buf_tail(&s->in)) == NULL)
			break;
		room = buf_room(&s->in);
		r = SSL_read(s->ssl, t, (int)room);
		if (r > 0) {
			buf_commit(&s->in, (size_t)r);
			continue;
		}
		e = SSL_get_error(s->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			session_close(s, "client-closed");
			return false;
		}
		log_tls_failure(s, "read");
		session_close(s, "tls-error");
		return false;
	}
	if (buf_used(&s->in) == 0)
		buf_clear(&s->in); /* frees a buffer SSL_read left empty */
	return true;
}

static void write_client(struct session *s);

/* Replies the client has not taken yet, beyond what the wire buffer
 * holds: answer nothing more (and so, once s->in is full, read nothing
 * more) until they drain.  Otherwise a client that pipelines commands and
 * never reads the replies would make us queue replies without end. */
static bool
tls_backlog(struct session *s)
{
	if (s->ssl == NULL || !s->tls_done)
		return false;
	write_client(s);
	return buf_used(&s->smtp.out) >= RECV_BUF_SIZE;
}

/* ---------------------------------------------------------------------
 * Output
 */

/* A prepared operation on s's socket: tagged with s, it holds a reference
 * until it completes (session_release()). */
static void
session_submit(struct session *s, struct io_uring_sqe *sqe, enum ring_op op)
{
	ring_prep(sqe, s, op);
	s->inflight++;
}

static void
send_wire(struct session *s)
{
	struct io_uring_sqe *sqe;

	if (s->sending || s->dead || buf_used(&s->wire) == 0)
		return;
	sqe = ring_sqe(s->ring);
	s->wire.pinned = true;
	io_uring_prep_send(sqe, s->fd, buf_head(&s->wire), buf_used(&s->wire),
			   MSG_NOSIGNAL);
	session_submit(s, sqe, OP_CLIENT_SEND);
	s->sending = true;
}

/* SMTP replies -> (TLS) -> wire.  TLS writes its records into s->wire, so
 * only as much as fits there is written: the rest waits in s->smtp.out,
 * which stops the SMTP side (bounded, like every buffer). */
static void
write_client(struct session *s)
{
	struct buf *out = &s->smtp.out;

	if (s->ssl == NULL) {
		size_t n = buf_append(&s->wire, buf_head(out), buf_used(out));
		buf_consume(out, n);
	} else if (s->tls_done) {
		while (buf_used(out) > 0) {
			size_t room = buf_room(&s->wire), n = buf_used(out);
			int r;

			if (room <= TLS_RECORD_SLACK)
				break;
			if (n > TLS_RECORD_MAX)
				n = TLS_RECORD_MAX;
			if (n > room - TLS_RECORD_SLACK)
				n = room - TLS_RECORD_SLACK;
			r = SSL_write(s->ssl, buf_head(out), (int)n);
			if (r <= 0)
				break;
			buf_consume(out, (size_t)r);
		}
	}
}

/* ... -> socket. */
static void
flush_client(struct session *s)
{
	write_client(s);
	send_wire(s);
}

void
session_on_client_send(struct session *s, int res)
{
	s->sending = false;
	buf_unpin(&s->wire);
	if (s->dead)
		return;
	if (res < 0) {
		session_close(s, res == -EPIPE || res == -ECONNRESET
					 ? "client-closed"
					 : "client-send-error");
		return;
	}
	buf_consume(&s->wire, (size_t)res);
	session_run(s);
}

/* ---------------------------------------------------------------------
 * Input
 */

static bool
want_read(struct session *s)
{
	if (s->dead || s->closing)
		return false;
	if (s->ssl != NULL)
		return tls_io_pending(&s->tio) < RECV_BUF_SIZE &&
		       buf_room(&s->in) > 0;
	return buf_room(&s->in) >= RECV_BUF_SIZE;
}

static void
arm_client_recv(struct session *s)
{
	struct io_uring_sqe *sqe;

	if (s->recv_armed || !want_read(s))
		return;
	/* Message bytes under TLS come in 64 KiB receives: four records per
	 * completion, wake-up and backend send instead of one; only while
	 * the backend's buffer can take all of it (else what TLS cannot
	 * pass on is copied aside until it can). */
	s->recv_data = s->ssl != NULL && s->smtp.state == SMTP_DATA &&
		       !s->data_starved && s->be != NULL &&
		       buf_room(backend_outbox(s->be)) >= DATA_BUF_SIZE;
	sqe = ring_sqe(s->ring);
	io_uring_prep_recv(sqe, s->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = s->recv_data ? DATA_GROUP : RECV_GROUP;
	session_submit(s, sqe, OP_CLIENT_RECV);
	s->recv_armed = true;
}

/* A receive buffer back to the group it came from. */
static void
recv_buf_return(struct session *s, bool data, unsigned bid)
{
	if (data)
		ring_buf_return(s->ring, DATA_GROUP, bid);
	else
		ring_buf_return(s->ring, RECV_GROUP, bid);
}

void
session_on_client_recv(struct session *s, int res, unsigned flags)
{
	bool have_buf = (flags & IORING_CQE_F_BUFFER) != 0;
	bool data_group = s->recv_data;
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	const char *data = !have_buf	? NULL
			   : data_group ? ring_buf(s->ring, DATA_GROUP, bid)
					: ring_buf(s->ring, RECV_GROUP, bid);

	s->recv_armed = false;
	/* After a fallback to RECV_GROUP, try DATA_GROUP again. */
	s->data_starved = data_group && res == -ENOBUFS;
	if (s->dead || s->closing || res <= 0) {
		if (have_buf)
			recv_buf_return(s, data_group, bid);
		if (s->dead)
			return;
		if (res == -ENOBUFS || (s->closing && res > 0)) {
			session_run(s); /* retried, or ignored while closing */
			return;
		}
		if (res <= 0)
			session_close(s, res == 0 ? "client-closed"
						  : "client-recv-error");
		return;
	}
	s->last_read_ms = timer_now_ms();
	if (s->ssl != NULL) {
		s->tls_begun = true;
		/* TLS reads the ciphertext in place; what it leaves is kept
		 * before the buffer goes back to the ring. */
		s->tio.rx = data;
		s->tio.rxlen = (size_t)res;
		session_run(s);
		if (s->dead)
			s->tio.rxlen = 0;
		if (tls_io_keep(&s->tio) != 0)
			session_close(s, "out-of-memory");
		recv_buf_return(s, data_group, bid);
		return;
	}
	buf_append(&s->in, data, (size_t)res); /* fits: want_read() */
	/* Plaintext: a client may send AUTH before STARTTLS. */
	if (s->in.secret)
		OPENSSL_cleanse((char *)data, (size_t)res);
	ring_buf_return(s->ring, RECV_GROUP, bid);
	session_run(s);
}

/* ---------------------------------------------------------------------
 * DATA and BDAT: client bytes through the relay (relay.h) to the backend
 */

/* The relay's hook for the user's byte rate. */
static bool
session_relay_take(void *ctx, size_t n)
{
	return session_take_bytes(ctx, n);
}

/* The relay's surroundings for one call. */
static struct relay_io
relay_io_of(struct session *s)
{
	const struct config *cfg = session_config(s);
	struct relay_io io = {
		.in = &s->in,
		.out = s->be != NULL ? backend_outbox(s->be) : NULL,
		.max_size = cfg->max_message_size,
		.normalize = cfg->bare_newlines == BARE_NEWLINE_NORMALIZE,
		.take_bytes = session_relay_take,
		.ctx = s,
	};

	/* The backend's own SIZE, when smaller: cut early, not at the end. */
	if (s->be != NULL && backend_size_max(s->be) > 0 &&
	    backend_size_max(s->be) < io.max_size)
		io.max_size = backend_size_max(s->be);
	return io;
}

/* The message or chunk was read to its end: on to the backend's verdict,
 * or refused here (logged, and the backend, which has part of it, is cut:
 * no QUIT inside DATA or a chunk, it must never see an end). */
static void
finish_message(struct session *s)
{
	char limit[300] = "";
	enum relay_sink sink;

	if (s->relay.sink == RELAY_SINK_LIMIT)
		session_bytes_reply(s, limit, sizeof(limit));
	sink = relay_finish(&s->relay, &s->smtp, limit);
	if (sink == RELAY_SINK_NONE) {
		backend_data_sent(s->be, s->smtp.state == SMTP_DATA_END);
		return;
	}
	if (sink == RELAY_SINK_TOO_BIG)
		counter_add(&s->ring->counters.limits[LIMIT_HIT_MESSAGE_SIZE],
			    1);
	session_log_refused(s, relay_sink_name(sink));
	backend_close(&s->be, false);
}

/* Move message bytes on.  Returns true when the message or chunk ended
 * (the state changed). */
static bool
relay(struct session *s)
{
	struct relay_io io = relay_io_of(s);
	bool ended;

	if (s->smtp.state == SMTP_DATA)
		ended = relay_data(&s->relay, &io);
	else
		ended = relay_chunk(&s->relay, &io, &s->smtp.chunk_left,
				    s->smtp.chunk_last);
	if (io.forwarded > 0)
		counter_add(&s->ring->counters.data_bytes, io.forwarded);
	if (s->be != NULL && s->relay.sink == RELAY_SINK_NONE)
		backend_flush(s->be);
	if (ended)
		finish_message(s);
	return ended;
}

/* DATA or a BDAT chunk under TLS with nothing waiting in s->in: each
 * record is decrypted straight into the backend's buffer and scanned
 * there, one copy of every message byte fewer than through s->in
 * (docs/PERFORMANCE.md, change 14).  What follows the end of data or of
 * the chunk in the record is the client's next command: it goes to s->in.
 * Returns -1 when the session ended, 1 when the message or chunk did, 0
 * when TLS has no more for now or the backend's buffer is full. */
static int
relay_in_place(struct session *s)
{
	struct relay_io io = relay_io_of(s);
	bool chunk = s->smtp.state == SMTP_CHUNK;
	uint64_t forwarded = 0;
	int ret = 0;

	while (relay_in_place_ok(&s->relay, &io)) {
		size_t room = buf_room(io.out), inroom = buf_room(&s->in), n;
		char *t;
		int r, e;

		if (tls_io_pending(&s->tio) == 0 && !SSL_has_pending(s->ssl))
			break;
		if (room == 0 || (t = buf_tail(io.out)) == NULL)
			break;
		/* What follows the end of data must fit in s->in. */
		if (room > inroom)
			room = inroom;
		r = SSL_read(s->ssl, t, (int)room); /* room <= 128 KiB */
		if (r <= 0) {
			e = SSL_get_error(s->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				break;
			if (e != SSL_ERROR_ZERO_RETURN)
				log_tls_failure(s, "read");
			session_close(s, e == SSL_ERROR_ZERO_RETURN
						 ? "client-closed"
						 : "tls-error");
			return -1;
		}
		if (chunk)
			n = relay_chunk_in_place(&s->relay, &io, (size_t)r,
						 &s->smtp.chunk_left,
						 s->smtp.chunk_last);
		else
			n = relay_data_in_place(&s->relay, &io, (size_t)r);
		forwarded += io.forwarded;
		if (n < (size_t)r)
			buf_append(&s->in, t + n, (size_t)r - n);
		if (chunk ? s->smtp.chunk_left == 0 : s->relay.ds.done) {
			ret = 1;
			break;
		}
	}
	if (forwarded > 0)
		counter_add(&s->ring->counters.data_bytes, forwarded);
	if (s->be != NULL && s->relay.sink == RELAY_SINK_NONE)
		backend_flush(s->be);
	if (ret == 1)
		finish_message(s);
	return ret;
}

/* ---------------------------------------------------------------------
 * The driver
 */

static void
session_start_tls(struct session *s)
{
	/* The 220 goes out in plaintext ahead of everything TLS writes. */
	flush_client(s);
	s->ssl = tls_ssl_new(s->gen->tls[s->ring->id], &s->tio);
	if (s->ssl == NULL) {
		session_log(s, LOG_ERROR, "tls-failed", " step=new error=oom");
		s->closing = true;
		return;
	}
	s->deadline_ms =
		timer_now_ms() + session_config(s)->handshake_timeout_ms;
}

/* smtp.c's mechanism (NULL: PLAIN) as the metrics count it. */
static int
session_mech_index(const char *mech)
{
	switch (mech != NULL ? sasl_mech_of(mech, strlen(mech)) : 0) {
	case AUTH_MECH_LOGIN:
		return MECH_LOGIN;
	case AUTH_MECH_OAUTHBEARER:
		return MECH_OAUTHBEARER;
	case AUTH_MECH_XOAUTH2:
		return MECH_XOAUTH2;
	default:
		return MECH_PLAIN;
	}
}

/* ... and as the back ends and metrics spell it ("plain", ...). */
static const char *
session_mech_name(const char *mech)
{
	return metrics_label(METRICS_LABEL_MECH, session_mech_index(mech));
}

/* Tell the client; a failure that earned a ban also ends the session. */
static void
answer_auth(struct session *s, struct auth_request *req)
{
	char text[400];

	smtp_auth_answer_status(&s->smtp,
				req->ok	    ? SMTP_AUTH_OK
				: req->temp ? SMTP_AUTH_TEMP
					    : SMTP_AUTH_FAIL,
				req->login, req->reply, req->oauth_status);
	/* Not req->ok: a verdict too late, or no memory for the login,
	 * leaves the client unauthenticated. */
	if (s->smtp.authed) {
		session_authed(s);
		/* No credentials from here on: stop wiping (buf_room()
		 * compacts, wiping what the AUTH lines left). */
		buf_room(&s->in);
		s->in.secret = false;
		if (s->ssl != NULL)
			tls_authed(s->ssl);
	}
	free(req);
	s->auth = NULL;
	if (s->pol.banned && s->smtp.state != SMTP_CLOSING) {
		snprintf(text, sizeof(text),
			 "421 4.7.0 %s Too many failed logins, try again "
			 "later",
			 session_config(s)->hostname);
		smtp_shutdown(&s->smtp, text, "ip-banned");
	}
}

/* Log the verdict and answer it, after a pause when policy says so
 * (auth.failure_delay, a login with many failures). */
static void
finish_auth_hold(struct session *s, struct auth_request *req, uint64_t hold)
{
	const char *mech = s->smtp.auth_mech;
	char u[LOG_USER_MAX], lg[LOG_USER_MAX], why[LOG_USER_MAX];

	if (mech != NULL)
		counter_add(
			&s->ring->counters.auth[session_mech_index(
				mech)][req->ok ? AUTH_SUCCESS : AUTH_FAILURE],
			1);

	log_info("auth",
		 " session=%llx client=%s backend=%s login=%s reason=%s "
		 "user=%s mechanism=%s delay_ms=%llu result=%s cache=%s",
		 (unsigned long long)s->id, s->peer_addr,
		 auth_backend_name(s->ring->shared.auth),
		 session_log_user(lg, sizeof(lg),
				  !req->ok	  ? ""
				  : req->login[0] ? req->login
						  : req->user),
		 session_log_user(why, sizeof(why), req->reason),
		 session_log_user(u, sizeof(u), req->user), mech ? mech : "-",
		 (unsigned long long)hold,
		 req->ok     ? "ok"
		 : req->temp ? "tempfail"
			     : "failed",
		 req->cached ? "hit" : "miss");
	/* auth_http's Auth-Wait: the reply waits at least that long. */
	if (!req->ok && req->wait_ms > hold)
		hold = req->wait_ms;
	if (hold > 0) {
		s->auth = req;
		s->auth_delay = true;
		s->deadline_ms = timer_now_ms() + hold;
		return;
	}
	answer_auth(s, req);
}

/* With a cluster, the login's and the network's counts are its: ask
 * first (session_on_cluster() goes on). */
static void
finish_auth(struct session *s, struct auth_request *req)
{
	/* auth_http's Auth-Server/Auth-Port: the session goes to that
	 * server, which must be one of backends.servers (no other address is
	 * ever connected to); one that is not is a temporary failure. */
	if (req->ok && req->server[0] != '\0' &&
	    !session_pin_backend(s, req->server, req->server_port)) {
		session_log(s, LOG_WARN, "auth-server-unknown",
			    " server=%s port=%u detail=\"not in "
			    "backends.servers\"",
			    req->server, req->server_port);
		req->ok = 0;
		req->temp = 1;
		snprintf(req->reason, sizeof(req->reason),
			 "Auth-Server not in backends.servers");
	}
	/* The back end could not say: no failure to count, no pause. */
	if (req->temp) {
		finish_auth_hold(s, req, 0);
		return;
	}
	if (!session_auth_ask(s, req)) {
		s->auth = req;
		return;
	}
	finish_auth_hold(s, req, session_auth_done(s, req));
}

/* The client's facts a back end may pass on (Dovecot's rip, lip). */
static void
auth_facts(struct session *s, struct auth_request *req)
{
	union sockaddr_ip local;
	socklen_t len = sizeof(local);

	snprintf(req->rip, sizeof(req->rip), "%s", s->peer_addr);
	req->rport = s->peer_port;
	req->secured = s->smtp.tls;
	snprintf(req->mech, sizeof(req->mech), "%s",
		 session_mech_name(s->smtp.auth_mech));
	snprintf(req->helo, sizeof(req->helo), "%s", smtp_helo_name(&s->smtp));
	req->attempt = s->smtp.auth_failures + 1;
	if (s->ssl != NULL && s->tls_done) {
		snprintf(req->tls_version, sizeof(req->tls_version), "%s",
			 SSL_get_version(s->ssl));
		snprintf(req->tls_cipher, sizeof(req->tls_cipher), "%s",
			 SSL_get_cipher_name(s->ssl));
	}
	/* The local address only for a back end that passes it on (a
	 * system call per AUTH otherwise spent for nothing). */
	if (strcmp(auth_backend_name(s->ring->shared.auth), "passwd") == 0 ||
	    getsockname(s->fd, (struct sockaddr *)&local, &len) != 0)
		return;
	if (local.sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &local.in.sin_addr, req->lip,
			  sizeof(req->lip));
		req->lport = ntohs(local.in.sin_port);
	} else if (local.sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &local.in6.sin6_addr, req->lip,
			  sizeof(req->lip));
		req->lport = ntohs(local.in6.sin6_port);
	}
}

/* A request for the exchange smtp.c gathered; an OAuth one carries the
 * token and the client's response after it, in the same allocation. */
static struct auth_request *
auth_request_new(const struct sasl_creds *c)
{
	const struct sasl_oauth_exchange *x = c->oauth;
	size_t extra = x != NULL ? x->dec.token_len + 1 + x->b64_len + 1 : 0;
	struct auth_request *req = calloc(1, sizeof(*req) + extra);

	if (req == NULL)
		return NULL;
	memcpy(req->user, c->user, sizeof(req->user));
	if (x == NULL) {
		memcpy(req->pass, c->pass, sizeof(req->pass));
		req->refuse = c->pass_too_long;
		return req;
	}
	req->token = (char *)(req + 1);
	req->token_len = x->dec.token_len;
	memcpy(req->token, x->dec.token, x->dec.token_len + 1);
	req->oauth_resp = req->token + req->token_len + 1;
	req->oauth_resp_len = x->b64_len;
	memcpy(req->oauth_resp, x->b64, x->b64_len + 1);
	return req;
}

static void
start_auth(struct session *s)
{
	struct auth_request *req = auth_request_new(s->smtp.creds);

	if (req == NULL) {
		smtp_auth_result(&s->smtp, false);
		return;
	}
	OPENSSL_cleanse(s->smtp.creds->pass, sizeof(s->smtp.creds->pass));
	if (s->smtp.creds->oauth != NULL) {
		/* The request has them now; smtp.c keeps only the fact that
		 * this is an OAuth exchange (for the verdict's reply). */
		struct sasl_oauth_exchange *x = s->smtp.creds->oauth;

		OPENSSL_cleanse(&x->dec, sizeof(x->dec));
		OPENSSL_cleanse(x->b64, x->b64_len);
	}
	req->db = s->gen->users; /* the session holds its generation */
	auth_facts(s, req);
	/* A returning client is answered here; only real hash work goes
	 * to the pool (two thread hops and a wake-up saved per login). */
	if (auth_backend_check_cached(s->ring->shared.auth, req)) {
		finish_auth(s, req);
		return;
	}
	req->owner = s;
	req->cookie = (uint64_t)(uintptr_t)s->ring;
	req->done = s->ring->auth_done;
	s->auth = req;
	s->inflight++;
	auth_backend_submit(s->ring->shared.auth, req);
}

void
session_on_auth(struct session *s, struct auth_request *req)
{
	s->auth = NULL;
	if (s->dead) {
		free(req);
		return;
	}
	finish_auth(s, req);
	session_run(s);
}

void
session_on_cluster(struct session *s, struct cluster_request *req)
{
	s->creq = NULL;
	if (s->dead) {
		free(req);
		return;
	}
	if (req->op == CLUSTER_LOGIN) {
		struct auth_request *areq = s->auth;

		s->auth = NULL;
		finish_auth_hold(s, areq, session_auth_answered(s, areq, req));
	} else if (session_take_answered(s, req) && s->be == NULL) {
		session_open_backend(s);
	}
	free(req);
	session_run(s);
}

static void
session_apply(struct session *s, enum smtp_action act)
{
	switch (act) {
	case SMTP_ACT_NONE:
	case SMTP_ACT_DATA:
		break;
	case SMTP_ACT_STARTTLS:
		session_start_tls(s);
		break;
	case SMTP_ACT_AUTH:
		start_auth(s);
		break;
	case SMTP_ACT_FORWARD:
		/* Sent by session_backend_news() once a connection is ready. */
		if (session_may_forward(s) && s->be == NULL)
			session_open_backend(s);
		break;
	case SMTP_ACT_CLOSE:
		s->closing = true;
		break;
	}
}

/* Closing starts, however it was asked for (a command, a timer, a
 * shutdown): what is queued gets flush_ms to leave, TLS its close_notify
 * after it. */
static void
close_begin(struct session *s, uint64_t flush_ms)
{
	if (s->close_started)
		return;
	s->close_started = true;
	s->closing = true;
	s->deadline_ms = timer_now_ms() + flush_ms;
	if (s->ssl != NULL && s->tls_done) {
		/* The last reply, then close_notify: one send. */
		write_client(s);
		SSL_shutdown(s->ssl);
	}
}

/* The next deadline for what the session is waiting for. */
static uint64_t
session_deadline(const struct session *s)
{
	const struct config *cfg = session_config(s);

	if (s->closing || s->auth_delay || (s->ssl != NULL && !s->tls_done))
		return s->deadline_ms;
	if (s->be != NULL && backend_waiting(s->be))
		return backend_deadline(s->be);
	if (s->smtp.state == SMTP_AUTH_CHECK)
		return TIMER_NONE; /* the pool always answers */
	if (s->smtp.state == SMTP_DATA || s->smtp.state == SMTP_CHUNK) {
		/* The client's bytes, or the backend taking them: either
		 * shows the message moving. */
		uint64_t moved = s->last_read_ms;

		if (s->be != NULL && backend_sent_ms(s->be) > moved)
			moved = backend_sent_ms(s->be);
		return moved + cfg->data_timeout_ms;
	}
	/* The whole command, not the gap between two bytes: a client
	 * that trickles a line never finishes it in time. */
	return s->cmd_since_ms + cfg->command_timeout_ms;
}

/* The client's turn begins with every line it completes and every reply
 * we write; bytes that do not finish a line do not start a new one. */
static void
note_progress(struct session *s)
{
	if (s->smtp.progress == s->progress_seen)
		return;
	s->progress_seen = s->smtp.progress;
	s->cmd_since_ms = timer_now_ms();
}

/* smtp.c ended a transaction the backend still holds (EHLO in it, a
 * refused BDAT): a new connection for the next one. */
static void
drop_backend_if_asked(struct session *s)
{
	if (s->smtp.drop_backend) {
		s->smtp.drop_backend = false;
		backend_close(&s->be, true);
	}
}

void
session_run(struct session *s)
{
	/* Run while input is being used: TLS may hold more plaintext than
	 * s->in had room for, and only a pass through session_tls_read() gets
	 * it. */
	while (!s->dead && !s->closing) {
		size_t before;

		enum smtp_state was = s->smtp.state;

		session_backend_news(s);
		session_settle(s);
		if (in_place(s)) {
			int r = relay_in_place(s);

			if (r < 0)
				return;
			if (r > 0)
				continue; /* the message ended */
		}
		if (s->ssl != NULL && !session_tls_read(s))
			return;
		if (s->closing || (s->ssl != NULL && !s->tls_done))
			break;
		before = buf_used(&s->in);
		if (s->smtp.state == SMTP_DATA || s->smtp.state == SMTP_CHUNK) {
			if (relay(s))
				continue; /* the message or chunk ended */
		} else {
			if (tls_backlog(s))
				break; /* the send completion runs us again */
			enum smtp_action act = smtp_input(&s->smtp, &s->in);
			/* Before a pipelined command after the one that
			 * asked for it goes to the old connection. */
			drop_backend_if_asked(s);
			if (act != SMTP_ACT_NONE) {
				session_apply(s, act);
				if (act == SMTP_ACT_STARTTLS)
					break; /* wait for the handshake */
				continue;
			}
		}
		if (buf_used(&s->in) == before && s->smtp.state == was)
			break; /* nothing used: wait for I/O */
	}
	if (s->dead)
		return;
	session_settle(s);
	drop_backend_if_asked(s);
	if (s->closing)
		close_begin(s, CLOSE_FLUSH_MS);
	flush_client(s);
	if (s->closing && !s->sending && buf_used(&s->wire) == 0) {
		session_close(s, s->smtp.close_reason ? s->smtp.close_reason
						      : "closed");
		return;
	}
	arm_client_recv(s);
	note_progress(s);
	if (timer_set(&s->ring->timers, &s->timer, session_deadline(s)) != 0)
		session_close(s, "out-of-memory");
}

void
session_on_timer(struct session *s)
{
	const struct config *cfg = session_config(s);
	char text[400];

	if (s->dead)
		return;
	if (s->auth_delay) {
		s->auth_delay = false;
		answer_auth(s, s->auth);
		session_run(s);
		return;
	}
	if (s->closing) {
		session_close(s, "close-timeout");
		return;
	}
	if (s->ssl != NULL && !s->tls_done) {
		session_log(s, LOG_INFO, "tls-failed",
			    " step=handshake error=timeout");
		counter_add(
			&s->ring->counters.limits[LIMIT_HIT_HANDSHAKE_TIMEOUT],
			1);
		session_close(s, "tls-handshake-timeout");
		return;
	}
	if (s->be != NULL && backend_waiting(s->be)) {
		backend_on_timer(s->be);
		session_run(s);
		return;
	}
	if (s->smtp.state == SMTP_DATA || s->smtp.state == SMTP_CHUNK)
		backend_close(&s->be, false); /* never send a partial end */
	counter_add(
		&s->ring->counters.limits[s->smtp.state == SMTP_DATA
						  ? LIMIT_HIT_DATA_TIMEOUT
						  : LIMIT_HIT_COMMAND_TIMEOUT],
		1);
	session_log(s, LOG_INFO, "timeout", " state=%s",
		    s->smtp.state == SMTP_DATA	  ? "data"
		    : s->smtp.state == SMTP_CHUNK ? "bdat"
						  : "command");
	snprintf(text, sizeof(text), "421 4.4.2 %s Error: timeout exceeded",
		 cfg->hostname);
	smtp_shutdown(&s->smtp, text, "client-timeout");
	s->closing = true;
	session_run(s);
}

/* Stop request: end the session now with 421. */
void
session_shutdown(struct session *s)
{
	char text[400];

	if (s->dead || s->closing)
		return;
	if (s->smtp.state == SMTP_DATA || s->smtp.state == SMTP_CHUNK)
		backend_close(&s->be, false);
	snprintf(text, sizeof(text),
		 "421 4.3.2 %s Service shutting down, try again later",
		 session_config(s)->hostname);
	if (s->ssl == NULL || s->tls_done)
		smtp_shutdown(&s->smtp, text, "shutdown");
	s->smtp.close_reason = "shutdown";
	/* Past the drain deadline: a client that does not read its 421
	 * does not hold the exit up for long. */
	close_begin(s, SHUTDOWN_FLUSH_MS);
	session_run(s);
}

void
session_drain(struct session *s)
{
	if (s->dead || s->closing)
		return;
	if (s->ssl != NULL && !s->tls_done) {
		session_shutdown(s); /* mid-handshake: nothing to finish */
		return;
	}
	smtp_drain(&s->smtp);
	session_run(s);
}

void
session_describe(const struct session *s, FILE *f, bool json)
{
	char u[LOG_USER_MAX], kv[LOG_USER_MAX + 512];
	char obj[2 * (LOG_USER_MAX + 512)];
	const char *tls = s->tls_done ? SSL_get_version(s->ssl) : "none";
	const char *state =
		s->closing ? "closing" : smtp_state_name(s->smtp.state);
	const char *user = smtp_user(&s->smtp);
	unsigned long long age = timer_now_ms() - s->started_ms;
	int n;

	if (!json) {
		fprintf(f, "%llx %s:%u %s %s %s %s messages=%u age=%llus\n",
			(unsigned long long)s->id, s->peer_addr, s->peer_port,
			s->listener->addr.text,
			session_log_user(u, sizeof(u), user), state, tls,
			s->smtp.messages, age / 1000);
		return;
	}
	/* The login is the client's bytes: quoted here, escaped for JSON by
	 * the same code that writes JSON log lines. */
	n = snprintf(kv, sizeof(kv),
		     "id=%llx client=%s port=%u listener=%s user=%s state=%s "
		     "tls=%s messages=%u age_ms=%llu generation=%u",
		     (unsigned long long)s->id, s->peer_addr, s->peer_port,
		     s->listener->addr.text,
		     log_quote(u, sizeof(u), user, strlen(user)), state, tls,
		     s->smtp.messages, age, s->gen->id);
	if (n > 0 && (size_t)n < sizeof(kv)) {
		fwrite(obj, 1, log_kv_to_json(obj, sizeof(obj), kv, (size_t)n),
		       f);
		fputc('\n', f);
	}
}

/* ---------------------------------------------------------------------
 * End
 */

/* The session-end line's outcome, coarser than its reason: ok (QUIT, or
 * the client hung up), refused (policy at connect: bans, connection
 * limits, listener lists), timeout, tls-failed, shutdown (a drain: told
 * 421 when idle, "drain", or cut at the deadline, "shutdown"), or error
 * (anything else: too many errors, a send or receive error, no memory). */
static enum counter_outcome
session_outcome(const struct session *s, const char *reason)
{
	if (strcmp(reason, "shutdown") == 0 || strcmp(reason, "drain") == 0)
		return OUTCOME_SHUTDOWN;
	if (strstr(reason, "timeout") != NULL)
		return OUTCOME_TIMEOUT;
	if (strncmp(reason, "tls-", 4) == 0)
		return OUTCOME_TLS_FAILED;
	if (strcmp(reason, "quit") == 0 || strcmp(reason, "client-closed") == 0)
		return OUTCOME_OK;
	/* policy.c's reasons: ip-banned, ip-connection-rate, ip-concurrency,
	 * ip-table-full, banned, listener-denied. */
	if (s->pol.banned || strncmp(reason, "ip-", 3) == 0 ||
	    strcmp(reason, "banned") == 0 ||
	    strcmp(reason, "listener-denied") == 0)
		return OUTCOME_REFUSED;
	return OUTCOME_ERROR;
}

/* The refusal kind of a session refused by policy (session_outcome()'s
 * reasons). */
static enum counter_refusal
refusal_of(const struct session *s, const char *reason)
{
	static const struct {
		const char *reason;
		enum counter_refusal kind;
	} kinds[] = {
		{"ip-banned", REFUSAL_IP_BANNED},
		{"banned", REFUSAL_IP_BANNED},
		{"ip-connection-rate", REFUSAL_IP_RATE},
		{"ip-concurrency", REFUSAL_IP_CONCURRENCY},
		{"ip-table-full", REFUSAL_IP_TABLE_FULL},
		{"listener-denied", REFUSAL_LISTENER_DENIED},
	};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(*kinds); i++)
		if (strcmp(reason, kinds[i].reason) == 0)
			return kinds[i].kind;
	return s->pol.banned ? REFUSAL_IP_BANNED : REFUSAL_OTHER;
}

/* What the session adds to its worker's counters as it ends. */
static void
count_end(struct session *s, enum counter_outcome outcome, const char *reason)
{
	static const enum counter_limit smtp_kinds[SMTP_LIMIT_KINDS] = {
		[SMTP_LIMIT_LINE] = LIMIT_HIT_LINE_LENGTH,
		[SMTP_LIMIT_RECIPIENTS] = LIMIT_HIT_RECIPIENTS_PER_MESSAGE,
		[SMTP_LIMIT_SIZE] = LIMIT_HIT_MESSAGE_SIZE,
		[SMTP_LIMIT_ERRORS] = LIMIT_HIT_MAX_ERRORS,
		[SMTP_LIMIT_AUTH_FAILURES] = LIMIT_HIT_AUTH_FAILURES,
	};
	struct worker_counters *c = &s->ring->counters;

	counter_add(&c->sessions[s->listener_slot][outcome], 1);
	counter_add(&c->open[s->listener_slot], ~0ULL); /* one fewer */
	if (outcome == OUTCOME_REFUSED)
		counter_add(
			&c->refusals[s->listener_slot][refusal_of(s, reason)],
			1);
	/* A handshake the client began and that never finished (not a
	 * port probe that closed at once, nor one a drain cut). */
	if (s->ssl != NULL && s->tls_begun && !s->tls_done &&
	    outcome != OUTCOME_SHUTDOWN)
		counter_add(&c->tls_failed[s->tls_agreed], 1);
	for (int k = 0; k < SMTP_LIMIT_KINDS; k++)
		if (s->smtp.limit_hits[k] > 0)
			counter_add(&c->limits[smtp_kinds[k]],
				    s->smtp.limit_hits[k]);
}

/* The outcome names of the session-end line, by enum counter_outcome. */
static const char *const outcome_names[OUTCOME_COUNT] = {
	[OUTCOME_OK] = "ok",
	[OUTCOME_REFUSED] = "refused",
	[OUTCOME_TIMEOUT] = "timeout",
	[OUTCOME_TLS_FAILED] = "tls-failed",
	[OUTCOME_SHUTDOWN] = "shutdown",
	[OUTCOME_ERROR] = "error",
};

void
session_close(struct session *s, const char *reason)
{
	struct io_uring_sqe *sqe;
	enum counter_outcome outcome;

	if (s->dead)
		return;
	s->dead = true;
	outcome = session_outcome(s, reason);
	count_end(s, outcome, reason);
	session_log(s, LOG_INFO, "session-end",
		    " port=%u listener=%s tls=%s cipher=%s messages=%u "
		    "recipients=%u bytes=%llu backend=%s errors=%u "
		    "auth_failures=%u duration_ms=%llu outcome=%s reason=%s",
		    s->peer_port, s->listener->addr.text,
		    s->tls_done ? SSL_get_version(s->ssl) : "no",
		    s->tls_done ? SSL_get_cipher_name(s->ssl) : "-",
		    s->smtp.messages, s->recipients,
		    (unsigned long long)s->bytes,
		    s->backend_used ? s->backend_used : "-", s->smtp.errors,
		    s->smtp.auth_failures,
		    (unsigned long long)(timer_now_ms() - s->started_ms),
		    outcome_names[outcome], reason);
	backend_close(&s->be, true);
	session_policy_end(s);
	timer_set(&s->ring->timers, &s->timer, TIMER_NONE);
	unlink_session(s);
	if (s->recv_armed || s->sending) {
		/* Stop what is in flight; completions then free us. */
		sqe = ring_sqe(s->ring);
		io_uring_prep_cancel_fd(sqe, s->fd, IORING_ASYNC_CANCEL_ALL);
		ring_prep(sqe, NULL, OP_IGNORE);
	}
	if (s->inflight == 0 && !s->wake.queued)
		session_free(s);
}

void
session_release(struct session *s)
{
	/* An invariant, not input: a completion without its reference. */
	if (s->inflight == 0)
		abort();
	if (--s->inflight == 0 && s->dead && !s->wake.queued)
		session_free(s);
}

void
session_woken(struct session *s)
{
	if (!s->dead)
		session_run(s);
	else if (s->inflight == 0)
		session_free(s);
}

static void
session_free(struct session *s)
{
	if (s->fd >= 0)
		close(s->fd);
	SSL_free(s->ssl);
	free(s->auth);
	smtp_free(&s->smtp);
	buf_free(&s->in);
	buf_free(&s->tio.held);
	buf_free(&s->wire);
	generation_drop(s->gen);
	s->ring->objects--;
	free(s);
}
