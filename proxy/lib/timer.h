/*
 * timer.h - a min-heap of deadlines, one per worker.
 *
 * A struct timer lives inside the object it times (a session); the heap
 * holds pointers.  Moving a deadline is O(log n); the worker sleeps until
 * the earliest one.  Times are milliseconds on CLOCK_MONOTONIC.
 */
#ifndef MSAPROXY_TIMER_H
#define MSAPROXY_TIMER_H

#include <stddef.h>
#include <stdint.h>

#define TIMER_NONE UINT64_MAX

struct timer {
	uint64_t when; /* TIMER_NONE when not queued */
	size_t idx;    /* position in the heap, private */
};

struct timer_heap {
	struct timer **v;
	size_t n, cap;
};

uint64_t timer_now_ms(void);
/* The same clock in microseconds, for latencies (counters.h). */
uint64_t timer_now_us(void);

void timer_heap_init(struct timer_heap *h);
void timer_heap_free(struct timer_heap *h);
/* Queue or move t to fire at when; TIMER_NONE removes it.  -1 on ENOMEM. */
int timer_set(struct timer_heap *h, struct timer *t, uint64_t when);
/* The earliest timer if it is due at now, removed from the heap. */
struct timer *timer_pop_due(struct timer_heap *h, uint64_t now);
/* Earliest deadline, or TIMER_NONE. */
uint64_t timer_next(const struct timer_heap *h);

#endif
