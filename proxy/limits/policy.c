/*
 * policy.c - limits, allow/deny lists and the sender check, decided for a
 * session and returned as verdicts: no replies, logs, counters or clock
 * here (session.c acts on the verdict).  Read policy.h first.
 *
 * Trusts the config and the shared tables; the client's address, login and
 * MAIL FROM are only compared and copied into bounded replies.
 *
 * Config keys: listeners[].allow, listeners[].deny,
 * listeners[].sender_check, auth.failure_delay, limits.* (see ratelimit.h),
 * limits.max_memory (through caps.h: no new MAIL while over it),
 * blocklist.auto_ban and blocklist.ban_floods (through bans.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "auth/passwd_db.h"
#include "bans/bans.h"
#include "limits/caps.h"
#include "limits/policy.h"
#include "limits/sender.h"
#include "smtp/smtp.h"

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

/* Nothing refused, no ban: the start of every verdict.  (Not the whole
 * struct: policy_take_bytes() runs for every piece of a message.) */
static void
verdict_init(struct policy_verdict *v)
{
	v->refused = POLICY_OK;
	v->reason = NULL;
	v->retry_ms = 0;
	v->banned_ms = 0;
	v->blocklist_ms = 0;
	v->reply[0] = '\0';
}

/* Returns false, for the callers' return statements. */
static bool
policy_refuse(struct policy_verdict *v, enum policy_refusal what,
	      const char *reason, uint64_t retry_ms)
{
	v->refused = what;
	v->reason = reason;
	v->retry_ms = retry_ms;
	return false;
}

/* ---------------------------------------------------------------------
 * Connect
 */

struct ipnet
policy_tracked_net(const struct config *cfg, const struct policy_state *st)
{
	struct ipnet net;

	memcpy(net.addr, st->ip_key.b, sizeof(net.addr));
	net.len = (uint8_t)(ipnet_is_v4(net.addr) ? 96 + cfg->ip_prefix_v4
						  : cfg->ip_prefix_v6);
	return net;
}

bool
policy_admit(const struct policy_ctx *c, struct policy_state *st,
	     struct policy_verdict *v)
{
	const struct config_listener *l = c->listener;
	enum ratelimit_verdict rv;
	uint8_t addr[16];
	uint64_t retry = 0;

	verdict_init(v);
	if (!ipnet_from_sockaddr(&c->peer->sa, addr))
		return true; /* not IP: nothing to match */
	if (ipnet_list_contains(l->deny.v, l->deny.n, addr) ||
	    (l->allow.n > 0 &&
	     !ipnet_list_contains(l->allow.v, l->allow.n, addr))) {
		snprintf(v->reply, sizeof(v->reply),
			 "554 5.7.1 %s Access denied", c->cfg->hostname);
		return policy_refuse(v, POLICY_CONNECTION, "listener-denied",
				     0);
	}
	if (!ratelimit_ip_key(c->limits, addr, &st->ip_key))
		return true; /* limits.ip.allow */
	rv = ratelimit_ip_connect(c->limits, &st->ip_key, c->now_ms, &retry);
	if (rv == RATELIMIT_OK) {
		st->ip_tracked = true;
		return true;
	}
	/* A flood's network on the blocklist too (and so in the kernel,
	 * with XDP): its next packets cost nothing. */
	if (rv == RATELIMIT_RATE && c->bans != NULL &&
	    bans_auto_floods(c->bans)) {
		v->net = policy_tracked_net(c->cfg, st);
		v->blocklist_ms = retry > 1000 ? retry : 1000;
	}
	if (rv == RATELIMIT_BANNED)
		snprintf(v->reply, sizeof(v->reply),
			 "421 4.7.0 %s Too many failed logins from your "
			 "network, try again in %" PRIu64 " seconds",
			 c->cfg->hostname, retry_seconds(retry));
	else
		snprintf(v->reply, sizeof(v->reply),
			 "421 4.7.0 %s Too many connections from your "
			 "network, try again in %" PRIu64 " seconds",
			 c->cfg->hostname, retry_seconds(retry));
	return policy_refuse(v, POLICY_CONNECTION, verdict_names[rv], retry);
}

/* ---------------------------------------------------------------------
 * AUTH
 */

uint64_t
policy_auth_done(const struct policy_ctx *c, struct policy_state *st, bool ok,
		 struct policy_verdict *v)
{
	uint64_t base = c->cfg->auth_failure_delay_ms, hold = 0, ban;

	verdict_init(v);
	/* One keyed hash per attempt: the login's score now, its buckets
	 * after policy_authed(). */
	ratelimit_user_key(c->limits, c->login, &st->user_key);
	if (st->ip_tracked) {
		/* The score of this login across all networks: its answer
		 * waits longer with every failure over the allowance. */
		hold = ratelimit_login_delay(c->limits, &st->user_key, base,
					     c->now_ms);
		if (!ok)
			ratelimit_login_failed(c->limits, &st->user_key,
					       c->now_ms);
	}
	if (ok)
		return hold;
	if (st->ip_tracked &&
	    (ban = ratelimit_ip_auth_failed(c->limits, &st->ip_key,
					    c->now_ms)) != 0) {
		st->banned = true;
		v->net = policy_tracked_net(c->cfg, st);
		v->banned_ms = ban;
		if (c->bans != NULL && bans_auto_logins(c->bans))
			v->blocklist_ms = ban;
	}
	return hold > base ? hold : base;
}

uint64_t
policy_auth_shared(const struct policy_ctx *c, struct policy_state *st, bool ok,
		   uint64_t delay_ms, uint64_t banned_ms,
		   struct policy_verdict *v)
{
	uint64_t base = c->cfg->auth_failure_delay_ms;

	verdict_init(v);
	ratelimit_user_key(c->limits, c->login, &st->user_key);
	if (ok)
		return delay_ms;
	if (banned_ms != 0 && st->ip_tracked) {
		/* This node refuses the network at once; the others learn
		 * of it through the blocklist (blocklist.auto_ban). */
		ratelimit_ip_ban(c->limits, &st->ip_key, banned_ms, c->now_ms);
		st->banned = true;
		v->net = policy_tracked_net(c->cfg, st);
		v->banned_ms = banned_ms;
		if (c->bans != NULL && bans_auto_logins(c->bans))
			v->blocklist_ms = banned_ms;
	}
	return delay_ms > base ? delay_ms : base;
}

void
policy_authed(const struct policy_ctx *c, struct policy_state *st,
	      const struct passwd_user_info *info)
{
	/* st->user_key: made for this login by policy_auth_done(). */
	st->senders = info ? info->senders : NULL;
	st->user_limits = ratelimit_policy(c->cfg, c->login,
					   info ? info->class_name : NULL);
}

/* ---------------------------------------------------------------------
 * Transactions
 */

/* The transaction is over: keep the units if it delivered, else give. */
/* Units back where they were taken: the cluster's (all but the bytes,
 * which every node takes as they stream) or this node's. */
static void
give_back(const struct policy_ctx *c, struct policy_state *st,
	  const uint64_t amount[LIMIT_USER_KINDS])
{
	uint64_t local[LIMIT_USER_KINDS] = {0};

	if (!st->held_shared || c->shared == NULL) {
		ratelimit_user_give(c->limits, &st->user_key, st->user_limits,
				    amount, c->now_ms);
		return;
	}
	local[LIMIT_BYTES] = amount[LIMIT_BYTES];
	if (local[LIMIT_BYTES] != 0)
		ratelimit_user_give(c->limits, &st->user_key, st->user_limits,
				    local, c->now_ms);
	memcpy(local, amount, sizeof(local));
	local[LIMIT_BYTES] = 0;
	if (policy_holding_any(local))
		c->shared->give(c->shared->arg, c->login, st->user_limits,
				local, false);
}

static void
settle_closed(const struct policy_ctx *c, struct policy_state *st,
	      const struct smtp *m)
{
	if (!policy_holding(st))
		return;
	if (m->messages == st->held_mark) {
		give_back(c, st, st->held);
	} else if (st->held_shared && c->shared != NULL &&
		   st->held[LIMIT_BYTES] != 0) {
		/* Delivered: its bytes count on every node from now on. */
		uint64_t bytes[LIMIT_USER_KINDS] = {0};

		bytes[LIMIT_BYTES] = st->held[LIMIT_BYTES];
		c->shared->give(c->shared->arg, c->login, st->user_limits,
				bytes, true);
	}
	memset(st->held, 0, sizeof(st->held));
	st->held_shared = false;
}

void
policy_settle(const struct policy_ctx *c, struct policy_state *st,
	      const struct smtp *m)
{
	uint64_t want, back[LIMIT_USER_KINDS] = {0};

	if (!policy_holding(st))
		return;
	if (!m->in_mail && m->fwd != SMTP_FWD_MAIL) {
		settle_closed(c, st, m);
		return;
	}
	/* Recipients the backend refused cost nothing.  The cluster's
	 * MAIL reserved the first one (one round trip for the common
	 * message), kept until the transaction ends. */
	want = m->rcpts + (m->fwd == SMTP_FWD_RCPT ? 1u : 0u);
	if (st->held_shared && want == 0)
		want = 1;
	if (st->held[LIMIT_RECIPIENTS] > want) {
		back[LIMIT_RECIPIENTS] = st->held[LIMIT_RECIPIENTS] - want;
		st->held[LIMIT_RECIPIENTS] = want;
		give_back(c, st, back);
	}
}

/* The refusal of kind, with its wait. */
static bool
refuse_rate(const struct policy_state *st, enum ratelimit_user_kind kind,
	    uint64_t retry, struct policy_verdict *v)
{
	limit_reply(v->reply, sizeof(v->reply), st->user_limits, kind, retry);
	return policy_refuse(v, POLICY_RATE, kind_names[kind],
			     retry == UINT64_MAX ? 0 : retry);
}

static bool
take_local(const struct policy_ctx *c, struct policy_state *st,
	   const uint64_t amount[LIMIT_USER_KINDS], struct policy_verdict *v)
{
	enum ratelimit_user_kind refused;
	uint64_t retry = 0;

	refused = ratelimit_user_take(c->limits, &st->user_key, st->user_limits,
				      amount, c->now_ms, &retry);
	if (refused != LIMIT_USER_KINDS)
		return refuse_rate(st, refused, retry, v);
	for (int k = 0; k < LIMIT_USER_KINDS; k++)
		st->held[k] += amount[k];
	return true;
}

/* Does the policy limit anything a MAIL or RCPT would ask for? */
static bool
limited(const struct config_user_limits *pol)
{
	for (int k = 0; k < LIMIT_USER_KINDS; k++)
		if (ratelimit_rate(pol, k)->count != 0)
			return true;
	return false;
}

static bool
take(const struct policy_ctx *c, struct policy_state *st,
     enum ratelimit_user_kind kind, const struct smtp *m,
     struct policy_verdict *v)
{
	uint64_t amount[LIMIT_USER_KINDS] = {0};

	amount[kind] = 1;
	if (kind == LIMIT_MESSAGES)
		amount[LIMIT_QUOTA] = 1;
	if (c->shared == NULL || !limited(st->user_limits) ||
	    (kind == LIMIT_RECIPIENTS && !st->held_shared))
		return take_local(c, st, amount, v);
	if (kind == LIMIT_RECIPIENTS && st->held[LIMIT_RECIPIENTS] > m->rcpts)
		return true; /* the one MAIL reserved */
	/* One round trip for the common message: the MAIL reserves its
	 * first recipient, and refuses while the bytes are in debt (they
	 * are charged when a message is delivered). */
	if (kind == LIMIT_MESSAGES)
		amount[LIMIT_RECIPIENTS] = 1;
	memcpy(v->ask, amount, sizeof(v->ask));
	return policy_refuse(v, POLICY_ASK, "ask", 0);
}

bool
policy_answer(const struct policy_ctx *c, struct policy_state *st,
	      const uint64_t ask[LIMIT_USER_KINDS], int refused,
	      uint64_t retry_ms, struct policy_verdict *v)
{
	(void)c;
	verdict_init(v);
	if (refused >= 0 && refused < LIMIT_USER_KINDS)
		return refuse_rate(st, (enum ratelimit_user_kind)refused,
				   retry_ms, v);
	for (int k = 0; k < LIMIT_USER_KINDS; k++)
		st->held[k] += ask[k];
	st->held_shared = true;
	return true;
}

bool
policy_answer_local(const struct policy_ctx *c, struct policy_state *st,
		    const uint64_t ask[LIMIT_USER_KINDS],
		    struct policy_verdict *v)
{
	uint64_t amount[LIMIT_USER_KINDS];

	verdict_init(v);
	if (c->shared != NULL && c->shared->fail_closed) {
		snprintf(v->reply, sizeof(v->reply),
			 "451 4.3.0 %s Temporary service failure, try again "
			 "later",
			 c->cfg->hostname);
		return policy_refuse(v, POLICY_UNAVAILABLE, "cluster-down", 0);
	}
	/* A recipient of a transaction the cluster took: let it go rather
	 * than mix tables inside one transaction. */
	if (st->held_shared)
		return true;
	memcpy(amount, ask, sizeof(amount));
	amount[LIMIT_RECIPIENTS] = ask[LIMIT_MESSAGES] != 0 ? 0 : 1;
	return take_local(c, st, amount, v);
}

static bool
check_sender(const struct policy_ctx *c, const struct policy_state *st,
	     const struct smtp *m, struct policy_verdict *v)
{
	static const char reply[] =
		"553 5.7.1 Sender address not owned by the authenticated user";

	if (!c->listener->sender_check ||
	    sender_allowed(c->login, st->senders, m->fwd_line + m->path_off,
			   m->path_len))
		return true;
	memcpy(v->reply, reply, sizeof(reply));
	return policy_refuse(v, POLICY_SENDER, "sender", 0);
}

bool
policy_forward(const struct policy_ctx *c, struct policy_state *st,
	       const struct smtp *m, struct policy_verdict *v)
{
	static const char no_memory[] =
		"451 4.3.1 Insufficient system resources, try again later";

	verdict_init(v);
	if (st->user_limits == NULL)
		return true; /* not after AUTH: smtp.c refuses those */
	switch (m->fwd) {
	case SMTP_FWD_MAIL:
		if (!check_sender(c, st, m, v))
			return false;
		/* A new MAIL: the last transaction is surely over. */
		settle_closed(c, st, m);
		st->held_mark = m->messages;
		/* limits.max_memory reached: no new transaction (one under
		 * way, whose MAIL was taken, finishes; the client will retry
		 * this one). */
		if (c->caps != NULL && caps_memory_over(c->caps)) {
			memcpy(v->reply, no_memory, sizeof(no_memory));
			return policy_refuse(v, POLICY_MEMORY, "max-memory", 0);
		}
		return take(c, st, LIMIT_MESSAGES, m, v);
	case SMTP_FWD_RCPT:
		return take(c, st, LIMIT_RECIPIENTS, m, v);
	default:
		return true;
	}
}

bool
policy_take_bytes(const struct policy_ctx *c, struct policy_state *st, size_t n,
		  struct policy_verdict *v)
{
	uint64_t amount[LIMIT_USER_KINDS] = {0};
	enum ratelimit_user_kind refused;

	verdict_init(v);
	if (st->user_limits == NULL || n == 0)
		return true;
	amount[LIMIT_BYTES] = n;
	refused = ratelimit_user_take(c->limits, &st->user_key, st->user_limits,
				      amount, c->now_ms, &st->limit_retry_ms);
	if (refused != LIMIT_USER_KINDS) {
		policy_bytes_reply(st, v->reply, sizeof(v->reply));
		return policy_refuse(v, POLICY_BYTES, kind_names[refused],
				     st->limit_retry_ms == UINT64_MAX
					     ? 0
					     : st->limit_retry_ms);
	}
	st->held[LIMIT_BYTES] += n;
	return true;
}

const char *
policy_bytes_reply(const struct policy_state *st, char *buf, size_t len)
{
	limit_reply(buf, len, st->user_limits, LIMIT_BYTES, st->limit_retry_ms);
	return buf;
}

void
policy_session_end(const struct policy_ctx *c, struct policy_state *st,
		   const struct smtp *m)
{
	/* A delivered message keeps its units; anything under way was never
	 * acknowledged and gives them back. */
	settle_closed(c, st, m);
	if (st->ip_tracked) {
		ratelimit_ip_disconnect(c->limits, &st->ip_key);
		st->ip_tracked = false;
	}
}
