/*
 * bans.h - the blocklist the proxy enforces: prefixes from blocklist files,
 * bans made over the control socket, and the bans its own abuse policy
 * earns (failed logins, connection floods), each with an optional expiry;
 * an allowlist wins over all of them.
 *
 * Enforced twice.  In the kernel, when blocklist.xdp is enabled and the
 * XDP program attached (blocklist.h): a blocked source's packets are
 * dropped before the TCP stack.  And always at accept(), from a table in
 * memory (bantable.h), so the list holds without XDP (no privilege, an
 * unsupported driver, loopback traffic) and for traffic on interfaces the
 * program is not attached to.  The kernel maps are pinned: manual and
 * automatic bans survive a restart, and are read back at start.
 *
 * Thread-safe: workers check at accept() and add automatic bans; the main
 * thread reloads files, serves the control socket and sweeps.
 *
 * Config keys: blocklist.* (see conf/msaproxy.yaml, docs/XDP.md).
 */
#ifndef MSAPROXY_BANS_H
#define MSAPROXY_BANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "../../bpf/blocklist.h" /* enum blocklist_reason */
#include "config/config.h"
#include "lib/ipnet.h"

struct bans;

/*
 * At start-up, with the privileges XDP needs (before any are dropped):
 * read the files, load and attach the XDP program as configured.  When XDP
 * is enabled but cannot be used, logs an error and carries on at accept()
 * only, unless blocklist.xdp.required: then NULL.  NULL with err also for
 * a file that cannot be read ("FILE:LINE: blocklist.files[N]: why", the
 * config's line; the file's own FILE:LINE after it for a bad entry).
 */
struct bans *bans_open(const struct config *cfg, char *err, size_t errlen);
/* What bans_open() will need, checked without opening anything (-t):
 * every blocklist file reads, and with blocklist.xdp.required every
 * interface exists and pin_dir is (or can be made in) a directory.  0, or -1
 * with "FILE:LINE: KEY: why" in err. */
int bans_check(const struct config *cfg, char *err, size_t errlen);
/* Detach XDP (the pinned maps and their bans stay) and free. */
void bans_close(struct bans *b);

/* A reload: files re-read and applied as a diff (a listed prefix is never
 * missing meanwhile), the allowlist replaced.  On error nothing changes. */
int bans_reload(struct bans *b, const struct config *cfg, char *err,
		size_t errlen);

/* Fleet mode (cluster_files.h): the other nodes' file prefixes, enforced
 * as file entries next to this node's own (the union; an entry listed by
 * both stays while either lists it).  Replaces the previous set; refused
 * (nothing changes) when the union would pass blocklist.max_entries.  0,
 * or -1 with err. */
int bans_share(struct bans *b, const struct ipnet *v, size_t n, char *err,
	       size_t errlen);
/* A copy of this node's own file prefixes (sorted; free *v). */
int bans_own_files(struct bans *b, struct ipnet **v, size_t *n);

/* May a connection from peer go on?  false: blocked and not allowed. */
bool bans_admit(struct bans *b, const struct sockaddr *peer);

/* Ban net for ttl_ms (0: until unbanned); an existing ban is never
 * shortened.  0, or -1 with err. */
int bans_add(struct bans *b, const struct ipnet *net, uint64_t ttl_ms,
	     enum blocklist_reason reason, char *err, size_t errlen);
/* Whether exactly net is banned now, and *left_ms how much longer (0:
 * until unbanned). */
bool bans_left(struct bans *b, const struct ipnet *net, uint64_t *left_ms);
/* Remove the ban of exactly net: 0, 1 when there was none, -1 error. */
int bans_del(struct bans *b, const struct ipnet *net, char *err, size_t errlen);

/* fn for every live blocked entry of the given reasons (a bit per enum
 * blocklist_reason), with its time left (0: permanent); under the read
 * lock: fn must not call back into bans. */
void bans_each(struct bans *b, unsigned reasons,
	       void (*fn)(void *arg, const struct ipnet *net, uint64_t left_ms,
			  enum blocklist_reason reason),
	       void *arg);
/* Every entry, one per line (json: one object per line). */
void bans_list(struct bans *b, FILE *out, bool json);
/* What the metrics endpoint shows (counts now, totals since start). */
struct bans_counts {
	uint64_t block[BLOCKLIST_REASON_COUNT]; /* entries, by reason */
	uint64_t allow;				/* allowlist entries */
	uint64_t added[BLOCKLIST_REASON_COUNT]; /* entries written */
	uint64_t refused;			/* closed at accept() */
	bool xdp;				/* attached: the rest is set */
	uint64_t xdp_dropped_packets[BLOCKLIST_REASON_COUNT];
	uint64_t xdp_dropped_bytes[BLOCKLIST_REASON_COUNT];
	uint64_t xdp_passed_packets, xdp_allowed_packets;
};
void bans_counts(struct bans *b, struct bans_counts *out);
/* Counters as "name value" lines, or ",\"name\":value" JSON members. */
void bans_stats(struct bans *b, FILE *out, bool json);
/* Drop expired entries (memory and kernel); the main thread, every few
 * seconds. */
void bans_sweep(struct bans *b);

/* Automatic bans wanted? (blocklist.auto_ban, blocklist.ban_floods) */
bool bans_auto_logins(const struct bans *b);
bool bans_auto_floods(const struct bans *b);

#endif
