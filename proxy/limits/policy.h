/*
 * policy.h - what a session may do: the limit decisions between a session
 * and the shared limits (ratelimit.h), the listener's allow/deny lists, the
 * sender check (sender.h) and the memory cap (caps.h).
 *
 * Pure verdicts.  Every call takes a struct policy_ctx (the config, the
 * shared tables, the client, the login, the time: the session makes one
 * per call) and the session's own struct policy_state, and fills a struct
 * policy_verdict: what was refused, the reason for the log and counters,
 * the retry time, the client's reply, and a ban the client's network
 * earned.  Nothing here sends a reply, logs, counts, reads the clock or
 * knows a session or a worker; session.c acts on the verdict in one place
 * (session_apply_verdict()).  The only writes are to the shared rate
 * tables, which is what a decision spends, and to the policy_state.
 *
 * A ban travels in the verdict (net, banned_ms, blocklist_ms) and the
 * session puts it on the blocklist with bans_add(): that call writes the
 * kernel's maps when XDP is on and can fail, and its failure is logged
 * with the session, next to the refusal it belongs to.  Policy reads the
 * blocklist's settings only (blocklist.auto_ban, ban_floods).
 *
 * The session calls in at fixed points: when it is accepted
 * (policy_admit), when a password check is answered (policy_auth_done,
 * policy_authed), before a MAIL or RCPT goes to the backend
 * (policy_forward), as message bytes go (policy_take_bytes), whenever a
 * transaction may have ended (policy_settle) and at the end
 * (policy_session_end).  Units taken for a transaction are held in the
 * policy_state; policy_settle() gives them back unless the message was
 * delivered, so only mail the backend accepted costs tokens.
 *
 * Refusals: 554 5.7.1 or 421 4.7.0 at connect (the session logs
 * msg=session-refused), 451 4.7.1 for a rate (msg=limit), 553 5.7.1 for a
 * foreign sender (msg=sender-refused), 451 4.3.1 for a MAIL while the
 * process is over limits.max_memory (msg=mail-refused, counted in caps).
 */
#ifndef MSAPROXY_POLICY_H
#define MSAPROXY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "lib/ipnet.h"
#include "limits/ratelimit.h"

struct bans;
struct caps;
struct passwd_user_info;
struct smtp;

/*
 * The cluster's side of the user buckets (cluster.redis, docs/CLUSTER.md).
 * With it, a MAIL or RCPT is not taken here: policy_forward() answers
 * POLICY_ASK with the units to ask for, the session asks the cluster and
 * brings the answer to policy_answer() (or policy_answer_local() when the
 * cluster could not answer).  Units given back, and a delivered message's
 * bytes, go through give() without waiting.
 */
struct policy_shared {
	void (*give)(void *arg, const char *login,
		     const struct config_user_limits *pol,
		     const uint64_t amount[LIMIT_USER_KINDS], bool charge);
	void *arg;
	bool fail_closed; /* cluster.fail: closed */
};

/* What a decision reads: made by the session for each call. */
struct policy_ctx {
	const struct config *cfg; /* the session's generation */
	const struct config_listener *listener;
	struct ratelimit *limits;      /* shared: taken from, given back to */
	const struct bans *bans;       /* NULL: no blocklist */
	const struct caps *caps;       /* NULL: no memory cap */
	const union sockaddr_ip *peer; /* the client */
	const char *login; /* the login checked (AUTH) or authenticated */
	uint64_t now_ms;   /* CLOCK_MONOTONIC */
	const struct policy_shared *shared; /* NULL: this node's tables */
};

/* What policy keeps per session, inside struct session (mind its size:
 * session.h).  All zero before policy_admit(). */
struct policy_state {
	struct ratelimit_key ip_key;
	struct ratelimit_key user_key;
	const struct config_user_limits *user_limits; /* set at AUTH */
	const char *senders;			      /* passwd senders= */
	uint64_t held[LIMIT_USER_KINDS]; /* taken for this transaction */
	uint64_t limit_retry_ms;	 /* for the byte-limit reply */
	unsigned held_mark;		 /* smtp.messages when taken */
	bool ip_tracked;  /* counted as open in limits: not allowlisted */
	bool banned;	  /* a failed login earned the network a ban */
	bool held_shared; /* held[] (but bytes) was taken in the cluster */
};

/* What was refused; each says how the session answers. */
enum policy_refusal {
	POLICY_OK,
	POLICY_CONNECTION, /* close: the reply on a STARTTLS listener only */
	POLICY_RATE,	   /* the reply instead of the MAIL or RCPT */
	POLICY_BYTES,	   /* sink the message; its end: policy_bytes_reply() */
	POLICY_SENDER,	   /* the reply instead of the MAIL, a client error */
	POLICY_MEMORY,	   /* the reply instead of the MAIL */
	POLICY_ASK,	   /* ask the cluster for ask[] (policy_shared) */
	POLICY_UNAVAILABLE, /* the reply instead of the MAIL: cluster down */
};

#define POLICY_REPLY_MAX 400 /* a 255-byte hostname and the longest text */

struct policy_verdict {
	enum policy_refusal refused;
	/* Static: reason= of msg=session-refused and msg=mail-refused,
	 * limit= of msg=limit (the counters' names); NULL when POLICY_OK. */
	const char *reason;
	uint64_t retry_ms; /* as logged (a limit never met: 0) */
	/* A ban the client's network (net) earned: banned_ms from failed
	 * logins (msg=ip-banned), blocklist_ms for the blocklist
	 * (blocklist.auto_ban, ban_floods); 0: none. */
	uint64_t banned_ms;
	uint64_t blocklist_ms;
	struct ipnet net;
	uint64_t ask[LIMIT_USER_KINDS]; /* POLICY_ASK: the units */
	char reply[POLICY_REPLY_MAX];	/* "" when there is none */
};

/* A new connection from c->peer on c->listener: false when it is refused. */
bool policy_admit(const struct policy_ctx *c, struct policy_state *st,
		  struct policy_verdict *v);
/* A password check answered for c->login: records a failure, and returns
 * how long to hold the answer (ms).  v->banned_ms (and st->banned) when the
 * failure earned the client's network a ban. */
uint64_t policy_auth_done(const struct policy_ctx *c, struct policy_state *st,
			  bool ok, struct policy_verdict *v);
/* The same verdict from the cluster's answer (cluster.h, CLUSTER_LOGIN):
 * delay_ms the login's slow-down, banned_ms a ban the failure earned the
 * network across the cluster. */
uint64_t policy_auth_shared(const struct policy_ctx *c, struct policy_state *st,
			    bool ok, uint64_t delay_ms, uint64_t banned_ms,
			    struct policy_verdict *v);
/* AUTH succeeded for c->login (after policy_auth_done() for it): its limits
 * and senders.  info: its users-file entry, NULL if none. */
void policy_authed(const struct policy_ctx *c, struct policy_state *st,
		   const struct passwd_user_info *info);
/* The MAIL or RCPT in m is about to be forwarded: false when it is refused
 * instead. */
bool policy_forward(const struct policy_ctx *c, struct policy_state *st,
		    const struct smtp *m, struct policy_verdict *v);
/* The cluster's answer to a POLICY_ASK for ask[]: refused is the kind
 * that refused (LIMIT_USER_KINDS: taken), retry_ms its wait.  false when
 * the MAIL or RCPT is refused instead. */
bool policy_answer(const struct policy_ctx *c, struct policy_state *st,
		   const uint64_t ask[LIMIT_USER_KINDS], int refused,
		   uint64_t retry_ms, struct policy_verdict *v);
/* The cluster could not answer a POLICY_ASK: with cluster.fail open the
 * node's own tables decide, closed refuses the MAIL (451 4.3.0). */
bool policy_answer_local(const struct policy_ctx *c, struct policy_state *st,
			 const uint64_t ask[LIMIT_USER_KINDS],
			 struct policy_verdict *v);
/* n more message bytes for the backend: false when over the user's limit
 * (POLICY_BYTES: the session sinks the message and answers at its end). */
bool policy_take_bytes(const struct policy_ctx *c, struct policy_state *st,
		       size_t n, struct policy_verdict *v);
/* Give back what an ended, undelivered transaction held (m: where the
 * client's transaction stands). */
void policy_settle(const struct policy_ctx *c, struct policy_state *st,
		   const struct smtp *m);
/* The session ends: its transaction settled, its connection counted out. */
void policy_session_end(const struct policy_ctx *c, struct policy_state *st,
			const struct smtp *m);
/* The network the limits track the client in (st->ip_tracked). */
struct ipnet policy_tracked_net(const struct config *cfg,
				const struct policy_state *st);
/* The reply for a message sunk by policy_take_bytes(). */
const char *policy_bytes_reply(const struct policy_state *st, char *buf,
			       size_t len);

static inline bool
policy_holding_any(const uint64_t held[LIMIT_USER_KINDS])
{
	for (int k = 0; k < LIMIT_USER_KINDS; k++)
		if (held[k] != 0)
			return true;
	return false;
}

/* Units held for a transaction?  Without, there is nothing to settle. */
static inline bool
policy_holding(const struct policy_state *st)
{
	return policy_holding_any(st->held);
}

#endif
