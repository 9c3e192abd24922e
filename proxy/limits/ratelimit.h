/*
 * ratelimit.h - rate limits shared by every worker: per authenticated user
 * (messages, recipients, message bytes, an optional quota) and per client
 * network (connection rate, concurrent sessions, failed logins and the
 * bans they earn), plus the per-login failure score that slows a guessed
 * account down.
 *
 * Rates are token buckets, kept as GCRA "theoretical arrival times" (one
 * 64-bit time per bucket; ITU-T I.371): a rate of count per period with a
 * burst allows burst units at once and one more every period/count.  A
 * take is all or nothing and happens under the table shard's mutex, so N
 * sessions of one user on every worker together never get more than
 * burst + rate * elapsed.  Units reserved for a transaction are given back
 * when it fails (ratelimit_user_give), so only delivered mail costs tokens.
 *
 * Tables are bounded (limits.max_users, limits.ip.max_entries), cut into
 * up to 64 shards (of at least 16 entries) with a mutex each.  An entry whose
 * buckets are all full again, with no ban, quota window or open session, means
 * exactly what no entry means, so it is dropped whenever room is needed; only
 * when that is not enough is the least recently used entry without open
 * sessions evicted (counted in the stats).  Memory: RATELIMIT_ENTRY_BYTES per
 * tracked user or network, plus 4 bytes of hash head.
 *
 * Keys: a user is tracked by a keyed SHA-256 of the login (the secret is
 * random per process), a network by its address masked to
 * limits.ip.prefix_v4 / prefix_v6.  Times are CLOCK_MONOTONIC
 * milliseconds from the caller, so the module is testable without a clock.
 */
#ifndef MSAPROXY_RATELIMIT_H
#define MSAPROXY_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "lib/ipnet.h"

#define RATELIMIT_ENTRY_BYTES 80

enum ratelimit_user_kind {
	LIMIT_MESSAGES,
	LIMIT_RECIPIENTS,
	LIMIT_BYTES,
	LIMIT_QUOTA, /* messages in a fixed window (messages_quota) */
	LIMIT_USER_KINDS,
};

enum ratelimit_verdict {
	RATELIMIT_OK,
	RATELIMIT_BANNED,      /* a ban for failed logins is running */
	RATELIMIT_RATE,	       /* limits.ip.connections */
	RATELIMIT_CONCURRENCY, /* limits.ip.concurrency */
	RATELIMIT_FULL,	       /* the table is full of open sessions */
};

/* What a tracked user or network is known by; made once per session. */
struct ratelimit_key {
	uint8_t b[16];
	uint64_t hash; /* keyed: picks the shard and the chain */
};

struct ratelimit_stats {
	_Atomic uint64_t refused[LIMIT_USER_KINDS];
	_Atomic uint64_t ip_refused[RATELIMIT_FULL + 1];
	_Atomic uint64_t bans;
	_Atomic uint64_t evictions;
};

struct ratelimit;

/* Reads cfg's limits (kept by pointer: the config outlives it). */
struct ratelimit *ratelimit_new(const struct config *cfg, char *err,
				size_t errlen);
void ratelimit_free(struct ratelimit *l);
/*
 * A reload: read limits from cfg from now on.  Every bucket, ban and score
 * stays (a reload is no way around a limit).  The table sizes stay as they
 * were until a restart: 1 with a warning in warn when cfg asks for others.
 * The old config must stay alive until no thread can still be inside a
 * call that loaded it (the main thread waits for every worker to adopt the
 * new generation before letting the old one go).
 */
int ratelimit_reconfigure(struct ratelimit *l, const struct config *cfg,
			  char *warn, size_t warnlen);
const struct ratelimit_stats *ratelimit_stats(const struct ratelimit *l);

/* The policy of a login: its class from the users file (class_name, may be
 * NULL), else from limits.users, else limits.user. */
const struct config_user_limits *ratelimit_policy(const struct config *cfg,
						  const char *login,
						  const char *class_name);

/* The rate a policy sets for kind (LIMIT_QUOTA: messages_quota). */
const struct config_rate *ratelimit_rate(const struct config_user_limits *pol,
					 enum ratelimit_user_kind kind);

void ratelimit_user_key(const struct ratelimit *l, const char *login,
			struct ratelimit_key *key);

/*
 * Take amount[kind] units of every kind at once (LIMIT_QUOTA counts
 * messages), or none.  Returns LIMIT_USER_KINDS when taken; otherwise the
 * kind that refused, with *retry_ms the time until the request could
 * succeed (UINT64_MAX if it never can: more than the burst).
 */
enum ratelimit_user_kind
ratelimit_user_take(struct ratelimit *l, const struct ratelimit_key *key,
		    const struct config_user_limits *pol,
		    const uint64_t amount[LIMIT_USER_KINDS], uint64_t now_ms,
		    uint64_t *retry_ms);
/* Give back what a failed transaction took (never beyond full). */
void ratelimit_user_give(struct ratelimit *l, const struct ratelimit_key *key,
			 const struct config_user_limits *pol,
			 const uint64_t amount[LIMIT_USER_KINDS],
			 uint64_t now_ms);

/* What the user could take now, per kind (UINT64_MAX: not limited), without
 * taking it; false when the user is not tracked (everything is full). */
bool ratelimit_user_peek(struct ratelimit *l, const struct ratelimit_key *key,
			 const struct config_user_limits *pol, uint64_t now_ms,
			 uint64_t avail[LIMIT_USER_KINDS]);

/* A tracked user as ratelimit_user_scan() copies it out. */
struct ratelimit_user_seen {
	uint8_t key[sizeof(((struct ratelimit_key *)0)->b)];
	uint64_t tat[LIMIT_QUOTA]; /* the rate buckets' GCRA times, ns */
	uint64_t window_end, used; /* the quota window */
};
/*
 * The status page's look at the user table, one shard per call: the
 * users of shard *shard with a bucket not full (or quota used) now are
 * copied into out (at most max of them; *truncated set when there were
 * more), under that shard's mutex alone, so a worker waits at most for
 * one shard's copy.  *shard moves on; it is back at 0 when the table is
 * done.  Returns how many were copied.
 */
size_t ratelimit_user_scan(struct ratelimit *l, unsigned *shard,
			   uint64_t now_ms, struct ratelimit_user_seen *out,
			   size_t max, bool *truncated);
/* What a user seen by the scan could take at now_ms, per kind, as
 * ratelimit_user_peek() says it (UINT64_MAX: not limited). */
void ratelimit_user_avail(const struct ratelimit_user_seen *u,
			  const struct config_user_limits *pol, uint64_t now_ms,
			  uint64_t avail[LIMIT_USER_KINDS]);
/* An operator's reset of one login: its buckets, quota window, failure
 * score and so its login slow-down go, as if it had never been seen.
 * false when the login has no state (nothing to reset). */
bool ratelimit_user_reset(struct ratelimit *l, const struct ratelimit_key *key);

/* A failed login for this name (limits.login.failures): raises its score. */
void ratelimit_login_failed(struct ratelimit *l,
			    const struct ratelimit_key *key, uint64_t now_ms);
/* How long to hold the answer to a login attempt for this name now: 0
 * while its failures are within the allowance, then base_ms doubling with
 * every failure over it, at most limits.login.max_delay. */
uint64_t ratelimit_login_delay(struct ratelimit *l,
			       const struct ratelimit_key *key,
			       uint64_t base_ms, uint64_t now_ms);

/* The network of a client address, and whether limits.ip.allow exempts
 * it (then no other ratelimit_ip_* call is made for it). */
bool ratelimit_ip_key(const struct ratelimit *l, const uint8_t addr[16],
		      struct ratelimit_key *key);
/* A new connection: RATELIMIT_OK counts it as open (ratelimit_ip_disconnect
 * when it ends); anything else refuses it, *retry_ms how long for. */
enum ratelimit_verdict ratelimit_ip_connect(struct ratelimit *l,
					    const struct ratelimit_key *key,
					    uint64_t now_ms,
					    uint64_t *retry_ms);
void ratelimit_ip_disconnect(struct ratelimit *l,
			     const struct ratelimit_key *key);
/* A failed login from this network: returns the ban it earned (ms), or 0. */
uint64_t ratelimit_ip_auth_failed(struct ratelimit *l,
				  const struct ratelimit_key *key,
				  uint64_t now_ms);

/* A ban of ms for this network decided elsewhere (the cluster's count of
 * failed logins): refused at connect until it ends. */
void ratelimit_ip_ban(struct ratelimit *l, const struct ratelimit_key *key,
		      uint64_t ms, uint64_t now_ms);

/* An operator's unban of net: every tracked network inside it, and the one
 * it lies in when it is narrower than limits.ip.prefix_v4 / prefix_v6,
 * loses its ban and its failed-login count.  Returns how many of them were
 * banned. */
size_t ratelimit_ip_unban(struct ratelimit *l, const struct ipnet *net,
			  uint64_t now_ms);

/* Entries in use, for tests and stats. */
size_t ratelimit_user_entries(struct ratelimit *l);
size_t ratelimit_ip_entries(struct ratelimit *l);

#endif
