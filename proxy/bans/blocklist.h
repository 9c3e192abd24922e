/*
 * blocklist.h - user-space side of the XDP blocklist (bpf/blocklist.bpf.c):
 * load the program, keep its maps pinned, attach it to interfaces, and
 * edit, list, sweep and count its entries (blocklist.c, blocklist_attach.c,
 * blocklist_maps.c).  See docs/XDP.md.
 *
 * Library-like: every function returns a status and fills err (never
 * logs).  Entries are prefixes (struct ipnet, lib/ipnet.h) with a reason
 * and an optional TTL; an expired entry stops matching at once (in the
 * kernel and in blocklist_match()) and is deleted by blocklist_sweep().
 *
 * Threads: the edit functions serialise on a mutex in the handle;
 * blocklist_match(), blocklist_stats() and blocklist_foreach() only read
 * and may run anywhere.  blocklist_open() and blocklist_attach() briefly
 * take over libbpf's global print hook (to put libbpf's reason into err):
 * call them at start-up, not concurrently with other libbpf users.
 */
#ifndef MSAPROXY_BLOCKLIST_H
#define MSAPROXY_BLOCKLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "../../bpf/blocklist.h" /* enum blocklist_reason, _scope */
#include "bans/blocklist_file.h"
#include "lib/ipnet.h"

struct blocklist;

enum blocklist_table {
	BLOCKLIST_TABLE_BLOCK,
	BLOCKLIST_TABLE_ALLOW, /* wins over the blocklist */
};

enum blocklist_mode {
	BLOCKLIST_MODE_AUTO,	/* native, else generic */
	BLOCKLIST_MODE_NATIVE,	/* in the driver (XDP_FLAGS_DRV_MODE) */
	BLOCKLIST_MODE_GENERIC, /* after skb allocation (XDP_FLAGS_SKB_MODE) */
};

/* TTLs longer than this are refused (about 10 years). */
#define BLOCKLIST_TTL_MAX_MS (3650ull * 86400 * 1000)

enum blocklist_verdict {
	BLOCKLIST_PASS, /* no live entry covers the source (or out of scope) */
	BLOCKLIST_ALLOWED, /* on the allowlist */
	BLOCKLIST_DROP,	   /* on the blocklist: refuse */
};

/* One entry, as blocklist_foreach() reports it. */
struct blocklist_entry {
	struct ipnet net;
	enum blocklist_table table;
	enum blocklist_reason reason;
	uint64_t expires_ns;  /* CLOCK_MONOTONIC; 0 = permanent */
	int64_t remaining_ms; /* -1 permanent, 0 expired (not yet swept) */
};

/* Sums over all CPUs of the program's counters. */
struct blocklist_stats {
	uint64_t dropped_packets[BLOCKLIST_REASON_COUNT];
	uint64_t dropped_bytes[BLOCKLIST_REASON_COUNT];
	uint64_t passed_packets, passed_bytes; /* everything not dropped */
	uint64_t allowed_packets;	       /* passed: allowlisted */
	uint64_t expired_packets;	       /* passed: only expired hits */
};

/* What blocklist_apply() did. */
struct blocklist_apply_result {
	size_t added;	  /* written from the list */
	size_t removed;	  /* entries of the list's reason no longer listed */
	size_t unchanged; /* already there, as listed */
	size_t kept;	  /* an existing manual/auto ban of the same prefix
			     was permanent: left as it is */
};

/*
 * Load the program and its maps.  pin_dir is a directory on a mounted
 * bpffs (mount -t bpf bpf /sys/fs/bpf: the caller's job) holding the
 * maps by name (msa_block4, ...): maps already pinned there are reused,
 * so entries and counters survive restarts and crashes; missing ones are
 * created and pinned.  pin_dir is created (mode 0700) if absent.  Prefix
 * tries of the first layout (before the per-entry drop counter) are
 * carried over, entries and all (blocklist_carried() says how many);
 * pinned maps of any other layout are refused: remove them.
 * pin_dir NULL: private maps, gone with the process.  Needs CAP_BPF
 * (map creation, program load) and, to attach, CAP_NET_ADMIN: run it
 * before dropping root; see docs/XDP.md for what later calls need.
 * Returns NULL with err filled on failure.
 */
struct blocklist *blocklist_open(const char *pin_dir, char *err, size_t errlen);
size_t blocklist_carried(const struct blocklist *bl);
/* Close the maps and program.  Never detaches: an attached program stays
 * and keeps dropping (call blocklist_detach_all() on a clean shutdown). */
void blocklist_close(struct blocklist *bl);

/*
 * Attach to ifname.  An msaproxy blocklist program already there (a
 * previous run that crashed or did not detach, or this handle) is
 * replaced atomically when it is in the same mode, else detached first;
 * any other XDP program is left alone and attach fails.  *used (may be
 * NULL) is the mode in force.  AUTO tries native, then generic.
 */
int blocklist_attach(struct blocklist *bl, const char *ifname,
		     enum blocklist_mode mode, enum blocklist_mode *used,
		     char *err, size_t errlen);
/* Detach the msaproxy blocklist program from ifname (whichever run
 * attached it).  0 also when nothing was attached; -1 if another program
 * is there or the kernel refuses. */
int blocklist_detach(struct blocklist *bl, const char *ifname, char *err,
		     size_t errlen);
/* Detach from every interface this handle attached to; -1 (err names the
 * first failure) if any detach failed, after trying them all. */
int blocklist_detach_all(struct blocklist *bl, char *err, size_t errlen);
/* Is our program attached to ifname?  1 (with *mode), 0, or -1. */
int blocklist_attached(struct blocklist *bl, const char *ifname,
		       enum blocklist_mode *mode, char *err, size_t errlen);

/*
 * Add (or refresh) an entry.  ttl_ms 0 is permanent.  An existing live
 * entry for the same prefix is never weakened: a permanent one stays
 * permanent, a TTL one is only extended; the reason becomes the new one
 * only when the new entry wins.  Returns 0 written, 1 left as it was (an
 * existing entry already covers as long), -1 error (bad TTL, map full).
 */
int blocklist_add(struct blocklist *bl, const struct ipnet *c, uint64_t ttl_ms,
		  enum blocklist_reason reason, char *err, size_t errlen);
/* Delete exactly this prefix (not the prefixes inside it).  0 deleted,
 * 1 there was no such entry, -1 error. */
int blocklist_del(struct blocklist *bl, const struct ipnet *c, char *err,
		  size_t errlen);
/* The same for the allowlist (permanent, reason manual). */
int blocklist_allow_add(struct blocklist *bl, const struct ipnet *c, char *err,
			size_t errlen);
int blocklist_allow_del(struct blocklist *bl, const struct ipnet *c, char *err,
			size_t errlen);
/* Generic forms of the above. */
int blocklist_table_add(struct blocklist *bl, enum blocklist_table t,
			const struct ipnet *c, uint64_t ttl_ms,
			enum blocklist_reason reason, char *err, size_t errlen);
int blocklist_table_del(struct blocklist *bl, enum blocklist_table t,
			const struct ipnet *c, char *err, size_t errlen);

/*
 * Make the entries of reason BLOCKLIST_REASON_FILE in table t equal to
 * list (a parsed file, or the union of several: blocklist_file_merge()): add
 * what is new, delete file entries that vanished, leave the rest and
 * every manual/auto entry alone.  Not a wipe: at no point is a listed
 * prefix missing.  res may be NULL.
 */
int blocklist_apply(struct blocklist *bl, enum blocklist_table t,
		    const struct blocklist_file *list,
		    struct blocklist_apply_result *res, char *err,
		    size_t errlen);

/* Call fn for every entry of table t (IPv4 first), from a snapshot taken
 * first, so fn may edit the table.  fn returns non-zero to stop; that
 * value is returned.  0 when all were visited, -1 on error. */
int blocklist_foreach(struct blocklist *bl, enum blocklist_table t,
		      int (*fn)(const struct blocklist_entry *e, void *arg),
		      void *arg, char *err, size_t errlen);
/* Delete expired entries from both tables; returns how many, or -1. */
long blocklist_sweep(struct blocklist *bl, char *err, size_t errlen);
int blocklist_stats(struct blocklist *bl, struct blocklist_stats *st, char *err,
		    size_t errlen);

/* The frames the block entry for exactly net dropped (its counter in the
 * map): 1 with *drops set, 0 no such entry (*drops 0), -1 unreadable. */
int blocklist_drops(struct blocklist *bl, const struct ipnet *net,
		    uint64_t *drops);

/* Scope: ports (host byte order, 1..65535, at most BLOCKLIST_MAX_PORTS)
 * only for BLOCKLIST_SCOPE_TCP_PORTS, which needs at least one. */
int blocklist_set_scope(struct blocklist *bl, enum blocklist_scope scope,
			const uint16_t *ports, size_t nports, char *err,
			size_t errlen);
int blocklist_get_scope(struct blocklist *bl, enum blocklist_scope *scope,
			uint16_t ports[BLOCKLIST_MAX_PORTS], size_t *nports,
			char *err, size_t errlen);

/*
 * The program's verdict for a TCP connection from peer to local, decided
 * in user space from the same maps (for accept() when XDP is not
 * attached): same tries, same expiry rule, same scope (local's port; pass
 * local NULL to ignore the scope).  A v4-mapped IPv6 peer is looked up as
 * IPv4.  Fails open (PASS) if the maps cannot be read.  *reason (may be
 * NULL) is set for DROP.
 */
enum blocklist_verdict blocklist_match(struct blocklist *bl,
				       const struct sockaddr *peer,
				       const struct sockaddr *local,
				       enum blocklist_reason *reason);

/* Names for logs and config: "file" "manual" "auto";
 * "auto" "native" "generic"; "all" "tcp-ports". */
const char *blocklist_reason_name(enum blocklist_reason r);
const char *blocklist_mode_name(enum blocklist_mode m);
int blocklist_mode_parse(const char *s, enum blocklist_mode *out);
int blocklist_scope_parse(const char *s, enum blocklist_scope *out);

#endif
