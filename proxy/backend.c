/*
 * backend.c - the session's connection to a backend MTA.
 *
 * Opened at the first command that needs it (MAIL after AUTH), on the
 * worker's ring: connect, read the 220, EHLO, then XCLIENT with the
 * client's identity when the backend is configured for it (Postfix
 * XCLIENT_README: the backend answers with a fresh 220, so EHLO again),
 * then the client's command.  Any failure before the client's command has
 * been answered moves on to the next backend; when none is left the client
 * gets 451 4.4.1.  After that, a lost backend costs the client its current
 * transaction (451 4.4.2) and nothing else: the next MAIL reconnects.
 *
 * The client gets 250 for a message only when the backend said 2xx for it:
 * the verdict after the end of data is the backend's own reply.
 *
 * Config keys: backends.servers (address, identity), backends.*_timeout,
 * hostname (our EHLO name).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "session.h"
#include "xtext.h"

static void backend_connect(struct session *s, size_t server,
			    unsigned attempts);

static const struct config_backend *
server_of(const struct session *s, const struct backend_conn *be)
{
	return &worker_config(s->w)->backends[be->server];
}

/* ---------------------------------------------------------------------
 * Connection lifetime
 */

static void
backend_free(struct backend_conn *be)
{
	if (be->fd >= 0)
		close(be->fd);
	buf_free(&be->in);
	buf_free(&be->out);
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

void
backend_send(struct backend_conn *be)
{
	struct io_uring_sqe *sqe;

	if (be->sending || buf_used(&be->out) == 0 || be->fd < 0 ||
	    be->state == BE_CONNECTING)
		return;
	sqe = worker_sqe(be->w);
	be->out.pinned = true;
	io_uring_prep_send(sqe, be->fd, buf_head(&be->out), buf_used(&be->out),
			   MSG_NOSIGNAL);
	worker_prep(sqe, be, OP_BACKEND_SEND);
	be->sending = true;
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

/* Before the client's command was answered: try the next backend. */
static void
failover(struct session *s, const char *step, const char *detail)
{
	const struct config *cfg = worker_config(s->w);
	struct backend_conn *be = s->be;
	size_t server = be->server;
	unsigned attempts = be->attempts;

	log_warn("backend-failed",
		 " session=%llx backend=%s step=%s error=\"%s\" attempt=%u",
		 (unsigned long long)s->id, server_of(s, be)->addr.text, step,
		 detail, attempts);
	backend_close(s, false);
	if (attempts < cfg->nbackends) {
		backend_connect(s, worker_pick_backend(s->w, server, attempts),
				attempts);
		session_run(s);
		return;
	}
	smtp_backend_failed(&s->smtp, SMTP_BACKEND_UNAVAILABLE);
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
	if (s->smtp.state == SMTP_DATA)
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
	backend_close(s, false);
	smtp_backend_failed(&s->smtp, SMTP_BACKEND_TIMEOUT);
	session_run(s);
}

/* ---------------------------------------------------------------------
 * Handshake
 */

static void
send_ehlo(struct session *s)
{
	char line[300];
	int n = snprintf(line, sizeof(line), "EHLO %s\r\n",
			 worker_config(s->w)->hostname);

	send_line(s, line, (size_t)n);
}

/* Does the backend's XCLIENT list include attribute name? */
static bool
xclient_has(const struct backend_conn *be, const char *name)
{
	size_t n = strlen(name);
	const char *p = be->xclient_attrs;

	while (*p) {
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == n && strncasecmp(p, name, n) == 0)
			return true;
		p = *e ? e + 1 : e;
	}
	return false;
}

static size_t
add_attr(const struct backend_conn *be, char *line, size_t len, size_t cap,
	 const char *name, const char *value)
{
	char enc[800];
	int n;

	if (!xclient_has(be, name) ||
	    xtext_encode(value, strlen(value), enc, sizeof(enc)) < 0)
		return len;
	n = snprintf(line + len, cap - len, " %s=%s", name, enc);
	if (n < 0 || (size_t)n >= cap - len)
		return len;
	return len + (size_t)n;
}

static void
send_xclient(struct session *s)
{
	struct backend_conn *be = s->be;
	char line[2048], addr[INET6_ADDRSTRLEN + 8], port[16];
	size_t len = (size_t)snprintf(line, sizeof(line), "XCLIENT");

	if (strchr(s->peer_addr, ':') != NULL)
		snprintf(addr, sizeof(addr), "IPV6:%s", s->peer_addr);
	else
		snprintf(addr, sizeof(addr), "%s", s->peer_addr);
	snprintf(port, sizeof(port), "%u", s->peer_port);
	len = add_attr(be, line, len, sizeof(line), "NAME", "[UNAVAILABLE]");
	len = add_attr(be, line, len, sizeof(line), "ADDR", addr);
	len = add_attr(be, line, len, sizeof(line), "PORT", port);
	len = add_attr(be, line, len, sizeof(line), "PROTO", "ESMTP");
	len = add_attr(be, line, len, sizeof(line), "HELO",
		       s->smtp.helo_name[0] ? s->smtp.helo_name
					    : "[UNAVAILABLE]");
	len = add_attr(be, line, len, sizeof(line), "LOGIN", s->smtp.user);
	memcpy(line + len, "\r\n", 2);
	send_line(s, line, len + 2);
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
	send_line(s, s->smtp.fwd_line, s->smtp.fwd_len);
	be->state = BE_WAIT_REPLY;
	set_deadline(s, worker_config(s->w)->backend_reply_timeout_ms);
}

static void
handle_handshake_reply(struct session *s, const struct smtp_reply *r)
{
	const struct config *cfg = worker_config(s->w);
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
		send_ehlo(s);
		be->state = BE_EHLO;
		break;
	case BE_EHLO:
		if (r->code != 250) {
			failover(s, "ehlo", detail);
			return;
		}
		if (server_of(s, be)->identity != IDENTITY_XCLIENT) {
			ready(s);
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
		be->state = BE_XCLIENT;
		break;
	case BE_XCLIENT:
		/* Postfix answers with a fresh 220 greeting; smtp-sink and
		 * older servers with 250.  Either way, EHLO again. */
		if (r->code != 220 && r->code != 250) {
			failover(s, "xclient", detail);
			return;
		}
		send_ehlo(s);
		be->state = BE_EHLO_AGAIN;
		break;
	case BE_EHLO_AGAIN:
		if (r->code != 250) {
			failover(s, "ehlo", detail);
			return;
		}
		ready(s);
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
	}
	if (data_end) {
		log_info("message",
			 " session=%llx client=%s user=%s backend=%s size=%llu "
			 "result=%d",
			 (unsigned long long)s->id, s->peer_addr,
			 session_log_user(u, sizeof(u), s->smtp.user),
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
	buf_append(&be->in, worker_recv_buf(w, bid), (size_t)res);
	worker_recv_buf_return(w, bid);
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
	if (s->be == be)
		arm_recv(s);
}

void
backend_on_send(struct backend_conn *be, int res)
{
	struct session *s = be->s;

	be->sending = false;
	buf_unpin(&be->out);
	if (res > 0)
		buf_consume(&be->out, (size_t)res);
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
	if (buf_used(&be->out) > 0)
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

static void
backend_connect(struct session *s, size_t server, unsigned attempts)
{
	const struct config *cfg = worker_config(s->w);
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
	be->server = server;
	be->attempts = attempts + 1;
	buf_init(&be->in, BACKEND_IN_CAP);
	buf_init(&be->out, BACKEND_OUT_CAP);
	smtp_reply_init(&be->reply);
	s->be = be;
	be->fd = socket(a->ss.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (be->fd < 0) {
		failover(s, "socket", strerror(errno));
		return;
	}
	setsockopt(be->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	be->state = BE_CONNECTING;
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
		backend_connect(s, worker_pick_backend(s->w, 0, 0), 0);
		return;
	}
	if (be->state == BE_READY)
		ready(s);
	/* Otherwise the handshake is under way; ready() sends it. */
}
