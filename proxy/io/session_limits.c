/*
 * session_limits.c - a session's limits: policy.c decides (policy.h) and
 * the session acts on the verdict here, in one place,
 * session_apply_verdict(): the reply, the log line (msg=session-refused,
 * limit, sender-refused, mail-refused, ip-banned), the memory cap's
 * counter and a ban's place on the blocklist (and so in the kernel, with
 * XDP).  session.c calls in at fixed points: accept, the password's
 * verdict, AUTH, each MAIL or RCPT, message bytes, the end of a
 * transaction and of the session.
 *
 * Config keys: through policy.c (listeners[].allow/deny/sender_check,
 * auth.failure_delay, limits.*, blocklist.auto_ban*).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd_db.h"
#include "bans/bans.h"
#include "cluster/cluster.h"
#include "io/cluster_link.h"
#include "io/ring.h"
#include "io/session.h"
#include "lib/log.h"
#include "limits/caps.h"
#include "limits/policy.h"

/* What policy.c reads for s: login is the one at hand (AUTH) or the
 * authenticated user. */
static struct policy_ctx
session_policy_ctx(const struct session *s, const char *login, uint64_t now_ms)
{
	return (struct policy_ctx){
		.cfg = session_config(s),
		.listener = s->listener,
		.limits = s->ring->shared.limits,
		.bans = s->ring->shared.bans,
		.caps = s->ring->shared.caps,
		.peer = &s->peer,
		.login = login,
		.now_ms = now_ms,
		.shared = s->ring->shared.cluster != NULL
				  ? &s->ring->shared.cluster_policy
				  : NULL,
	};
}

/* A ban the client's network earned, on the blocklist too (and so in the
 * kernel, with XDP): its next packets cost nothing. */
static void
auto_ban(struct session *s, const struct ipnet *net, uint64_t ms)
{
	struct bans *b = s->ring->shared.bans;
	char err[256], text[IPNET_TEXT_MAX];

	if (b == NULL)
		return;
	if (bans_add(b, net, ms, BLOCKLIST_REASON_AUTO, err, sizeof(err)) != 0)
		log_warn("auto-ban-failed",
			 " session=%llx network=%s error=\"%s\"",
			 (unsigned long long)s->id,
			 ipnet_format(net, text, sizeof(text)), err);
	/* On every other node too (docs/CLUSTER.md). */
	if (s->ring->shared.cluster != NULL)
		cluster_ban(s->ring->shared.cluster, net, ms,
			    BLOCKLIST_REASON_AUTO);
}

/* The one place a limit's refusal is answered, logged and counted, and a
 * ban it earned applied.  Returns whether the session may go on. */
static bool
session_apply_verdict(struct session *s, const struct policy_verdict *v)
{
	const struct smtp *m = &s->smtp;
	char a[4 * 256 + 3], text[IPNET_TEXT_MAX];

	if (v->banned_ms != 0)
		log_warn("ip-banned",
			 " session=%llx client=%s network=%s ban_ms=%" PRIu64
			 " reason=auth-failures",
			 (unsigned long long)s->id, s->peer_addr,
			 ipnet_format(&v->net, text, sizeof(text)),
			 v->banned_ms);
	if (v->blocklist_ms != 0)
		auto_ban(s, &v->net, v->blocklist_ms);
	switch (v->refused) {
	case POLICY_OK:
		return true;
	case POLICY_CONNECTION:
		session_log(s, LOG_INFO, "session-refused",
			    " listener=%s reason=%s retry_ms=%" PRIu64,
			    s->listener->addr.text, v->reason, v->retry_ms);
		/* On an implicit TLS port a plaintext reply would only be
		 * garbage to the client's TLS stack: just close. */
		if (s->listener->mode == LISTENER_STARTTLS)
			smtp_shutdown(&s->smtp, v->reply, v->reason);
		s->smtp.close_reason = v->reason;
		s->closing = true;
		break;
	case POLICY_RATE:
	case POLICY_BYTES:
		session_log(s, LOG_INFO, "limit", " limit=%s retry_ms=%" PRIu64,
			    v->reason, v->retry_ms);
		/* A message over the byte rate is answered at its end. */
		if (v->refused == POLICY_RATE)
			smtp_refuse(&s->smtp, v->reply, false);
		break;
	case POLICY_SENDER:
		session_log(s, LOG_INFO, "sender-refused", " sender=%s",
			    log_quote(a, sizeof(a), m->fwd_line + m->path_off,
				      m->path_len));
		smtp_refuse(&s->smtp, v->reply, true);
		break;
	case POLICY_MEMORY:
	case POLICY_UNAVAILABLE:
		if (v->refused == POLICY_MEMORY)
			caps_count_mail_refused(s->ring->shared.caps);
		session_log(s, LOG_INFO, "mail-refused", " reason=%s",
			    v->reason);
		smtp_refuse(&s->smtp, v->reply, false);
		break;
	case POLICY_ASK: /* session_may_forward() asks */
		break;
	}
	return false;
}

/* A new connection: false when it is refused (the reply, if any, is
 * queued and the session set to close). */
bool
session_admit(struct session *s)
{
	struct policy_ctx c = session_policy_ctx(s, "", s->started_ms);
	struct policy_verdict v;

	policy_admit(&c, &s->pol, &v);
	return session_apply_verdict(s, &v);
}

/* Whose counts a login moves: the back end's name for the user
 * (Dovecot's user=, auth_http's Auth-User; Dovecot names a failed one
 * too, so "ALICE" and "alice" fail as one), else the name typed. */
static const char *
auth_login(const struct auth_request *req)
{
	return req->login[0] != '\0' ? req->login : req->user;
}

/* A password check answered: how long to hold the answer (ms). */
uint64_t
session_auth_done(struct session *s, const struct auth_request *req)
{
	struct policy_ctx c =
		session_policy_ctx(s, auth_login(req), timer_now_ms());
	struct policy_verdict v;
	uint64_t hold = policy_auth_done(&c, &s->pol, req->ok, &v);

	session_apply_verdict(s, &v);
	return hold;
}

/* AUTH succeeded: the user's limits and senders. */
void
session_authed(struct session *s)
{
	const char *user = smtp_user(&s->smtp);
	struct policy_ctx c = session_policy_ctx(s, user, timer_now_ms());

	policy_authed(&c, &s->pol, passwd_db_user_info(s->gen->users, user));
}

/* A request to the cluster for s, answered on its worker
 * (session_on_cluster); NULL when there is no memory for it. */
static struct cluster_request *
cluster_ask(struct session *s, enum cluster_op op)
{
	struct cluster_request *req = calloc(1, sizeof(*req));

	if (req == NULL)
		return NULL;
	req->op = op;
	req->owner = s;
	req->cookie = (uint64_t)(uintptr_t)s->ring;
	req->done = s->ring->cluster_done;
	return req;
}

static void
cluster_send(struct session *s, struct cluster_request *req)
{
	s->creq = req;
	s->inflight++;
	/* The worker's own connection; the thread's while it is not up. */
	if (!cluster_link_submit(s->ring->cluster_link, req))
		cluster_submit(s->ring->shared.cluster, req);
}

/* The MAIL or RCPT in s->smtp may go to the backend: false when it was
 * refused instead (the reply is queued), or the cluster was asked. */
bool
session_may_forward(struct session *s)
{
	const char *user = smtp_user(&s->smtp);
	struct policy_ctx c = session_policy_ctx(s, user, timer_now_ms());
	struct cluster_request *req;
	struct policy_verdict v;

	if (policy_forward(&c, &s->pol, &s->smtp, &v) ||
	    v.refused != POLICY_ASK)
		return session_apply_verdict(s, &v);
	req = cluster_ask(s, CLUSTER_TAKE);
	if (req == NULL) {
		policy_answer_local(&c, &s->pol, v.ask, &v);
		return session_apply_verdict(s, &v);
	}
	cluster_user_id(user, req->user);
	cluster_request_rates(req, s->pol.user_limits);
	memcpy(req->amount, v.ask, sizeof(req->amount));
	cluster_send(s, req);
	return false;
}

bool
session_take_answered(struct session *s, struct cluster_request *req)
{
	struct policy_ctx c =
		session_policy_ctx(s, smtp_user(&s->smtp), timer_now_ms());
	struct policy_verdict v;

	if (req->status == CLUSTER_OK)
		policy_answer(&c, &s->pol, req->amount, req->refused,
			      req->retry_ms, &v);
	else
		policy_answer_local(&c, &s->pol, req->amount, &v);
	return session_apply_verdict(s, &v);
}

bool
session_auth_ask(struct session *s, const struct auth_request *areq)
{
	const struct config *cfg = session_config(s);
	struct cluster_request *req;
	struct ipnet net;

	if (s->ring->shared.cluster == NULL || !s->pol.ip_tracked ||
	    (req = cluster_ask(s, CLUSTER_LOGIN)) == NULL)
		return true;
	cluster_user_id(auth_login(areq), req->user);
	net = policy_tracked_net(cfg, &s->pol);
	ipnet_format(&net, req->net, sizeof(req->net));
	req->ok = areq->ok;
	req->login_rate = cfg->login_failures;
	req->base_delay_ms = cfg->auth_failure_delay_ms;
	req->max_delay_ms = cfg->login_max_delay_ms;
	req->ip_failures = cfg->ip_auth_failures;
	req->ban_ms = cfg->ip_ban_time_ms;
	cluster_send(s, req);
	return false;
}

uint64_t
session_auth_answered(struct session *s, const struct auth_request *areq,
		      const struct cluster_request *creq)
{
	struct policy_ctx c =
		session_policy_ctx(s, auth_login(areq), timer_now_ms());
	struct policy_verdict v;
	uint64_t hold;

	/* Down: this node's own counts, as without a cluster. */
	if (creq->status != CLUSTER_OK)
		return session_auth_done(s, areq);
	hold = policy_auth_shared(&c, &s->pol, areq->ok, creq->delay_ms,
				  creq->banned_ms, &v);
	session_apply_verdict(s, &v);
	return hold;
}

/* n more message bytes for the backend: false when over the user's rate
 * (the message is then sunk and answered with session_bytes_reply()). */
bool
session_take_bytes(struct session *s, size_t n)
{
	struct policy_ctx c =
		session_policy_ctx(s, smtp_user(&s->smtp), timer_now_ms());
	struct policy_verdict v;

	if (policy_take_bytes(&c, &s->pol, n, &v))
		return true; /* every piece of a message: the short way */
	return session_apply_verdict(s, &v);
}

/* The reply for a message sunk by session_take_bytes(). */
const char *
session_bytes_reply(struct session *s, char *buf, size_t len)
{
	return policy_bytes_reply(&s->pol, buf, len);
}

/* On every pass of session_run(): nothing held is the common case, and
 * costs no clock read. */
void
session_settle(struct session *s)
{
	struct policy_ctx c;

	if (!policy_holding(&s->pol))
		return;
	c = session_policy_ctx(s, smtp_user(&s->smtp), timer_now_ms());
	policy_settle(&c, &s->pol, &s->smtp);
}

/* The session ends: what it held is settled, its network counted out. */
void
session_policy_end(struct session *s)
{
	struct policy_ctx c =
		session_policy_ctx(s, smtp_user(&s->smtp), timer_now_ms());

	policy_session_end(&c, &s->pol, &s->smtp);
}
