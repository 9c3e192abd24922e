/*
 * bantable.c - sorted prefix table with expiry (see bantable.h).
 */
#include <stdlib.h>
#include <string.h>

#include "bans/bantable.h"
#include "bans/blocklist_file.h" /* blocklist_file_cmp: one order for both */

static bool
ban_table_live(const struct ban_entry *e, uint64_t now_ms)
{
	return e->expires_ms == 0 || e->expires_ms > now_ms;
}

/* Index of net, or of where it would go (*found says which). */
static size_t
search(const struct ban_table *t, const struct ipnet *net, bool *found)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = blocklist_file_cmp(&t->v[mid].net, net);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static struct ipnet
mask(const uint8_t addr[16], unsigned len)
{
	struct ipnet n = {.len = (uint8_t)len};

	for (unsigned i = 0; i < 16; i++) {
		unsigned bits = len > i * 8 ? len - i * 8 : 0;

		n.addr[i] = bits >= 8 ? addr[i]
				      : (uint8_t)(addr[i] & (0xff00u >> bits));
	}
	return n;
}

int
ban_table_put(struct ban_table *t, const struct ipnet *net, uint64_t expires_ms,
	      unsigned reason, uint64_t now_ms)
{
	bool found;
	size_t i = search(t, net, &found);
	struct ban_entry *e;

	if (found) {
		e = &t->v[i];
		if (ban_table_live(e, now_ms) &&
		    (e->expires_ms == 0 ||
		     (expires_ms != 0 && expires_ms <= e->expires_ms)))
			return 1;
		e->expires_ms = expires_ms;
		e->reason = (uint8_t)reason;
		return 0;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct ban_entry *v = realloc(t->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		t->v = v;
		t->cap = cap;
	}
	memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof(*t->v));
	t->v[i] = (struct ban_entry){.net = *net,
				     .reason = (uint8_t)reason,
				     .expires_ms = expires_ms};
	t->n++;
	t->lens[net->len]++;
	return 0;
}

static void
remove_at(struct ban_table *t, size_t i)
{
	t->lens[t->v[i].net.len]--;
	memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
	t->n--;
}

int
ban_table_del(struct ban_table *t, const struct ipnet *net)
{
	bool found;
	size_t i = search(t, net, &found);

	if (!found)
		return 1;
	remove_at(t, i);
	return 0;
}

const struct ban_entry *
ban_table_find(const struct ban_table *t, const struct ipnet *net)
{
	bool found;
	size_t i = search(t, net, &found);

	return found ? &t->v[i] : NULL;
}

const struct ban_entry *
ban_table_match(const struct ban_table *t, const uint8_t addr[16],
		uint64_t now_ms, unsigned ignore)
{
	for (int len = 128; len >= 0 && t->n > 0; len--) {
		struct ipnet key;
		const struct ban_entry *e;

		if (t->lens[len] == 0)
			continue;
		key = mask(addr, (unsigned)len);
		e = ban_table_find(t, &key);
		if (e != NULL && ban_table_live(e, now_ms) &&
		    !(ignore & (1u << e->reason)))
			return e;
	}
	return NULL;
}

size_t
ban_table_sweep(struct ban_table *t, uint64_t now_ms)
{
	size_t kept = 0, n = t->n;

	for (size_t i = 0; i < n; i++) {
		if (ban_table_live(&t->v[i], now_ms))
			t->v[kept++] = t->v[i];
		else
			t->lens[t->v[i].net.len]--;
	}
	t->n = kept;
	return n - kept;
}

void
ban_table_free(struct ban_table *t)
{
	free(t->v);
	memset(t, 0, sizeof(*t));
}
