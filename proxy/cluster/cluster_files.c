/*
 * cluster_files.c - the nodes' blocklist files, shared through Redis.
 * Read cluster_files.h first.
 *
 * Security stance: a set read from Redis is data anyone with write access
 * to Redis could have written; every member goes through ipnet_parse() and
 * a bad one is skipped (and counted in the log), never trusted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cluster/cluster_files.h"
#include "lib/log.h"

#define SADD_CHUNK     512    /* members per SADD while writing a set */
#define SCAN_COUNT     "1000" /* members per SSCAN page while reading one */
#define SCAN_PAGES_MAX 200000 /* a bound on the pages of one set */

static int
net_cmp(const void *a, const void *b)
{
	const struct ipnet *x = a, *y = b;
	int c = memcmp(x->addr, y->addr, sizeof(x->addr));

	return c != 0 ? c : (int)x->len - (int)y->len;
}

/* The digest of a set, as written to the index (v in any order). */
static void
files_digest(const struct ipnet *v, size_t n, char out[FILES_DIGEST_CHARS + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char h[EVP_MAX_MD_SIZE];
	unsigned int hlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	struct ipnet *sorted = n > 0 ? malloc(n * sizeof(*sorted)) : NULL;

	memset(h, 0, sizeof(h));
	if (md != NULL && (n == 0 || sorted != NULL) &&
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
		if (n > 0) {
			memcpy(sorted, v, n * sizeof(*sorted));
			qsort(sorted, n, sizeof(*sorted), net_cmp);
		}
		for (size_t i = 0; i < n; i++) {
			EVP_DigestUpdate(md, sorted[i].addr,
					 sizeof(sorted[i].addr));
			EVP_DigestUpdate(md, &sorted[i].len,
					 sizeof(sorted[i].len));
		}
		EVP_DigestFinal_ex(md, h, &hlen);
	}
	for (int i = 0; i < FILES_DIGEST_CHARS / 2; i++) {
		out[2 * i] = hex[h[i] >> 4];
		out[2 * i + 1] = hex[h[i] & 15];
	}
	out[FILES_DIGEST_CHARS] = '\0';
	free(sorted);
	EVP_MD_CTX_free(md);
}

void
cluster_files_init(struct cluster_files *f, bool on, const char *prefix,
		   const char *node_id, const char *origin, const char *channel,
		   uint64_t timeout_us, size_t max_entries)
{
	memset(f, 0, sizeof(*f));
	f->on = on;
	snprintf(f->index_key, sizeof(f->index_key), "%sfiles", prefix);
	snprintf(f->node_key, sizeof(f->node_key), "%sfiles:{", prefix);
	snprintf(f->own_key, sizeof(f->own_key), "%sfiles:{%s}", prefix,
		 node_id);
	snprintf(f->staging_key, sizeof(f->staging_key), "%sfiles:{%s}:new",
		 prefix, node_id);
	f->node_id = node_id;
	f->origin = origin;
	f->channel = channel;
	f->timeout_us = timeout_us;
	f->max_entries = max_entries;
	pthread_mutex_init(&f->mu, NULL);
}

static void
drop_node(struct cluster_files *f, size_t i)
{
	free(f->nodes[i].v);
	f->nodes[i] = f->nodes[--f->nnodes];
}

void
cluster_files_free(struct cluster_files *f)
{
	while (f->nnodes > 0)
		drop_node(f, 0);
	free(f->nodes);
	free(f->own);
	pthread_mutex_destroy(&f->mu);
}

void
cluster_files_own(struct cluster_files *f, const struct ipnet *v, size_t n,
		  size_t max_entries)
{
	struct ipnet *copy = NULL;

	if (!f->on)
		return;
	if (n > 0) {
		if ((copy = malloc(n * sizeof(*copy))) == NULL) {
			log_warn("cluster-files-failed",
				 " error=\"out of memory\"");
			return;
		}
		memcpy(copy, v, n * sizeof(*copy));
	}
	pthread_mutex_lock(&f->mu);
	free(f->own);
	f->own = copy;
	f->nown = n;
	f->own_max = max_entries;
	f->own_dirty = true;
	pthread_mutex_unlock(&f->mu);
}

void
cluster_files_changed(struct cluster_files *f)
{
	f->others_dirty = true;
}

void
cluster_files_reconnected(struct cluster_files *f)
{
	pthread_mutex_lock(&f->mu);
	f->own_dirty = true; /* Redis may have lost it (no persistence) */
	pthread_mutex_unlock(&f->mu);
	f->others_dirty = true;
}

bool
cluster_files_due(struct cluster_files *f, uint64_t now_us)
{
	bool own;

	if (!f->on)
		return false;
	pthread_mutex_lock(&f->mu);
	own = f->own_dirty;
	pthread_mutex_unlock(&f->mu);
	return own || f->others_dirty || now_us >= f->next_refresh_us;
}

uint64_t
cluster_files_next(const struct cluster_files *f)
{
	return f->on ? f->next_refresh_us : UINT64_MAX;
}

/* ---------------------------------------------------------------------
 * Calls
 */

/* One command of C strings (hiredis takes their lengths). */
static int
call(struct cluster_files *f, struct redis_conn *conn, int argc,
     const char **argv, redisReply **r, char *err, size_t errlen)
{
	if (redis_conn_call(conn, argc, argv, NULL,
			    redis_now_us() + f->timeout_us, r, err,
			    errlen) != 0)
		return -1;
	if ((*r)->type == REDIS_REPLY_ERROR) {
		/* NOSCRIPT (a SCRIPT FLUSH): a new connection loads them. */
		f->refused =
			(*r)->len < 8 || memcmp((*r)->str, "NOSCRIPT", 8) != 0;
		snprintf(err, errlen, "%.*s",
			 (int)((*r)->len < 150 ? (*r)->len : 150), (*r)->str);
		freeReplyObject(*r);
		return -1;
	}
	return 0;
}

static int
call_str(struct cluster_files *f, struct redis_conn *conn, int argc,
	 const char **argv, char *err, size_t errlen)
{
	redisReply *r;

	if (call(f, conn, argc, argv, &r, err, errlen) != 0)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* The own set into the staging key, then live in one script. */
static int
write_own(struct cluster_files *f, struct redis_conn *conn,
	  const struct ipnet *v, size_t n, char *err, size_t errlen)
{
	const char *del[2] = {"DEL", f->staging_key};
	char digest[FILES_DIGEST_CHARS + 1], ttl[24];
	const char **argv = malloc((2 + SADD_CHUNK) * sizeof(*argv));
	char(*text)[IPNET_TEXT_MAX] = malloc(SADD_CHUNK * sizeof(*text));
	int rc = -1;

	if (argv == NULL || text == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (call_str(f, conn, 2, del, err, errlen) != 0)
		goto out;
	for (size_t i = 0; i < n; i += SADD_CHUNK) {
		size_t k = n - i < SADD_CHUNK ? n - i : SADD_CHUNK;
		redisReply *r;

		argv[0] = "SADD";
		argv[1] = f->staging_key;
		for (size_t j = 0; j < k; j++)
			argv[2 + j] =
				ipnet_format(&v[i + j], text[j], sizeof(*text));
		if (call(f, conn, (int)(2 + k), argv, &r, err, errlen) != 0)
			goto out;
		freeReplyObject(r);
	}
	files_digest(v, n, digest);
	snprintf(ttl, sizeof(ttl), "%u", FILES_TTL_MS);
	{
		const char *commit[] = {
			"EVALSHA",  f->sha_commit, "3",	       f->staging_key,
			f->own_key, f->index_key,  f->node_id, digest,
			ttl,	    f->channel,	   f->origin};
		redisReply *r;

		if (call(f, conn, 11, commit, &r, err, errlen) != 0)
			goto out;
		freeReplyObject(r);
	}
	log_info("cluster-files-published", " node=%s entries=%zu digest=%s",
		 f->node_id, n, digest);
	rc = 0;
out:
	free(argv);
	free(text);
	return rc;
}

static long
node_find(const struct cluster_files *f, const char *name, size_t len)
{
	for (size_t i = 0; i < f->nnodes; i++)
		if (strlen(f->nodes[i].name) == len &&
		    memcmp(f->nodes[i].name, name, len) == 0)
			return (long)i;
	return -1;
}

/* One member of a set into *out: false when it is not a prefix. */
static bool
member(const redisReply *e, struct ipnet *out)
{
	char text[IPNET_TEXT_MAX];

	if (e->type != REDIS_REPLY_STRING || e->len >= sizeof(text))
		return false;
	memcpy(text, e->str, e->len);
	text[e->len] = '\0';
	return ipnet_parse(text, out) == NULL;
}

/* One node's set into slot i (its digest set by the caller), read with
 * SSCAN a page at a time: one SMEMBERS of 100,000 prefixes holds Redis
 * for about 0.1 s, every other node's calls waiting behind it.  A set may
 * repeat a member across pages (the sink drops duplicates); more than
 * max_entries are not read. */
static int
read_set(struct cluster_files *f, struct redis_conn *conn, size_t i, char *err,
	 size_t errlen)
{
	struct files_node *node = &f->nodes[i];
	char key[sizeof(f->node_key) + sizeof(node->name) + 1],
		cursor[24] = "0";
	const char *argv[5] = {"SSCAN", key, cursor, "COUNT", SCAN_COUNT};
	size_t cap = 0, bad = 0;
	unsigned pages = 0;

	snprintf(key, sizeof(key), "%s%s}", f->node_key, node->name);
	free(node->v);
	node->v = NULL;
	node->n = 0;
	do {
		const redisReply *next, *page;
		redisReply *r;

		if (call(f, conn, 5, argv, &r, err, errlen) != 0)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    (next = r->element[0])->type != REDIS_REPLY_STRING ||
		    next->len >= sizeof(cursor) ||
		    (page = r->element[1])->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			snprintf(err, errlen, "files: a bad SSCAN reply");
			return -1;
		}
		if (node->n + page->elements > cap) {
			size_t want = (node->n + page->elements) * 2;
			struct ipnet *v = realloc(node->v, want * sizeof(*v));

			if (v == NULL) {
				freeReplyObject(r);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			node->v = v;
			cap = want;
		}
		for (size_t k = 0; k < page->elements; k++) {
			if (node->n == f->max_entries)
				bad++;
			else if (member(page->element[k], &node->v[node->n]))
				node->n++;
			else
				bad++;
		}
		memcpy(cursor, next->str, next->len);
		cursor[next->len] = '\0';
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0 && ++pages < SCAN_PAGES_MAX);
	if (bad > 0 || pages == SCAN_PAGES_MAX)
		log_warn("cluster-files-bad",
			 " node=%s entries=%zu skipped=%zu detail=\"not a "
			 "prefix, or past blocklist.max_entries\"",
			 node->name, node->n, bad);
	return 0;
}

/* The index: nodes gone are dropped, changed ones read again.  *changed
 * says whether the union may differ. */
static int
read_others(struct cluster_files *f, struct redis_conn *conn, bool *changed,
	    char *err, size_t errlen)
{
	const char *argv[5] = {"EVALSHA", f->sha_index, "1", f->index_key,
			       f->node_key};
	redisReply *r;

	if (call(f, conn, 5, argv, &r, err, errlen) != 0)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
		snprintf(err, errlen, "files: a bad index");
		freeReplyObject(r);
		return -1;
	}
	for (size_t k = 0; k + 1 < r->elements; k += 2) {
		const redisReply *name = r->element[k],
				 *dig = r->element[k + 1];
		long i;

		if (name->type != REDIS_REPLY_STRING ||
		    dig->type != REDIS_REPLY_STRING ||
		    name->len >= sizeof(f->nodes->name) ||
		    dig->len != FILES_DIGEST_CHARS ||
		    (strlen(f->node_id) == name->len &&
		     memcmp(f->node_id, name->str, name->len) == 0))
			continue; /* malformed, or this node's own */
		i = node_find(f, name->str, name->len);
		if (i >= 0 &&
		    memcmp(f->nodes[i].digest, dig->str, dig->len) == 0)
			continue;
		if (i < 0) {
			struct files_node *v =
				realloc(f->nodes, (f->nnodes + 1) * sizeof(*v));

			if (v == NULL)
				goto oom;
			f->nodes = v;
			i = (long)f->nnodes++;
			memset(&v[i], 0, sizeof(v[i]));
			memcpy(v[i].name, name->str, name->len);
		}
		if (read_set(f, conn, (size_t)i, err, errlen) != 0) {
			f->nodes[i].digest[0] = '\0'; /* read it again */
			freeReplyObject(r);
			return -1;
		}
		memcpy(f->nodes[i].digest, dig->str, dig->len);
		f->nodes[i].digest[dig->len] = '\0';
		*changed = true;
	}
	/* Nodes the index no longer names (backwards: drop_node moves the
	 * last one into the hole). */
	for (size_t i = f->nnodes; i-- > 0;) {
		bool listed = false;

		for (size_t k = 0; k + 1 < r->elements && !listed; k += 2)
			listed = r->element[k]->type == REDIS_REPLY_STRING &&
				 strlen(f->nodes[i].name) ==
					 r->element[k]->len &&
				 memcmp(f->nodes[i].name, r->element[k]->str,
					r->element[k]->len) == 0;
		if (!listed) {
			log_info("cluster-files-gone", " node=%s entries=%zu",
				 f->nodes[i].name, f->nodes[i].n);
			drop_node(f, i);
			*changed = true;
		}
	}
	freeReplyObject(r);
	return 0;
oom:
	freeReplyObject(r);
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* The union of the other nodes' sets to the sink (duplicates are the
 * sink's to drop). */
static int
hand_over(struct cluster_files *f, cluster_files_sink sink, void *arg)
{
	size_t n = 0, at = 0;
	struct ipnet *all = NULL;

	for (size_t i = 0; i < f->nnodes; i++)
		n += f->nodes[i].n;
	if (n > 0 && (all = malloc(n * sizeof(*all))) == NULL)
		return -1;
	for (size_t i = 0; i < f->nnodes; i++) {
		if (f->nodes[i].n > 0)
			memcpy(all + at, f->nodes[i].v,
			       f->nodes[i].n * sizeof(*all));
		at += f->nodes[i].n;
	}
	sink(arg, all, n);
	free(all);
	return 0;
}

/* The own set's TTL renewed; a set Redis lost (a restart without
 * persistence) is marked to be written again. */
static int
renew(struct cluster_files *f, struct redis_conn *conn, char *err,
      size_t errlen)
{
	char ttl[24];
	const char *argv[3] = {"PEXPIRE", f->own_key, ttl};
	redisReply *r;

	snprintf(ttl, sizeof(ttl), "%u", FILES_TTL_MS);
	if (call(f, conn, 3, argv, &r, err, errlen) != 0)
		return -1;
	if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
		cluster_files_reconnected(f);
	freeReplyObject(r);
	return 0;
}

int
cluster_files_run(struct cluster_files *f, struct redis_conn *conn,
		  cluster_files_sink sink, void *arg, char *err, size_t errlen)
{
	uint64_t now = redis_now_us();
	bool refresh = now >= f->next_refresh_us, changed = false, write, have;
	struct ipnet *own = NULL;
	size_t nown = 0, max;

	pthread_mutex_lock(&f->mu);
	max = f->own_max;
	write = f->own_dirty;
	have = f->nown > 0;
	if (write && have && (own = malloc(f->nown * sizeof(*own))) != NULL) {
		memcpy(own, f->own, f->nown * sizeof(*own));
		nown = f->nown;
	} else if (write && have) {
		write = false; /* out of memory: the next change or refresh */
		log_warn("cluster-files-failed", " error=\"out of memory\"");
	}
	f->own_dirty = false;
	pthread_mutex_unlock(&f->mu);
	if (max != 0 && max != f->max_entries) {
		/* A reload changed the cap: read every set again. */
		f->max_entries = max;
		for (size_t i = 0; i < f->nnodes; i++)
			f->nodes[i].digest[0] = '\0';
		f->others_dirty = true;
	}
	if (refresh)
		f->next_refresh_us = now + FILES_REFRESH_US;
	if (!write && refresh && have && renew(f, conn, err, errlen) != 0) {
		if (f->refused)
			goto refused;
		return -1;
	}
	if (write) {
		int rc = write_own(f, conn, own, nown, err, errlen);

		free(own);
		if (rc != 0 && f->refused)
			goto refused;
		if (rc != 0) {
			cluster_files_reconnected(f);
			return -1;
		}
	}
	if (f->others_dirty || refresh) {
		f->others_dirty = false;
		if (read_others(f, conn, &changed, err, errlen) != 0) {
			if (f->refused)
				goto refused;
			f->others_dirty = true;
			return -1;
		}
		if (changed && hand_over(f, sink, arg) != 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
refused:
	/* Redis said no (an ACL without the sets' commands, out of memory):
	 * the limits and bans go on; the files are tried again at the next
	 * refresh. */
	f->refused = false;
	log_warn("cluster-files-failed", " node=%s error=\"%s\"", f->node_id,
		 err);
	return 1;
}
