/*
 * auth_dovecot.c - the thread that asks Dovecot's auth server (read
 * auth_dovecot.h first; the protocol lines are dovecot_proto.c's).
 *
 * The thread loops: take the mailbox, connect what is down and due, send
 * what waits to a connection that finished its handshake, answer what
 * timed out, poll().  Each connection carries many requests, matched to
 * Dovecot's answers by a 32-bit id unique in this process.  A request
 * waits in `pending` while no connection is ready but one is coming up;
 * with none coming up it is answered temp at once (no session waits for a
 * Dovecot that is not there).  Every request is answered exactly once:
 * OK, FAIL, or temp on timeout, a dropped connection, or stop.
 *
 * A LOGIN exchange reaches Dovecot as PLAIN (the SMTP side gathered the
 * name and the password already), so both need Dovecot's PLAIN.
 * OAUTHBEARER and XOAUTH2 go as themselves, with the client's initial
 * response (Dovecot's oauth2 passdb checks the token); a refusal's JSON
 * status (Dovecot 2.3's CONT, answered ^A by this thread, or FAIL's
 * resp=) goes back with the answer for smtp.c's RFC 7628 334.
 *
 * Security stance: the password leaves the request when its AUTH line is
 * formatted and the request's copy is wiped; the send buffer is wiped as
 * it drains and when a connection closes.  Dovecot's answers are checked
 * by dovecot_proto.c: a malformed line drops the connection (and answers
 * what was on it temp).  reason= is logged by the caller, never sent to
 * the client.  Like the cluster thread it reads no client bytes and is not
 * under the seccomp filter.
 *
 * Config keys: auth.dovecot.socket, auth.dovecot.connections,
 * auth.dovecot.timeout, auth.mechanisms (restart-only).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/auth_dovecot.h"
#include "auth/dovecot_proto.h"
#include "lib/log.h"
#include "lib/mailbox.h"
#include "lib/timer.h"

#define CONNS_MAX      16
#define OUT_CAP	       (64u * 1024)
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define POLL_MAX_MS    1000

enum dconn_state { DC_DOWN, DC_CONNECTING, DC_HANDSHAKE, DC_READY };

struct dconn {
	int fd;
	enum dconn_state st;
	bool version_ok;
	unsigned mechs; /* AUTH_MECH_* seen in this handshake */
	uint64_t retry_at_ms, backoff_ms;
	uint64_t handshake_deadline_ms;
	struct auth_request *inflight; /* sent, unanswered; via next */
	size_t inlen, outlen;
	char in[DOVECOT_LINE_MAX];
	char out[OUT_CAP];
};

struct auth_dovecot {
	struct config_addr addr;
	unsigned nconns;
	uint64_t timeout_ms;
	unsigned configured; /* AUTH_MECH_* */
	atomic_uint offer;

	pthread_t thread;
	bool started;
	struct mailbox mbox; /* requests from the workers */

	/* The thread's own. */
	struct auth_request *pending, *pending_tail;
	uint32_t next_id;
	unsigned rr; /* the next connection to try first */
	struct dconn *conns;
};

static unsigned
offer_of(const struct auth_dovecot *d, unsigned mechs)
{
	/* LOGIN goes to Dovecot as PLAIN: it needs PLAIN. */
	if (!(mechs & AUTH_MECH_PLAIN))
		mechs &= ~AUTH_MECH_LOGIN;
	return mechs & d->configured;
}

static void
dconn_down(struct auth_dovecot *d, struct dconn *c, const char *why)
{
	uint64_t now = timer_now_ms();

	if (c->st == DC_READY || c->st == DC_HANDSHAKE)
		log_warn("auth-dovecot-down", " socket=%s reason=%s",
			 d->addr.text, why);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->st = DC_DOWN;
	OPENSSL_cleanse(c->out, c->outlen);
	c->outlen = 0;
	c->inlen = 0;
	auth_request_answer_all(c->inflight, "dovecot connection lost");
	c->inflight = NULL;
	c->backoff_ms = c->backoff_ms == 0 ? BACKOFF_MIN_MS : c->backoff_ms * 2;
	if (c->backoff_ms > BACKOFF_MAX_MS)
		c->backoff_ms = BACKOFF_MAX_MS;
	c->retry_at_ms = now + c->backoff_ms;
}

static void
dconn_connect(struct auth_dovecot *d, struct dconn *c, uint64_t now)
{
	ssize_t n;
	int fd = socket(d->addr.ss.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	c->mechs = 0;
	c->version_ok = false;
	c->inlen = c->outlen = 0;
	if (fd < 0) {
		dconn_down(d, c, strerror(errno));
		return;
	}
	c->fd = fd;
	n = dovecot_format_handshake(c->out, sizeof(c->out),
				     (unsigned long)getpid());
	c->outlen = n > 0 ? (size_t)n : 0;
	c->handshake_deadline_ms = now + d->timeout_ms;
	if (connect(fd, (const struct sockaddr *)&d->addr.ss, d->addr.len) ==
	    0) {
		c->st = DC_HANDSHAKE;
	} else if (errno == EINPROGRESS) {
		c->st = DC_CONNECTING;
	} else {
		if (c->backoff_ms == 0) /* the first failure in a row */
			log_warn("auth-dovecot-down", " socket=%s reason=%s",
				 d->addr.text, strerror(errno));
		dconn_down(d, c, "connect");
	}
}

/* The request with id on c, taken off its list; NULL if none (it timed
 * out already). */
static struct auth_request *
take_inflight(struct dconn *c, uint32_t id)
{
	for (struct auth_request **pp = &c->inflight; *pp != NULL;
	     pp = &(*pp)->next) {
		struct auth_request *r = *pp;

		if (r->backend_id == id) {
			*pp = r->next;
			r->next = NULL;
			return r;
		}
	}
	return NULL;
}

/* Dovecot 2.3 refuses a token with a CONT holding RFC 7628's JSON
 * status: keep the status, send the client's part (^A) at once, and wait
 * for the FAIL.  false when this CONT is not that. */
static bool
cont_oauth(struct dconn *c, struct auth_request *req,
	   const struct dovecot_line *l)
{
	ssize_t n;

	if (req->oauth_resp == NULL || req->backend_cont)
		return false;
	n = dovecot_format_dummy(c->out + c->outlen, sizeof(c->out) - c->outlen,
				 req->backend_id);
	if (n < 0)
		return false;
	c->outlen += (size_t)n;
	req->backend_cont = true;
	snprintf(req->oauth_status, sizeof(req->oauth_status), "%s", l->status);
	req->next = c->inflight;
	c->inflight = req;
	return true;
}

/* One line from Dovecot; false when the connection must go. */
static bool
dconn_line(struct auth_dovecot *d, struct dconn *c, const char *line,
	   size_t len)
{
	struct dovecot_line l;
	struct auth_request *req;

	dovecot_parse(line, len, &l);
	switch (l.kind) {
	case DOVECOT_BAD:
		return false;
	case DOVECOT_IGNORED:
		return true;
	case DOVECOT_VERSION:
		if (l.major != 1)
			return false;
		c->version_ok = true;
		return true;
	case DOVECOT_MECH:
		c->mechs |= l.mech;
		return true;
	case DOVECOT_DONE: {
		unsigned m = offer_of(d, c->mechs);
		char names[64];

		if (!c->version_ok || c->st != DC_HANDSHAKE)
			return false;
		c->st = DC_READY;
		c->backoff_ms = 0;
		atomic_store(&d->offer, m);
		sasl_mech_list(m, names, sizeof(names));
		log_info("auth-dovecot-up", " socket=%s mechanisms=%s",
			 d->addr.text, names);
		return true;
	}
	case DOVECOT_OK:
	case DOVECOT_FAIL:
	case DOVECOT_CONT:
		if (c->st != DC_READY)
			return false;
		req = take_inflight(c, l.id);
		if (req == NULL)
			return true; /* answered temp already (timeout) */
		if (l.kind == DOVECOT_OK) {
			snprintf(req->login, sizeof(req->login), "%s", l.user);
			auth_request_answer(req, 1, 0, NULL);
		} else if (l.kind == DOVECOT_FAIL) {
			snprintf(req->reason, sizeof(req->reason), "%s",
				 l.reason);
			/* Dovecot's name for the login (auth_username_format:
			 * "ALICE" is "alice"): its failures count there. */
			snprintf(req->login, sizeof(req->login), "%s", l.user);
			if (l.status[0] != '\0') /* else the CONT's, if any */
				snprintf(req->oauth_status,
					 sizeof(req->oauth_status), "%s",
					 l.status);
			auth_request_answer(req, 0, l.temp, NULL);
		} else if (!cont_oauth(c, req, &l)) {
			/* Every mechanism goes with its initial response: a
			 * CONT is not ours to answer, but an OAuth refusal's
			 * (cont_oauth()). */
			auth_request_answer(req, 0, 1,
					    "dovecot asked to continue");
		}
		return true;
	}
	return false;
}

static void
dconn_read(struct auth_dovecot *d, struct dconn *c)
{
	ssize_t n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
	size_t off = 0, ll;

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		dconn_down(d, c,
			   n == 0 ? "closed by dovecot" : strerror(errno));
		return;
	}
	if (n < 0)
		return;
	c->inlen += (size_t)n;
	while ((ll = dovecot_line_len(c->in + off, c->inlen - off)) > 0) {
		if (!dconn_line(d, c, c->in + off, ll - 1)) {
			dconn_down(d, c, "unexpected line from dovecot");
			return;
		}
		off += ll;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
	if (c->inlen == sizeof(c->in))
		dconn_down(d, c, "line too long from dovecot");
}

static void
dconn_write(struct auth_dovecot *d, struct dconn *c)
{
	ssize_t n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);

	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			dconn_down(d, c, strerror(errno));
		return;
	}
	memmove(c->out, c->out + n, c->outlen - (size_t)n);
	OPENSSL_cleanse(c->out + c->outlen - n, (size_t)n);
	c->outlen -= (size_t)n;
}

/* The first ready connection with room for a line, round robin. */
static struct dconn *
pick(struct auth_dovecot *d)
{
	for (unsigned i = 0; i < d->nconns; i++) {
		struct dconn *c = &d->conns[(d->rr + i) % d->nconns];

		if (c->st == DC_READY &&
		    sizeof(c->out) - c->outlen >= DOVECOT_LINE_MAX) {
			d->rr = (d->rr + i + 1) % d->nconns;
			return c;
		}
	}
	return NULL;
}

static bool
any_coming(const struct auth_dovecot *d)
{
	for (unsigned i = 0; i < d->nconns; i++)
		if (d->conns[i].st != DC_DOWN)
			return true;
	return false;
}

/* Sends what waits; with no connection up or coming, answers it. */
static void
dispatch(struct auth_dovecot *d)
{
	struct dconn *c;

	while (d->pending != NULL && (c = pick(d)) != NULL) {
		struct auth_request *req = d->pending;
		struct dovecot_auth a;
		ssize_t n;

		d->pending = req->next;
		if (d->pending == NULL)
			d->pending_tail = NULL;
		req->backend_id = ++d->next_id;
		a = (struct dovecot_auth){
			.id = req->backend_id,
			.user = req->user,
			.pass = req->pass,
			.rip = req->rip,
			.lip = req->lip,
			.rport = req->rport,
			.lport = req->lport,
			.secured = req->secured,
		};
		if (req->oauth_resp != NULL) {
			/* req->mech is the lower-case label, "xoauth2" */
			a.mech = sasl_mech_name(
				sasl_mech_of(req->mech, strlen(req->mech)));
			a.resp = req->oauth_resp;
		}
		n = dovecot_format_auth(c->out + c->outlen,
					sizeof(c->out) - c->outlen, &a);
		auth_request_sent(req);
		if (n < 0) {
			OPENSSL_cleanse(c->out + c->outlen,
					sizeof(c->out) - c->outlen);
			auth_request_answer(req, 0, 1, "request does not fit");
			continue;
		}
		c->outlen += (size_t)n;
		req->next = c->inflight;
		c->inflight = req;
	}
	if (d->pending != NULL && !any_coming(d)) {
		auth_request_answer_all(d->pending, "dovecot down");
		d->pending = d->pending_tail = NULL;
	}
}

/* Answers temp what is past its deadline in list; the rest stays. */
static struct auth_request *
expire(struct auth_request *list, uint64_t now, uint64_t *next_ms,
       struct auth_request **tail)
{
	struct auth_request *keep = NULL, **kp = &keep, *last = NULL;

	while (list != NULL) {
		struct auth_request *r = list;

		list = r->next;
		if (r->deadline_ms <= now) {
			auth_request_answer(r, 0, 1, "dovecot timeout");
			continue;
		}
		if (r->deadline_ms < *next_ms)
			*next_ms = r->deadline_ms;
		r->next = NULL;
		*kp = r;
		kp = &r->next;
		last = r;
	}
	if (tail != NULL)
		*tail = last;
	return keep;
}

static void *
dovecot_thread(void *arg)
{
	struct auth_dovecot *d = arg;
	struct pollfd pfd[CONNS_MAX + 1];

	pthread_setname_np(pthread_self(), "msa-dovecot");
	for (;;) {
		uint64_t now = timer_now_ms(), next = now + POLL_MAX_MS;
		bool stopping;
		int n;

		auth_request_queue(&d->pending, &d->pending_tail,
				   mailbox_take(&d->mbox, &stopping),
				   now + d->timeout_ms);
		if (stopping)
			break;

		for (unsigned i = 0; i < d->nconns; i++) {
			struct dconn *c = &d->conns[i];

			if (c->st == DC_DOWN && now >= c->retry_at_ms)
				dconn_connect(d, c, now);
			if ((c->st == DC_CONNECTING || c->st == DC_HANDSHAKE) &&
			    now >= c->handshake_deadline_ms)
				dconn_down(d, c, "handshake timeout");
		}
		dispatch(d);
		d->pending = expire(d->pending, now, &next, &d->pending_tail);
		for (unsigned i = 0; i < d->nconns; i++) {
			struct dconn *c = &d->conns[i];

			c->inflight = expire(c->inflight, now, &next, NULL);
			if (c->st == DC_DOWN && c->retry_at_ms < next)
				next = c->retry_at_ms;
			if ((c->st == DC_CONNECTING || c->st == DC_HANDSHAKE) &&
			    c->handshake_deadline_ms < next)
				next = c->handshake_deadline_ms;
		}

		pfd[0] = (struct pollfd){.fd = d->mbox.efd, .events = POLLIN};
		for (unsigned i = 0; i < d->nconns; i++) {
			struct dconn *c = &d->conns[i];
			short ev = 0;

			if (c->st == DC_CONNECTING)
				ev = POLLOUT;
			else if (c->st != DC_DOWN)
				ev = (short)(POLLIN |
					     (c->outlen > 0 ? POLLOUT : 0));
			pfd[i + 1] = (struct pollfd){
				.fd = c->st == DC_DOWN ? -1 : c->fd,
				.events = ev};
		}
		now = timer_now_ms();
		n = poll(pfd, d->nconns + 1,
			 next > now ? (int)(next - now) : 0);
		if (n <= 0)
			continue;
		if (pfd[0].revents & POLLIN)
			mailbox_drain(&d->mbox);
		for (unsigned i = 0; i < d->nconns; i++) {
			struct dconn *c = &d->conns[i];
			short re = pfd[i + 1].revents;

			if (re == 0 || c->st == DC_DOWN)
				continue;
			if (c->st == DC_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof(err);

				if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR,
					       &err, &el) != 0 ||
				    err != 0) {
					dconn_down(d, c,
						   strerror(err ? err : errno));
					continue;
				}
				c->st = DC_HANDSHAKE;
			}
			if (re & (POLLIN | POLLHUP | POLLERR))
				dconn_read(d, c);
			if (c->st != DC_DOWN && c->outlen > 0 && (re & POLLOUT))
				dconn_write(d, c);
		}
	}
	/* Stopping: everything still here is answered. */
	auth_request_answer_all(d->pending, "stopping");
	d->pending = d->pending_tail = NULL;
	for (unsigned i = 0; i < d->nconns; i++) {
		struct dconn *c = &d->conns[i];

		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		OPENSSL_cleanse(c->out, c->outlen);
		auth_request_answer_all(c->inflight, "stopping");
		c->inflight = NULL;
	}
	return NULL;
}

struct auth_dovecot *
auth_dovecot_start(const struct config *cfg, char *err, size_t errlen)
{
	struct auth_dovecot *d = calloc(1, sizeof(*d));
	char why[128];
	int rc;

	if (d == NULL)
		goto oom;
	d->addr = cfg->auth_dovecot_socket;
	d->nconns = cfg->auth_dovecot_connections;
	if (d->nconns == 0 || d->nconns > CONNS_MAX)
		d->nconns = d->nconns == 0 ? 1 : CONNS_MAX;
	d->timeout_ms = cfg->auth_dovecot_timeout_ms;
	d->configured = cfg->auth_mechs;
	atomic_init(&d->offer, cfg->auth_mechs);
	d->conns = calloc(d->nconns, sizeof(*d->conns));
	if (d->conns == NULL)
		goto oom;
	for (unsigned i = 0; i < d->nconns; i++)
		d->conns[i].fd = -1;
	if (MAILBOX_OPEN(&d->mbox, struct auth_request, next, why,
			 sizeof(why)) != 0) {
		snprintf(err, errlen, "auth.dovecot: %s", why);
		free(d->conns);
		free(d);
		return NULL;
	}
	rc = mailbox_thread(&d->thread, dovecot_thread, d);
	if (rc != 0) {
		snprintf(err, errlen, "auth.dovecot: pthread_create: %s",
			 strerror(rc));
		mailbox_close(&d->mbox);
		free(d->conns);
		free(d);
		return NULL;
	}
	d->started = true;
	return d;
oom:
	if (d != NULL)
		free(d->conns);
	free(d);
	snprintf(err, errlen, "auth.dovecot: out of memory");
	return NULL;
}

void
auth_dovecot_submit(struct auth_dovecot *d, struct auth_request *req)
{
	if (!mailbox_post(&d->mbox, req))
		auth_request_answer(req, 0, 1, "stopping");
}

const atomic_uint *
auth_dovecot_offer(const struct auth_dovecot *d)
{
	return &d->offer;
}

void
auth_dovecot_stop(struct auth_dovecot *d)
{
	if (d == NULL)
		return;
	mailbox_stop(&d->mbox);
	if (d->started)
		pthread_join(d->thread, NULL);
	mailbox_close(&d->mbox);
	free(d->conns);
	free(d);
}
