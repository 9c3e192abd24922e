/*
 * server_users.c - the status page's users nearest their limits: the ten
 * whose buckets (messages, recipients, bytes, quota) are the most used,
 * with what each could still take.
 *
 * The user table (limits/ratelimit.c) is read one shard at a time
 * (ratelimit_user_scan(): that shard's mutex only, a bounded copy), on the
 * main thread, never a worker's.  It keys users by a keyed hash of the
 * login, so the names come from a directory of the users file's logins
 * by key, made on the main thread the first time the page asks after a
 * load (one HMAC per login: about 1 s per million).  A login not in the
 * file (auth.backend dovecot or http) shows as its short hash, as every
 * login does with metrics.hash_logins (the hash is keyed with the
 * process's random secret: no dictionary outside the process maps it
 * back).
 *
 * In fleet mode the buckets that count are Redis's; this is the node's
 * own table, and the JSON says so ("scope": "node").
 *
 * Security stance: logins only, never a password; with hash_logins not
 * even those.
 *
 * Config keys: metrics.hash_logins.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd_db.h"
#include "config/generation.h"
#include "lib/json.h"
#include "lib/timer.h"
#include "limits/ratelimit.h"
#include "ops/server_internal.h"

#define USERS_TOP      10
#define USERS_PER_SCAN 4096 /* users copied per shard, at most */

struct login_key {
	uint8_t key[16];
	const char *login; /* into the generation's users file */
};

/* Main thread only: the directory of the users file now in use. */
static struct {
	const struct generation *gen;
	unsigned gen_id;
	struct login_key *v;
	size_t n;
} dir;

static int
key_cmp(const void *a, const void *b)
{
	return memcmp(((const struct login_key *)a)->key,
		      ((const struct login_key *)b)->key, 16);
}

/* The directory for srv's generation, made if it is not yet. */
static void
dir_update(struct server *srv)
{
	const struct passwd_db *db = srv->gen->users;
	size_t n = passwd_db_count(db);

	if (dir.gen == srv->gen && dir.gen_id == srv->gen->id)
		return;
	free(dir.v);
	dir.v = n ? calloc(n, sizeof(*dir.v)) : NULL;
	dir.n = dir.v != NULL ? n : 0;
	dir.gen = srv->gen;
	dir.gen_id = srv->gen->id;
	for (size_t i = 0; i < dir.n; i++) {
		struct ratelimit_key k;

		dir.v[i].login = passwd_db_login(db, i);
		ratelimit_user_key(srv->shared.limits, dir.v[i].login, &k);
		memcpy(dir.v[i].key, k.b, sizeof(k.b));
	}
	qsort(dir.v, dir.n, sizeof(*dir.v), key_cmp);
}

static const char *
dir_login(const uint8_t key[16])
{
	struct login_key want, *hit;

	memcpy(want.key, key, sizeof(want.key));
	hit = dir.n ? bsearch(&want, dir.v, dir.n, sizeof(*dir.v), key_cmp)
		    : NULL;
	return hit != NULL ? hit->login : NULL;
}

struct nearest {
	struct ratelimit_user_seen u;
	const char *login; /* NULL: not in the users file */
	double use;	   /* the most used bucket: 0 full .. 1 empty */
	uint64_t avail[LIMIT_USER_KINDS];
};

/* How used u's most used bucket is (0..1), and what it could take. */
static double
use_of(struct server *srv, struct nearest *c, uint64_t now)
{
	const struct config *cfg = srv->gen->cfg;
	const struct passwd_user_info *info =
		c->login ? passwd_db_user_info(srv->gen->users, c->login)
			 : NULL;
	const struct config_user_limits *pol = ratelimit_policy(
		cfg, c->login ? c->login : "", info ? info->class_name : NULL);
	double use = 0;

	ratelimit_user_avail(&c->u, pol, now, c->avail);
	for (int k = 0; k < LIMIT_USER_KINDS; k++) {
		const struct config_rate *r = ratelimit_rate(pol, k);
		uint64_t of = k == LIMIT_QUOTA ? r->count : r->burst;
		double x;

		if (r->count == 0 || of == 0 || c->avail[k] >= of)
			continue;
		x = 1.0 - (double)c->avail[k] / (double)of;
		use = x > use ? x : use;
	}
	return use;
}

/* Keep the USERS_TOP most used in top[] (n so far), most used first. */
static void
keep(struct nearest *top, size_t *n, const struct nearest *c)
{
	size_t i;

	if (*n == USERS_TOP) {
		if (top[USERS_TOP - 1].use >= c->use)
			return;
		i = USERS_TOP - 1;
	} else {
		i = (*n)++;
	}
	top[i] = *c;
	while (i > 0 && top[i - 1].use < top[i].use) {
		struct nearest t = top[i - 1];

		top[i - 1] = top[i];
		top[i] = t;
		i--;
	}
}

static void
login_json(FILE *out, const char *login, const uint8_t key[16], bool hashed)
{
	if (login == NULL || hashed) {
		fputs("\"#", out);
		for (int i = 0; i < 4; i++)
			fprintf(out, "%02x", key[i]);
		fputc('"', out);
		return;
	}
	json_str(out, login);
}

void
server_users_nearest(struct server *srv, FILE *out)
{
	static const char *const kinds[LIMIT_USER_KINDS] = {
		"messages", "recipients", "bytes", "quota"};
	const struct config *cfg = srv->gen->cfg;
	struct ratelimit_user_seen *seen =
		malloc(USERS_PER_SCAN * sizeof(*seen));
	struct nearest top[USERS_TOP];
	size_t n = 0, tracked = 0;
	unsigned shard = 0;
	bool truncated = false;
	uint64_t now = timer_now_ms();

	fprintf(out, "{\"scope\":\"%s\",\"hashed\":%s,\"top\":[",
		cfg->cluster_redis.len != 0 ? "node" : "all",
		cfg->metrics_hash_logins ? "true" : "false");
	if (seen == NULL) {
		fputs("],\"tracked\":0,\"truncated\":true}", out);
		return;
	}
	dir_update(srv);
	do {
		size_t got =
			ratelimit_user_scan(srv->shared.limits, &shard, now,
					    seen, USERS_PER_SCAN, &truncated);

		tracked += got;
		for (size_t i = 0; i < got; i++) {
			struct nearest c = {.u = seen[i]};

			c.login = dir_login(seen[i].key);
			c.use = use_of(srv, &c, now);
			if (c.use > 0)
				keep(top, &n, &c);
		}
	} while (shard != 0);
	free(seen);
	for (size_t i = 0; i < n; i++) {
		fputs(i ? ",{\"login\":" : "{\"login\":", out);
		login_json(out, top[i].login, top[i].u.key,
			   cfg->metrics_hash_logins);
		fprintf(out, ",\"use\":%.3f,\"remaining\":{", top[i].use);
		for (int k = 0; k < LIMIT_USER_KINDS; k++) {
			if (top[i].avail[k] == UINT64_MAX)
				fprintf(out, "%s\"%s\":null", k ? "," : "",
					kinds[k]);
			else
				fprintf(out, "%s\"%s\":%" PRIu64, k ? "," : "",
					kinds[k], top[i].avail[k]);
		}
		fputs("}}", out);
	}
	fprintf(out, "],\"tracked\":%zu,\"truncated\":%s}", tracked,
		truncated ? "true" : "false");
}
