/*
 * policy.c - limits, allow/deny lists and the sender check, applied to a
 * session.  Read policy.h first.
 *
 * Config keys: listeners[].allow, listeners[].deny,
 * listeners[].sender_check, auth.failure_delay, limits.* (see ratelimit.h),
 * limits.max_memory (through caps.h: no new MAIL while over it).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "auth/passwd_db.h"
#include "bans/bans.h"
#include "limits/caps.h"
#include "lib/log.h"
#include "limits/policy.h"
#include "limits/sender.h"
#include "io/session.h"

static const char *const kind_names[LIMIT_USER_KINDS] = {
	[LIMIT_MESSAGES] = "messages",
	[LIMIT_RECIPIENTS] = "recipients",
	[LIMIT_BYTES] = "bytes",
	[LIMIT_QUOTA] = "messages_quota",
};

static const char *const verdict_names[] = {
	[RATELIMIT_OK] = "ok",
	[RATELIMIT_BANNED] = "banned",
	[RATELIMIT_RATE] = "ip-connection-rate",
	[RATELIMIT_CONCURRENCY] = "ip-concurrency",
	[RATELIMIT_FULL] = "ip-table-full",
};

/* "1h", "10m", "30s", "250ms": the largest unit that divides ms. */
static const char *
period_text(char *buf, size_t len, uint64_t ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {
		{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};

	for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++) {
		if (ms % units[i].ms == 0) {
			snprintf(buf, len, "%" PRIu64 "%s", ms / units[i].ms,
				 units[i].unit);
			return buf;
		}
	}
	snprintf(buf, len, "%" PRIu64 "ms", ms);
	return buf;
}

/* Seconds to wait, rounded up, at least 1. */
static uint64_t
retry_seconds(uint64_t ms)
{
	if (ms == UINT64_MAX)
		return 0;
	return ms < 1000 ? 1 : (ms + 999) / 1000;
}

/* "451 4.7.1 Message rate limit reached (100 per 1h), try again in 37
 * seconds" */
static void
limit_reply(char *buf, size_t len, const struct config_user_limits *lim,
	    enum ratelimit_user_kind kind, uint64_t retry_ms)
{
	static const char *const what[LIMIT_USER_KINDS] = {
		[LIMIT_MESSAGES] = "Message rate limit reached",
		[LIMIT_RECIPIENTS] = "Recipient rate limit reached",
		[LIMIT_BYTES] = "Message data rate limit reached",
		[LIMIT_QUOTA] = "Message quota reached",
	};
	const struct config_rate *r = ratelimit_rate(lim, kind);
	char per[32], count[32];
	uint64_t secs = retry_seconds(retry_ms);

	if (kind == LIMIT_BYTES)
		snprintf(count, sizeof(count), "%" PRIu64 " bytes", r->count);
	else
		snprintf(count, sizeof(count), "%" PRIu64, r->count);
	period_text(per, sizeof(per), r->period_ms);
	if (secs == 0)
		snprintf(buf, len,
			 "451 4.7.1 %s (%s per %s): this message is larger "
			 "than the limit allows",
			 what[kind], count, per);
	else
		snprintf(buf, len,
			 "451 4.7.1 %s (%s per %s), try again in %" PRIu64
			 " seconds",
			 what[kind], count, per, secs);
}

static void
log_limit(struct session *s, enum ratelimit_user_kind kind, uint64_t retry_ms)
{
	char u[LOG_USER_MAX];

	log_info("limit",
		 " session=%llx client=%s user=%s limit=%s retry_ms=%" PRIu64,
		 (unsigned long long)s->id, s->peer_addr,
		 session_log_user(u, sizeof(u), smtp_user(&s->smtp)),
		 kind_names[kind], retry_ms == UINT64_MAX ? 0 : retry_ms);
}

/* ---------------------------------------------------------------------
 * Connect
 */

static void
refuse_connection(struct session *s, const char *reply, const char *reason,
		  uint64_t retry_ms)
{
	log_info("session-refused",
		 " session=%llx client=%s listener=%s reason=%s "
		 "retry_ms=%" PRIu64,
		 (unsigned long long)s->id, s->peer_addr,
		 s->listener->addr.text, reason, retry_ms);
	/* On an implicit TLS port a plaintext reply would only be garbage
	 * to the client's TLS stack: just close. */
	if (s->listener->mode == LISTENER_STARTTLS)
		smtp_shutdown(&s->smtp, reply, reason);
	s->smtp.close_reason = reason;
	s->closing = true;
}

/* Also put a ban this session's network earned on the blocklist (and so
 * in the kernel, with XDP): its next packets cost nothing. */
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

/* The network ratelimit tracks this session's client in. */
static struct ipnet
tracked_net(const struct session *s)
{
	const struct config *cfg = session_config(s);
	struct ipnet net;

	memcpy(net.addr, s->ip_key.b, sizeof(net.addr));
	net.len = (uint8_t)(ipnet_is_v4(net.addr) ? 96 + cfg->ip_prefix_v4
						  : cfg->ip_prefix_v6);
	return net;
}

bool
policy_admit(struct session *s)
{
	const struct config *cfg = session_config(s);
	const struct config_listener *l = s->listener;
	enum ratelimit_verdict v;
	uint8_t addr[16];
	uint64_t retry = 0;
	char reply[400];

	if (!ipnet_from_sockaddr(&s->peer.sa, addr))
		return true; /* not IP: nothing to match */
	if (ipnet_list_contains(l->deny.v, l->deny.n, addr) ||
	    (l->allow.n > 0 &&
	     !ipnet_list_contains(l->allow.v, l->allow.n, addr))) {
		snprintf(reply, sizeof(reply), "554 5.7.1 %s Access denied",
			 cfg->hostname);
		refuse_connection(s, reply, "listener-denied", 0);
		return false;
	}
	if (!ratelimit_ip_key(s->ring->shared.limits, addr, &s->ip_key))
		return true; /* limits.ip.allow */
	v = ratelimit_ip_connect(s->ring->shared.limits, &s->ip_key,
				 s->started_ms, &retry);
	if (v == RATELIMIT_OK) {
		s->ip_tracked = true;
		return true;
	}
	if (v == RATELIMIT_RATE && s->ring->shared.bans != NULL &&
	    bans_auto_floods(s->ring->shared.bans)) {
		struct ipnet net = tracked_net(s);

		auto_ban(s, &net, retry > 1000 ? retry : 1000);
	}
	if (v == RATELIMIT_BANNED)
		snprintf(reply, sizeof(reply),
			 "421 4.7.0 %s Too many failed logins from your "
			 "network, try again in %" PRIu64 " seconds",
			 cfg->hostname, retry_seconds(retry));
	else
		snprintf(reply, sizeof(reply),
			 "421 4.7.0 %s Too many connections from your "
			 "network, try again in %" PRIu64 " seconds",
			 cfg->hostname, retry_seconds(retry));
	refuse_connection(s, reply, verdict_names[v], retry);
	return false;
}

/* ---------------------------------------------------------------------
 * AUTH
 */

uint64_t
policy_auth_done(struct session *s, const char *login, bool ok)
{
	const struct config *cfg = session_config(s);
	struct ratelimit *lim = s->ring->shared.limits;
	uint64_t now = timer_now_ms(), hold = 0, ban;

	/* One keyed hash per attempt: the login's score now, its buckets
	 * after policy_authed(). */
	ratelimit_user_key(lim, login, &s->user_key);
	if (s->ip_tracked) {
		/* The score of this login across all networks: its answer
		 * waits longer with every failure over the allowance. */
		hold = ratelimit_login_delay(lim, &s->user_key,
					     cfg->auth_failure_delay_ms, now);
		if (!ok)
			ratelimit_login_failed(lim, &s->user_key, now);
	}
	if (ok)
		return hold;
	if (s->ip_tracked &&
	    (ban = ratelimit_ip_auth_failed(lim, &s->ip_key, now)) != 0) {
		struct ipnet net = tracked_net(s);
		char text[IPNET_TEXT_MAX];

		log_warn("ip-banned",
			 " session=%llx client=%s network=%s ban_ms=%" PRIu64
			 " reason=auth-failures",
			 (unsigned long long)s->id, s->peer_addr,
			 ipnet_format(&net, text, sizeof(text)), ban);
		s->banned = true;
		if (s->ring->shared.bans != NULL &&
		    bans_auto_logins(s->ring->shared.bans))
			auto_ban(s, &net, ban);
	}
	return hold > cfg->auth_failure_delay_ms ? hold
						 : cfg->auth_failure_delay_ms;
}

void
policy_authed(struct session *s)
{
	const char *user = smtp_user(&s->smtp);
	const struct passwd_user_info *info =
		passwd_db_user_info(s->gen->users, user);

	/* s->user_key: made for this login by policy_auth_done(). */
	s->senders = info ? info->senders : NULL;
	s->user_limits = ratelimit_policy(session_config(s), user,
					  info ? info->class_name : NULL);
}

/* ---------------------------------------------------------------------
 * Transactions
 */

static bool
held_any(const struct session *s)
{
	for (int k = 0; k < LIMIT_USER_KINDS; k++)
		if (s->held[k] != 0)
			return true;
	return false;
}

/* The transaction is over: keep the units if it delivered, else give. */
static void
settle_closed(struct session *s)
{
	if (!held_any(s))
		return;
	if (s->smtp.messages == s->held_mark)
		ratelimit_user_give(s->ring->shared.limits, &s->user_key,
				    s->user_limits, s->held, timer_now_ms());
	memset(s->held, 0, sizeof(s->held));
}

void
policy_settle(struct session *s)
{
	const struct smtp *m = &s->smtp;
	uint64_t want, back[LIMIT_USER_KINDS] = {0};

	if (!held_any(s))
		return;
	if (!m->in_mail && m->fwd != SMTP_FWD_MAIL) {
		settle_closed(s);
		return;
	}
	/* Recipients the backend refused cost nothing. */
	want = m->rcpts + (m->fwd == SMTP_FWD_RCPT ? 1u : 0u);
	if (s->held[LIMIT_RECIPIENTS] > want) {
		back[LIMIT_RECIPIENTS] = s->held[LIMIT_RECIPIENTS] - want;
		s->held[LIMIT_RECIPIENTS] = want;
		ratelimit_user_give(s->ring->shared.limits, &s->user_key,
				    s->user_limits, back, timer_now_ms());
	}
}

static bool
take(struct session *s, enum ratelimit_user_kind kind, uint64_t n,
     uint64_t *retry)
{
	uint64_t amount[LIMIT_USER_KINDS] = {0};
	enum ratelimit_user_kind refused;

	amount[kind] = n;
	if (kind == LIMIT_MESSAGES)
		amount[LIMIT_QUOTA] = n;
	refused = ratelimit_user_take(s->ring->shared.limits, &s->user_key,
				      s->user_limits, amount, timer_now_ms(),
				      retry);
	if (refused != LIMIT_USER_KINDS) {
		char reply[300];

		log_limit(s, refused, *retry);
		limit_reply(reply, sizeof(reply), s->user_limits, refused,
			    *retry);
		smtp_refuse(&s->smtp, reply, false);
		return false;
	}
	for (int k = 0; k < LIMIT_USER_KINDS; k++)
		s->held[k] += amount[k];
	return true;
}

static bool
check_sender(struct session *s)
{
	const struct smtp *m = &s->smtp;
	const char *addr = m->fwd_line + m->path_off;
	char u[LOG_USER_MAX], a[4 * 256 + 3];

	if (!s->listener->sender_check ||
	    sender_allowed(smtp_user(m), s->senders, addr, m->path_len))
		return true;
	log_info("sender-refused", " session=%llx client=%s user=%s sender=%s",
		 (unsigned long long)s->id, s->peer_addr,
		 session_log_user(u, sizeof(u), smtp_user(m)),
		 log_quote(a, sizeof(a), addr, m->path_len));
	smtp_refuse(&s->smtp,
		    "553 5.7.1 Sender address not owned by the authenticated "
		    "user",
		    true);
	return false;
}

/* limits.max_memory reached: no new transaction (one under way, whose
 * MAIL was taken, finishes; the client will retry this one). */
static bool
refuse_for_memory(struct session *s)
{
	char u[LOG_USER_MAX];

	caps_count_mail_refused(s->ring->shared.caps);
	log_info("mail-refused", " session=%llx client=%s user=%s reason=%s",
		 (unsigned long long)s->id, s->peer_addr,
		 session_log_user(u, sizeof(u), smtp_user(&s->smtp)),
		 "max-memory");
	smtp_refuse(&s->smtp,
		    "451 4.3.1 Insufficient system resources, try again later",
		    false);
	return false;
}

bool
policy_forward(struct session *s)
{
	uint64_t retry = 0;

	if (s->user_limits == NULL)
		return true; /* not after AUTH: smtp.c refuses those */
	switch (s->smtp.fwd) {
	case SMTP_FWD_MAIL:
		if (!check_sender(s))
			return false;
		/* A new MAIL: the last transaction is surely over. */
		settle_closed(s);
		s->held_mark = s->smtp.messages;
		if (caps_memory_over(s->ring->shared.caps))
			return refuse_for_memory(s);
		return take(s, LIMIT_MESSAGES, 1, &retry);
	case SMTP_FWD_RCPT:
		return take(s, LIMIT_RECIPIENTS, 1, &retry);
	default:
		return true;
	}
}

bool
policy_take_bytes(struct session *s, size_t n)
{
	uint64_t amount[LIMIT_USER_KINDS] = {0};
	enum ratelimit_user_kind refused;

	if (s->user_limits == NULL || n == 0)
		return true;
	amount[LIMIT_BYTES] = n;
	refused = ratelimit_user_take(s->ring->shared.limits, &s->user_key,
				      s->user_limits, amount, timer_now_ms(),
				      &s->limit_retry_ms);
	if (refused != LIMIT_USER_KINDS) {
		log_limit(s, refused, s->limit_retry_ms);
		return false;
	}
	s->held[LIMIT_BYTES] += n;
	return true;
}

const char *
policy_bytes_reply(struct session *s, char *buf, size_t len)
{
	limit_reply(buf, len, s->user_limits, LIMIT_BYTES, s->limit_retry_ms);
	return buf;
}

void
policy_session_end(struct session *s)
{
	/* A delivered message keeps its units; anything under way was never
	 * acknowledged and gives them back. */
	settle_closed(s);
	if (s->ip_tracked) {
		ratelimit_ip_disconnect(s->ring->shared.limits, &s->ip_key);
		s->ip_tracked = false;
	}
}
