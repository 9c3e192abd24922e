/*
 * auth_http.c - the thread that asks an nginx-style auth_http service
 * (read auth_http.h first; the request and reply are http_auth_proto.c's).
 *
 * Why not libcurl: its multi interface would fit this loop, but the
 * protocol is one GET with fixed headers and a header-only reply over
 * plain HTTP/1.0 to an address on the operator's own network; a bounded
 * client of ~300 lines, with its parser pure and fuzzed, keeps every
 * buffer and time limit in view and adds no dependency (docs/AUTH.md).
 *
 * The thread loops: take the mailbox into `pending`, start a connection
 * for each pending request while fewer than auth.http.connections are
 * open, answer what timed out, poll().  A connection carries one request:
 * connect, send, read until the header block ends (or the server
 * closes), answer, close.  Every request is answered exactly once.
 *
 * Mapping the reply (nginx's contract):
 *   200 + Auth-Status: OK  -> ok; Auth-User is the login from then on;
 *                             Auth-Server/Auth-Port go with the answer
 *                             (the session pins that backend);
 *   200 + Auth-Status: txt -> refused, 535 5.7.8, or "<Auth-Error-Code>
 *                             <txt>" when the service gives a code (a 4xx
 *                             code is a temporary failure); Auth-Wait:
 *                             the reply waits that many seconds;
 *   anything else          -> temp, 454 4.7.0.
 *
 * OAUTHBEARER and XOAUTH2 go as Auth-Method: oauthbearer / xoauth2 with
 * the login the client named in Auth-User and the bearer token in
 * Auth-Pass (docs/AUTH.md); a refusal may carry Auth-OAuth-Status, the
 * JSON status smtp.c sends in RFC 7628's 334.
 *
 * Security stance: the password (or token) is in the request only while its
 * bytes are formatted and sent; the request's copy is wiped when formatted and
 * the send buffer when the connection closes.  The reply is parsed by
 * http_auth_proto.c (bounded, printable text only).  Not under the seccomp
 * filter (reads no client bytes), like the cluster thread.
 *
 * Config keys: auth.http.url, auth.http.connections, auth.http.timeout
 * (restart-only).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/auth_http.h"
#include "auth/http_auth_proto.h"
#include "lib/log.h"
#include "lib/mailbox.h"
#include "lib/timer.h"

#define POLL_MAX_MS 1000
#define WAIT_MAX_S  60 /* Auth-Wait is capped: a session is not held longer */

enum hconn_state { HC_FREE, HC_CONNECTING, HC_SENDING, HC_READING };

struct hconn {
	int fd;
	enum hconn_state st;
	struct auth_request *req;
	size_t outlen, outoff, inlen;
	char out[HTTP_AUTH_REQUEST_MAX];
	char in[HTTP_AUTH_REPLY_MAX];
};

struct auth_http {
	struct config_addr addr;
	char host[128], path[256];
	unsigned nconns;
	uint64_t timeout_ms;

	pthread_t thread;
	bool started;
	struct mailbox mbox; /* requests from the workers */

	/* The thread's own. */
	struct auth_request *pending, *pending_tail;
	struct hconn *conns;
	struct pollfd *pfd; /* nconns + 1 */
};

static void
hconn_close(struct hconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	OPENSSL_cleanse(c->out, c->outlen);
	c->outlen = c->outoff = c->inlen = 0;
	c->req = NULL;
	c->st = HC_FREE;
}

/* Ends c's request temp with reason. */
static void
hconn_fail(struct hconn *c, const char *reason)
{
	struct auth_request *req = c->req;

	hconn_close(c);
	if (req != NULL)
		auth_request_answer(req, 0, 1, reason);
}

/* The reply has come: answer as nginx's contract says. */
static void
hconn_reply(struct hconn *c, const struct http_auth_reply *r)
{
	struct auth_request *req = c->req;

	hconn_close(c);
	if (r->http_status != 200 || !r->has_status) {
		snprintf(req->reason, sizeof(req->reason),
			 r->http_status != 200 ? "http status %d"
					       : "no Auth-Status (status %d)",
			 r->http_status);
		auth_request_answer(req, 0, 1, NULL);
		return;
	}
	if (r->ok) {
		snprintf(req->login, sizeof(req->login), "%s", r->user);
		snprintf(req->server, sizeof(req->server), "%s", r->server);
		req->server_port = r->port;
		auth_request_answer(req, 1, 0, NULL);
		return;
	}
	snprintf(req->reason, sizeof(req->reason), "%s", r->status_text);
	snprintf(req->oauth_status, sizeof(req->oauth_status), "%s",
		 r->oauth_status);
	if (r->wait_s >= 0)
		req->wait_ms = (uint64_t)(r->wait_s < WAIT_MAX_S ? r->wait_s
								 : WAIT_MAX_S) *
			       1000;
	if (r->error_code[0] != '\0')
		snprintf(req->reply, sizeof(req->reply), "%s %s", r->error_code,
			 r->status_text);
	auth_request_answer(req, 0, r->error_code[0] == '4', NULL);
}

static void
hconn_start(struct auth_http *h, struct hconn *c, struct auth_request *req)
{
	struct http_auth_args a = {
		.host = h->host,
		.path = h->path,
		.method = req->mech[0] != '\0' ? req->mech : "plain",
		.user = req->user,
		.pass = req->token != NULL ? req->token : req->pass,
		.helo = req->helo,
		.client_ip = req->rip[0] != '\0' ? req->rip : "-",
		.attempt = req->attempt > 0 ? req->attempt : 1,
		.ssl = req->secured,
		.ssl_protocol = req->tls_version,
		.ssl_cipher = req->tls_cipher,
	};
	ssize_t n = http_auth_format(c->out, sizeof(c->out), &a);

	auth_request_sent(req);
	c->req = req;
	if (n < 0) {
		OPENSSL_cleanse(c->out, sizeof(c->out));
		hconn_fail(c, "request does not fit");
		return;
	}
	c->outlen = (size_t)n;
	c->fd = socket(h->addr.ss.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		hconn_fail(c, "socket failed");
		return;
	}
	if (connect(c->fd, (const struct sockaddr *)&h->addr.ss, h->addr.len) ==
	    0)
		c->st = HC_SENDING;
	else if (errno == EINPROGRESS)
		c->st = HC_CONNECTING;
	else
		hconn_fail(c, "connect refused");
}

static void
hconn_write(struct hconn *c)
{
	ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
			 MSG_NOSIGNAL);

	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			hconn_fail(c, "send failed");
		return;
	}
	c->outoff += (size_t)n;
	if (c->outoff == c->outlen) {
		OPENSSL_cleanse(c->out, c->outlen);
		c->outlen = c->outoff = 0;
		c->st = HC_READING;
	}
}

static void
hconn_read(struct hconn *c)
{
	struct http_auth_reply r;
	ssize_t n;
	enum http_auth_parse p;

	if (c->inlen == sizeof(c->in)) {
		hconn_fail(c, "reply too long");
		return;
	}
	n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			hconn_fail(c, "read failed");
		return;
	}
	c->inlen += (size_t)n;
	p = http_auth_parse(c->in, c->inlen, n == 0, &r);
	if (p == HTTP_AUTH_DONE)
		hconn_reply(c, &r);
	else if (p == HTTP_AUTH_BAD)
		hconn_fail(c, n == 0 && c->inlen == 0 ? "closed without reply"
						      : "malformed reply");
}

/* Starts what waits on free connections; answers what timed out; the
 * next deadline in *next. */
static void
run_timers(struct auth_http *h, uint64_t now, uint64_t *next)
{
	for (unsigned i = 0; i < h->nconns && h->pending != NULL; i++) {
		struct auth_request *req;

		if (h->conns[i].st != HC_FREE)
			continue;
		req = h->pending;
		h->pending = req->next;
		if (h->pending == NULL)
			h->pending_tail = NULL;
		req->next = NULL;
		hconn_start(h, &h->conns[i], req);
	}
	while (h->pending != NULL && h->pending->deadline_ms <= now) {
		struct auth_request *req = h->pending; /* FIFO: oldest first */

		h->pending = req->next;
		if (h->pending == NULL)
			h->pending_tail = NULL;
		auth_request_answer(req, 0, 1, "http timeout");
	}
	if (h->pending != NULL && h->pending->deadline_ms < *next)
		*next = h->pending->deadline_ms;
	for (unsigned i = 0; i < h->nconns; i++) {
		struct hconn *c = &h->conns[i];

		if (c->st == HC_FREE)
			continue;
		if (c->req->deadline_ms <= now)
			hconn_fail(c, "http timeout");
		else if (c->req->deadline_ms < *next)
			*next = c->req->deadline_ms;
	}
}

static void *
http_thread(void *arg)
{
	struct auth_http *h = arg;
	struct pollfd *pfd = h->pfd;
	bool stopping = false;

	pthread_setname_np(pthread_self(), "msa-authhttp");
	for (;;) {
		uint64_t now = timer_now_ms(), next = now + POLL_MAX_MS;
		int n;

		auth_request_queue(&h->pending, &h->pending_tail,
				   mailbox_take(&h->mbox, &stopping),
				   now + h->timeout_ms);
		if (stopping)
			break;
		run_timers(h, now, &next);
		pfd[0] = (struct pollfd){.fd = h->mbox.efd, .events = POLLIN};
		for (unsigned i = 0; i < h->nconns; i++) {
			struct hconn *c = &h->conns[i];

			pfd[i + 1] = (struct pollfd){
				.fd = c->st == HC_FREE ? -1 : c->fd,
				.events =
					c->st == HC_READING ? POLLIN : POLLOUT};
		}
		now = timer_now_ms();
		n = poll(pfd, h->nconns + 1,
			 next > now ? (int)(next - now) : 0);
		if (n <= 0)
			continue;
		if (pfd[0].revents & POLLIN)
			mailbox_drain(&h->mbox);
		for (unsigned i = 0; i < h->nconns; i++) {
			struct hconn *c = &h->conns[i];
			short re = pfd[i + 1].revents;

			if (re == 0 || c->st == HC_FREE)
				continue;
			if (c->st == HC_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof(err);

				if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR,
					       &err, &el) != 0 ||
				    err != 0) {
					hconn_fail(c, "connect refused");
					continue;
				}
				c->st = HC_SENDING;
			}
			if (c->st == HC_SENDING)
				hconn_write(c);
			else if (c->st == HC_READING)
				hconn_read(c);
		}
	}
	/* Stopping: everything still here is answered. */
	auth_request_answer_all(h->pending, "stopping");
	h->pending = h->pending_tail = NULL;
	for (unsigned i = 0; i < h->nconns; i++)
		if (h->conns[i].st != HC_FREE)
			hconn_fail(&h->conns[i], "stopping");
	return NULL;
}

struct auth_http *
auth_http_start(const struct config *cfg, char *err, size_t errlen)
{
	struct auth_http *h = calloc(1, sizeof(*h));
	char why[128];
	int rc;

	if (h == NULL)
		goto oom;
	h->addr = cfg->auth_http_addr;
	snprintf(h->host, sizeof(h->host), "%s", cfg->auth_http_host);
	snprintf(h->path, sizeof(h->path), "%s", cfg->auth_http_path);
	h->nconns =
		cfg->auth_http_connections > 0 ? cfg->auth_http_connections : 1;
	h->timeout_ms = cfg->auth_http_timeout_ms;
	h->conns = calloc(h->nconns, sizeof(*h->conns));
	h->pfd = calloc(h->nconns + 1, sizeof(*h->pfd));
	if (h->conns == NULL || h->pfd == NULL)
		goto oom;
	for (unsigned i = 0; i < h->nconns; i++)
		h->conns[i].fd = -1;
	if (MAILBOX_OPEN(&h->mbox, struct auth_request, next, why,
			 sizeof(why)) != 0) {
		snprintf(err, errlen, "auth.http: %s", why);
		free(h->pfd);
		free(h->conns);
		free(h);
		return NULL;
	}
	rc = mailbox_thread(&h->thread, http_thread, h);
	if (rc != 0) {
		snprintf(err, errlen, "auth.http: pthread_create: %s",
			 strerror(rc));
		mailbox_close(&h->mbox);
		free(h->pfd);
		free(h->conns);
		free(h);
		return NULL;
	}
	h->started = true;
	return h;
oom:
	if (h != NULL) {
		free(h->pfd);
		free(h->conns);
	}
	free(h);
	snprintf(err, errlen, "auth.http: out of memory");
	return NULL;
}

void
auth_http_submit(struct auth_http *h, struct auth_request *req)
{
	if (!mailbox_post(&h->mbox, req))
		auth_request_answer(req, 0, 1, "stopping");
}

void
auth_http_stop(struct auth_http *h)
{
	if (h == NULL)
		return;
	mailbox_stop(&h->mbox);
	if (h->started)
		pthread_join(h->thread, NULL);
	mailbox_close(&h->mbox);
	free(h->pfd);
	free(h->conns);
	free(h);
}
