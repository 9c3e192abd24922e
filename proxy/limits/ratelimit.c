/*
 * ratelimit.c - shared rate-limit tables.  Read ratelimit.h first.
 *
 * Two tables (users, networks) of fixed-size entries, each cut into
 * RATELIMIT_SHARDS shards with a mutex, a chained hash and a fixed pool of
 * entries.  Every operation hashes its key once (the caller made it),
 * locks one shard, and does O(1) work, except when a shard is full: then
 * the shard is swept for entries that mean nothing any more, and if that
 * frees nothing the least recently used entry without open sessions goes.
 *
 * Buckets are GCRA times in nanoseconds on the caller's monotonic clock:
 * a take of n at rate r moves the bucket's time tat to max(tat, now) +
 * n * period / count and is allowed while that stays within
 * burst * period / count of now.  A bucket with tat <= now is full.
 *
 * Config keys: limits.user, limits.classes, limits.users, limits.max_users,
 * limits.login.*, limits.ip.*.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "limits/ratelimit.h"

#define RATELIMIT_SHARDS 64
#define NIL		 UINT32_MAX
#define NS_PER_MS	 UINT64_C(1000000)
#define NEVER		 (UINT64_MAX / 4) /* a wait that cannot end */

/* User entries: tat[] by enum ratelimit_user_kind (LIMIT_QUOTA: see
 * window_end/used), tat[LOGIN_TAT] the login failure score.  Network
 * entries: tat[CONN_TAT], tat[AUTH_TAT], window_end = ban end. */
enum { LOGIN_TAT = 3, CONN_TAT = 0, AUTH_TAT = 1, NTATS = 4 };

struct entry {
	uint8_t key[16];
	uint32_t next;	     /* chain, or the free list */
	uint32_t conns;	     /* network: sessions open now */
	uint64_t used_ms;    /* last touched, for eviction */
	uint64_t tat[NTATS]; /* GCRA, ns */
	uint64_t window_end; /* ns: quota window, or ban */
	uint64_t used;	     /* messages in the quota window */
};

_Static_assert(sizeof(struct entry) == RATELIMIT_ENTRY_BYTES, "entry size");

struct shard {
	pthread_mutex_t mu;
	uint32_t *heads; /* nheads chains */
	uint32_t nheads; /* power of two */
	struct entry *pool;
	uint32_t cap;	   /* entries in pool */
	uint32_t high;	   /* pool[0..high) have been used */
	uint32_t free;	   /* free list */
	uint32_t count;	   /* in use */
	char pad[64 - 40]; /* keep neighbouring shards apart */
};

struct table {
	struct shard shards[RATELIMIT_SHARDS];
	unsigned nshards; /* used: fewer for small tables */
};

struct ratelimit {
	/* Swapped by a reload; the old one lives until every worker has
	 * moved on (see ratelimit_reconfigure). */
	_Atomic(const struct config *) cfg;
	size_t max_users, max_nets; /* the table sizes, fixed at creation */
	EVP_MAC_CTX *hmac;	    /* keyed; duplicated per use */
	struct table users, nets;
	struct ratelimit_stats stats;
};

static const struct config *
limits_config(const struct ratelimit *l)
{
	return atomic_load_explicit(&l->cfg, memory_order_acquire);
}

/* ---------------------------------------------------------------------
 * GCRA
 */

/* n units at rate r, in ns, capped far below overflow.  Rounded down: a
 * burst taken one unit at a time must fit exactly in the burst's cost (the
 * error is under 1 ns per take). */
static uint64_t
cost_ns(const struct config_rate *r, uint64_t n)
{
	unsigned __int128 c = (unsigned __int128)n * r->period_ms * NS_PER_MS;

	c /= r->count;
	return c > NEVER ? NEVER : (uint64_t)c;
}

/* 0 and *tat moved if n units may be taken now; else the ns to wait. */
static uint64_t
gcra_take(uint64_t *tat, const struct config_rate *r, uint64_t n, uint64_t now)
{
	uint64_t tol = cost_ns(r, r->burst);
	uint64_t next = (*tat > now ? *tat : now) + cost_ns(r, n);

	if (n > r->burst)
		return NEVER;
	if (next - now > tol)
		return next - now - tol;
	*tat = next;
	return 0;
}

static void
gcra_give(uint64_t *tat, const struct config_rate *r, uint64_t n, uint64_t now)
{
	uint64_t c = cost_ns(r, n);

	*tat = *tat > now + c ? *tat - c : now;
}

/* ---------------------------------------------------------------------
 * Tables
 */

/* Shards of at least SHARD_MIN entries, so that a small table is not cut
 * into shards of one entry each (where two open sessions could collide). */
#define SHARD_MIN 16

static int
table_init(struct table *t, size_t max_entries)
{
	size_t n = max_entries / SHARD_MIN;
	uint32_t per;

	t->nshards = n < 1		    ? 1
		     : n > RATELIMIT_SHARDS ? RATELIMIT_SHARDS
					    : (unsigned)n;
	per = (uint32_t)((max_entries + t->nshards - 1) / t->nshards);
	for (size_t i = 0; i < RATELIMIT_SHARDS; i++) {
		struct shard *sh = &t->shards[i];
		pthread_mutex_init(&sh->mu, NULL);
		sh->nheads = 1;
		while (sh->nheads < per)
			sh->nheads <<= 1;
		sh->heads = malloc(sh->nheads * sizeof(*sh->heads));
		/* calloc: pages are only touched as entries are used. */
		sh->pool = calloc(per, sizeof(*sh->pool));
		if (sh->heads == NULL || sh->pool == NULL)
			return -1;
		memset(sh->heads, 0xff, sh->nheads * sizeof(*sh->heads));
		sh->cap = per;
		sh->free = NIL;
	}
	return 0;
}

static void
table_free(struct table *t)
{
	for (size_t i = 0; i < RATELIMIT_SHARDS; i++) {
		pthread_mutex_destroy(&t->shards[i].mu);
		free(t->shards[i].heads);
		free(t->shards[i].pool);
	}
}

static size_t
table_count(struct table *t)
{
	size_t n = 0;

	for (size_t i = 0; i < RATELIMIT_SHARDS; i++) {
		pthread_mutex_lock(&t->shards[i].mu);
		n += t->shards[i].count;
		pthread_mutex_unlock(&t->shards[i].mu);
	}
	return n;
}

static struct shard *
shard_of(struct table *t, const struct ratelimit_key *k)
{
	return &t->shards[k->hash % t->nshards];
}

/* The shard is picked by the low bits of the hash, the chain by the high. */
static uint32_t *
chain_of(struct shard *sh, const struct ratelimit_key *k)
{
	return &sh->heads[(k->hash >> 32) & (sh->nheads - 1)];
}

static struct entry *
ratelimit_find(struct shard *sh, const struct ratelimit_key *k)
{
	for (uint32_t i = *chain_of(sh, k); i != NIL; i = sh->pool[i].next)
		if (memcmp(sh->pool[i].key, k->b, sizeof(k->b)) == 0)
			return &sh->pool[i];
	return NULL;
}

/* Nothing in e differs from a new entry: it can go at any time. */
static bool
meaningless(const struct entry *e, uint64_t now)
{
	for (size_t i = 0; i < NTATS; i++)
		if (e->tat[i] > now)
			return false;
	return e->conns == 0 && e->window_end <= now;
}

/* Unlink pool[idx], found through chain head *head. */
static void
unlink_entry(struct shard *sh, uint32_t idx, uint32_t hash_head)
{
	uint32_t *pp = &sh->heads[hash_head];

	while (*pp != idx)
		pp = &sh->pool[*pp].next;
	*pp = sh->pool[idx].next;
	memset(&sh->pool[idx], 0, sizeof(sh->pool[idx]));
	sh->pool[idx].next = sh->free;
	sh->free = idx;
	sh->count--;
}

/* Make room in a full shard: drop every meaningless entry; if none, the
 * least recently used one without open sessions.  Returns entries freed. */
static size_t
make_room(struct ratelimit *l, struct shard *sh, uint64_t now)
{
	uint32_t victim = NIL, victim_head = 0;
	size_t freed = 0;

	for (uint32_t h = 0; h < sh->nheads; h++) {
		uint32_t i = sh->heads[h];
		while (i != NIL) {
			uint32_t next = sh->pool[i].next;
			if (meaningless(&sh->pool[i], now)) {
				unlink_entry(sh, i, h);
				freed++;
			} else if (sh->pool[i].conns == 0 &&
				   (victim == NIL ||
				    sh->pool[i].used_ms <
					    sh->pool[victim].used_ms)) {
				victim = i;
				victim_head = h;
			}
			i = next;
		}
	}
	if (freed == 0 && victim != NIL) {
		unlink_entry(sh, victim, victim_head);
		atomic_fetch_add(&l->stats.evictions, 1);
		freed = 1;
	}
	return freed;
}

/* The entry for k, made if missing; NULL if the shard is full of open
 * sessions. */
static struct entry *
get(struct ratelimit *l, struct shard *sh, const struct ratelimit_key *k,
    uint64_t now_ms)
{
	uint64_t now = now_ms * NS_PER_MS;
	struct entry *e = ratelimit_find(sh, k);
	uint32_t idx, *head;

	if (e != NULL) {
		e->used_ms = now_ms;
		return e;
	}
	if (sh->free == NIL && sh->high == sh->cap &&
	    make_room(l, sh, now) == 0)
		return NULL;
	if (sh->free != NIL) {
		idx = sh->free;
		sh->free = sh->pool[idx].next;
	} else {
		idx = sh->high++;
	}
	e = &sh->pool[idx];
	memset(e, 0, sizeof(*e));
	memcpy(e->key, k->b, sizeof(e->key));
	e->used_ms = now_ms;
	head = chain_of(sh, k);
	e->next = *head;
	*head = idx;
	sh->count++;
	return e;
}

/* ---------------------------------------------------------------------
 * Keys
 */

static void
keyed_hash(const struct ratelimit *l, char domain, const void *data, size_t len,
	   uint8_t out[32])
{
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(l->hmac);
	size_t outlen = 0;
	int ok = ctx != NULL && EVP_MAC_update(ctx, (const void *)&domain, 1) &&
		 EVP_MAC_update(ctx, data, len) &&
		 EVP_MAC_final(ctx, out, &outlen, 32);

	EVP_MAC_CTX_free(ctx);
	if (!ok || outlen != 32) {
		/* Out of memory: still a deterministic key, just unkeyed. */
		memset(out, 0, 32);
		memcpy(out, data, len < 32 ? len : 32);
	}
}

void
ratelimit_user_key(const struct ratelimit *l, const char *login,
		   struct ratelimit_key *key)
{
	uint8_t h[32];

	keyed_hash(l, 'u', login, strlen(login), h);
	memcpy(key->b, h, sizeof(key->b));
	memcpy(&key->hash, h + 16, sizeof(key->hash));
}

bool
ratelimit_ip_key(const struct ratelimit *l, const uint8_t addr[16],
		 struct ratelimit_key *key)
{
	const struct config *cfg = limits_config(l);
	struct ipnet net;
	uint8_t h[32];

	if (ipnet_list_contains(cfg->ip_allow.v, cfg->ip_allow.n, addr))
		return false;
	net = ipnet_mask(addr, cfg->ip_prefix_v4, cfg->ip_prefix_v6);
	memcpy(key->b, net.addr, sizeof(key->b));
	keyed_hash(l, 'n', net.addr, sizeof(net.addr), h);
	memcpy(&key->hash, h, sizeof(key->hash));
	return true;
}

/* ---------------------------------------------------------------------
 * Life cycle
 */

struct ratelimit *
ratelimit_new(const struct config *cfg, char *err, size_t errlen)
{
	struct ratelimit *l = calloc(1, sizeof(*l));
	unsigned char secret[32];
	OSSL_PARAM params[2];
	EVP_MAC *mac = NULL;

	if (l == NULL) {
		snprintf(err, errlen, "limits: out of memory");
		return NULL;
	}
	atomic_init(&l->cfg, cfg);
	l->max_users = cfg->max_users;
	l->max_nets = cfg->ip_max_entries;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (RAND_bytes(secret, sizeof(secret)) != 1 ||
	    (mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (l->hmac = EVP_MAC_CTX_new(mac)) == NULL ||
	    EVP_MAC_init(l->hmac, secret, sizeof(secret), params) != 1) {
		snprintf(err, errlen, "limits: cannot set up HMAC-SHA256");
		goto fail;
	}
	if (table_init(&l->users, cfg->max_users) < 0 ||
	    table_init(&l->nets, cfg->ip_max_entries) < 0) {
		snprintf(err, errlen, "limits: out of memory");
		goto fail;
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	EVP_MAC_free(mac);
	return l;
fail:
	OPENSSL_cleanse(secret, sizeof(secret));
	EVP_MAC_free(mac);
	ratelimit_free(l);
	return NULL;
}

void
ratelimit_free(struct ratelimit *l)
{
	if (l == NULL)
		return;
	table_free(&l->users);
	table_free(&l->nets);
	EVP_MAC_CTX_free(l->hmac);
	free(l);
}

const struct ratelimit_stats *
ratelimit_stats(const struct ratelimit *l)
{
	return &l->stats;
}

size_t
ratelimit_user_entries(struct ratelimit *l)
{
	return table_count(&l->users);
}

size_t
ratelimit_ip_entries(struct ratelimit *l)
{
	return table_count(&l->nets);
}

int
ratelimit_reconfigure(struct ratelimit *l, const struct config *cfg, char *warn,
		      size_t warnlen)
{
	warn[0] = '\0';
	if (cfg->max_users != l->max_users ||
	    cfg->ip_max_entries != l->max_nets)
		snprintf(warn, warnlen,
			 "limits.max_users and limits.ip.max_entries keep "
			 "their values (%zu, %zu) until a restart",
			 l->max_users, l->max_nets);
	atomic_store_explicit(&l->cfg, cfg, memory_order_release);
	return warn[0] != '\0';
}

const struct config_user_limits *
ratelimit_policy(const struct config *cfg, const char *login,
		 const char *class_name)
{
	const struct config_class *c = NULL;

	if (class_name != NULL)
		c = config_class_find(cfg, class_name);
	if (c == NULL)
		c = config_user_class(cfg, login);
	return c != NULL ? &c->lim : &cfg->user_limits;
}

/* ---------------------------------------------------------------------
 * Users
 */

const struct config_rate *
ratelimit_rate(const struct config_user_limits *pol,
	       enum ratelimit_user_kind kind)
{
	switch (kind) {
	case LIMIT_MESSAGES:
		return &pol->messages;
	case LIMIT_RECIPIENTS:
		return &pol->recipients;
	case LIMIT_BYTES:
		return &pol->bytes;
	default:
		return &pol->messages_quota;
	}
}

static bool
nothing_limited(const struct config_user_limits *pol,
		const uint64_t amount[LIMIT_USER_KINDS])
{
	for (int k = 0; k < LIMIT_USER_KINDS; k++)
		if (amount[k] != 0 && ratelimit_rate(pol, k)->count != 0)
			return false;
	return true;
}

/* The quota window: a fixed period from the first message in it. */
static uint64_t
quota_take(struct entry *e, const struct config_rate *r, uint64_t n,
	   uint64_t now)
{
	if (e->window_end <= now) {
		e->window_end = now + r->period_ms * NS_PER_MS;
		e->used = 0;
	}
	if (n > r->count)
		return NEVER;
	if (e->used + n > r->count)
		return e->window_end - now;
	e->used += n;
	return 0;
}

enum ratelimit_user_kind
ratelimit_user_take(struct ratelimit *l, const struct ratelimit_key *key,
		    const struct config_user_limits *pol,
		    const uint64_t amount[LIMIT_USER_KINDS], uint64_t now_ms,
		    uint64_t *retry_ms)
{
	uint64_t now = now_ms * NS_PER_MS, saved[NTATS], saved_end, saved_used;
	struct shard *sh;
	struct entry *e;
	int k;

	if (nothing_limited(pol, amount))
		return LIMIT_USER_KINDS;
	sh = shard_of(&l->users, key);
	pthread_mutex_lock(&sh->mu);
	e = get(l, sh, key, now_ms);
	if (e == NULL) {
		/* Never happens for users (no open sessions pin them). */
		pthread_mutex_unlock(&sh->mu);
		return LIMIT_USER_KINDS;
	}
	memcpy(saved, e->tat, sizeof(saved));
	saved_end = e->window_end;
	saved_used = e->used;
	for (k = 0; k < LIMIT_USER_KINDS; k++) {
		const struct config_rate *r = ratelimit_rate(pol, k);
		uint64_t wait;

		if (amount[k] == 0 || r->count == 0)
			continue;
		wait = k == LIMIT_QUOTA
			       ? quota_take(e, r, amount[k], now)
			       : gcra_take(&e->tat[k], r, amount[k], now);
		if (wait != 0) {
			/* All or nothing: undo what this call took. */
			memcpy(e->tat, saved, sizeof(saved));
			e->window_end = saved_end;
			e->used = saved_used;
			*retry_ms = wait >= NEVER ? UINT64_MAX
						  : (wait + NS_PER_MS - 1) /
							    NS_PER_MS;
			break;
		}
	}
	pthread_mutex_unlock(&sh->mu);
	if (k < LIMIT_USER_KINDS)
		atomic_fetch_add(&l->stats.refused[k], 1);
	return (enum ratelimit_user_kind)k;
}

void
ratelimit_user_give(struct ratelimit *l, const struct ratelimit_key *key,
		    const struct config_user_limits *pol,
		    const uint64_t amount[LIMIT_USER_KINDS], uint64_t now_ms)
{
	uint64_t now = now_ms * NS_PER_MS;
	struct shard *sh;
	struct entry *e;

	if (nothing_limited(pol, amount))
		return;
	sh = shard_of(&l->users, key);
	pthread_mutex_lock(&sh->mu);
	e = ratelimit_find(sh, key);
	for (int k = 0; e != NULL && k < LIMIT_USER_KINDS; k++) {
		const struct config_rate *r = ratelimit_rate(pol, k);

		if (amount[k] == 0 || r->count == 0)
			continue;
		if (k != LIMIT_QUOTA)
			gcra_give(&e->tat[k], r, amount[k], now);
		else if (e->window_end > now)
			e->used -= amount[k] < e->used ? amount[k] : e->used;
	}
	pthread_mutex_unlock(&sh->mu);
}

/* Whole units a bucket could give now: burst minus what its TAT owes. */
static uint64_t
gcra_avail(uint64_t tat, const struct config_rate *r, uint64_t now)
{
	uint64_t tol = cost_ns(r, r->burst), one = cost_ns(r, 1);
	uint64_t owed = tat > now ? tat - now : 0;

	if (owed >= tol || one == 0)
		return owed >= tol ? 0 : r->burst;
	return (tol - owed) / one < r->burst ? (tol - owed) / one : r->burst;
}

/* Per kind: what a user with entry e (NULL: untracked) could take. */
static void
user_avail(const struct entry *e, const struct config_user_limits *pol,
	   uint64_t now, uint64_t avail[LIMIT_USER_KINDS])
{
	for (int k = 0; k < LIMIT_USER_KINDS; k++) {
		const struct config_rate *r = ratelimit_rate(pol, k);

		if (r->count == 0)
			avail[k] = UINT64_MAX;
		else if (e == NULL)
			avail[k] = k == LIMIT_QUOTA ? r->count : r->burst;
		else if (k != LIMIT_QUOTA)
			avail[k] = gcra_avail(e->tat[k], r, now);
		else
			avail[k] = e->window_end > now && e->used < r->count
					   ? r->count - e->used
				   : e->window_end > now ? 0
							 : r->count;
	}
}

bool
ratelimit_user_peek(struct ratelimit *l, const struct ratelimit_key *key,
		    const struct config_user_limits *pol, uint64_t now_ms,
		    uint64_t avail[LIMIT_USER_KINDS])
{
	struct shard *sh = shard_of(&l->users, key);
	struct entry *e;

	pthread_mutex_lock(&sh->mu);
	e = ratelimit_find(sh, key);
	user_avail(e, pol, now_ms * NS_PER_MS, avail);
	pthread_mutex_unlock(&sh->mu);
	return e != NULL;
}

size_t
ratelimit_user_scan(struct ratelimit *l, unsigned *shard, uint64_t now_ms,
		    struct ratelimit_user_seen *out, size_t max,
		    bool *truncated)
{
	uint64_t now = now_ms * NS_PER_MS;
	struct shard *sh;
	size_t n = 0;

	if (*shard >= l->users.nshards)
		*shard = 0;
	sh = &l->users.shards[*shard];
	pthread_mutex_lock(&sh->mu);
	for (uint32_t h = 0; h < sh->nheads; h++) {
		for (uint32_t i = sh->heads[h]; i != NIL;
		     i = sh->pool[i].next) {
			const struct entry *e = &sh->pool[i];
			bool used = e->window_end > now && e->used > 0;

			for (int k = 0; k < LIMIT_QUOTA; k++)
				used |= e->tat[k] > now;
			if (!used)
				continue;
			if (n == max) {
				*truncated = true;
				goto done;
			}
			memcpy(out[n].key, e->key, sizeof(out[n].key));
			for (int k = 0; k < LIMIT_QUOTA; k++)
				out[n].tat[k] = e->tat[k];
			out[n].window_end = e->window_end;
			out[n].used = e->used;
			n++;
		}
	}
done:
	pthread_mutex_unlock(&sh->mu);
	*shard = *shard + 1 < l->users.nshards ? *shard + 1 : 0;
	return n;
}

void
ratelimit_user_avail(const struct ratelimit_user_seen *u,
		     const struct config_user_limits *pol, uint64_t now_ms,
		     uint64_t avail[LIMIT_USER_KINDS])
{
	struct entry e = {.window_end = u->window_end, .used = u->used};

	for (int k = 0; k < LIMIT_QUOTA; k++)
		e.tat[k] = u->tat[k];
	user_avail(&e, pol, now_ms * NS_PER_MS, avail);
}

bool
ratelimit_user_reset(struct ratelimit *l, const struct ratelimit_key *key)
{
	struct shard *sh = shard_of(&l->users, key);
	struct entry *e;

	pthread_mutex_lock(&sh->mu);
	e = ratelimit_find(sh, key);
	if (e != NULL)
		unlink_entry(sh, (uint32_t)(e - sh->pool),
			     (uint32_t)(chain_of(sh, key) - sh->heads));
	pthread_mutex_unlock(&sh->mu);
	return e != NULL;
}

/* ---------------------------------------------------------------------
 * Login failures
 */

void
ratelimit_login_failed(struct ratelimit *l, const struct ratelimit_key *key,
		       uint64_t now_ms)
{
	const struct config_rate *r = &limits_config(l)->login_failures;
	uint64_t now = now_ms * NS_PER_MS, one, cap;
	struct shard *sh;
	struct entry *e;

	if (r->count == 0)
		return;
	one = cost_ns(r, 1);
	/* Keep counting past the allowance (that is the score), but only
	 * so far that it decays within a day or so. */
	cap = now + cost_ns(r, r->burst) + 64 * one;
	sh = shard_of(&l->users, key);
	pthread_mutex_lock(&sh->mu);
	e = get(l, sh, key, now_ms);
	if (e != NULL) {
		uint64_t t =
			(e->tat[LOGIN_TAT] > now ? e->tat[LOGIN_TAT] : now) +
			one;
		e->tat[LOGIN_TAT] = t < cap ? t : cap;
	}
	pthread_mutex_unlock(&sh->mu);
}

uint64_t
ratelimit_login_delay(struct ratelimit *l, const struct ratelimit_key *key,
		      uint64_t base_ms, uint64_t now_ms)
{
	const struct config_rate *r = &limits_config(l)->login_failures;
	uint64_t now = now_ms * NS_PER_MS, over = 0, excess, delay;
	struct shard *sh;
	struct entry *e;

	if (r->count == 0)
		return 0;
	sh = shard_of(&l->users, key);
	pthread_mutex_lock(&sh->mu);
	e = ratelimit_find(sh, key);
	if (e != NULL) {
		/* Over if one more failure would not fit the allowance. */
		uint64_t limit = now + cost_ns(r, r->burst);
		uint64_t next = e->tat[LOGIN_TAT] + cost_ns(r, 1);
		if (e->tat[LOGIN_TAT] > now && next > limit)
			over = next - limit;
	}
	pthread_mutex_unlock(&sh->mu);
	if (over == 0)
		return 0;
	excess = (over + cost_ns(r, 1) - 1) / cost_ns(r, 1); /* 1, 2, ... */
	if (base_ms == 0)
		base_ms = 1000;
	delay = excess > 20 ? UINT64_MAX : base_ms << (excess - 1);
	uint64_t max = limits_config(l)->login_max_delay_ms;

	return delay < max ? delay : max;
}

/* ---------------------------------------------------------------------
 * Networks
 */

enum ratelimit_verdict
ratelimit_ip_connect(struct ratelimit *l, const struct ratelimit_key *key,
		     uint64_t now_ms, uint64_t *retry_ms)
{
	const struct config *cfg = limits_config(l);
	uint64_t now = now_ms * NS_PER_MS, wait = 0;
	enum ratelimit_verdict v = RATELIMIT_OK;
	struct shard *sh = shard_of(&l->nets, key);
	struct entry *e;

	pthread_mutex_lock(&sh->mu);
	e = get(l, sh, key, now_ms);
	if (e == NULL) {
		v = RATELIMIT_FULL;
		wait = 1000 * NS_PER_MS;
	} else if (e->window_end > now) {
		v = RATELIMIT_BANNED;
		wait = e->window_end - now;
	} else if (cfg->ip_concurrency != 0 &&
		   e->conns >= cfg->ip_concurrency) {
		v = RATELIMIT_CONCURRENCY;
		wait = 1000 * NS_PER_MS;
	} else if (cfg->ip_connections.count != 0 &&
		   (wait = gcra_take(&e->tat[CONN_TAT], &cfg->ip_connections, 1,
				     now)) != 0) {
		v = RATELIMIT_RATE;
	} else {
		e->conns++;
	}
	pthread_mutex_unlock(&sh->mu);
	*retry_ms = (wait + NS_PER_MS - 1) / NS_PER_MS;
	if (v != RATELIMIT_OK)
		atomic_fetch_add(&l->stats.ip_refused[v], 1);
	return v;
}

void
ratelimit_ip_disconnect(struct ratelimit *l, const struct ratelimit_key *key)
{
	struct shard *sh = shard_of(&l->nets, key);
	struct entry *e;

	pthread_mutex_lock(&sh->mu);
	e = ratelimit_find(sh, key);
	if (e != NULL && e->conns > 0)
		e->conns--;
	pthread_mutex_unlock(&sh->mu);
}

uint64_t
ratelimit_ip_auth_failed(struct ratelimit *l, const struct ratelimit_key *key,
			 uint64_t now_ms)
{
	const struct config *cfg = limits_config(l);
	uint64_t now = now_ms * NS_PER_MS, ban = 0, one, tol;
	struct shard *sh = shard_of(&l->nets, key);
	struct entry *e;

	if (cfg->ip_auth_failures.count == 0)
		return 0;
	one = cost_ns(&cfg->ip_auth_failures, 1);
	tol = cost_ns(&cfg->ip_auth_failures, cfg->ip_auth_failures.burst);
	pthread_mutex_lock(&sh->mu);
	e = get(l, sh, key, now_ms);
	if (e != NULL)
		gcra_take(&e->tat[AUTH_TAT], &cfg->ip_auth_failures, 1, now);
	/* The failure that empties the allowance earns the ban (the Nth of
	 * "N/period"), and the allowance is fresh after it. */
	if (e != NULL && e->tat[AUTH_TAT] > now &&
	    e->tat[AUTH_TAT] - now + one > tol) {
		ban = cfg->ip_ban_time_ms;
		e->window_end = now + ban * NS_PER_MS;
		e->tat[AUTH_TAT] = 0;
	}
	pthread_mutex_unlock(&sh->mu);
	if (ban != 0)
		atomic_fetch_add(&l->stats.bans, 1);
	return ban;
}

void
ratelimit_ip_ban(struct ratelimit *l, const struct ratelimit_key *key,
		 uint64_t ms, uint64_t now_ms)
{
	uint64_t now = now_ms * NS_PER_MS, end = now + ms * NS_PER_MS;
	struct shard *sh = shard_of(&l->nets, key);
	struct entry *e;

	pthread_mutex_lock(&sh->mu);
	e = get(l, sh, key, now_ms);
	if (e != NULL && e->window_end < end) {
		e->window_end = end;
		e->tat[AUTH_TAT] = 0;
	}
	pthread_mutex_unlock(&sh->mu);
	if (e != NULL)
		atomic_fetch_add(&l->stats.bans, 1);
}

/* Each shard is locked on its own, as every other call does: a network
 * banned again meanwhile in a shard already passed keeps its new ban. */
size_t
ratelimit_ip_unban(struct ratelimit *l, const struct ipnet *net,
		   uint64_t now_ms)
{
	const struct config *cfg = limits_config(l);
	struct ipnet around =
		ipnet_mask(net->addr, cfg->ip_prefix_v4, cfg->ip_prefix_v6);
	uint64_t now = now_ms * NS_PER_MS;
	size_t lifted = 0;

	for (unsigned i = 0; i < l->nets.nshards; i++) {
		struct shard *sh = &l->nets.shards[i];

		pthread_mutex_lock(&sh->mu);
		for (uint32_t h = 0; h < sh->nheads; h++) {
			for (uint32_t k = sh->heads[h]; k != NIL;
			     k = sh->pool[k].next) {
				struct entry *e = &sh->pool[k];

				if (!ipnet_contains(net, e->key) &&
				    (net->len < around.len ||
				     memcmp(e->key, around.addr,
					    sizeof(e->key)) != 0))
					continue;
				lifted += e->window_end > now;
				e->window_end = 0;
				e->tat[AUTH_TAT] = 0;
			}
		}
		pthread_mutex_unlock(&sh->mu);
	}
	return lifted;
}
