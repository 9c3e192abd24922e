/*
 * timer.c - binary min-heap of deadlines.
 */
#include <stdlib.h>
#include <time.h>

#include "lib/timer.h"

uint64_t
timer_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
timer_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
timer_heap_init(struct timer_heap *h)
{
	h->v = NULL;
	h->n = h->cap = 0;
}

void
timer_heap_free(struct timer_heap *h)
{
	free(h->v);
	timer_heap_init(h);
}

static void
place(struct timer_heap *h, size_t i, struct timer *t)
{
	h->v[i] = t;
	t->idx = i;
}

static void
sift_up(struct timer_heap *h, size_t i)
{
	struct timer *t = h->v[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->v[parent]->when <= t->when)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void
sift_down(struct timer_heap *h, size_t i)
{
	struct timer *t = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1]->when < h->v[c]->when)
			c++;
		if (t->when <= h->v[c]->when)
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, t);
}

static void
heap_remove(struct timer_heap *h, struct timer *t)
{
	size_t i = t->idx;
	struct timer *last = h->v[--h->n];

	t->when = TIMER_NONE;
	if (i == h->n)
		return;
	place(h, i, last);
	sift_down(h, i);
	sift_up(h, last->idx);
}

int
timer_set(struct timer_heap *h, struct timer *t, uint64_t when)
{
	uint64_t old = t->when;

	if (old == when)
		return 0;
	if (old != TIMER_NONE) {
		if (when == TIMER_NONE) {
			heap_remove(h, t);
			return 0;
		}
		t->when = when;
		if (when < old)
			sift_up(h, t->idx);
		else
			sift_down(h, t->idx);
		return 0;
	}
	if (when == TIMER_NONE)
		return 0;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct timer **v = realloc(h->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		h->v = v;
		h->cap = cap;
	}
	t->when = when;
	place(h, h->n++, t);
	sift_up(h, t->idx);
	return 0;
}

struct timer *
timer_pop_due(struct timer_heap *h, uint64_t now)
{
	struct timer *t;

	if (h->n == 0 || h->v[0]->when > now)
		return NULL;
	t = h->v[0];
	heap_remove(h, t);
	return t;
}

uint64_t
timer_next(const struct timer_heap *h)
{
	return h->n ? h->v[0]->when : TIMER_NONE;
}
