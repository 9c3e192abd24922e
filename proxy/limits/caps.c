/*
 * caps.c - process-wide caps on sessions and memory.  Read caps.h first.
 *
 * The allocator is asked through whatever is linked in: jemalloc's
 * mallctl() is declared weak, so the same object links into the
 * production binary (jemalloc), the ASan build (ASan's own allocator: its
 * count of live bytes) and the unit tests (glibc: mallinfo2()).
 *
 * Config keys: limits.max_sessions, limits.max_memory (read by the callers
 * and passed in).
 */
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "limits/caps.h"

/* jemalloc, when it is the allocator (Debian's exports it unprefixed). */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
		   size_t newlen) __attribute__((weak));

#if defined(__SANITIZE_ADDRESS__)
#define CAPS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CAPS_ASAN 1
#endif
#endif
#ifdef CAPS_ASAN
/* compiler-rt's allocator interface: live bytes (freed ones in ASan's
 * quarantine are not counted). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

void
caps_init(struct caps *c)
{
	atomic_init(&c->sessions, 0);
	atomic_init(&c->memory_over, false);
	atomic_init(&c->allocated, 0);
	atomic_init(&c->resident, 0);
	atomic_init(&c->limit, 0);
	atomic_init(&c->refused_sessions, 0);
	atomic_init(&c->refused_memory, 0);
	atomic_init(&c->refused_mail, 0);
	atomic_init(&c->pressure_events, 0);
}

enum caps_verdict
caps_enter(struct caps *c, unsigned max_sessions)
{
	unsigned before;

	if (caps_memory_over(c)) {
		atomic_fetch_add_explicit(&c->refused_memory, 1,
					  memory_order_relaxed);
		return CAPS_MEMORY;
	}
	/* Take a place first, give it back if there was none: two workers
	 * racing for the last place cannot both get it. */
	before = atomic_fetch_add_explicit(&c->sessions, 1,
					   memory_order_relaxed);
	if (max_sessions > 0 && before >= max_sessions) {
		atomic_fetch_sub_explicit(&c->sessions, 1,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&c->refused_sessions, 1,
					  memory_order_relaxed);
		return CAPS_SESSIONS;
	}
	return CAPS_OK;
}

void
caps_leave(struct caps *c)
{
	atomic_fetch_sub_explicit(&c->sessions, 1, memory_order_relaxed);
}

bool
caps_memory_over(const struct caps *c)
{
	return atomic_load_explicit(&c->memory_over, memory_order_relaxed);
}

void
caps_count_mail_refused(struct caps *c)
{
	atomic_fetch_add_explicit(&c->refused_mail, 1, memory_order_relaxed);
}

/* The process's resident set from /proc/self/statm (main thread only: it
 * reads a file). */
static uint64_t
process_rss(void)
{
	char text[128];
	unsigned long long size, pages;
	ssize_t n;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	if (sscanf(text, "%llu %llu", &size, &pages) != 2)
		return 0;
	return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

const char *
caps_memory_read(uint64_t *allocated, uint64_t *resident)
{
	*allocated = *resident = 0;
	if (mallctl != NULL) {
		uint64_t epoch = 1;
		size_t v, len = sizeof(epoch);

		/* The statistics are a snapshot, refreshed by an epoch. */
		if (mallctl("epoch", &epoch, &len, &epoch, len) == 0) {
			len = sizeof(v);
			if (mallctl("stats.allocated", &v, &len, NULL, 0) == 0)
				*allocated = v;
			len = sizeof(v);
			if (mallctl("stats.resident", &v, &len, NULL, 0) == 0)
				*resident = v;
			return "jemalloc";
		}
	}
	*resident = process_rss();
#ifdef CAPS_ASAN
	*allocated = __sanitizer_get_current_allocated_bytes();
	return "asan";
#else
	struct mallinfo2 mi = mallinfo2();

	*allocated = mi.uordblks + mi.hblkhd;
	return "malloc";
#endif
}

enum caps_change
caps_sample(struct caps *c, uint64_t limit)
{
	uint64_t allocated, resident;
	bool over = caps_memory_over(c), now = over;

	caps_memory_read(&allocated, &resident);
	atomic_store_explicit(&c->allocated, allocated, memory_order_relaxed);
	atomic_store_explicit(&c->resident, resident, memory_order_relaxed);
	atomic_store_explicit(&c->limit, limit, memory_order_relaxed);
	if (limit == 0)
		now = false;
	else if (allocated >= limit)
		now = true;
	else if (allocated < limit / 100 * CAPS_MEMORY_RESUME_PCT)
		now = false;
	if (now == over)
		return CAPS_SAME;
	atomic_store_explicit(&c->memory_over, now, memory_order_relaxed);
	if (now)
		atomic_fetch_add_explicit(&c->pressure_events, 1,
					  memory_order_relaxed);
	return now ? CAPS_WENT_OVER : CAPS_WENT_UNDER;
}
