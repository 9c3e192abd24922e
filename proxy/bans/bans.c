/*
 * bans.c - the enforced blocklist: memory table for accept(), kernel maps
 * for XDP (see bans.h).
 *
 * Security stance: files and the control socket are trusted input (ops);
 * peers only ever trigger automatic bans of their own network.  Lookups at
 * accept() take a read lock and touch no syscall.
 */
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bans/bans.h"
#include "bans/bantable.h"
#include "bans/blocklist.h"
#include "lib/log.h"
#include "lib/timer.h"

struct bans {
	pthread_rwlock_t lock;
	struct ban_table block, allow;
	struct blocklist *bpf; /* NULL: accept() only */
	/* Under lock: the files' prefixes (own), the other nodes' (shared,
	 * fleet mode), the allowlist; file entries are own and shared. */
	struct blocklist_file own, shared, allow_list;
	size_t max_entries;
	char **ifaces; /* attached */
	size_t nifaces;
	atomic_bool auto_logins, auto_floods;
	atomic_ullong refused; /* connections closed at accept() */
	atomic_ullong added[BLOCKLIST_REASON_COUNT]; /* entries written */
};

static const char *const table_names[] = {"block", "allow"};

/* ---------------------------------------------------------------------
 * Files and the allowlist
 */

static int
read_files(const struct config *cfg, struct blocklist_file *out, char *err,
	   size_t errlen)
{
	char why[768], key[64];

	*out = (struct blocklist_file){0};
	for (size_t i = 0; i < cfg->nblocklist_files; i++) {
		struct blocklist_file one;

		if (blocklist_file_read(cfg->blocklist_files[i],
					cfg->blocklist_max_entries, &one, why,
					sizeof(why)) != 0) {
			snprintf(key, sizeof(key), "blocklist.files[%zu]", i);
			config_fail(cfg, key, "blocklist.files", err, errlen,
				    "%s", why);
			goto fail;
		}
		if (blocklist_file_merge(out, &one) != 0) {
			blocklist_file_free(&one);
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		blocklist_file_free(&one);
	}
	return 0;
fail:
	blocklist_file_free(out);
	return -1;
}

static int
allow_list(const struct config *cfg, struct blocklist_file *out)
{
	struct blocklist_file src = {.v = cfg->blocklist_allow.v,
				     .n = cfg->blocklist_allow.n};

	*out = (struct blocklist_file){0};
	return blocklist_file_merge(out, &src);
}

static void
swap(struct blocklist_file *a, struct blocklist_file *b)
{
	struct blocklist_file t = *a;

	*a = *b;
	*b = t;
}

/* Make the memory tables say what files and allow say (lock held). */
static int
apply_memory(struct bans *b, const struct blocklist_file *files,
	     const struct blocklist_file *allow)
{
	uint64_t now = timer_now_ms();
	struct ban_table fresh = {0};
	size_t i = 0;

	/* File entries no longer listed go; listed ones are (re)put. */
	while (i < b->block.n) {
		const struct ban_entry *e = &b->block.v[i];

		if (e->reason == BLOCKLIST_REASON_FILE &&
		    !blocklist_file_has(files, &e->net))
			ban_table_del(&b->block, &e->net);
		else
			i++;
	}
	for (i = 0; i < files->n; i++) {
		int r = ban_table_put(&b->block, &files->v[i], 0,
				      BLOCKLIST_REASON_FILE, now);

		if (r < 0)
			return -1;
		if (r == 0)
			atomic_fetch_add(&b->added[BLOCKLIST_REASON_FILE], 1);
	}
	for (i = 0; i < allow->n; i++) {
		if (ban_table_put(&fresh, &allow->v[i], 0,
				  BLOCKLIST_REASON_FILE, now) < 0) {
			ban_table_free(&fresh);
			return -1;
		}
	}
	ban_table_free(&b->allow);
	b->allow = fresh;
	return 0;
}

static int
apply_kernel(struct bans *b, const struct blocklist_file *files,
	     const struct blocklist_file *allow, char *err, size_t errlen)
{
	struct blocklist_apply_result r;

	if (b->bpf == NULL)
		return 0;
	if (blocklist_apply(b->bpf, BLOCKLIST_TABLE_BLOCK, files, &r, err,
			    errlen) != 0 ||
	    blocklist_apply(b->bpf, BLOCKLIST_TABLE_ALLOW, allow, NULL, err,
			    errlen) != 0)
		return -1;
	log_info("blocklist-applied",
		 " added=%zu removed=%zu unchanged=%zu kept=%zu", r.added,
		 r.removed, r.unchanged, r.kept);
	return 0;
}

/* Files (own and shared) and the allowlist into both places (lock
 * held). */
static int
apply_all(struct bans *b, char *err, size_t errlen)
{
	struct blocklist_file files = {0};
	int rc = -1;

	if (blocklist_file_merge(&files, &b->own) != 0 ||
	    blocklist_file_merge(&files, &b->shared) != 0)
		snprintf(err, errlen, "out of memory");
	else if (apply_kernel(b, &files, &b->allow_list, err, errlen) == 0 &&
		 (rc = apply_memory(b, &files, &b->allow_list)) != 0)
		snprintf(err, errlen, "out of memory");
	blocklist_file_free(&files);
	return rc;
}

/* ---------------------------------------------------------------------
 * XDP
 */

/* Manual and automatic bans a previous run left in the pinned maps. */
static int
import_one(const struct blocklist_entry *e, void *arg)
{
	struct bans *b = arg;
	uint64_t now = timer_now_ms();

	if (e->reason == BLOCKLIST_REASON_FILE || e->remaining_ms == 0)
		return 0;
	ban_table_put(&b->block, &e->net,
		      e->remaining_ms < 0 ? 0 : now + (uint64_t)e->remaining_ms,
		      e->reason, now);
	return 0;
}

static int
set_scope(struct bans *b, const struct config *cfg, char *err, size_t errlen)
{
	uint16_t ports[BLOCKLIST_MAX_PORTS];
	size_t n = 0;

	if (cfg->xdp_scope == XDP_SCOPE_ALL)
		return blocklist_set_scope(b->bpf, BLOCKLIST_SCOPE_ALL, NULL, 0,
					   err, errlen);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct sockaddr_storage *ss = &cfg->listeners[i].addr.ss;
		uint16_t port = ntohs(
			ss->ss_family == AF_INET6
				? ((const struct sockaddr_in6 *)ss)->sin6_port
				: ((const struct sockaddr_in *)ss)->sin_port);
		size_t j;

		for (j = 0; j < n && ports[j] != port; j++)
			;
		if (j < n)
			continue;
		if (n == BLOCKLIST_MAX_PORTS) {
			snprintf(err, errlen,
				 "blocklist.xdp.scope: listeners: more than %d "
				 "ports",
				 BLOCKLIST_MAX_PORTS);
			return -1;
		}
		ports[n++] = port;
	}
	return blocklist_set_scope(b->bpf, BLOCKLIST_SCOPE_TCP_PORTS, ports, n,
				   err, errlen);
}

static enum blocklist_mode
lib_mode(enum xdp_mode m)
{
	return m == XDP_MODE_NATIVE    ? BLOCKLIST_MODE_NATIVE
	       : m == XDP_MODE_GENERIC ? BLOCKLIST_MODE_GENERIC
				       : BLOCKLIST_MODE_AUTO;
}

/* Load and attach; -1 (err) only when that must stop the start. */
static int
start_xdp(struct bans *b, const struct config *cfg, char *err, size_t errlen)
{
	char why[512];

	b->bpf = blocklist_open(cfg->xdp_pin_dir, why, sizeof(why));
	if (b->bpf == NULL)
		goto unavailable;
	if (blocklist_carried(b->bpf) > 0)
		log_info("xdp-maps-migrated",
			 " pin_dir=%s entries=%zu detail=\"carried over from "
			 "an older build's maps\"",
			 cfg->xdp_pin_dir, blocklist_carried(b->bpf));
	if (set_scope(b, cfg, why, sizeof(why)) != 0 ||
	    blocklist_foreach(b->bpf, BLOCKLIST_TABLE_BLOCK, import_one, b, why,
			      sizeof(why)) < 0)
		goto unavailable;
	b->ifaces = calloc(cfg->nxdp_interfaces ? cfg->nxdp_interfaces : 1,
			   sizeof(*b->ifaces));
	if (b->ifaces == NULL) {
		snprintf(why, sizeof(why), "out of memory");
		goto unavailable;
	}
	for (size_t i = 0; i < cfg->nxdp_interfaces; i++) {
		const char *ifn = cfg->xdp_interfaces[i];
		enum blocklist_mode used;

		if (blocklist_attach(b->bpf, ifn, lib_mode(cfg->xdp_mode),
				     &used, why, sizeof(why)) != 0) {
			if (cfg->xdp_required) {
				snprintf(err, errlen,
					 "blocklist.xdp: %s: %s (xdp.required "
					 "is set)",
					 ifn, why);
				return -1;
			}
			log_error("xdp-attach-failed",
				  " interface=%s error=\"%s\" detail=\"this "
				  "interface is protected at accept() only\"",
				  ifn, why);
			continue;
		}
		b->ifaces[b->nifaces++] = strdup(ifn);
		log_info("xdp-attached", " interface=%s mode=%s pin_dir=%s",
			 ifn, blocklist_mode_name(used), cfg->xdp_pin_dir);
	}
	return 0;
unavailable:
	if (b->bpf != NULL) {
		blocklist_close(b->bpf);
		b->bpf = NULL;
	}
	if (cfg->xdp_required) {
		snprintf(err, errlen, "blocklist.xdp: %s (xdp.required is set)",
			 why);
		return -1;
	}
	log_error("xdp-unavailable",
		  " error=\"%s\" detail=\"the blocklist is enforced at "
		  "accept() only\"",
		  why);
	return 0;
}

/* ---------------------------------------------------------------------
 * Entry points
 */

static void
set_flags(struct bans *b, const struct config *cfg)
{
	atomic_store(&b->auto_logins, cfg->blocklist_auto_ban);
	atomic_store(&b->auto_floods, cfg->blocklist_ban_floods);
}

/* blocklist_open() makes pin_dir (one level): it must be a directory,
 * or its parent one (a BPF file system: /sys/fs/bpf). */
static int
check_pin_dir(const struct config *cfg, char *err, size_t errlen)
{
	const char *dir = cfg->xdp_pin_dir, *slash = strrchr(dir, '/');
	char parent[PATH_MAX];
	struct stat st;

	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (stat(dir, &st) == 0)
		return config_fail(
			cfg, "blocklist.xdp.pin_dir", "blocklist.xdp", err,
			errlen, "%s is not a directory (xdp.required is set)",
			dir);
	if (slash == NULL)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == dir)
		snprintf(parent, sizeof(parent), "/");
	else
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - dir),
			 dir);
	if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
		return config_fail(cfg, "blocklist.xdp.pin_dir",
				   "blocklist.xdp", err, errlen,
				   "cannot create %s: %s is not a directory "
				   "(xdp.required is set)",
				   dir, parent);
	return 0;
}

int
bans_check(const struct config *cfg, char *err, size_t errlen)
{
	struct blocklist_file files;
	char key[64];

	if (read_files(cfg, &files, err, errlen) != 0)
		return -1;
	blocklist_file_free(&files);
	if (cfg->xdp_enabled && cfg->xdp_required &&
	    check_pin_dir(cfg, err, errlen) != 0)
		return -1;
	for (size_t i = 0;
	     cfg->xdp_enabled && cfg->xdp_required && i < cfg->nxdp_interfaces;
	     i++) {
		if (if_nametoindex(cfg->xdp_interfaces[i]) != 0)
			continue;
		snprintf(key, sizeof(key), "blocklist.xdp.interfaces[%zu]", i);
		return config_fail(cfg, key, "blocklist.xdp.interfaces", err,
				   errlen,
				   "no network interface %s (xdp.required is "
				   "set)",
				   cfg->xdp_interfaces[i]);
	}
	return 0;
}

struct bans *
bans_open(const struct config *cfg, char *err, size_t errlen)
{
	struct bans *b = calloc(1, sizeof(*b));

	err[0] = '\0';
	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_rwlock_init(&b->lock, NULL);
	set_flags(b, cfg);
	b->max_entries = cfg->blocklist_max_entries;
	if (read_files(cfg, &b->own, err, errlen) != 0) {
		bans_close(b);
		return NULL;
	}
	if (allow_list(cfg, &b->allow_list) != 0 ||
	    (cfg->xdp_enabled && start_xdp(b, cfg, err, errlen) != 0) ||
	    apply_all(b, err, errlen) != 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "out of memory");
		bans_close(b);
		return NULL;
	}
	log_info("blocklist-ready",
		 " entries=%zu allow=%zu files=%zu xdp=%s interfaces=%zu",
		 b->block.n, b->allow.n, cfg->nblocklist_files,
		 b->bpf ? "on" : "off", b->nifaces);
	return b;
}

int
bans_reload(struct bans *b, const struct config *cfg, char *err, size_t errlen)
{
	struct blocklist_file files, allow;
	int rc;

	if (read_files(cfg, &files, err, errlen) != 0)
		return -1;
	if (allow_list(cfg, &allow) != 0) {
		blocklist_file_free(&files);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_rwlock_wrlock(&b->lock);
	b->max_entries = cfg->blocklist_max_entries;
	swap(&b->own, &files);
	swap(&b->allow_list, &allow);
	rc = apply_all(b, err, errlen);
	if (rc != 0) { /* the lists the tables still hold */
		swap(&b->own, &files);
		swap(&b->allow_list, &allow);
	}
	pthread_rwlock_unlock(&b->lock);
	set_flags(b, cfg);
	blocklist_file_free(&files);
	blocklist_file_free(&allow);
	return rc;
}

int
bans_share(struct bans *b, const struct ipnet *v, size_t n, char *err,
	   size_t errlen)
{
	struct blocklist_file in = {.v = (struct ipnet *)v, .n = n},
			      shared = {0};
	int rc;

	if (blocklist_file_merge(&shared, &in) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_rwlock_wrlock(&b->lock);
	if (shared.n > b->max_entries) {
		snprintf(err, errlen,
			 "the other nodes' files list %zu prefixes, more than "
			 "blocklist.max_entries (%zu)",
			 shared.n, b->max_entries);
		rc = -1;
	} else {
		swap(&b->shared, &shared);
		rc = apply_all(b, err, errlen);
		if (rc != 0)
			swap(&b->shared, &shared);
	}
	pthread_rwlock_unlock(&b->lock);
	blocklist_file_free(&shared);
	return rc;
}

int
bans_own_files(struct bans *b, struct ipnet **v, size_t *n)
{
	int rc = 0;

	pthread_rwlock_rdlock(&b->lock);
	*n = b->own.n;
	*v = NULL;
	if (*n > 0 && (*v = malloc(*n * sizeof(**v))) == NULL)
		rc = -1;
	else if (*n > 0)
		memcpy(*v, b->own.v, *n * sizeof(**v));
	pthread_rwlock_unlock(&b->lock);
	return rc;
}

bool
bans_admit(struct bans *b, const struct sockaddr *peer)
{
	uint64_t now = timer_now_ms();
	uint8_t addr[16];
	bool ok = true;

	if (!ipnet_from_sockaddr(peer, addr))
		return true;
	pthread_rwlock_rdlock(&b->lock);
	/* Automatic bans are the limits' own (policy.c answers them with
	 * 421 and the time left): here only files and operators. */
	if (b->block.n > 0 &&
	    ban_table_match(&b->allow, addr, now, 0) == NULL &&
	    ban_table_match(&b->block, addr, now,
			    1u << BLOCKLIST_REASON_AUTO) != NULL)
		ok = false;
	pthread_rwlock_unlock(&b->lock);
	if (!ok)
		atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
	return ok;
}

int
bans_add(struct bans *b, const struct ipnet *net, uint64_t ttl_ms,
	 enum blocklist_reason reason, char *err, size_t errlen)
{
	uint64_t now = timer_now_ms();
	int rc = 0, put;

	if (ttl_ms > BLOCKLIST_TTL_MAX_MS) {
		snprintf(err, errlen, "ttl too long (at most 3650d)");
		return -1;
	}
	pthread_rwlock_wrlock(&b->lock);
	put = ban_table_put(&b->block, net, ttl_ms ? now + ttl_ms : 0, reason,
			    now);
	if (put == 0)
		atomic_fetch_add(&b->added[reason], 1);
	if (put < 0) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
	} else if (b->bpf != NULL && blocklist_add(b->bpf, net, ttl_ms, reason,
						   err, errlen) < 0) {
		rc = -1;
	}
	pthread_rwlock_unlock(&b->lock);
	return rc;
}

bool
bans_left(struct bans *b, const struct ipnet *net, uint64_t *left_ms)
{
	uint64_t now = timer_now_ms();
	const struct ban_entry *e;
	bool live;

	pthread_rwlock_rdlock(&b->lock);
	e = ban_table_find(&b->block, net);
	live = e != NULL && (e->expires_ms == 0 || e->expires_ms > now);
	*left_ms = live && e->expires_ms != 0 ? e->expires_ms - now : 0;
	pthread_rwlock_unlock(&b->lock);
	return live;
}

int
bans_del(struct bans *b, const struct ipnet *net, char *err, size_t errlen)
{
	int rc, krc = 1;

	pthread_rwlock_wrlock(&b->lock);
	rc = ban_table_del(&b->block, net);
	if (b->bpf != NULL)
		krc = blocklist_del(b->bpf, net, err, errlen);
	pthread_rwlock_unlock(&b->lock);
	if (krc < 0)
		return -1;
	return rc == 0 || krc == 0 ? 0 : 1;
}

static void
list_table(const struct ban_table *t, int which, FILE *out, bool json,
	   uint64_t now, struct blocklist *bpf)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct ban_entry *e = &t->v[i];
		char text[IPNET_TEXT_MAX];
		long long left =
			e->expires_ms == 0 ? -1
			: e->expires_ms > now
				? (long long)((e->expires_ms - now) / 1000)
				: 0;
		uint64_t drops = 0;

		ipnet_format(&e->net, text, sizeof(text));
		if (json) {
			fprintf(out,
				"{\"prefix\":\"%s\",\"table\":\"%s\","
				"\"reason\":\"%s\",\"expires_in_s\":%lld",
				text, table_names[which],
				blocklist_reason_name(e->reason), left);
			/* XDP on: the frames the kernel dropped for it. */
			if (bpf != NULL &&
			    blocklist_drops(bpf, &e->net, &drops) >= 0)
				fprintf(out, ",\"xdp_drops\":%" PRIu64 "}\n",
					drops);
			else
				fputs(",\"xdp_drops\":null}\n", out);
		} else if (left < 0)
			fprintf(out, "%s %s %s permanent\n", text,
				table_names[which],
				blocklist_reason_name(e->reason));
		else
			fprintf(out, "%s %s %s %llds\n", text,
				table_names[which],
				blocklist_reason_name(e->reason), left);
	}
}

void
bans_each(struct bans *b, unsigned reasons,
	  void (*fn)(void *arg, const struct ipnet *net, uint64_t left_ms,
		     enum blocklist_reason reason),
	  void *arg)
{
	uint64_t now = timer_now_ms();

	pthread_rwlock_rdlock(&b->lock);
	for (size_t i = 0; i < b->block.n; i++) {
		const struct ban_entry *e = &b->block.v[i];

		if (!(reasons & (1u << e->reason)) ||
		    (e->expires_ms != 0 && e->expires_ms <= now))
			continue;
		fn(arg, &e->net, e->expires_ms ? e->expires_ms - now : 0,
		   (enum blocklist_reason)e->reason);
	}
	pthread_rwlock_unlock(&b->lock);
}

void
bans_list(struct bans *b, FILE *out, bool json)
{
	uint64_t now = timer_now_ms();

	pthread_rwlock_rdlock(&b->lock);
	list_table(&b->block, 0, out, json, now,
		   b->nifaces > 0 ? b->bpf : NULL);
	list_table(&b->allow, 1, out, json, now, NULL);
	pthread_rwlock_unlock(&b->lock);
}

void
bans_stats(struct bans *b, FILE *out, bool json)
{
	struct blocklist_stats st;
	char err[256];
	size_t nblock, nallow;

	pthread_rwlock_rdlock(&b->lock);
	nblock = b->block.n;
	nallow = b->allow.n;
	pthread_rwlock_unlock(&b->lock);
	fprintf(out,
		json ? ",\"blocklist_entries\":%zu,\"blocklist_allow\":%zu,"
		       "\"blocklist_refused_at_accept\":%llu,"
		       "\"xdp_interfaces\":%zu"
		     : "blocklist_entries %zu\nblocklist_allow %zu\n"
		       "blocklist_refused_at_accept %llu\nxdp_interfaces %zu\n",
		nblock, nallow, (unsigned long long)atomic_load(&b->refused),
		b->nifaces);
	if (b->bpf == NULL || blocklist_stats(b->bpf, &st, err, sizeof(err)))
		return;
	for (int r = 0; r < BLOCKLIST_REASON_COUNT; r++)
		fprintf(out,
			json ? ",\"xdp_dropped_packets_%s\":%" PRIu64
			       ",\"xdp_dropped_bytes_%s\":%" PRIu64
			     : "xdp_dropped_packets_%s %" PRIu64
			       "\nxdp_dropped_bytes_%s %" PRIu64 "\n",
			blocklist_reason_name(r), st.dropped_packets[r],
			blocklist_reason_name(r), st.dropped_bytes[r]);
	fprintf(out,
		json ? ",\"xdp_passed_packets\":%" PRIu64
		       ",\"xdp_allowed_packets\":%" PRIu64
		     : "xdp_passed_packets %" PRIu64
		       "\nxdp_allowed_packets %" PRIu64 "\n",
		st.passed_packets, st.allowed_packets);
}

void
bans_counts(struct bans *b, struct bans_counts *out)
{
	struct blocklist_stats st;
	char err[256];

	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&b->lock);
	for (size_t i = 0; i < b->block.n; i++)
		if (b->block.v[i].reason < BLOCKLIST_REASON_COUNT)
			out->block[b->block.v[i].reason]++;
	out->allow = b->allow.n;
	pthread_rwlock_unlock(&b->lock);
	for (int r = 0; r < BLOCKLIST_REASON_COUNT; r++)
		out->added[r] = atomic_load(&b->added[r]);
	out->refused = atomic_load(&b->refused);
	if (b->bpf == NULL || blocklist_stats(b->bpf, &st, err, sizeof(err)))
		return;
	out->xdp = true;
	for (int r = 0; r < BLOCKLIST_REASON_COUNT; r++) {
		out->xdp_dropped_packets[r] = st.dropped_packets[r];
		out->xdp_dropped_bytes[r] = st.dropped_bytes[r];
	}
	out->xdp_passed_packets = st.passed_packets;
	out->xdp_allowed_packets = st.allowed_packets;
}

void
bans_sweep(struct bans *b)
{
	char err[256];
	size_t n;

	pthread_rwlock_wrlock(&b->lock);
	n = ban_table_sweep(&b->block, timer_now_ms());
	pthread_rwlock_unlock(&b->lock);
	if (b->bpf != NULL && blocklist_sweep(b->bpf, err, sizeof(err)) < 0)
		log_warn("blocklist-sweep-failed", " error=\"%s\"", err);
	if (n > 0)
		log_debug("blocklist-swept", " expired=%zu", n);
}

bool
bans_auto_logins(const struct bans *b)
{
	return atomic_load(&b->auto_logins);
}

bool
bans_auto_floods(const struct bans *b)
{
	return atomic_load(&b->auto_floods);
}

void
bans_close(struct bans *b)
{
	char err[256];

	if (b == NULL)
		return;
	if (b->bpf != NULL) {
		if (blocklist_detach_all(b->bpf, err, sizeof(err)) != 0)
			log_error("xdp-detach-failed", " error=\"%s\"", err);
		else if (b->nifaces > 0)
			log_info("xdp-detached", " interfaces=%zu", b->nifaces);
		blocklist_close(b->bpf);
	}
	for (size_t i = 0; i < b->nifaces; i++)
		free(b->ifaces[i]);
	free(b->ifaces);
	ban_table_free(&b->block);
	ban_table_free(&b->allow);
	blocklist_file_free(&b->own);
	blocklist_file_free(&b->shared);
	blocklist_file_free(&b->allow_list);
	pthread_rwlock_destroy(&b->lock);
	free(b);
}
