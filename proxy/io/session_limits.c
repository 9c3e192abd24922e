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

#include "auth/passwd_db.h"
#include "bans/bans.h"
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
		caps_count_mail_refused(s->ring->shared.caps);
		session_log(s, LOG_INFO, "mail-refused", " reason=%s",
			    v->reason);
		smtp_refuse(&s->smtp, v->reply, false);
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

/* A password check answered: how long to hold the answer (ms). */
uint64_t
session_auth_done(struct session *s, const struct auth_request *req)
{
	struct policy_ctx c = session_policy_ctx(s, req->user, timer_now_ms());
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

/* The MAIL or RCPT in s->smtp may go to the backend: false when it was
 * refused instead (the reply is queued). */
bool
session_may_forward(struct session *s)
{
	struct policy_ctx c =
		session_policy_ctx(s, smtp_user(&s->smtp), timer_now_ms());
	struct policy_verdict v;

	policy_forward(&c, &s->pol, &s->smtp, &v);
	return session_apply_verdict(s, &v);
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
