/*
 * blocklist_maps.c - the XDP blocklist's maps from user space: add,
 * delete, replace from files (blocklist_apply()), list, sweep and count
 * the entries of its block and allow tries, set and read its scope, and
 * answer the program's question for the accept() fallback
 * (blocklist_match(): same tries, same longest-live-prefix rule, same
 * scope).
 *
 * A struct ipnet's one 16-byte form becomes one of the program's two
 * tries (IPv4 for a v4-mapped prefix of at least /96, else IPv6).
 * Expiry is in CLOCK_MONOTONIC nanoseconds, the clock the program reads;
 * an expired entry stops matching at once and is deleted by the sweep.
 * Edits serialise on the handle's mutex (read-modify-write); reads take
 * a snapshot bounded by the map sizes, so another process editing the
 * same pinned maps cannot make a walk loop forever.
 *
 * Security stance: inputs are struct ipnet values already validated by
 * ipnet.c; prefix lengths, TTLs, reasons and ports are range-checked
 * here.  A ban is never weakened by an edit (stronger()), and a file's
 * entries never remove a manual or automatic one.  Reads fail open in
 * blocklist_match() (PASS) but are reported everywhere else.
 *
 * Config keys (read by the caller, bans.c, and passed in):
 * blocklist.files, blocklist.allow, blocklist.xdp.scope (its ports are
 * the listeners').
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <bpf/bpf.h>

#include "bans/blocklist.h"
#include "bans/blocklist_internal.h"

#define NS_PER_MS 1000000ull

/* Key of either family: the kernel's LPM key layout, v6 sized. */
union lpm_key {
	struct blocklist_key4 k4;
	struct blocklist_key6 k6;
	__u32 prefixlen;
};

/* One snapshot row. */
struct row {
	int v6;
	union lpm_key key;
	struct blocklist_value val;
};

struct rows {
	struct row *v;
	size_t n, cap;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	/* The clock bpf_ktime_get_ns() reads. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool
blocklist_live(const struct blocklist_value *v, uint64_t now)
{
	return v->expires_ns == 0 || v->expires_ns > now;
}

static int
table_fd(const struct blocklist *bl, enum blocklist_table t, int v6)
{
	return t == BLOCKLIST_TABLE_ALLOW ? bl->fd_allow[v6] : bl->fd_block[v6];
}

/* ipnet's one 16-byte form to the program's two tries: an IPv4-mapped
 * prefix of at least /96 is IPv4 (what an IPv4 packet carries), anything
 * else IPv6 (so ::/0 covers IPv6 only). */
static void
key_from_net(const struct ipnet *n, union lpm_key *k, int *v6)
{
	memset(k, 0, sizeof(*k));
	*v6 = !(ipnet_is_v4(n->addr) && n->len >= 96);
	if (*v6) {
		k->prefixlen = n->len;
		memcpy(k->k6.addr, n->addr, 16);
	} else {
		k->prefixlen = n->len - 96u;
		memcpy(k->k4.addr, n->addr + 12, 4);
	}
}

static void
net_from_key(const union lpm_key *k, int v6, struct ipnet *n)
{
	memset(n, 0, sizeof(*n));
	if (v6) {
		memcpy(n->addr, k->k6.addr, 16);
		n->len = (uint8_t)k->prefixlen;
	} else {
		n->addr[10] = n->addr[11] = 0xff;
		memcpy(n->addr + 12, k->k4.addr, 4);
		n->len = (uint8_t)(96 + k->prefixlen);
	}
}

static int
check_net(const struct ipnet *n, char *err, size_t errlen)
{
	if (n->len <= 128)
		return 0;
	snprintf(err, errlen, "prefix length %u", n->len);
	return -1;
}

/*
 * The exact entry for key k (not a shorter covering one): a trie lookup
 * returns the longest prefix <= k's, and the value records its length.
 * 1 found, 0 absent, -errno.
 */
static int
lookup_exact(int fd, const union lpm_key *k, struct blocklist_value *v)
{
	if (bpf_map_lookup_elem(fd, k, v) < 0)
		return errno == ENOENT ? 0 : -errno;
	return v->prefixlen == k->prefixlen ? 1 : 0;
}

/* The program's lookup_live(), in user space: longest live entry covering
 * the host key k (modified), stepping over expired ones. */
static int
lookup_live(int fd, union lpm_key *k, uint64_t now, struct blocklist_value *out)
{
	for (int i = 0; i < BLOCKLIST_MAX_SHADOW; i++) {
		if (bpf_map_lookup_elem(fd, k, out) < 0)
			return errno == ENOENT ? 0 : -errno;
		if (blocklist_live(out, now))
			return 1;
		if (out->prefixlen == 0 || out->prefixlen > k->prefixlen)
			return 0;
		k->prefixlen = out->prefixlen - 1u;
	}
	return 0;
}

static int
rows_push(struct rows *r, const struct row *row)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 256;
		struct row *v = realloc(r->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n++] = *row;
	return 0;
}

/*
 * Every entry of table t, IPv4 then IPv6.  Bounded by the map sizes: a
 * table edited meanwhile by another process cannot make this loop
 * forever (a trie's next-key walk restarts when its key vanishes).
 */
static int
snapshot(struct blocklist *bl, enum blocklist_table t, struct rows *out,
	 char *err, size_t errlen)
{
	size_t limit = t == BLOCKLIST_TABLE_ALLOW ? BLOCKLIST_MAX_ALLOW
						  : BLOCKLIST_MAX_BLOCK;

	memset(out, 0, sizeof(*out));
	for (int v6 = 0; v6 <= 1; v6++) {
		int fd = table_fd(bl, t, v6);
		union lpm_key cur, next;
		void *prev = NULL;
		struct row row;

		for (size_t i = 0; i <= limit; i++) {
			if (bpf_map_get_next_key(fd, prev, &next) < 0) {
				if (errno == ENOENT)
					break;
				free(out->v);
				return blocklist_fail(err, errlen, errno,
						      "reading the %s table",
						      t == BLOCKLIST_TABLE_ALLOW
							      ? "allow"
							      : "block");
			}
			cur = next;
			prev = &cur;
			row.v6 = v6;
			row.key = cur;
			if (bpf_map_lookup_elem(fd, &cur, &row.val) < 0)
				continue; /* deleted meanwhile */
			if (rows_push(out, &row) < 0) {
				free(out->v);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
		}
	}
	return 0;
}

static void
entry_from_row(const struct row *r, enum blocklist_table t, uint64_t now,
	       struct blocklist_entry *e)
{
	memset(e, 0, sizeof(*e));
	net_from_key(&r->key, r->v6, &e->net);
	e->table = t;
	e->reason = r->val.reason < BLOCKLIST_REASON_COUNT
			    ? (enum blocklist_reason)r->val.reason
			    : BLOCKLIST_REASON_MANUAL;
	e->expires_ns = r->val.expires_ns;
	if (r->val.expires_ns == 0)
		e->remaining_ms = -1;
	else if (r->val.expires_ns <= now)
		e->remaining_ms = 0;
	else /* round up: 1 ns left is still "1 ms left", never "expired" */
		e->remaining_ms =
			(int64_t)((r->val.expires_ns - now + NS_PER_MS - 1) /
				  NS_PER_MS);
}

/* ---- entries --------------------------------------------------------- */

/*
 * Does the new value win over the existing live one?  Never weaken a ban:
 * permanent beats TTL, a later expiry beats an earlier one.  Between two
 * permanent entries an operator's or the proxy's own (manual, auto) wins
 * over a file's, so a file reload never removes a ban someone asked for.
 */
static bool
stronger(const struct blocklist_value *nv, const struct blocklist_value *old)
{
	if (old->expires_ns == 0)
		return nv->expires_ns == 0 && nv->reason != old->reason &&
		       nv->reason != BLOCKLIST_REASON_FILE;
	return nv->expires_ns == 0 || nv->expires_ns > old->expires_ns;
}

static int
add_locked(struct blocklist *bl, enum blocklist_table t, const struct ipnet *c,
	   uint64_t ttl_ms, enum blocklist_reason reason, uint64_t now,
	   char *err, size_t errlen)
{
	struct blocklist_value nv = {0}, old;
	union lpm_key k;
	int v6, fd, e;

	key_from_net(c, &k, &v6);
	fd = table_fd(bl, t, v6);
	nv.expires_ns = ttl_ms ? now + ttl_ms * NS_PER_MS : 0;
	nv.reason = reason;
	nv.prefixlen = (__u8)k.prefixlen;
	e = lookup_exact(fd, &k, &old);
	if (e < 0)
		return blocklist_fail(err, errlen, e, "reading the table");
	if (e == 1 && blocklist_live(&old, now) && !stronger(&nv, &old))
		return 1;
	if (e == 1)
		nv.drops = old.drops; /* the same prefix: its count goes on */
	if (bpf_map_update_elem(fd, &k, &nv, BPF_ANY) < 0) {
		char s[IPNET_TEXT_MAX];

		if (errno == ENOSPC || errno == E2BIG)
			snprintf(err, errlen, "%s: the %s table is full",
				 ipnet_format(c, s, sizeof(s)),
				 t == BLOCKLIST_TABLE_ALLOW ? "allow"
							    : "block");
		else
			blocklist_fail(err, errlen, errno, "%s",
				       ipnet_format(c, s, sizeof(s)));
		return -1;
	}
	return 0;
}

int
blocklist_table_add(struct blocklist *bl, enum blocklist_table t,
		    const struct ipnet *c, uint64_t ttl_ms,
		    enum blocklist_reason reason, char *err, size_t errlen)
{
	int rc;

	blocklist_msg_clear();
	if (check_net(c, err, errlen) < 0)
		return -1;
	if (ttl_ms > BLOCKLIST_TTL_MAX_MS) {
		snprintf(err, errlen, "TTL longer than %llu days",
			 BLOCKLIST_TTL_MAX_MS / 86400000ull);
		return -1;
	}
	if ((unsigned)reason >= BLOCKLIST_REASON_COUNT) {
		snprintf(err, errlen, "bad reason %u", (unsigned)reason);
		return -1;
	}
	pthread_mutex_lock(&bl->lock);
	rc = add_locked(bl, t, c, ttl_ms, reason, now_ns(), err, errlen);
	pthread_mutex_unlock(&bl->lock);
	return rc;
}

int
blocklist_table_del(struct blocklist *bl, enum blocklist_table t,
		    const struct ipnet *c, char *err, size_t errlen)
{
	union lpm_key k;
	int v6, rc = 0;

	blocklist_msg_clear();
	if (check_net(c, err, errlen) < 0)
		return -1;
	key_from_net(c, &k, &v6);
	pthread_mutex_lock(&bl->lock);
	if (bpf_map_delete_elem(table_fd(bl, t, v6), &k) < 0) {
		char s[IPNET_TEXT_MAX];

		if (errno == ENOENT)
			rc = 1;
		else
			rc = blocklist_fail(err, errlen, errno, "deleting %s",
					    ipnet_format(c, s, sizeof(s)));
	}
	pthread_mutex_unlock(&bl->lock);
	return rc;
}

int
blocklist_add(struct blocklist *bl, const struct ipnet *c, uint64_t ttl_ms,
	      enum blocklist_reason reason, char *err, size_t errlen)
{
	return blocklist_table_add(bl, BLOCKLIST_TABLE_BLOCK, c, ttl_ms, reason,
				   err, errlen);
}

int
blocklist_del(struct blocklist *bl, const struct ipnet *c, char *err,
	      size_t errlen)
{
	return blocklist_table_del(bl, BLOCKLIST_TABLE_BLOCK, c, err, errlen);
}

int
blocklist_allow_add(struct blocklist *bl, const struct ipnet *c, char *err,
		    size_t errlen)
{
	return blocklist_table_add(bl, BLOCKLIST_TABLE_ALLOW, c, 0,
				   BLOCKLIST_REASON_MANUAL, err, errlen);
}

int
blocklist_allow_del(struct blocklist *bl, const struct ipnet *c, char *err,
		    size_t errlen)
{
	return blocklist_table_del(bl, BLOCKLIST_TABLE_ALLOW, c, err, errlen);
}

int
blocklist_apply(struct blocklist *bl, enum blocklist_table t,
		const struct blocklist_file *list,
		struct blocklist_apply_result *res, char *err, size_t errlen)
{
	struct blocklist_apply_result r = {0};
	struct rows rows;
	uint64_t now;
	int rc = -1;

	blocklist_msg_clear();
	pthread_mutex_lock(&bl->lock);
	if (snapshot(bl, t, &rows, err, errlen) < 0)
		goto done;
	now = now_ns();
	/* Add first, then remove: a prefix that stays listed is never
	 * missing, and one that moved (say /24 -> /23) is covered by both
	 * for a moment rather than by neither. */
	for (size_t i = 0; i < list->n; i++) {
		const struct ipnet *c = &list->v[i];
		struct blocklist_value old;
		union lpm_key k;
		int v6, e;

		if (check_net(c, err, errlen) < 0)
			goto done;
		key_from_net(c, &k, &v6);
		e = lookup_exact(table_fd(bl, t, v6), &k, &old);
		if (e < 0) {
			blocklist_fail(err, errlen, e, "reading the table");
			goto done;
		}
		if (e == 1 && old.expires_ns == 0 &&
		    old.reason == BLOCKLIST_REASON_FILE) {
			r.unchanged++;
			continue;
		}
		e = add_locked(bl, t, c, 0, BLOCKLIST_REASON_FILE, now, err,
			       errlen);
		if (e < 0)
			goto done;
		if (e == 1)
			r.kept++;
		else
			r.added++;
	}
	for (size_t i = 0; i < rows.n; i++) {
		struct ipnet c;

		if (rows.v[i].val.reason != BLOCKLIST_REASON_FILE)
			continue;
		net_from_key(&rows.v[i].key, rows.v[i].v6, &c);
		if (blocklist_file_has(list, &c))
			continue;
		if (bpf_map_delete_elem(table_fd(bl, t, rows.v[i].v6),
					&rows.v[i].key) == 0)
			r.removed++;
		else if (errno != ENOENT) {
			char s[IPNET_TEXT_MAX];

			blocklist_fail(err, errlen, errno, "deleting %s",
				       ipnet_format(&c, s, sizeof(s)));
			goto done;
		}
	}
	rc = 0;
done:
	pthread_mutex_unlock(&bl->lock);
	free(rows.v);
	if (res)
		*res = r;
	return rc;
}

int
blocklist_foreach(struct blocklist *bl, enum blocklist_table t,
		  int (*fn)(const struct blocklist_entry *e, void *arg),
		  void *arg, char *err, size_t errlen)
{
	struct blocklist_entry e;
	struct rows rows;
	uint64_t now;
	int rc = 0;

	blocklist_msg_clear();
	if (snapshot(bl, t, &rows, err, errlen) < 0)
		return -1;
	now = now_ns();
	for (size_t i = 0; i < rows.n && rc == 0; i++) {
		entry_from_row(&rows.v[i], t, now, &e);
		rc = fn(&e, arg);
	}
	free(rows.v);
	return rc;
}

long
blocklist_sweep(struct blocklist *bl, char *err, size_t errlen)
{
	long n = 0;

	blocklist_msg_clear();
	pthread_mutex_lock(&bl->lock);
	for (int t = BLOCKLIST_TABLE_BLOCK; t <= BLOCKLIST_TABLE_ALLOW; t++) {
		struct rows rows;
		uint64_t now;

		if (snapshot(bl, (enum blocklist_table)t, &rows, err, errlen) <
		    0) {
			n = -1;
			break;
		}
		now = now_ns();
		for (size_t i = 0; i < rows.n; i++) {
			int fd = table_fd(bl, (enum blocklist_table)t,
					  rows.v[i].v6);
			struct blocklist_value cur;

			if (blocklist_live(&rows.v[i].val, now))
				continue;
			/* Re-read: it may have been refreshed since. */
			if (lookup_exact(fd, &rows.v[i].key, &cur) == 1 &&
			    !blocklist_live(&cur, now) &&
			    bpf_map_delete_elem(fd, &rows.v[i].key) == 0)
				n++;
		}
		free(rows.v);
	}
	pthread_mutex_unlock(&bl->lock);
	return n;
}

int
blocklist_stats(struct blocklist *bl, struct blocklist_stats *st, char *err,
		size_t errlen)
{
	struct blocklist_counter *per;
	int rc = 0;

	blocklist_msg_clear();
	memset(st, 0, sizeof(*st));
	per = calloc((size_t)bl->ncpus, sizeof(*per));
	if (per == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (__u32 i = 0; i < BLOCKLIST_CNT_MAX; i++) {
		struct blocklist_counter sum = {0};

		if (bpf_map_lookup_elem(bl->fd_stats, &i, per) < 0) {
			rc = blocklist_fail(err, errlen, errno,
					    "reading counters");
			break;
		}
		for (int c = 0; c < bl->ncpus; c++) {
			sum.packets += per[c].packets;
			sum.bytes += per[c].bytes;
		}
		if (i < BLOCKLIST_REASON_COUNT) {
			st->dropped_packets[i] = sum.packets;
			st->dropped_bytes[i] = sum.bytes;
		} else if (i == BLOCKLIST_CNT_PASS) {
			st->passed_packets = sum.packets;
			st->passed_bytes = sum.bytes;
		} else if (i == BLOCKLIST_CNT_ALLOWED) {
			st->allowed_packets = sum.packets;
		} else if (i == BLOCKLIST_CNT_EXPIRED) {
			st->expired_packets = sum.packets;
		}
	}
	free(per);
	return rc;
}

/* ---- scope ------------------------------------------------------------ */

int
blocklist_set_scope(struct blocklist *bl, enum blocklist_scope scope,
		    const uint16_t *ports, size_t nports, char *err,
		    size_t errlen)
{
	struct blocklist_config cfg = {0};
	__u32 zero = 0;

	blocklist_msg_clear();
	if (scope == BLOCKLIST_SCOPE_TCP_PORTS) {
		if (nports == 0 || nports > BLOCKLIST_MAX_PORTS) {
			snprintf(err, errlen,
				 "scope tcp-ports needs 1 to %d ports",
				 BLOCKLIST_MAX_PORTS);
			return -1;
		}
		for (size_t i = 0; i < nports; i++) {
			if (ports[i] == 0) {
				snprintf(err, errlen, "port 0");
				return -1;
			}
			cfg.ports[i] = htons(ports[i]);
		}
		cfg.nports = (__u32)nports;
	} else if (scope != BLOCKLIST_SCOPE_ALL) {
		snprintf(err, errlen, "bad scope %u", (unsigned)scope);
		return -1;
	}
	cfg.scope = scope;
	if (bpf_map_update_elem(bl->fd_config, &zero, &cfg, BPF_ANY) < 0)
		return blocklist_fail(err, errlen, errno, "writing the scope");
	return 0;
}

static int
read_config(struct blocklist *bl, struct blocklist_config *cfg)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(bl->fd_config, &zero, cfg);
}

int
blocklist_get_scope(struct blocklist *bl, enum blocklist_scope *scope,
		    uint16_t ports[BLOCKLIST_MAX_PORTS], size_t *nports,
		    char *err, size_t errlen)
{
	struct blocklist_config cfg;

	blocklist_msg_clear();
	if (read_config(bl, &cfg) < 0)
		return blocklist_fail(err, errlen, errno, "reading the scope");
	*scope = cfg.scope == BLOCKLIST_SCOPE_TCP_PORTS
			 ? BLOCKLIST_SCOPE_TCP_PORTS
			 : BLOCKLIST_SCOPE_ALL;
	*nports = 0;
	if (*scope == BLOCKLIST_SCOPE_TCP_PORTS) {
		for (__u32 i = 0; i < cfg.nports && i < BLOCKLIST_MAX_PORTS;
		     i++)
			ports[(*nports)++] = ntohs(cfg.ports[i]);
	}
	return 0;
}

/* ---- the accept() fallback ------------------------------------------- */

/* The program's in_scope() for a TCP connection to local. */
static bool
in_scope(struct blocklist *bl, const struct sockaddr *local)
{
	struct blocklist_config cfg;
	__u16 port;

	if (local == NULL || read_config(bl, &cfg) < 0 ||
	    cfg.scope != BLOCKLIST_SCOPE_TCP_PORTS)
		return true;
	if (local->sa_family == AF_INET)
		port = ((const struct sockaddr_in *)(const void *)local)
			       ->sin_port;
	else if (local->sa_family == AF_INET6)
		port = ((const struct sockaddr_in6 *)(const void *)local)
			       ->sin6_port;
	else
		return true;
	for (__u32 i = 0; i < cfg.nports && i < BLOCKLIST_MAX_PORTS; i++) {
		if (cfg.ports[i] == port)
			return true;
	}
	return false;
}

int
blocklist_drops(struct blocklist *bl, const struct ipnet *net, uint64_t *drops)
{
	struct blocklist_value v;
	union lpm_key k;
	int v6, e;

	key_from_net(net, &k, &v6);
	e = lookup_exact(bl->fd_block[v6], &k, &v);
	*drops = e == 1 ? v.drops : 0;
	return e < 0 ? -1 : e;
}

enum blocklist_verdict
blocklist_match(struct blocklist *bl, const struct sockaddr *peer,
		const struct sockaddr *local, enum blocklist_reason *reason)
{
	struct blocklist_value v;
	struct ipnet host = {.len = 128};
	union lpm_key k, start;
	uint64_t now;
	int v6;

	if (!ipnet_from_sockaddr(peer, host.addr) || !in_scope(bl, local))
		return BLOCKLIST_PASS;
	key_from_net(&host, &start, &v6);
	now = now_ns();
	k = start;
	if (lookup_live(bl->fd_allow[v6], &k, now, &v) == 1)
		return BLOCKLIST_ALLOWED;
	k = start;
	if (lookup_live(bl->fd_block[v6], &k, now, &v) != 1)
		return BLOCKLIST_PASS;
	if (reason)
		*reason = v.reason < BLOCKLIST_REASON_COUNT
				  ? (enum blocklist_reason)v.reason
				  : BLOCKLIST_REASON_MANUAL;
	return BLOCKLIST_DROP;
}
