/*
 * bantable.h - a table of banned (or allowed) prefixes with expiry, for
 * the check at accept() (bans.c).
 *
 * Pure: no clock (callers pass CLOCK_MONOTONIC ms), no locks, no logging.
 * Entries are kept sorted by address then length; a lookup masks the
 * address to each prefix length in use and binary-searches it, longest
 * first: O(L log n) for L distinct lengths (a handful in practice, at most
 * 129).  Memory: 32 bytes per entry.
 */
#ifndef MSAPROXY_BANTABLE_H
#define MSAPROXY_BANTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/ipnet.h"

struct ban_entry {
	struct ipnet net;
	uint8_t reason;	     /* enum blocklist_reason */
	uint64_t expires_ms; /* CLOCK_MONOTONIC; 0 = permanent */
};

struct ban_table {
	struct ban_entry *v;
	size_t n, cap;
	uint32_t lens[129]; /* entries per prefix length */
};

/*
 * Add or refresh net.  An existing live entry is never weakened: a
 * permanent one stays permanent, a timed one is only extended (the reason
 * follows the entry that wins).  0 written, 1 left as it was, -1 out of
 * memory.
 */
int ban_table_put(struct ban_table *t, const struct ipnet *net,
		  uint64_t expires_ms, unsigned reason, uint64_t now_ms);
/* Remove exactly net: 0 removed, 1 not there. */
int ban_table_del(struct ban_table *t, const struct ipnet *net);
/* The longest live entry covering addr (16-byte form) whose reason is not
 * in ignore (a bit mask: 1u << reason), or NULL. */
const struct ban_entry *ban_table_match(const struct ban_table *t,
					const uint8_t addr[16], uint64_t now_ms,
					unsigned ignore);
/* The entry for exactly net (live or not), or NULL. */
const struct ban_entry *ban_table_find(const struct ban_table *t,
				       const struct ipnet *net);
/* Drop expired entries; returns how many. */
size_t ban_table_sweep(struct ban_table *t, uint64_t now_ms);
void ban_table_free(struct ban_table *t);

#endif
