/*
 * test_timer_buf.c - the deadline heap and the bounded buffer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/timer.h"

static void
test_heap_orders_and_moves(void **state)
{
	struct timer_heap h;
	struct timer t[100];
	struct timer *p;

	(void)state;
	timer_heap_init(&h);
	srand(7);
	for (int i = 0; i < 100; i++) {
		t[i].when = TIMER_NONE;
		assert_int_equal(
			timer_set(&h, &t[i], 1000 + (uint64_t)(rand() % 500)),
			0);
	}
	/* Move some earlier, some later, remove some. */
	for (int i = 0; i < 100; i += 3)
		timer_set(&h, &t[i], 10 + (uint64_t)i);
	for (int i = 1; i < 100; i += 7)
		timer_set(&h, &t[i], 5000 + (uint64_t)i);
	size_t removed = 0;
	for (int i = 2; i < 100; i += 11, removed++)
		timer_set(&h, &t[i], TIMER_NONE);
	assert_int_equal(timer_next(&h), 10);
	assert_null(timer_pop_due(&h, 9));
	size_t n = 0;
	while ((p = timer_pop_due(&h, UINT64_MAX - 1)) != NULL) {
		assert_true(p->when == TIMER_NONE);
		n++;
	}
	assert_int_equal(n, 100 - removed);
	timer_heap_free(&h);
}

static void
test_heap_pops_in_order(void **state)
{
	struct timer_heap h;
	struct timer t[50];
	uint64_t prev = 0;

	(void)state;
	timer_heap_init(&h);
	for (int i = 0; i < 50; i++) {
		t[i].when = TIMER_NONE;
		timer_set(&h, &t[i], (uint64_t)((i * 37) % 50));
	}
	for (int i = 0; i < 50; i++) {
		struct timer *p;
		uint64_t due = timer_next(&h);
		assert_true(due >= prev);
		p = timer_pop_due(&h, due);
		assert_non_null(p);
		prev = due;
	}
	assert_int_equal(timer_next(&h), TIMER_NONE);
	timer_heap_free(&h);
}

static void
test_buf_bounded_and_lazy(void **state)
{
	struct buf b;
	char big[100];

	(void)state;
	memset(big, 'x', sizeof(big));
	buf_init(&b, 64);
	assert_null(b.data); /* nothing allocated until used */
	assert_int_equal(buf_append(&b, big, 100), 64);
	assert_int_equal(buf_room(&b), 0);
	assert_int_equal(buf_append_all(&b, "y", 1), -1);
	buf_consume(&b, 40);
	assert_int_equal(buf_used(&b), 24);
	assert_int_equal(buf_room(&b), 40); /* compacted */
	buf_consume(&b, 24);
	assert_null(b.data); /* freed when drained */
	buf_free(&b);
}

static void
test_buf_pinned_never_moves(void **state)
{
	struct buf b;
	const char *head;

	(void)state;
	buf_init(&b, 32);
	buf_append(&b, "0123456789abcdef0123456789abcdef", 32);
	b.pinned = true; /* a send is reading from the head */
	buf_consume(&b, 20);
	head = buf_head(&b);
	assert_int_equal(buf_room(&b), 0); /* no compaction while pinned */
	assert_ptr_equal(buf_head(&b), head);
	buf_consume(&b, 12);
	assert_non_null(b.data); /* not freed while pinned */
	buf_unpin(&b);
	assert_null(b.data);
	buf_free(&b);
}

/* A secret buffer leaves no copy of consumed bytes behind compaction. */
static void
test_buf_secret_wipes(void **state)
{
	static const char line[] = "AUTH PLAIN c2VjcmV0\r\n"; /* 22 bytes */
	struct buf b;

	(void)state;
	buf_init(&b, 64);
	b.secret = true;
	buf_append(&b, line, sizeof(line) - 1);
	buf_append(&b, "QUIT", 4);
	buf_consume(&b, sizeof(line) - 1);
	assert_int_equal(buf_room(&b), 60); /* compacts */
	assert_memory_equal(b.data, "QUIT", 4);
	for (size_t i = 4; i < sizeof(line) - 1 + 4; i++)
		assert_int_equal(b.data[i], 0);
	buf_free(&b);

	/* Not secret: the old bytes stay (no cost for message data). */
	buf_init(&b, 64);
	buf_append(&b, line, sizeof(line) - 1);
	buf_append(&b, "QUIT", 4);
	buf_consume(&b, sizeof(line) - 1);
	buf_room(&b);
	assert_memory_equal(b.data + 4, line + 4, 4);
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heap_orders_and_moves),
		cmocka_unit_test(test_heap_pops_in_order),
		cmocka_unit_test(test_buf_bounded_and_lazy),
		cmocka_unit_test(test_buf_pinned_never_moves),
		cmocka_unit_test(test_buf_secret_wipes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
