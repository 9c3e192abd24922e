/*
 * cluster.c - the thread that keeps the cluster's state in Redis.  Read
 * cluster.h first; docs/CLUSTER.md has the picture.
 *
 * The thread loops: connect when down (with a backoff), take what the
 * mailbox holds, write it as one pipeline, read the replies in order and
 * answer each request through its done().  Replies come back in the order
 * the commands went, so a FIFO of requests in flight matches them up.  If
 * the oldest request in flight is not answered within cluster.timeout,
 * Redis is stopped or the network is: the connection is dropped, every
 * request in flight is answered CLUSTER_UNAVAILABLE, and the thread
 * connects again.  While down, requests are answered CLUSTER_UNAVAILABLE
 * at once: no session waits for a Redis that is not there.  Between
 * pipelines, with nothing in flight, the thread also writes and reads the
 * blocklist files' sets (cluster_files.c), call by call.
 *
 * Security stance: the password is read from cluster.password_file once,
 * at start, kept only in this object and wiped when it stops; it is never
 * logged.  Users are named in Redis by a SHA-256 of their login, not the
 * login (cluster_user_id).  Replies of an unexpected shape drop the
 * connection (in the files' sets a bad member is skipped instead).
 *
 * Config keys: cluster.* (restart-only: a reload keeps the running
 * cluster's settings and says so).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "cluster/cluster.h"
#include "cluster/cluster_files.h"
#include "cluster/cluster_msg.h"
#include "cluster/cluster_scripts.h"
#include "cluster/redis_conn.h"
#include "lib/log.h"
#include "lib/mailbox.h"

#define BACKOFF_MIN_US 100000u	/* 100 ms */
#define BACKOFF_MAX_US 5000000u /* 5 s */
#define NSCRIPTS       8

struct cluster {
	struct redis_target target; /* cluster.* is restart-only */
	char prefix[sizeof(((struct config *)0)->cluster_prefix)];
	char node_id[sizeof(((struct config *)0)->cluster_node_id)];
	char address[128];
	char *user, *pass; /* pass NULL: no AUTH */
	SSL_CTX *tls;	   /* NULL: plain */
	uint64_t timeout_us;
	bool fail_closed;

	pthread_t thread;
	bool started;
	struct mailbox mbox; /* requests from workers and the server */
	pthread_mutex_t mu;  /* last_error */

	char bans_key[96], channel[96];
	/* "<node_id>#<random>": what this process signs its publishes with,
	 * to know its own (two nodes may share a name by mistake). */
	char origin[CLUSTER_ORIGIN_MAX];
	struct cluster_ban_sink sink; /* set before the first ban */
	struct cluster_files files;   /* the blocklist files' sets */

	/* The thread's own. */
	struct redis_conn conn;
	struct redis_conn sub; /* SUBSCRIBEd to channel: bans as they come */
	struct ipnet *applied; /* the cluster's bans this node holds */
	size_t napplied, capplied;
	bool up;
	uint64_t next_connect_us, backoff_us;
	char sha[NSCRIPTS][41];
	struct cluster_request *head, *tail; /* in flight, oldest first */
	char last_error[256]; /* under mu: the control socket reads it */

	struct cluster_stats stats;
};

static const char *const scripts[NSCRIPTS] = {
	cluster_script_bucket,	     cluster_script_login,
	cluster_script_reset,	     cluster_script_ban,
	cluster_script_banlist,	     cluster_script_charges,
	cluster_script_files_commit, cluster_script_files_index,
};
enum {
	SCRIPT_BUCKET,
	SCRIPT_LOGIN,
	SCRIPT_RESET,
	SCRIPT_BAN,
	SCRIPT_BANLIST,
	SCRIPT_CHARGES,
	SCRIPT_FILES_COMMIT,
	SCRIPT_FILES_INDEX,
};

/* ---------------------------------------------------------------------
 * Names
 */

void
cluster_request_free(struct cluster_request *req)
{
	if (req == NULL)
		return;
	free(req->charges);
	free(req);
}

void
cluster_user_id(const char *login, char out[CLUSTER_KEY_MAX])
{
	unsigned char h[SHA256_DIGEST_LENGTH];
	static const char hex[] = "0123456789abcdef";

	/* Not keyed: every node must find the same name.  16 bytes of it
	 * are plenty to tell logins apart. */
	SHA256((const unsigned char *)login, strlen(login), h);
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[h[i] >> 4];
		out[2 * i + 1] = hex[h[i] & 15];
	}
	out[32] = '\0';
}

void
cluster_request_rates(struct cluster_request *req,
		      const struct config_user_limits *pol)
{
	for (int k = 0; k < LIMIT_USER_KINDS; k++)
		req->rate[k] = *ratelimit_rate(pol, k);
}

/* ---------------------------------------------------------------------
 * Bans: the set this node holds from the cluster, to lift on a resync
 * what was unbanned while it was away.
 */

static long
applied_find(const struct cluster *c, const struct ipnet *net)
{
	for (size_t i = 0; i < c->napplied; i++)
		if (c->applied[i].len == net->len &&
		    memcmp(c->applied[i].addr, net->addr, 16) == 0)
			return (long)i;
	return -1;
}

static void
applied_add(struct cluster *c, const struct ipnet *net)
{
	if (applied_find(c, net) >= 0)
		return;
	if (c->napplied == c->capplied) {
		size_t cap = c->capplied ? c->capplied * 2 : 64;
		struct ipnet *v = realloc(c->applied, cap * sizeof(*v));

		if (v == NULL)
			return; /* only a resync's unban is missed */
		c->applied = v;
		c->capplied = cap;
	}
	c->applied[c->napplied++] = *net;
}

static void
applied_del(struct cluster *c, const struct ipnet *net)
{
	long i = applied_find(c, net);

	if (i >= 0)
		c->applied[i] = c->applied[--c->napplied];
}

static void
ban_request(struct cluster *c, enum cluster_op op, const struct ipnet *net,
	    uint64_t ttl_ms, enum blocklist_reason reason)
{
	struct cluster_request *req = calloc(1, sizeof(*req));

	if (req == NULL)
		return; /* this node has it; the others will not */
	req->op = op;
	ipnet_format(net, req->net, sizeof(req->net));
	req->ttl_ms = ttl_ms;
	req->reason = reason;
	cluster_submit(c, req);
}

void
cluster_ban(struct cluster *c, const struct ipnet *net, uint64_t ttl_ms,
	    enum blocklist_reason reason)
{
	ban_request(c, CLUSTER_BAN, net, ttl_ms, reason);
}

void
cluster_unban(struct cluster *c, const struct ipnet *net)
{
	ban_request(c, CLUSTER_UNBAN, net, 0, BLOCKLIST_REASON_MANUAL);
}

void
cluster_files_set(struct cluster *c, const struct ipnet *v, size_t n,
		  size_t max_entries)
{
	cluster_files_own(&c->files, v, n, max_entries);
	mailbox_wake(&c->mbox);
}

/* A ban or unban from another node (cluster_msg.h). */
static void
on_publish(struct cluster *c, const char *msg, size_t len)
{
	struct cluster_msg m;

	if (!cluster_msg_parse(msg, len, &m) ||
	    strcmp(m.origin, c->origin) == 0)
		return; /* malformed, or this process's own */
	if (m.files) {
		size_t name = strcspn(m.origin, "#");

		/* Sets are named by node id: two nodes sharing one would
		 * overwrite each other's. */
		if (name == strlen(c->node_id) &&
		    memcmp(m.origin, c->node_id, name) == 0)
			log_warn("cluster-node-id-clash",
				 " node=%s other=%s detail=\"two nodes share "
				 "this cluster.node_id\"",
				 c->node_id, m.origin);
		cluster_files_changed(&c->files);
		return;
	}
	m.origin[strcspn(m.origin, "#")] = '\0'; /* the name, for the log */
	atomic_fetch_add(&c->stats.bans_received, 1);
	if (m.add) {
		applied_add(c, &m.net);
		if (c->sink.add != NULL)
			c->sink.add(c->sink.arg, &m.net, m.ttl_ms,
				    (enum blocklist_reason)m.reason, m.origin);
	} else {
		applied_del(c, &m.net);
		if (c->sink.del != NULL)
			c->sink.del(c->sink.arg, &m.net, m.origin);
	}
}

/* A ban of this node's that the cluster may not have (resync). */
struct local_bans {
	struct cluster *c;
	const struct ipnet *fresh;
	size_t nfresh;
	struct cluster_request *out; /* to publish, newest first */
};

static bool
net_in(const struct ipnet *v, size_t n, const struct ipnet *net)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].len == net->len &&
		    memcmp(v[i].addr, net->addr, 16) == 0)
			return true;
	return false;
}

static void
local_ban(void *ctx, const struct ipnet *net, uint64_t left_ms,
	  enum blocklist_reason reason)
{
	struct local_bans *lb = ctx;
	struct cluster_request *req;

	/* In Redis already, or had from the cluster (then an unban made
	 * while away lifts it instead): nothing to tell. */
	if (net_in(lb->fresh, lb->nfresh, net) || applied_find(lb->c, net) >= 0)
		return;
	if ((req = calloc(1, sizeof(*req))) == NULL)
		return;
	req->op = CLUSTER_BAN;
	ipnet_format(net, req->net, sizeof(req->net));
	req->ttl_ms = left_ms;
	req->reason = reason;
	req->next = lb->out;
	lb->out = req;
}

/* After a (re)connect: every live ban in, and the ones this node holds
 * that the cluster no longer has, out. */
static int
resync(struct cluster *c, uint64_t deadline_us, char *err, size_t errlen)
{
	const char *argv[4] = {"EVALSHA", c->sha[SCRIPT_BANLIST], "1",
			       c->bans_key};
	size_t lens[4] = {7, 40, 1, strlen(c->bans_key)};
	struct ipnet *fresh, net;
	size_t nfresh = 0, cap;
	redisReply *r;

	if (redis_conn_call(&c->conn, 4, argv, lens, deadline_us, &r, err,
			    errlen) != 0)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements % 3 != 0) {
		snprintf(err, errlen, "ban list: bad reply");
		freeReplyObject(r);
		return -1;
	}
	cap = r->elements / 3 + 1;
	fresh = calloc(cap, sizeof(*fresh));
	if (fresh == NULL) {
		freeReplyObject(r);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i + 2 < r->elements; i += 3) {
		const redisReply *p = r->element[i], *t = r->element[i + 1],
				 *why = r->element[i + 2];
		char text[IPNET_TEXT_MAX];

		if (p->type != REDIS_REPLY_STRING || p->len >= sizeof(text) ||
		    t->type != REDIS_REPLY_INTEGER ||
		    why->type != REDIS_REPLY_INTEGER)
			continue;
		memcpy(text, p->str, p->len);
		text[p->len] = '\0';
		if (ipnet_parse(text, &net) != NULL ||
		    (why->integer != BLOCKLIST_REASON_MANUAL &&
		     why->integer != BLOCKLIST_REASON_AUTO))
			continue;
		fresh[nfresh++] = net;
		if (c->sink.add != NULL)
			c->sink.add(c->sink.arg, &net,
				    t->integer > 0 ? (uint64_t)t->integer : 0,
				    (enum blocklist_reason)why->integer,
				    "resync");
	}
	freeReplyObject(r);
	for (size_t i = 0; i < c->napplied; i++) {
		bool kept = false;

		for (size_t j = 0; j < nfresh && !kept; j++)
			kept = fresh[j].len == c->applied[i].len &&
			       memcmp(fresh[j].addr, c->applied[i].addr, 16) ==
				       0;
		if (!kept && c->sink.del != NULL)
			c->sink.del(c->sink.arg, &c->applied[i], "resync");
	}
	/* This node's own bans made while Redis was away: published now
	 * (they go out with the first pipeline, once the thread is up). */
	if (c->sink.each != NULL) {
		struct local_bans lb = {
			.c = c, .fresh = fresh, .nfresh = nfresh};

		c->sink.each(c->sink.arg, local_ban, &lb);
		while (lb.out != NULL) {
			struct cluster_request *req = lb.out;

			lb.out = req->next;
			req->next = NULL;
			if (!mailbox_post(&c->mbox, req))
				cluster_request_free(req); /* stopping */
			log_info("cluster-ban-published",
				 " network=%s ttl_ms=%" PRIu64
				 " detail=\"made while Redis was away\"",
				 req->net, req->ttl_ms);
		}
	}
	free(c->applied);
	c->applied = fresh;
	c->napplied = nfresh;
	c->capplied = cap;
	atomic_store(&c->stats.last_sync_wall_ms, (uint64_t)time(NULL) * 1000u);
	return 0;
}

/* The second connection, subscribed to the bans' channel. */
static int
subscribe(struct cluster *c, uint64_t deadline_us, char *err, size_t errlen)
{
	const char *argv[2] = {"SUBSCRIBE", c->channel};
	size_t lens[2] = {9, strlen(c->channel)};
	bool refused;
	redisReply *r;

	if (redis_conn_open(&c->sub, &c->target, c->tls, c->user, c->pass,
			    deadline_us, &refused, err, errlen) != 0)
		return -1;
	if (redis_conn_call(&c->sub, 2, argv, lens, deadline_us, &r, err,
			    errlen) != 0)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "SUBSCRIBE refused");
		freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 0;
}

static void read_publishes(struct cluster *c);

struct cluster_request *
cluster_give_request(const char *login, const struct config_user_limits *pol,
		     const uint64_t amount[LIMIT_USER_KINDS], bool charge)
{
	struct cluster_request *req = calloc(1, sizeof(*req));

	if (req == NULL)
		return NULL;
	req->op = charge ? CLUSTER_CHARGE : CLUSTER_GIVE;
	cluster_user_id(login, req->user);
	cluster_request_rates(req, pol);
	memcpy(req->amount, amount, sizeof(req->amount));
	return req;
}

void
cluster_give(void *cluster, const char *login,
	     const struct config_user_limits *pol,
	     const uint64_t amount[LIMIT_USER_KINDS], bool charge)
{
	struct cluster_request *req =
		cluster_give_request(login, pol, amount, charge);

	/* No memory: the units stay taken, the safe side.  done NULL: the
	 * request is freed when answered. */
	if (req != NULL)
		cluster_submit(cluster, req);
}

/* ---------------------------------------------------------------------
 * Setup
 */

/* The first line of the password file, without its newline. */
static char *
read_password(const char *path, char *err, size_t errlen)
{
	char line[1024];
	FILE *f = fopen(path, "re");
	size_t n;

	if (f == NULL) {
		snprintf(err, errlen, "cluster.password_file: %s: %s", path,
			 strerror(errno));
		return NULL;
	}
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	if (n == 0) {
		snprintf(err, errlen, "cluster.password_file: %s: empty", path);
		return NULL;
	}
	char *p = strdup(line);

	OPENSSL_cleanse(line, sizeof(line));
	if (p == NULL)
		snprintf(err, errlen, "out of memory");
	return p;
}

int
cluster_check(const struct config *cfg, char *err, size_t errlen)
{
	char *p;
	SSL_CTX *ctx;

	if (cfg->cluster_redis.len == 0)
		return 0;
	if (cfg->cluster_password_file != NULL) {
		p = read_password(cfg->cluster_password_file, err, errlen);
		if (p == NULL)
			return -1;
		OPENSSL_cleanse(p, strlen(p));
		free(p);
	}
	if (cfg->cluster_tls) {
		ctx = redis_tls_ctx(cfg, err, errlen);
		if (ctx == NULL)
			return -1;
		SSL_CTX_free(ctx);
	}
	return 0;
}

/* The scripts' SHA1s, as EVALSHA names them, before any connection. */
static void
script_shas(struct cluster *c)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < NSCRIPTS; i++) {
		unsigned char h[SHA_DIGEST_LENGTH];

		SHA1((const unsigned char *)scripts[i], strlen(scripts[i]), h);
		for (int k = 0; k < SHA_DIGEST_LENGTH; k++) {
			c->sha[i][2 * k] = hex[h[k] >> 4];
			c->sha[i][2 * k + 1] = hex[h[k] & 15];
		}
		c->sha[i][40] = '\0';
	}
}

/* Load the scripts on a new connection (Redis may have restarted). */
static int
load_scripts(struct cluster *c, uint64_t deadline_us, char *err, size_t errlen)
{
	for (int i = 0; i < NSCRIPTS; i++) {
		const char *argv[3] = {"SCRIPT", "LOAD", scripts[i]};
		size_t lens[3] = {6, 4, strlen(scripts[i])};
		redisReply *r;

		if (redis_conn_call(&c->conn, 3, argv, lens, deadline_us, &r,
				    err, errlen) != 0)
			return -1;
		if (r->type != REDIS_REPLY_STRING || r->len != 40) {
			snprintf(err, errlen, "SCRIPT LOAD: %.*s",
				 r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
				 r->type == REDIS_REPLY_ERROR ? r->str : "");
			freeReplyObject(r);
			return -1;
		}
		/* Known since the start (script_shas): the workers' own
		 * connections use them without loading. */
		if (memcmp(c->sha[i], r->str, 40) != 0) {
			snprintf(err, errlen,
				 "SCRIPT LOAD: an unexpected SHA1");
			freeReplyObject(r);
			return -1;
		}
		freeReplyObject(r);
	}
	return 0;
}

/* One attempt; *auth_refused when Redis said no to the credentials. */
static int
try_connect(struct cluster *c, bool *auth_refused, char *err, size_t errlen)
{
	uint64_t deadline = redis_now_us() + c->timeout_us * 2;

	atomic_fetch_add(&c->stats.connects, 1);
	if (redis_conn_open(&c->conn, &c->target, c->tls, c->user, c->pass,
			    deadline, auth_refused, err, errlen) != 0)
		goto fail;
	/* Subscribed before the resync: no ban falls between the two. */
	if (load_scripts(c, deadline, err, errlen) != 0 ||
	    subscribe(c, deadline, err, errlen) != 0 ||
	    resync(c, deadline, err, errlen) != 0) {
		redis_conn_close(&c->conn);
		redis_conn_close(&c->sub);
		goto fail;
	}
	c->up = true;
	c->backoff_us = 0;
	atomic_store(&c->stats.up, true);
	cluster_files_reconnected(&c->files);
	return 0;
fail:
	atomic_fetch_add(&c->stats.connect_failures, 1);
	return -1;
}

/* ---------------------------------------------------------------------
 * Requests
 */

void
cluster_count(struct cluster *c, struct cluster_request *req,
	      enum cluster_status status)
{
	uint64_t now = redis_now_us();

	req->status = status;
	req->rtt_us = now - req->submitted_us;
	if (status == CLUSTER_OK &&
	    (req->op == CLUSTER_BAN || req->op == CLUSTER_UNBAN)) {
		struct ipnet net;

		if (ipnet_parse(req->net, &net) == NULL) {
			if (req->op == CLUSTER_BAN)
				applied_add(c, &net);
			else
				applied_del(c, &net);
		}
	}
	if (status == CLUSTER_OK) {
		atomic_fetch_add(&c->stats.rtt_us_sum, req->rtt_us);
		atomic_fetch_add(&c->stats.rtt_count, 1);
		atomic_store(&c->stats.last_ok_wall_ms,
			     (uint64_t)time(NULL) * 1000u);
	} else {
		atomic_fetch_add(&c->stats.unavailable, 1);
	}
}

static void
answer(struct cluster *c, struct cluster_request *req,
       enum cluster_status status)
{
	cluster_count(c, req, status);
	if (req->done != NULL)
		req->done(req);
	else
		cluster_request_free(req);
}

/* "<prefix>u:{<id>}:<what>" */
static size_t
user_key(const struct cluster *c, char *buf, size_t len, const char *id,
	 const char *what)
{
	int n = snprintf(buf, len, "%su:{%s}:%s", c->prefix, id, what);

	return n < 0 || (size_t)n >= len ? len - 1 : (size_t)n;
}

#define MAX_ARGS (3 + 5 * CLUSTER_CHARGES_MAX)
#define ARG_LEN	 80

struct args {
	int argc;
	const char *argv[MAX_ARGS];
	size_t lens[MAX_ARGS];
	char store[MAX_ARGS][ARG_LEN];
};

static void
arg_str(struct args *a, const char *s)
{
	a->argv[a->argc] = s;
	a->lens[a->argc] = strlen(s);
	a->argc++;
}

static void
arg_u64(struct args *a, uint64_t v)
{
	char *p = a->store[a->argc];

	a->lens[a->argc] = (size_t)snprintf(p, ARG_LEN, "%" PRIu64, v);
	a->argv[a->argc] = p;
	a->argc++;
}

static char *
arg_slot(struct args *a, size_t *len)
{
	*len = ARG_LEN;
	return a->store[a->argc];
}

static void
arg_key(struct args *a, const struct cluster *c, const char *id,
	const char *what)
{
	size_t len;
	char *p = arg_slot(a, &len);

	a->lens[a->argc] = user_key(c, p, len, id, what);
	a->argv[a->argc] = p;
	a->argc++;
}

static void
arg_rate(struct args *a, uint64_t amount, const struct config_rate *r)
{
	arg_u64(a, amount);
	arg_u64(a, r->count);
	arg_u64(a, r->period_ms);
	arg_u64(a, r->burst);
}

/* The EVALSHA for req. */
static void
build(const struct cluster *c, const struct cluster_request *req,
      struct args *a)
{
	static const char *const modes[] = {
		[CLUSTER_TAKE] = "take",
		[CLUSTER_GIVE] = "give",
		[CLUSTER_CHARGE] = "charge",
		[CLUSTER_PEEK] = "peek",
	};
	size_t len;
	char *p;

	a->argc = 0;
	arg_str(a, "EVALSHA");
	switch (req->op) {
	case CLUSTER_TAKE:
	case CLUSTER_GIVE:
	case CLUSTER_CHARGE:
	case CLUSTER_PEEK:
		arg_str(a, c->sha[SCRIPT_BUCKET]);
		arg_str(a, "1");
		arg_key(a, c, req->user, "buckets");
		arg_str(a, modes[req->op]);
		for (int k = 0; k < LIMIT_USER_KINDS; k++)
			arg_rate(a, req->amount[k], &req->rate[k]);
		break;
	case CLUSTER_CHARGE_MANY:
		arg_str(a, c->sha[SCRIPT_CHARGES]);
		arg_u64(a, req->ncharges);
		for (unsigned i = 0; i < req->ncharges; i++)
			arg_key(a, c, req->charges[i].user, "buckets");
		for (unsigned i = 0; i < req->ncharges; i++)
			arg_rate(a, req->charges[i].bytes,
				 &req->charges[i].rate);
		break;
	case CLUSTER_LOGIN:
		arg_str(a, c->sha[SCRIPT_LOGIN]);
		arg_str(a, "2");
		arg_key(a, c, req->user, "login");
		p = arg_slot(a, &len);
		a->lens[a->argc] =
			(size_t)snprintf(p, len, "%sn:{%s}:auth", c->prefix,
					 req->net[0] ? req->net : "-");
		a->argv[a->argc++] = p;
		arg_u64(a, req->ok ? 1 : 0);
		arg_u64(a, req->login_rate.count);
		arg_u64(a, req->login_rate.period_ms);
		arg_u64(a, req->login_rate.burst);
		arg_u64(a, req->base_delay_ms);
		arg_u64(a, req->max_delay_ms);
		arg_u64(a, req->ip_failures.count);
		arg_u64(a, req->ip_failures.period_ms);
		arg_u64(a, req->ip_failures.burst);
		arg_u64(a, req->ban_ms);
		arg_u64(a, req->net[0] ? 1 : 0);
		break;
	case CLUSTER_RESET:
		arg_str(a, c->sha[SCRIPT_RESET]);
		arg_str(a, "2");
		arg_key(a, c, req->user, "buckets");
		arg_key(a, c, req->user, "login");
		break;
	case CLUSTER_BAN:
	case CLUSTER_UNBAN:
		arg_str(a, c->sha[SCRIPT_BAN]);
		arg_str(a, "1");
		arg_str(a, c->bans_key);
		arg_str(a, req->op == CLUSTER_BAN ? "add" : "del");
		arg_str(a, req->net);
		arg_u64(a, req->ttl_ms);
		arg_u64(a, (uint64_t)req->reason);
		arg_str(a, c->origin);
		arg_str(a, c->channel);
		if (req->op == CLUSTER_UNBAN) {
			/* Its failed logins go too: a fresh start. */
			p = arg_slot(a, &len);
			a->lens[a->argc] = (size_t)snprintf(
				p, len, "%sn:{%s}:auth", c->prefix, req->net);
			a->argv[a->argc++] = p;
		}
		break;
	case CLUSTER_PING:
		a->argc = 0;
		arg_str(a, "PING");
		break;
	}
}

int
cluster_queue(struct cluster *c, const struct cluster_request *req,
	      struct redis_conn *conn)
{
	struct args a;

	build(c, req, &a);
	if (redis_conn_queue(conn, a.argc, a.argv, a.lens) != 0)
		return -1;
	atomic_fetch_add(&c->stats.requests, 1);
	return 0;
}

void
cluster_ping(struct cluster *c)
{
	struct cluster_request *req = calloc(1, sizeof(*req));

	if (req == NULL)
		return;
	req->op = CLUSTER_PING;
	cluster_submit(c, req); /* a stopped Redis: the thread goes down */
}

int
cluster_queue_login(const struct cluster *c, struct redis_conn *conn)
{
	const char *argv[3] = {"AUTH", c->user, c->pass};
	size_t lens[3];

	if (c->pass == NULL)
		return 0;
	if (c->user == NULL) {
		argv[1] = c->pass;
		lens[1] = strlen(c->pass);
		return redis_conn_queue(conn, 2, argv, lens) == 0 ? 1 : -1;
	}
	lens[0] = 4;
	lens[1] = strlen(c->user);
	lens[2] = strlen(c->pass);
	return redis_conn_queue(conn, 3, argv, lens) == 0 ? 1 : -1;
}

SSL *
cluster_link_tls(const struct cluster *c)
{
	char err[256];
	SSL *ssl;

	if (c->tls == NULL)
		return NULL;
	ssl = redis_tls_new(&c->target, c->tls, err, sizeof(err));
	if (ssl == NULL)
		log_warn("cluster-link-error", " error=\"%s\"", err);
	return ssl;
}

bool
cluster_tls_on(const struct cluster *c)
{
	return c->tls != NULL;
}

const struct config_addr *
cluster_redis_addr(const struct cluster *c)
{
	return &c->target.addr;
}

uint64_t
cluster_timeout_ms(const struct cluster *c)
{
	return c->timeout_us / 1000u;
}

static uint64_t
reply_u64(const redisReply *r)
{
	return r->type == REDIS_REPLY_INTEGER && r->integer > 0
		       ? (uint64_t)r->integer
		       : 0;
}

/* An array of exactly n integers. */
static bool
all_ints(const redisReply *r, size_t n)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (r->element[i]->type != REDIS_REPLY_INTEGER)
			return false;
	return true;
}

/* A script's count or wait, -1 meaning never (or not limited). */
static uint64_t
u64_or_never(const redisReply *e)
{
	return e->integer < 0 ? UINT64_MAX : (uint64_t)e->integer;
}

bool
cluster_take_reply(struct cluster_request *req, const redisReply *r)
{
	if (r->type == REDIS_REPLY_ERROR)
		return false;
	switch (req->op) {
	case CLUSTER_TAKE:
	case CLUSTER_GIVE:
	case CLUSTER_CHARGE:
		if (!all_ints(r, 2) || r->element[0]->integer < 0 ||
		    r->element[0]->integer > LIMIT_USER_KINDS)
			return false;
		req->refused = (int)r->element[0]->integer;
		req->retry_ms = u64_or_never(r->element[1]);
		return true;
	case CLUSTER_PEEK:
		if (!all_ints(r, LIMIT_USER_KINDS))
			return false;
		for (int k = 0; k < LIMIT_USER_KINDS; k++)
			req->avail[k] = u64_or_never(r->element[k]);
		return true;
	case CLUSTER_LOGIN:
		if (!all_ints(r, 2))
			return false;
		req->delay_ms = reply_u64(r->element[0]);
		req->banned_ms = reply_u64(r->element[1]);
		return true;
	case CLUSTER_RESET:
		req->refused = (int)reply_u64(r); /* keys deleted */
		return r->type == REDIS_REPLY_INTEGER;
	case CLUSTER_CHARGE_MANY:
	case CLUSTER_BAN:
	case CLUSTER_UNBAN:
		return r->type == REDIS_REPLY_INTEGER;
	case CLUSTER_PING:
		return r->type == REDIS_REPLY_STATUS;
	}
	return false;
}

/* The connection is gone: everything in flight is answered. */
static void
go_down(struct cluster *c, const char *why)
{
	struct cluster_request *req;

	if (c->up)
		log_warn("cluster-down",
			 " redis=%s node=%s error=\"%s\" fail=%s", c->address,
			 c->node_id, why, c->fail_closed ? "closed" : "open");
	pthread_mutex_lock(&c->mu);
	snprintf(c->last_error, sizeof(c->last_error), "%s", why);
	pthread_mutex_unlock(&c->mu);
	c->up = false;
	atomic_store(&c->stats.up, false);
	redis_conn_close(&c->conn);
	redis_conn_close(&c->sub);
	while ((req = c->head) != NULL) {
		c->head = req->next;
		answer(c, req, CLUSTER_UNAVAILABLE);
	}
	c->tail = NULL;
	c->backoff_us =
		cluster_backoff(c->backoff_us, BACKOFF_MIN_US, BACKOFF_MAX_US);
	c->next_connect_us = redis_now_us() + c->backoff_us;
}

/* New requests onto the wire (one write for all) or, while down,
 * answered at once. */
static void
send_mail(struct cluster *c, struct cluster_request *list)
{
	struct args a;
	bool any = false;

	while (list != NULL) {
		struct cluster_request *req = list;

		list = req->next;
		req->next = NULL;
		if (!c->up) {
			answer(c, req, CLUSTER_UNAVAILABLE);
			continue;
		}
		build(c, req, &a);
		if (redis_conn_queue(&c->conn, a.argc, a.argv, a.lens) != 0) {
			answer(c, req, CLUSTER_UNAVAILABLE);
			continue;
		}
		atomic_fetch_add(&c->stats.requests, 1);
		req->deadline_us = redis_now_us() + c->timeout_us;
		if (c->tail != NULL)
			c->tail->next = req;
		else
			c->head = req;
		c->tail = req;
		any = true;
	}
	if (any) {
		atomic_fetch_add(&c->stats.batches, 1);
		if (redis_conn_flush(&c->conn) != 0)
			go_down(c, "write: connection lost");
	}
}

static void
read_replies(struct cluster *c)
{
	redisReply *r;
	int got;

	if (redis_conn_read(&c->conn) != 0) {
		go_down(c, "connection lost");
		return;
	}
	while (c->up && (got = redis_conn_reply(&c->conn, &r)) != 0) {
		struct cluster_request *req = c->head;

		if (got < 0 || req == NULL) {
			if (got > 0)
				freeReplyObject(r);
			go_down(c, got < 0 ? "protocol error"
					   : "a reply nobody asked for");
			return;
		}
		c->head = req->next;
		if (c->head == NULL)
			c->tail = NULL;
		req->next = NULL;
		if (!cluster_take_reply(req, r)) {
			char why[200];

			atomic_fetch_add(&c->stats.errors, 1);
			snprintf(why, sizeof(why), "%s: %.*s",
				 r->type == REDIS_REPLY_ERROR ? "error"
							      : "bad reply",
				 r->type == REDIS_REPLY_ERROR
					 ? (int)(r->len < 150 ? r->len : 150)
					 : 0,
				 r->type == REDIS_REPLY_ERROR ? r->str : "");
			freeReplyObject(r);
			answer(c, req, CLUSTER_UNAVAILABLE);
			/* NOSCRIPT, OOM, READONLY (a replica after a
			 * failover): start over on a new connection. */
			go_down(c, why);
			return;
		}
		freeReplyObject(r);
		answer(c, req, CLUSTER_OK);
	}
}

static void
read_publishes(struct cluster *c)
{
	redisReply *r;
	int got;

	if (redis_conn_read(&c->sub) != 0) {
		go_down(c, "subscription lost");
		return;
	}
	while (c->up && (got = redis_conn_reply(&c->sub, &r)) != 0) {
		if (got < 0) {
			go_down(c, "subscription: protocol error");
			return;
		}
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
		    r->element[0]->type == REDIS_REPLY_STRING &&
		    r->element[0]->len == 7 &&
		    memcmp(r->element[0]->str, "message", 7) == 0 &&
		    r->element[2]->type == REDIS_REPLY_STRING)
			on_publish(c, r->element[2]->str, r->element[2]->len);
		freeReplyObject(r);
	}
}

static void
files_to_sink(void *arg, const struct ipnet *v, size_t n)
{
	struct cluster *c = arg;

	atomic_store(&c->stats.files_nodes, c->files.nnodes);
	atomic_store(&c->stats.files_shared, n);
	if (c->sink.files != NULL)
		c->sink.files(c->sink.arg, v, n);
}

/* The blocklist files' sets, when the connection is idle (their calls
 * wait for their answers). */
static void
run_files(struct cluster *c, uint64_t now)
{
	char err[256];

	if (!c->up || c->head != NULL || redis_conn_pending(&c->conn) ||
	    !cluster_files_due(&c->files, now))
		return;
	if (cluster_files_run(&c->files, &c->conn, files_to_sink, c, err,
			      sizeof(err)) < 0)
		go_down(c, err);
}

static void *
cluster_thread(void *arg)
{
	struct cluster *c = arg;
	bool stopping = false;

	pthread_setname_np(pthread_self(), "msa-cluster");
	while (!stopping) {
		uint64_t now = redis_now_us(), wake = now + 1000000u;
		struct pollfd p[3] = {{.fd = c->mbox.efd, .events = POLLIN}};
		int n, timeout_ms;

		if (!c->up && now >= c->next_connect_us) {
			char err[256];
			bool refused;

			if (try_connect(c, &refused, err, sizeof(err)) == 0)
				log_info("cluster-up", " redis=%s node=%s",
					 c->address, c->node_id);
			else
				go_down(c, err);
		}
		send_mail(c, mailbox_take(&c->mbox, &stopping));
		run_files(c, now);
		if (c->up && redis_conn_pending(&c->conn) &&
		    redis_conn_flush(&c->conn) != 0)
			go_down(c, "write: connection lost");
		if (c->up && c->conn.ssl != NULL && SSL_pending(c->conn.ssl))
			read_replies(c);
		if (c->up && c->sub.ssl != NULL && SSL_pending(c->sub.ssl))
			read_publishes(c);
		now = redis_now_us();
		if (c->head != NULL && now >= c->head->deadline_us) {
			atomic_fetch_add(&c->stats.timeouts, 1);
			go_down(c, "timed out");
		}
		if (c->head != NULL && c->head->deadline_us < wake)
			wake = c->head->deadline_us;
		if (!c->up && c->next_connect_us < wake)
			wake = c->next_connect_us;
		if (c->up && cluster_files_next(&c->files) < wake)
			wake = cluster_files_next(&c->files);
		p[1].fd = c->up ? c->conn.fd : -1;
		p[1].events = POLLIN;
		if (c->up && redis_conn_pending(&c->conn))
			p[1].events |= POLLOUT;
		p[2].fd = c->up ? c->sub.fd : -1;
		p[2].events = POLLIN;
		timeout_ms = wake > now ? (int)((wake - now + 999) / 1000) : 0;
		n = poll(p, 3, stopping ? 0 : timeout_ms);
		if (n < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN)
			mailbox_drain(&c->mbox);
		if (c->up && (p[1].revents & (POLLIN | POLLERR | POLLHUP)))
			read_replies(c);
		if (c->up && (p[2].revents & (POLLIN | POLLERR | POLLHUP)))
			read_publishes(c);
	}
	/* Stopping: nothing may be left waiting. */
	send_mail(c, mailbox_take(&c->mbox, &stopping));
	go_down(c, "stopping");
	return NULL;
}

/* ---------------------------------------------------------------------
 * The interface
 */

struct cluster *
cluster_start(const struct config *cfg, const struct cluster_ban_sink *sink,
	      char *err, size_t errlen)
{
	struct cluster *c = calloc(1, sizeof(*c));
	bool refused = false;
	char why[256];

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	redis_target_set(&c->target, cfg);
	c->sink = *sink;
	c->conn.fd = -1;
	c->sub.fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	snprintf(c->prefix, sizeof(c->prefix), "%s", cfg->cluster_prefix);
	snprintf(c->node_id, sizeof(c->node_id), "%s", cfg->cluster_node_id);
	snprintf(c->address, sizeof(c->address), "%s", cfg->cluster_redis.text);
	snprintf(c->bans_key, sizeof(c->bans_key), "%sbans", c->prefix);
	{
		unsigned char r[8] = {0};

		RAND_bytes(r, sizeof(r));
		snprintf(c->origin, sizeof(c->origin),
			 "%s#%02x%02x%02x%02x%02x%02x%02x%02x", c->node_id,
			 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
	}
	snprintf(c->channel, sizeof(c->channel), "%sbans", c->prefix);
	c->timeout_us = cfg->cluster_timeout_ms * 1000u;
	script_shas(c);
	cluster_files_init(&c->files, cfg->cluster_share_files, c->prefix,
			   c->node_id, c->origin, c->channel, c->timeout_us,
			   cfg->blocklist_max_entries);
	c->files.sha_commit = c->sha[SCRIPT_FILES_COMMIT];
	c->files.sha_index = c->sha[SCRIPT_FILES_INDEX];
	c->fail_closed = cfg->cluster_fail_closed;
	if (cfg->cluster_username != NULL &&
	    (c->user = strdup(cfg->cluster_username)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (cfg->cluster_password_file != NULL &&
	    (c->pass = read_password(cfg->cluster_password_file, err,
				     errlen)) == NULL)
		goto fail;
	if (cfg->cluster_tls &&
	    (c->tls = redis_tls_ctx(cfg, err, errlen)) == NULL)
		goto fail;
	if (MAILBOX_OPEN(&c->mbox, struct cluster_request, next, err, errlen) !=
	    0)
		goto fail;
	/* The first connection here: wrong credentials stop the start with
	 * what Redis said; Redis merely down does not. */
	if (try_connect(c, &refused, why, sizeof(why)) != 0) {
		if (refused) {
			snprintf(err, errlen, "cluster.redis %s: %s",
				 c->address, why);
			goto fail;
		}
		log_warn("cluster-down",
			 " redis=%s node=%s error=\"%s\" fail=%s", c->address,
			 c->node_id, why, c->fail_closed ? "closed" : "open");
		snprintf(c->last_error, sizeof(c->last_error), "%s", why);
		c->backoff_us = BACKOFF_MIN_US;
		c->next_connect_us = redis_now_us() + c->backoff_us;
	} else {
		log_info("cluster-up", " redis=%s node=%s", c->address,
			 c->node_id);
	}
	if (mailbox_thread(&c->thread, cluster_thread, c) != 0) {
		snprintf(err, errlen, "cannot start the cluster thread");
		goto fail;
	}
	c->started = true;
	return c;
fail:
	cluster_stop(c);
	return NULL;
}

void
cluster_stop(struct cluster *c)
{
	if (c == NULL)
		return;
	if (c->started) {
		mailbox_stop(&c->mbox);
		pthread_join(c->thread, NULL);
	}
	redis_conn_close(&c->conn);
	redis_conn_close(&c->sub);
	free(c->applied);
	cluster_files_free(&c->files);
	mailbox_close(&c->mbox);
	if (c->pass != NULL) {
		OPENSSL_cleanse(c->pass, strlen(c->pass));
		free(c->pass);
	}
	free(c->user);
	SSL_CTX_free(c->tls);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

void
cluster_submit(struct cluster *c, struct cluster_request *req)
{
	req->submitted_us = redis_now_us();
	if (!mailbox_post(&c->mbox, req))
		answer(c, req, CLUSTER_UNAVAILABLE); /* stopping */
}

struct call {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool answered;
};

static void
call_done(struct cluster_request *req)
{
	struct call *w = req->owner;

	pthread_mutex_lock(&w->mu);
	w->answered = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void
cluster_call(struct cluster *c, struct cluster_request *req)
{
	struct call w = {.answered = false};

	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	req->done = call_done;
	req->owner = &w;
	cluster_submit(c, req);
	pthread_mutex_lock(&w.mu);
	while (!w.answered)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
}

void
cluster_last_error(struct cluster *c, char *buf, size_t len)
{
	pthread_mutex_lock(&c->mu);
	snprintf(buf, len, "%s", c->last_error);
	pthread_mutex_unlock(&c->mu);
}

const struct cluster_stats *
cluster_stats(const struct cluster *c)
{
	return &c->stats;
}

bool
cluster_up(const struct cluster *c)
{
	return atomic_load(&c->stats.up);
}

bool
cluster_fail_closed(const struct cluster *c)
{
	return c->fail_closed;
}

const char *
cluster_node_id(const struct cluster *c)
{
	return c->node_id;
}

const char *
cluster_address(const struct cluster *c)
{
	return c->address;
}
