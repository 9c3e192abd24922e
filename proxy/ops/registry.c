/*
 * registry.c - stable slots for listener and backend addresses (see
 * registry.h).  A linear search: a few dozen names at most, looked up on
 * the main thread at start, at a reload and per control request.
 */
#include <stdio.h>
#include <string.h>

#include "ops/registry.h"

/* The slot of name in a table of names (the first bytes of each element,
 * stride bytes apart) holding *n of cap; added if absent.  Past cap - 1
 * names: the last slot, "other". */
static unsigned
slot_of(char *base, size_t stride, unsigned *n, unsigned cap, const char *name)
{
	for (unsigned i = 0; i < *n && i < cap - 1; i++)
		if (strcmp(base + (size_t)i * stride, name) == 0)
			return i;
	if (*n < cap) {
		snprintf(base + (size_t)*n * stride, REGISTRY_NAME_MAX, "%s",
			 *n < cap - 1 ? name : REGISTRY_OTHER);
		(*n)++;
	}
	return *n <= cap - 1 ? *n - 1 : cap - 1;
}

unsigned
registry_listener(struct registry *r, const char *name)
{
	return slot_of(r->listener[0], sizeof(r->listener[0]), &r->nlisteners,
		       COUNTERS_LISTENERS, name);
}

unsigned
registry_backend(struct registry *r, const char *name)
{
	return slot_of(r->backend[0].name, sizeof(r->backend[0]), &r->nbackends,
		       COUNTERS_BACKENDS, name);
}

int
registry_find_backend(const struct registry *r, const char *name)
{
	for (unsigned i = 0; i < r->nbackends && i < COUNTERS_BACKENDS - 1; i++)
		if (strcmp(r->backend[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool
registry_backend_is_other(const struct registry *r, unsigned slot)
{
	(void)r;
	return slot == COUNTERS_BACKENDS - 1;
}
