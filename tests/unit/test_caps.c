/*
 * test_caps.c - the process-wide caps: the session count (exact, also
 * when threads race for the last place) and the memory flag with its
 * hysteresis, against the allocator this test runs on (glibc, or ASan's).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "limits/caps.h"

static void
test_session_count(void **state)
{
	struct caps c;

	(void)state;
	caps_init(&c);
	for (int i = 0; i < 3; i++)
		assert_int_equal(caps_enter(&c, 3), CAPS_OK);
	assert_int_equal(caps_enter(&c, 3), CAPS_SESSIONS);
	assert_int_equal(caps_enter(&c, 3), CAPS_SESSIONS);
	assert_int_equal(atomic_load(&c.sessions), 3);
	assert_int_equal(atomic_load(&c.refused_sessions), 2);
	caps_leave(&c);
	assert_int_equal(caps_enter(&c, 3), CAPS_OK);
	/* A lower cap after a reload: nobody new until enough have left. */
	assert_int_equal(caps_enter(&c, 2), CAPS_SESSIONS);
	caps_leave(&c);
	assert_int_equal(caps_enter(&c, 2), CAPS_SESSIONS);
	caps_leave(&c);
	assert_int_equal(caps_enter(&c, 2), CAPS_OK);
	assert_int_equal(atomic_load(&c.sessions), 2);
	/* 0: no cap. */
	for (int i = 0; i < 100; i++)
		assert_int_equal(caps_enter(&c, 0), CAPS_OK);
	assert_int_equal(atomic_load(&c.sessions), 102);
}

#define RACERS	 4
#define ATTEMPTS 20000
#define PLACES	 1000

static void *
race(void *arg)
{
	struct caps *c = arg;
	uintptr_t admitted = 0;

	for (int i = 0; i < ATTEMPTS; i++)
		admitted += caps_enter(c, PLACES) == CAPS_OK;
	return (void *)admitted;
}

/* Workers racing for the last places never get more than there are. */
static void
test_session_count_races(void **state)
{
	pthread_t t[RACERS];
	struct caps c;
	uintptr_t total = 0;

	(void)state;
	caps_init(&c);
	for (int i = 0; i < RACERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race, &c), 0);
	for (int i = 0; i < RACERS; i++) {
		void *n;

		assert_int_equal(pthread_join(t[i], &n), 0);
		total += (uintptr_t)n;
	}
	assert_int_equal(total, PLACES);
	assert_int_equal(atomic_load(&c.sessions), PLACES);
	assert_int_equal(atomic_load(&c.refused_sessions),
			 RACERS * ATTEMPTS - PLACES);
}

static void
test_memory_read(void **state)
{
	uint64_t allocated, resident;
	const char *source = caps_memory_read(&allocated, &resident);

	(void)state;
	assert_true(strcmp(source, "jemalloc") == 0 ||
		    strcmp(source, "asan") == 0 ||
		    strcmp(source, "malloc") == 0);
	assert_true(allocated > 0);
	assert_true(resident > 0);
}

static void
test_memory_flag(void **state)
{
	struct caps c;
	uint64_t allocated, resident;

	(void)state;
	caps_init(&c);
	assert_int_equal(caps_sample(&c, 0), CAPS_SAME); /* no cap */
	assert_false(caps_memory_over(&c));

	/* 1 byte: over at once, and new sessions are refused. */
	assert_int_equal(caps_sample(&c, 1), CAPS_WENT_OVER);
	assert_true(caps_memory_over(&c));
	assert_int_equal(caps_sample(&c, 1), CAPS_SAME);
	assert_int_equal(caps_enter(&c, 0), CAPS_MEMORY);
	assert_int_equal(atomic_load(&c.sessions), 0);
	assert_int_equal(atomic_load(&c.refused_memory), 1);
	assert_int_equal(atomic_load(&c.pressure_events), 1);
	assert_int_equal(atomic_load(&c.limit), 1);
	assert_true(atomic_load(&c.allocated) > 0);

	/* Between 90% and 100% of the cap: it stays as it was. */
	caps_memory_read(&allocated, &resident);
	assert_int_equal(caps_sample(&c, allocated + allocated / 20),
			 CAPS_SAME);
	assert_true(caps_memory_over(&c));

	/* Well under: back, and sessions come in again. */
	assert_int_equal(caps_sample(&c, allocated * 4), CAPS_WENT_UNDER);
	assert_false(caps_memory_over(&c));
	assert_int_equal(caps_enter(&c, 0), CAPS_OK);
	caps_memory_read(&allocated, &resident);
	assert_int_equal(caps_sample(&c, allocated + allocated / 20),
			 CAPS_SAME);
	assert_false(caps_memory_over(&c));

	/* The cap taken away (a reload) while over: under at once. */
	assert_int_equal(caps_sample(&c, 1), CAPS_WENT_OVER);
	assert_int_equal(caps_sample(&c, 0), CAPS_WENT_UNDER);
	assert_int_equal(atomic_load(&c.pressure_events), 2);

	caps_count_mail_refused(&c);
	assert_int_equal(atomic_load(&c.refused_mail), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_count),
		cmocka_unit_test(test_session_count_races),
		cmocka_unit_test(test_memory_read),
		cmocka_unit_test(test_memory_flag),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
