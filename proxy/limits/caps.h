/*
 * caps.h - process-wide caps: how many sessions are open, and how much
 * memory the allocator has handed out, against limits.max_sessions and
 * limits.max_memory.
 *
 * One struct caps is shared by every worker and the main thread (atomics
 * only, no lock).  A worker asks caps_enter() before it spends anything on
 * a new connection and calls caps_leave() when the session is gone.  The
 * main thread samples the allocator every CAPS_SAMPLE_MS (caps_sample())
 * and raises or clears the memory flag the workers read; between samples
 * the flag may be up to that much behind, which is why the session count
 * (exact at every accept) is the first line of defence and memory the
 * second.
 *
 * Memory is what the allocator reports as allocated to the process: with
 * jemalloc (the production build) "stats.allocated" after an "epoch"
 * refresh; in an ASan build, ASan's count of live bytes; otherwise glibc's
 * mallinfo2().  Resident memory is reported too (jemalloc's
 * "stats.resident", else the process RSS) but never compared with the cap:
 * it lags behind frees by the allocator's decay time, and an idle proxy
 * that stays "over" would refuse everyone for nothing.
 */
#ifndef MSAPROXY_CAPS_H
#define MSAPROXY_CAPS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define CAPS_SAMPLE_MS 100 /* main thread: allocator figures this often */
/* Back under the cap once allocated is below this share of it (percent):
 * a little hysteresis, so a proxy right at the cap does not flap. */
#define CAPS_MEMORY_RESUME_PCT 90

struct caps {
	atomic_uint sessions;	 /* open now, every worker */
	atomic_bool memory_over; /* allocated >= limits.max_memory */
	atomic_ullong allocated; /* last sample, bytes */
	atomic_ullong resident;	 /* last sample, bytes */
	atomic_ullong limit;	 /* limits.max_memory at the last sample */
	/* Refusals, for the stats: */
	atomic_ullong refused_sessions; /* connections over max_sessions */
	atomic_ullong refused_memory;	/* connections over max_memory */
	atomic_ullong refused_mail;	/* MAIL FROM over max_memory */
	atomic_ullong pressure_events;	/* times the memory cap was hit */
};

enum caps_verdict {
	CAPS_OK,
	CAPS_SESSIONS, /* limits.max_sessions sessions are open */
	CAPS_MEMORY,   /* over limits.max_memory */
};

/* What a sample changed. */
enum caps_change {
	CAPS_SAME,
	CAPS_WENT_OVER,
	CAPS_WENT_UNDER,
};

void caps_init(struct caps *c);

/* A new connection: counted in (CAPS_OK) or refused, counted nowhere but
 * in the refusal counters.  max_sessions 0: no cap. */
enum caps_verdict caps_enter(struct caps *c, unsigned max_sessions);
/* A session counted in by caps_enter() has ended. */
void caps_leave(struct caps *c);

/* Is the memory cap reached?  (A relaxed read: cheap on every accept.) */
bool caps_memory_over(const struct caps *c);
/* Count a MAIL FROM refused because of it. */
void caps_count_mail_refused(struct caps *c);

/* Main thread: read the allocator and set or clear the flag against limit
 * (bytes; 0: no cap, the flag is cleared).  Never blocks a worker. */
enum caps_change caps_sample(struct caps *c, uint64_t limit);

/* The allocator's figures now, in bytes (0 where unknown); returns which
 * allocator answered: "jemalloc", "asan" or "malloc". */
const char *caps_memory_read(uint64_t *allocated, uint64_t *resident);

#endif
