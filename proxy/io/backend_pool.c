/*
 * backend_pool.c - backend selection and shared health state.
 *
 * Balance policies (backends.balance):
 *   round-robin        smooth weighted round robin (nginx's): each pick
 *                      adds every candidate's weight to its score, takes
 *                      the highest and subtracts the candidates' total;
 *                      per worker, so workers never contend.
 *   least-connections  fewest open backend connections (all workers
 *                      counted) per unit of weight; ties rotate.
 *   hash-login         rendezvous (highest random weight) hashing of the
 *                      login: a user sticks to one server while it is up,
 *                      and a server going down moves only its own users
 *                      (each to the server that scores next for them).
 *
 * Health: a server is up or down.  Failures (passive: connect errors,
 * timeouts, bad or 421 greetings, broken handshakes; active: failed
 * checks) count toward backends.health_check.fall; that many in a row
 * take it down.  With active checks, a down server comes back after rise
 * good checks in a row; without, it is retried after backends.down_time
 * and the first session that gets through brings it back.
 *
 * Operator state: a server disabled with msaproxyctl (registry.h) is never
 * picked for a new connection, whatever its health; connections open to
 * it go on.  Health checks go on too, so its health is known when it comes
 * back.
 *
 * Shared across workers: every counter is an atomic; the up/down flip is a
 * compare-and-swap, so exactly one reporter sees (and logs) each change.
 * Nothing here does I/O, logs, or reads the clock.
 *
 * Config keys: backends.balance, backends.down_time,
 * backends.health_check.{interval,rise,fall}, backends.servers[].weight,
 * backends.servers[].max_conns.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "io/backend_pool.h"

#define EXT_KNOWN 0x80000000u /* an EHLO reply was seen */
#define WHY_CHECK 0x100u      /* a health check saw the change */
/* backend_pool_server.xclient: XCLIENT_ATTR_* bits, and */
#define XCLIENT_SEEN	 0x100u /* learned from an EHLO reply */
#define XCLIENT_NO_EARLY 0x200u /* refused XCLIENT before EHLO: never again */

struct backend_pool_server {
	atomic_bool up;
	atomic_uint fails;	   /* consecutive failures */
	atomic_uint goods;	   /* consecutive good checks while down */
	atomic_uint conns;	   /* open backend connections, all workers */
	_Atomic uint64_t retry_at; /* down, no checks: retried from then */
	atomic_ulong changes;
	_Atomic uint64_t changed_ms; /* last change (backend_pool_note) */
	atomic_uint why;	     /* enum backend_pool_why, | WHY_CHECK */
	atomic_uint ext; /* BACKEND_POOL_EXT_* | EXT_KNOWN once seen */
	_Atomic uint64_t size_max; /* its SIZE, 0 = none */
	atomic_uint xclient; /* what its XCLIENT takes: see XCLIENT_SEEN */
	uint64_t hash;	     /* of the address, for hash-login */
	unsigned weight;
	unsigned max_conns;
	unsigned slot; /* counters and registry (backend_pool_bind) */
	const atomic_bool *disabled; /* the operator's flag, or NULL */
} __attribute__((aligned(64)));	     /* one cache line each: no false sharing */

struct backend_pool {
	const struct config *cfg;
	size_t n;
	struct backend_pool_server *v;
};

/* ---------------------------------------------------------------------
 * Hashing
 */

/* FNV-1a, then a splitmix64 finalizer so every bit mixes. */
static uint64_t
hash_bytes(const char *s, size_t len, uint64_t h)
{
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/*
 * Weighted rendezvous: u uniform in (0,1) from hash(login, server); the
 * score weight / -ln(u) makes each server win a weight-proportional share
 * of logins, and removing a server changes only the logins it won.
 */
double
backend_pool_hash_score(const char *login, uint64_t server_hash,
			unsigned weight)
{
	uint64_t h =
		mix64(hash_bytes(login, strlen(login), 0xcbf29ce484222325ULL) ^
		      server_hash);
	double u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);

	return (double)weight / -log(u);
}

/* ---------------------------------------------------------------------
 * Life
 */

struct backend_pool *
backend_pool_new(const struct config *cfg)
{
	struct backend_pool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->cfg = cfg;
	p->n = cfg->nbackends;
	p->v = aligned_alloc(64, p->n * sizeof(*p->v));
	if (p->v == NULL) {
		free(p);
		return NULL;
	}
	memset(p->v, 0, p->n * sizeof(*p->v));
	for (size_t i = 0; i < p->n; i++) {
		const struct config_backend *b = &cfg->backends[i];
		atomic_init(&p->v[i].up, true);
		p->v[i].hash =
			mix64(hash_bytes(b->addr.text, strlen(b->addr.text),
					 0x9e3779b97f4a7c15));
		p->v[i].weight = b->weight;
		p->v[i].max_conns = b->max_conns;
	}
	return p;
}

void
backend_pool_inherit(struct backend_pool *p, const struct backend_pool *old)
{
	for (size_t i = 0; i < p->n; i++) {
		const char *addr = p->cfg->backends[i].addr.text;

		for (size_t j = 0; j < old->n; j++) {
			const struct backend_pool_server *o = &old->v[j];
			struct backend_pool_server *n = &p->v[i];

			if (strcmp(old->cfg->backends[j].addr.text, addr) != 0)
				continue;
			atomic_store(&n->up, atomic_load(&o->up));
			atomic_store(&n->fails, atomic_load(&o->fails));
			atomic_store(&n->goods, atomic_load(&o->goods));
			atomic_store(&n->retry_at, atomic_load(&o->retry_at));
			atomic_store(&n->changes, atomic_load(&o->changes));
			atomic_store(&n->changed_ms,
				     atomic_load(&o->changed_ms));
			atomic_store(&n->why, atomic_load(&o->why));
			atomic_store(&n->ext, atomic_load(&o->ext));
			atomic_store(&n->size_max, atomic_load(&o->size_max));
			atomic_store(&n->xclient, atomic_load(&o->xclient));
			break;
		}
	}
}

void
backend_pool_free(struct backend_pool *p)
{
	if (p == NULL)
		return;
	free(p->v);
	free(p);
}

void
backend_pool_bind(struct backend_pool *p, size_t i, unsigned slot,
		  const atomic_bool *disabled)
{
	p->v[i].slot = slot;
	p->v[i].disabled = disabled;
}

unsigned
backend_pool_slot(const struct backend_pool *p, size_t i)
{
	return p->v[i].slot;
}

bool
backend_pool_is_enabled(const struct backend_pool *p, size_t i)
{
	return p->v[i].disabled == NULL || !atomic_load(p->v[i].disabled);
}

int
backend_pool_cursor_init(struct backend_pool_cursor *c,
			 const struct backend_pool *p)
{
	c->n = p->n;
	c->next = 0;
	c->score = calloc(p->n, sizeof(*c->score));
	return c->score != NULL ? 0 : -1;
}

void
backend_pool_cursor_free(struct backend_pool_cursor *c)
{
	free(c->score);
	c->score = NULL;
}

/* ---------------------------------------------------------------------
 * Selection
 */

static bool
checks_on(const struct backend_pool *p)
{
	return p->cfg->health_interval_ms > 0;
}

/* May server i take a new connection now? */
static bool
eligible(const struct backend_pool *p, size_t i, uint64_t tried, uint64_t now)
{
	const struct backend_pool_server *s = &p->v[i];

	if (i < 64 && (tried & (UINT64_C(1) << i)))
		return false;
	if (s->disabled != NULL && atomic_load(s->disabled))
		return false;
	if (s->max_conns > 0 && atomic_load(&s->conns) >= s->max_conns)
		return false;
	if (atomic_load(&s->up))
		return true;
	return !checks_on(p) && now >= atomic_load(&s->retry_at);
}

static size_t
pick_round_robin(struct backend_pool *p, struct backend_pool_cursor *c,
		 uint64_t tried, uint64_t now)
{
	size_t best = BACKEND_POOL_NONE;
	long total = 0;

	for (size_t i = 0; i < p->n; i++) {
		if (!eligible(p, i, tried, now))
			continue;
		c->score[i] += p->v[i].weight;
		total += p->v[i].weight;
		if (best == BACKEND_POOL_NONE || c->score[i] > c->score[best])
			best = i;
	}
	if (best != BACKEND_POOL_NONE)
		c->score[best] -= total;
	return best;
}

/* conns / weight, compared by cross-multiplying; ties go to the first
 * after a rotating start, so equal servers share the load. */
static size_t
pick_least_conn(struct backend_pool *p, struct backend_pool_cursor *c,
		uint64_t tried, uint64_t now)
{
	size_t best = BACKEND_POOL_NONE;
	uint64_t bc = 0, bw = 1;

	for (size_t k = 0; k < p->n; k++) {
		size_t i = (c->next + k) % p->n;
		uint64_t conns, w = p->v[i].weight;

		if (!eligible(p, i, tried, now))
			continue;
		conns = atomic_load(&p->v[i].conns);
		if (best == BACKEND_POOL_NONE || conns * bw < bc * w) {
			best = i;
			bc = conns;
			bw = w;
		}
	}
	c->next = (c->next + 1) % p->n;
	return best;
}

static size_t
pick_hash(struct backend_pool *p, const char *login, uint64_t tried,
	  uint64_t now)
{
	size_t best = BACKEND_POOL_NONE;
	double top = 0;

	for (size_t i = 0; i < p->n; i++) {
		double score;

		if (!eligible(p, i, tried, now))
			continue;
		score = backend_pool_hash_score(login, p->v[i].hash,
						p->v[i].weight);
		if (best == BACKEND_POOL_NONE || score > top) {
			best = i;
			top = score;
		}
	}
	return best;
}

size_t
backend_pool_pick(struct backend_pool *p, struct backend_pool_cursor *c,
		  const char *login, uint64_t tried, uint64_t now_ms)
{
	switch (p->cfg->balance) {
	case BALANCE_LEAST_CONN:
		return pick_least_conn(p, c, tried, now_ms);
	case BALANCE_HASH_LOGIN:
		if (login != NULL && login[0] != '\0')
			return pick_hash(p, login, tried, now_ms);
		break;
	case BALANCE_ROUND_ROBIN:
		break;
	}
	return pick_round_robin(p, c, tried, now_ms);
}

/* ---------------------------------------------------------------------
 * Connections
 */

void
backend_pool_conn_open(struct backend_pool *p, size_t i)
{
	atomic_fetch_add(&p->v[i].conns, 1);
}

void
backend_pool_conn_close(struct backend_pool *p, size_t i)
{
	atomic_fetch_sub(&p->v[i].conns, 1);
}

unsigned
backend_pool_conns(const struct backend_pool *p, size_t i)
{
	return atomic_load(&p->v[i].conns);
}

/* ---------------------------------------------------------------------
 * Health
 */

static enum backend_pool_change
set_up(struct backend_pool_server *s, bool up)
{
	bool was = !up;

	if (!atomic_compare_exchange_strong(&s->up, &was, up))
		return BACKEND_POOL_SAME;
	atomic_fetch_add(&s->changes, 1);
	atomic_store(&s->goods, 0);
	if (up)
		atomic_store(&s->fails, 0);
	return up ? BACKEND_POOL_WENT_UP : BACKEND_POOL_WENT_DOWN;
}

static enum backend_pool_change
count_failure(struct backend_pool *p, struct backend_pool_server *s,
	      uint64_t now)
{
	unsigned fails = atomic_fetch_add(&s->fails, 1) + 1;

	atomic_store(&s->goods, 0);
	if (!atomic_load(&s->up)) {
		/* A retry that failed: wait another down_time. */
		atomic_store(&s->retry_at, now + p->cfg->backend_down_time_ms);
		return BACKEND_POOL_SAME;
	}
	if (fails < p->cfg->health_fall)
		return BACKEND_POOL_SAME;
	atomic_store(&s->retry_at, now + p->cfg->backend_down_time_ms);
	return set_up(s, false);
}

enum backend_pool_change
backend_pool_failed(struct backend_pool *p, size_t i, uint64_t now_ms)
{
	return count_failure(p, &p->v[i], now_ms);
}

enum backend_pool_change
backend_pool_succeeded(struct backend_pool *p, size_t i, uint64_t now_ms)
{
	struct backend_pool_server *s = &p->v[i];

	(void)now_ms;
	if (atomic_load(&s->up)) {
		atomic_store(&s->fails, 0);
		return BACKEND_POOL_SAME;
	}
	/* With active checks only they bring a server back. */
	return checks_on(p) ? BACKEND_POOL_SAME : set_up(s, true);
}

enum backend_pool_change
backend_pool_checked(struct backend_pool *p, size_t i, bool ok, uint64_t now_ms)
{
	struct backend_pool_server *s = &p->v[i];

	if (!ok)
		return count_failure(p, s, now_ms);
	if (atomic_load(&s->up)) {
		atomic_store(&s->fails, 0);
		return BACKEND_POOL_SAME;
	}
	if (atomic_fetch_add(&s->goods, 1) + 1 < p->cfg->health_rise)
		return BACKEND_POOL_SAME;
	return set_up(s, true);
}

bool
backend_pool_is_up(const struct backend_pool *p, size_t i)
{
	return atomic_load(&p->v[i].up);
}

enum backend_pool_why
backend_pool_why_of(bool up, const char *reason)
{
	if (up)
		return BACKEND_WHY_RECOVERED;
	if (strstr(reason, "refused") != NULL)
		return BACKEND_WHY_REFUSED;
	if (strstr(reason, "timeout") != NULL ||
	    strstr(reason, "timed out") != NULL)
		return BACKEND_WHY_TIMEOUT;
	if (strncmp(reason, "greeting", 8) == 0)
		return BACKEND_WHY_GREETING;
	return BACKEND_WHY_FAILED;
}

const char *
backend_pool_why_name(enum backend_pool_why why)
{
	static const char *const names[BACKEND_WHY_COUNT] = {
		[BACKEND_WHY_NONE] = "none",
		[BACKEND_WHY_REFUSED] = "connect refused",
		[BACKEND_WHY_TIMEOUT] = "timeout",
		[BACKEND_WHY_GREETING] = "bad greeting",
		[BACKEND_WHY_FAILED] = "failed",
		[BACKEND_WHY_RECOVERED] = "recovered",
	};

	return (unsigned)why < BACKEND_WHY_COUNT ? names[why] : "none";
}

void
backend_pool_note(struct backend_pool *p, size_t i, enum backend_pool_why why,
		  bool check, uint64_t now_ms)
{
	atomic_store(&p->v[i].changed_ms, now_ms);
	atomic_store(&p->v[i].why, (unsigned)why | (check ? WHY_CHECK : 0));
}

enum backend_pool_why
backend_pool_last_change(const struct backend_pool *p, size_t i,
			 uint64_t *at_ms, bool *check)
{
	unsigned why = atomic_load(&p->v[i].why);

	*at_ms = atomic_load(&p->v[i].changed_ms);
	*check = (why & WHY_CHECK) != 0;
	why &= ~WHY_CHECK;
	return why < BACKEND_WHY_COUNT ? (enum backend_pool_why)why
				       : BACKEND_WHY_NONE;
}

unsigned long
backend_pool_changes(const struct backend_pool *p, size_t i)
{
	return atomic_load(&p->v[i].changes);
}

/* ---------------------------------------------------------------------
 * Capabilities
 */

unsigned
backend_pool_ehlo_caps(const struct smtp_reply *r, uint64_t *size)
{
	static const struct {
		const char *kw;
		unsigned bit;
	} exts[] = {
		{"8BITMIME", BACKEND_POOL_EXT_8BITMIME},
		{"SMTPUTF8", BACKEND_POOL_EXT_SMTPUTF8},
		{"DSN", BACKEND_POOL_EXT_DSN},
		{"CHUNKING", BACKEND_POOL_EXT_CHUNKING},
	};
	const char *args;
	size_t alen, i;
	unsigned ext = 0;
	uint64_t n = 0;

	for (i = 0; i < sizeof(exts) / sizeof(*exts); i++)
		if (smtp_reply_has_ext(r, exts[i].kw, NULL, NULL))
			ext |= exts[i].bit;
	*size = 0;
	if (smtp_reply_has_ext(r, "SIZE", &args, &alen)) {
		for (i = 0;
		     i < alen && i < 19 && args[i] >= '0' && args[i] <= '9';
		     i++)
			n = n * 10 + (uint64_t)(args[i] - '0');
		if (i == alen || (i > 0 && args[i] == ' '))
			*size = n; /* "SIZE" alone or junk: no limit known */
	}
	return ext;
}

void
backend_pool_learn(struct backend_pool *p, size_t i, unsigned ext,
		   uint64_t size)
{
	atomic_store(&p->v[i].size_max, size);
	atomic_store(&p->v[i].ext, ext | EXT_KNOWN);
}

void
backend_pool_learn_xclient(struct backend_pool *p, size_t i, unsigned attrs)
{
	atomic_uint *x = &p->v[i].xclient;
	unsigned old = atomic_load(x);

	/* The refusal sticks, also against a worker refusing meanwhile. */
	while (!atomic_compare_exchange_weak(x, &old,
					     (attrs & 0xffu) | XCLIENT_SEEN |
						     (old & XCLIENT_NO_EARLY)))
		;
}

bool
backend_pool_refuse_early(struct backend_pool *p, size_t i)
{
	unsigned old = atomic_fetch_or(&p->v[i].xclient, XCLIENT_NO_EARLY);

	return !(old & XCLIENT_NO_EARLY);
}

unsigned
backend_pool_xclient_early(const struct backend_pool *p, size_t i)
{
	unsigned x = atomic_load(&p->v[i].xclient);

	if (!(x & XCLIENT_SEEN) || (x & XCLIENT_NO_EARLY))
		return 0;
	return x & 0xffu;
}

void
backend_pool_offer(const struct backend_pool *p, unsigned *ext, uint64_t *size)
{
	unsigned all = ~0u;
	uint64_t smallest = 0;
	bool seen = false, unseen = false;

	for (size_t i = 0; i < p->n; i++) {
		const struct backend_pool_server *s = &p->v[i];
		unsigned e = atomic_load(&s->ext);
		uint64_t n = atomic_load(&s->size_max);

		if (!atomic_load(&s->up) || !backend_pool_is_enabled(p, i))
			continue;
		if (!(e & EXT_KNOWN)) {
			unseen = true;
			continue;
		}
		seen = true;
		all &= e;
		if (n > 0 && (smallest == 0 || n < smallest))
			smallest = n;
	}
	*ext = seen ? all & ~EXT_KNOWN : 0;
	/* A BDAT that reaches a server without CHUNKING can only be
	 * refused (smtp.c), so CHUNKING needs every up server seen. */
	if (unseen)
		*ext &= ~BACKEND_POOL_EXT_CHUNKING;
	*size = smallest;
}
