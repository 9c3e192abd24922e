/*
 * backend.c - the session's connection to a backend MTA.
 *
 * Opened at the first command that needs it (MAIL after AUTH), on the
 * worker's ring: connect, read the 220, EHLO, then XCLIENT with the
 * client's identity when the backend is configured for it (xclient.c:
 * NAME, ADDR, PORT, DESTADDR, DESTPORT, PROTO, HELO, LOGIN as offered;
 * the backend answers with a fresh 220, so EHLO again),
 * then the client's command.  Any failure before the client's command has
 * been answered moves on to the next backend; when none is left the client
 * gets 451 4.4.1.  After that, a lost backend costs the client its current
 * transaction (451 4.4.2) and nothing else: the next MAIL reconnects.
 *
 * The client gets 250 for a message only when the backend said 2xx for it:
 * the verdict after the end of data is the backend's own reply.
 *
 * Which server: pool.c (backends.balance, health).  Handshake failures and
 * timeouts count toward the server's fall (passive health); a completed
 * handshake brings back a server that was retried after down_time.
 *
 * Config keys: backends.servers (address, identity), backends.*_timeout,
 * hostname (our EHLO name).
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

#include "lib/log.h"
#include "io/backend_pool.h"
#include "smtp/proxy_v2.h"
#include "io/session.h"
#include "io/tls.h"
#include "io/worker.h"
#include "smtp/xclient.h"

static void backend_connect(struct session *s, size_t server, uint64_t tried,
			    unsigned attempts);

static const struct config_backend *
server_of(const struct session *s, const struct backend_conn *be)
{
	return &session_config(s)->backends[be->server];
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
	worker_object_freed(be->w);
	free(be);
}

void
backend_release(struct backend_conn *be)
{
	if (--be->refs == 0 && be->s == NULL && !be->sending)
		backend_free(be);
}

/* Detach from the session.  Polite: send QUIT first if the backend is
 * between transactions; otherwise cut the connection so a partial message
 * is never completed. */
void
backend_close(struct session *s, bool polite)
{
	struct backend_conn *be = s->be;
	if (be == NULL)
		return;
	s->be = NULL;
	be->s = NULL;
	if (polite && be->state == BE_READY && !be->quit_sent &&
	    buf_append_all(&be->out, "QUIT\r\n", 6) == 0) {
		be->quit_sent = true;
		backend_send(be);
	} else if (be->fd >= 0) {
		/* shutdown() wakes what is in flight; the fd stays open
		 * until the last completion, so it cannot be reused early. */
		shutdown(be->fd, SHUT_RDWR);
	}
	if (be->refs == 0) {
		backend_free(be);
		return;
	}
	if (be->recv_armed && !be->quit_sent) {
		struct io_uring_sqe *sqe = worker_sqe(be->w);
		io_uring_prep_cancel_fd(sqe, be->fd, IORING_ASYNC_CANCEL_ALL);
		worker_prep(sqe, NULL, OP_IGNORE);
	}
}

bool
backend_waiting(const struct session *s)
{
	if (s->be == NULL)
		return false;
	switch (s->be->state) {
	case BE_CONNECTING:
	case BE_GREETING:
	case BE_EHLO:
	case BE_STARTTLS:
	case BE_TLS:
	case BE_XCLIENT:
	case BE_EHLO_AGAIN:
	case BE_WAIT_REPLY:
	case BE_WAIT_DATA_END:
		return true;
	default:
		return false;
	}
}

/* ---------------------------------------------------------------------
 * I/O
 */

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

void
backend_send(struct backend_conn *be)
{
	struct io_uring_sqe *sqe;
	struct buf *src = be->ssl != NULL ? &be->wire : &be->out;

	if (be->sending || be->fd < 0 || be->state == BE_CONNECTING)
		return;
	if (be->ssl != NULL)
		tls_pump_out(be);
	if (buf_used(src) == 0)
		return;
	sqe = worker_sqe(be->w);
	src->pinned = true;
	io_uring_prep_send(sqe, be->fd, buf_head(src), buf_used(src),
			   MSG_NOSIGNAL);
	worker_prep(sqe, be, OP_BACKEND_SEND);
	be->sending = true;
	be->send_wire = be->ssl != NULL;
	be->refs++;
}

static void
arm_recv(struct session *s)
{
	struct backend_conn *be = s->be;
	struct io_uring_sqe *sqe;

	if (be->recv_armed || buf_room(&be->in) < RECV_BUF_SIZE)
		return;
	sqe = worker_sqe(s->w);
	io_uring_prep_recv(sqe, be->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	worker_prep(sqe, be, OP_BACKEND_RECV);
	be->recv_armed = true;
	be->refs++;
}

static void
set_deadline(struct session *s, uint64_t ms)
{
	s->be->deadline = timer_now_ms() + ms;
}

static void
send_line(struct session *s, const char *line, size_t len)
{
	if (buf_append_all(&s->be->out, line, len) != 0) {
		log_error("backend-overflow", " session=%llx",
			  (unsigned long long)s->id);
		return;
	}
	backend_send(s->be);
}

/* ---------------------------------------------------------------------
 * Failure handling
 */

void
backend_health_log(const struct config_backend *b, int change,
		   const char *source, const char *reason)
{
	if (change == BACKEND_POOL_WENT_DOWN)
		log_warn("backend-down", " backend=%s source=%s reason=\"%s\"",
			 b->addr.text, source, reason);
	else if (change == BACKEND_POOL_WENT_UP)
		log_info("backend-up", " backend=%s source=%s reason=\"%s\"",
			 b->addr.text, source, reason);
}

/* A failure that says the server is unwell counts toward its fall. */
static void
mark_failed(struct session *s, size_t server, const char *step,
	    const char *detail)
{
	char reason[160];
	enum backend_pool_change c = backend_pool_failed(
		s->gen->backend_pool, server, timer_now_ms());

	snprintf(reason, sizeof(reason), "%s: %s", step, detail);
	backend_health_log(&session_config(s)->backends[server], c, "session",
			   reason);
}

/* Open a connection to the next server that may take one, or answer
 * 451 4.4.1 when none is left. */
static void
connect_next(struct session *s, uint64_t tried, unsigned attempts)
{
	size_t next = worker_pick_backend(s->w, s, smtp_user(&s->smtp), tried);

	if (next != BACKEND_POOL_NONE) {
		backend_connect(s, next, tried, attempts);
		return;
	}
	log_warn("backend-unavailable",
		 " session=%llx tried=%u detail=\"no backend left to try\"",
		 (unsigned long long)s->id, attempts);
	smtp_backend_failed(&s->smtp, SMTP_BACKEND_UNAVAILABLE);
}

/* Before the client's command was answered: try the next backend. */
static void
failover(struct session *s, const char *step, const char *detail)
{
	struct backend_conn *be = s->be;
	size_t server = be->server;
	unsigned attempts = be->attempts;
	uint64_t tried = be->tried;

	log_warn("backend-failed",
		 " session=%llx backend=%s step=%s error=\"%s\" attempt=%u",
		 (unsigned long long)s->id, server_of(s, be)->addr.text, step,
		 detail, attempts);
	mark_failed(s, server, step, detail);
	backend_close(s, false);
	connect_next(s, tried, attempts);
	session_run(s);
}

/* After it was in use: the current transaction is lost. */
static void
lost(struct session *s, const char *detail)
{
	log_warn("backend-lost",
		 " session=%llx backend=%s error=\"%s\" state=%d",
		 (unsigned long long)s->id, server_of(s, s->be)->addr.text,
		 detail, (int)s->be->state);
	backend_close(s, false);
	if (s->smtp.state == SMTP_DATA || s->smtp.state == SMTP_CHUNK)
		s->sink = SINK_LOST; /* 451 when the client's data ends */
	else if (s->smtp.state == SMTP_BACKEND ||
		 s->smtp.state == SMTP_DATA_END || s->smtp.in_mail)
		smtp_backend_failed(&s->smtp, SMTP_BACKEND_LOST);
	session_run(s);
}

static bool
in_handshake(const struct backend_conn *be)
{
	return be->state >= BE_CONNECTING && be->state <= BE_EHLO_AGAIN;
}

static void
broken(struct session *s, const char *step, const char *detail)
{
	if (in_handshake(s->be))
		failover(s, step, detail);
	else
		lost(s, detail);
}

void
backend_on_timer(struct session *s)
{
	if (in_handshake(s->be)) {
		failover(s, "timeout", "no answer in time");
		return;
	}
	/* Waiting for the verdict after the data, the backend may still
	 * deliver and the client will retry: RFC 1047's duplicate.
	 * backends.data_timeout is long to keep that rare. */
	log_warn("backend-timeout", " session=%llx backend=%s state=%s",
		 (unsigned long long)s->id, server_of(s, s->be)->addr.text,
		 s->be->state == BE_WAIT_DATA_END ? "wait-data-end"
						  : "wait-reply");
	mark_failed(s, s->be->server, "timeout", "no reply in time");
	backend_close(s, false);
	smtp_backend_failed(&s->smtp, SMTP_BACKEND_TIMEOUT);
	session_run(s);
}

/* ---------------------------------------------------------------------
 * Handshake
 */

/* EHLO with our name, or, after XCLIENT, with the client's: the EHLO
 * that follows XCLIENT sets the name the backend's HELO checks and logs
 * see (Postfix takes it over XCLIENT's HELO), as nginx's mail proxy does.
 * smtp.c let the name through only without spaces or control bytes. */
static void
send_ehlo(struct session *s, bool as_client)
{
	char line[300];
	const char *name = as_client && s->smtp.helo_name != NULL
				   ? s->smtp.helo_name
				   : session_config(s)->hostname;
	int n = snprintf(line, sizeof(line), "EHLO %s\r\n", name);

	send_line(s, line, (size_t)n);
}

/* The client's facts, as far as this backend's XCLIENT takes them. */
static void
send_xclient(struct session *s)
{
	struct sockaddr_storage local = {.ss_family = AF_UNSPEC};
	socklen_t llen = sizeof(local);
	struct xclient_info info = {
		.client = &s->peer.sa,
		.dest = (const struct sockaddr *)&local,
		.helo = smtp_helo_name(&s->smtp),
		.login = smtp_user(&s->smtp),
	};
	char line[XCLIENT_LINE_MAX + 1];
	ssize_t n;

	/* The listener's address, asked only of a backend that takes it
	 * (sessions keep no copy: docs/PERFORMANCE.md). */
	if ((xclient_offers(s->be->xclient_attrs, "DESTADDR") ||
	     xclient_offers(s->be->xclient_attrs, "DESTPORT")) &&
	    getsockname(s->fd, (struct sockaddr *)&local, &llen) != 0)
		local.ss_family = AF_UNSPEC;
	n = xclient_line(s->be->xclient_attrs, &info, line, sizeof(line));

	if (n < 0) {
		failover(s, "xclient", "XCLIENT line too long");
		return;
	}
	send_line(s, line, (size_t)n);
	s->be->state = BE_XCLIENT;
}

/* Ready for client commands: send the one that is waiting, if any. */
static void
ready(struct session *s)
{
	struct backend_conn *be = s->be;

	be->state = BE_READY;
	be->attempts = 0;
	if (s->smtp.state != SMTP_BACKEND)
		return;
	if (s->smtp.fwd == SMTP_FWD_BDAT) {
		/* No reply before the chunk: it follows the line at once,
		 * and the reply is waited for once it has all gone. */
		be->state = BE_DATA;
		if (session_chunk_begin(s))
			send_line(s, s->smtp.fwd_line, s->smtp.fwd_len);
		return;
	}
	send_line(s, s->smtp.fwd_line, s->smtp.fwd_len);
	be->state = BE_WAIT_REPLY;
	set_deadline(s, session_config(s)->backend_reply_timeout_ms);
}

/* After STARTTLS's 220: anything the server sent after it is dropped
 * (command injection, CVE-2011-0411 class), then the handshake. */
static void
start_tls(struct session *s)
{
	struct backend_conn *be = s->be;

	be->ssl = tls_backend_ssl_new(s->gen->backend_tls[be->server],
				      server_of(s, be));
	if (be->ssl == NULL) {
		failover(s, "starttls", "cannot create the TLS session");
		return;
	}
	buf_clear(&be->in);
	be->state = BE_TLS;
	SSL_do_handshake(be->ssl); /* the ClientHello */
	backend_send(be);
	set_deadline(s, session_config(s)->backend_reply_timeout_ms);
}

/* Handshake bytes arrived: go on, or fail over (a certificate that does
 * not verify ends here). */
static void
tls_handshake(struct session *s)
{
	struct backend_conn *be = s->be;
	char e[256];
	int r = SSL_do_handshake(be->ssl);

	if (r != 1) {
		if (SSL_get_error(be->ssl, r) == SSL_ERROR_WANT_READ) {
			backend_send(be);
			return;
		}
		failover(s, "tls", tls_error_string(e, sizeof(e)));
		return;
	}
	be->tls_up = true;
	log_debug("backend-tls",
		  " session=%llx backend=%s version=%s cipher=%s",
		  (unsigned long long)s->id, server_of(s, be)->addr.text,
		  SSL_get_version(be->ssl), SSL_get_cipher_name(be->ssl));
	send_ehlo(s, false);
	be->state = BE_EHLO;
	set_deadline(s, session_config(s)->backend_reply_timeout_ms);
}

/* Decrypt what the read BIO holds into be->in.  Returns false when the
 * connection broke (the session has been told). */
static bool
tls_read(struct session *s)
{
	struct backend_conn *be = s->be;
	char e[256];

	if (be->state == BE_TLS) {
		tls_handshake(s);
		if (s->be != be || be->state == BE_TLS)
			return false;
	}
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
		broken(s, "tls",
		       err == SSL_ERROR_ZERO_RETURN
			       ? "connection closed"
			       : tls_error_string(e, sizeof(e)));
		return false;
	}
	return true;
}

/* The server works: a down one (retried after down_time) is up again.
 * r is its last EHLO reply: what it offers, for this connection and for
 * the pool's view of the servers. */
static void
handshake_done(struct session *s, const struct smtp_reply *r)
{
	size_t server = s->be->server;
	unsigned ext = backend_pool_ehlo_caps(r, &s->be->size_max);

	backend_pool_learn(s->gen->backend_pool, server, ext, s->be->size_max);
	counter_observe(&worker_stats(s->w)->backend_connect[backend_pool_slot(
				s->gen->backend_pool, server)],
			timer_now_us() - s->be->began_us);
	smtp_backend_ready(&s->smtp, s->be->size_max,
			   (ext & BACKEND_POOL_EXT_CHUNKING) != 0);
	backend_health_log(&session_config(s)->backends[server],
			   backend_pool_succeeded(s->gen->backend_pool, server,
						  timer_now_ms()),
			   "session", "handshake completed");
	ready(s);
}

static void
handle_handshake_reply(struct session *s, const struct smtp_reply *r)
{
	const struct config *cfg = session_config(s);
	struct backend_conn *be = s->be;
	const char *args;
	size_t alen;
	char detail[64];

	snprintf(detail, sizeof(detail), "unexpected reply %d", r->code);
	switch (be->state) {
	case BE_GREETING:
		if (r->code != 220) {
			failover(s, "greeting", detail);
			return;
		}
		send_ehlo(s, false);
		be->state = BE_EHLO;
		break;
	case BE_EHLO:
		if (r->code != 250) {
			failover(s, "ehlo", detail);
			return;
		}
		if (server_of(s, be)->tls != BACKEND_TLS_NONE &&
		    be->ssl == NULL) {
			/* A server that should do TLS but does not is down
			 * for us: never fall back to plaintext. */
			if (!smtp_reply_has_ext(r, "STARTTLS", NULL, NULL)) {
				failover(s, "starttls",
					 "backend does not offer STARTTLS");
				return;
			}
			send_line(s, "STARTTLS\r\n", 10);
			be->state = BE_STARTTLS;
			break;
		}
		if (server_of(s, be)->identity != IDENTITY_XCLIENT) {
			handshake_done(s, r);
			return;
		}
		if (!smtp_reply_has_ext(r, "XCLIENT", &args, &alen)) {
			failover(s, "xclient",
				 "backend does not offer XCLIENT");
			return;
		}
		if (alen >= sizeof(be->xclient_attrs))
			alen = sizeof(be->xclient_attrs) - 1;
		memcpy(be->xclient_attrs, args, alen);
		be->xclient_attrs[alen] = '\0';
		send_xclient(s);
		if (s->be != be)
			return; /* failed over */
		break;
	case BE_STARTTLS:
		if (r->code != 220) {
			failover(s, "starttls", detail);
			return;
		}
		start_tls(s);
		return;
	case BE_XCLIENT:
		/* Postfix answers with a fresh 220 greeting; smtp-sink and
		 * older servers with 250.  Either way, EHLO again. */
		if (r->code != 220 && r->code != 250) {
			failover(s, "xclient", detail);
			return;
		}
		send_ehlo(s, true);
		be->state = BE_EHLO_AGAIN;
		break;
	case BE_EHLO_AGAIN:
		if (r->code != 250) {
			failover(s, "ehlo", detail);
			return;
		}
		handshake_done(s, r);
		return;
	default:
		return;
	}
	set_deadline(s, cfg->backend_reply_timeout_ms);
}

/* ---------------------------------------------------------------------
 * Replies
 */

static void
handle_reply(struct session *s, const struct smtp_reply *r)
{
	char u[LOG_USER_MAX];
	struct backend_conn *be = s->be;
	const char *lines[SMTP_REPLY_LINES_MAX];
	size_t lens[SMTP_REPLY_LINES_MAX];
	enum smtp_action act;
	bool data_end = be->state == BE_WAIT_DATA_END;
	unsigned rcpts = s->smtp.rcpts; /* the reply may reset it */

	log_debug("backend-reply", " session=%llx backend=%s code=%d",
		  (unsigned long long)s->id, server_of(s, be)->addr.text,
		  r->code);
	if (in_handshake(be)) {
		handle_handshake_reply(s, r);
		return;
	}
	if (be->state != BE_WAIT_REPLY && be->state != BE_WAIT_DATA_END) {
		/* Unsolicited, e.g. "421 timeout" while idle. */
		lost(s, "unsolicited reply");
		return;
	}
	if (r->code == 421) {
		lost(s, "backend said 421");
		return;
	}
	for (size_t i = 0; i < r->nlines; i++) {
		lines[i] = r->raw + r->text_off[i];
		lens[i] = r->text_len[i];
	}
	be->state = BE_READY;
	act = smtp_backend_reply(&s->smtp, r->code, lines, lens, r->nlines);
	s->backend_used = server_of(s, be)->addr.text;
	if (data_end && r->code >= 200 && r->code < 300) {
		s->recipients += rcpts;
		s->bytes += s->ds.size;
		counter_add(&worker_stats(s->w)->messages, 1);
	}
	if (data_end) {
		counter_observe(
			&worker_stats(s->w)
				 ->backend_transaction[backend_pool_slot(
					 be->gen->backend_pool, be->server)],
			timer_now_us() - be->began_us);
		log_info("message",
			 " session=%llx client=%s user=%s backend=%s size=%llu "
			 "result=%d",
			 (unsigned long long)s->id, s->peer_addr,
			 session_log_user(u, sizeof(u), smtp_user(&s->smtp)),
			 server_of(s, be)->addr.text,
			 (unsigned long long)s->ds.size, r->code);
	}
	if (act == SMTP_ACT_DATA) {
		be->state = BE_DATA;
		data_scan_init(&s->ds);
		s->sink = SINK_NONE;
	}
	session_run(s);
}

void
backend_on_recv(struct backend_conn *be, int res, unsigned flags)
{
	struct session *s = be->s;
	struct worker *w = be->w;
	bool have_buf = (flags & IORING_CQE_F_BUFFER) != 0;
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	char detail[64];
	unsigned rounds = 0;

	be->recv_armed = false;
	if (s == NULL) {
		/* Detached: the answer to our QUIT, or the close. */
		if (have_buf)
			worker_recv_buf_return(w, bid);
		return;
	}
	if (res <= 0) {
		if (have_buf)
			worker_recv_buf_return(w, bid);
		if (res == -ENOBUFS) {
			arm_recv(s);
			return;
		}
		snprintf(detail, sizeof(detail), "%s",
			 res == 0 ? "connection closed" : strerror(-res));
		broken(s, "read", detail);
		return;
	}
	if (be->ssl != NULL)
		BIO_write(SSL_get_rbio(be->ssl), worker_recv_buf(w, bid), res);
	else
		buf_append(&be->in, worker_recv_buf(w, bid), (size_t)res);
	worker_recv_buf_return(w, bid);
more:
	if (be->ssl != NULL && !tls_read(s)) {
		if (s->be == be)
			arm_recv(s); /* handshake: wait for more */
		return;
	}
	while (s->be == be && buf_used(&be->in) > 0) {
		size_t used;
		enum smtp_reply_status st =
			smtp_reply_feed(&be->reply, buf_head(&be->in),
					buf_used(&be->in), &used);

		buf_consume(&be->in, used);
		if (st == SMTP_REPLY_MORE)
			break;
		if (st == SMTP_REPLY_ERROR) {
			broken(s, "reply", "malformed reply");
			return;
		}
		handle_reply(s, &be->reply);
		if (s->be == be)
			smtp_reply_init(&be->reply);
	}
	/* TLS may hold more plaintext than be->in had room for. */
	if (s->be == be && be->ssl != NULL && be->tls_up &&
	    buf_used(&be->in) == 0 && ++rounds < 64 &&
	    (SSL_pending(be->ssl) > 0 ||
	     BIO_ctrl_pending(SSL_get_rbio(be->ssl)) > 0))
		goto more;
	if (s->be == be)
		arm_recv(s);
}

void
backend_on_send(struct backend_conn *be, int res)
{
	struct session *s = be->s;
	struct buf *src = be->send_wire ? &be->wire : &be->out;

	be->sending = false;
	buf_unpin(src);
	if (res > 0)
		buf_consume(src, (size_t)res);
	if (s == NULL) {
		/* Detached: after the QUIT, close our side. */
		if (be->fd >= 0)
			shutdown(be->fd, SHUT_RDWR);
		return;
	}
	if (res < 0) {
		broken(s, "write", strerror(-res));
		return;
	}
	if (buf_used(&be->out) > 0 || buf_used(&be->wire) > 0)
		backend_send(be);
	s->last_read_ms = timer_now_ms(); /* the message is moving */
	session_run(s);
}

void
backend_on_connect(struct backend_conn *be, int res)
{
	struct session *s = be->s;

	if (s == NULL)
		return;
	if (res < 0) {
		failover(s, "connect", strerror(-res));
		return;
	}
	/* The greeting must come within what is left of connect_timeout. */
	be->state = BE_GREETING;
	arm_recv(s);
	backend_send(be);
}

/* identity proxy-v2: the header goes out as soon as the connection is
 * up, ahead of everything else. */
static int
queue_proxy_header(struct session *s, struct backend_conn *be)
{
	char id[32];
	uint8_t hdr[PROXY_V2_MAX];
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	struct proxy_v2_info info = {
		.src = &s->peer.sa,
		.dst = (const struct sockaddr *)&local,
		.login = smtp_user(&s->smtp),
		.unique_id = id,
	};
	ssize_t n;

	/* The address the client reached, asked only here (a syscall per
	 * session otherwise, and 128 bytes kept by each). */
	if (getsockname(s->fd, (struct sockaddr *)&local, &llen) != 0)
		local.ss_family = AF_UNSPEC;
	snprintf(id, sizeof(id), "%llx", (unsigned long long)s->id);
	if (s->ssl != NULL && s->tls_done) {
		info.sni =
			SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name);
		info.tls_version = SSL_get_version(s->ssl);
		info.tls_cipher = SSL_get_cipher_name(s->ssl);
	}
	n = proxy_v2_write(&info, hdr, sizeof(hdr));
	if (n < 0 || buf_append_all(&be->out, hdr, (size_t)n) != 0)
		return -1;
	return 0;
}

static void
backend_connect(struct session *s, size_t server, uint64_t tried,
		unsigned attempts)
{
	const struct config *cfg = session_config(s);
	const struct config_addr *a = &cfg->backends[server].addr;
	struct backend_conn *be = calloc(1, sizeof(*be));
	struct io_uring_sqe *sqe;
	int one = 1;

	if (be == NULL) {
		smtp_backend_failed(&s->smtp, SMTP_BACKEND_UNAVAILABLE);
		return;
	}
	be->s = s;
	be->w = s->w;
	be->gen = generation_hold(s->gen); /* may outlive the session */
	worker_object_new(be->w);
	be->server = server;
	be->attempts = attempts + 1;
	be->tried = tried | (server < 64 ? UINT64_C(1) << server : 0);
	be->fd = -1;
	backend_pool_conn_open(s->gen->backend_pool, server);
	buf_init(&be->in, BACKEND_IN_CAP);
	buf_init(&be->out, BACKEND_OUT_CAP);
	buf_init(&be->wire, BACKEND_WIRE_CAP);
	smtp_reply_init(&be->reply);
	s->be = be;
	be->fd = socket(a->ss.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (be->fd < 0) {
		failover(s, "socket", strerror(errno));
		return;
	}
	if (a->ss.ss_family != AF_UNIX)
		setsockopt(be->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (cfg->backends[server].identity == IDENTITY_PROXY_V2 &&
	    queue_proxy_header(s, be) != 0) {
		failover(s, "proxy-v2", "header does not fit");
		return;
	}
	be->state = BE_CONNECTING;
	be->began_us = timer_now_us();
	sqe = worker_sqe(s->w);
	io_uring_prep_connect(sqe, be->fd, (const struct sockaddr *)&a->ss,
			      a->len);
	worker_prep(sqe, be, OP_BACKEND_CONNECT);
	be->refs++;
	set_deadline(s, cfg->backend_connect_timeout_ms);
}

void
backend_forward(struct session *s)
{
	struct backend_conn *be = s->be;

	if (be == NULL) {
		connect_next(s, 0, 0);
		return;
	}
	if (be->state == BE_READY)
		ready(s);
	/* Otherwise the handshake is under way; ready() sends it. */
}
