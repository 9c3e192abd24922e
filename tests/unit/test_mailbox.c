/*
 * test_mailbox.c - requests handed to a polling thread
 * (proxy/lib/mailbox.c): order, the doorbell, stopping, and many posters.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>

#include "lib/mailbox.h"

struct item {
	int value;
	struct item *next;
};

static bool
rung(const struct mailbox *mb)
{
	struct pollfd p = {.fd = mb->efd, .events = POLLIN};

	return poll(&p, 1, 0) == 1;
}

static void
test_oldest_first_and_one_ring_per_batch(void **state)
{
	struct mailbox mb;
	struct item v[3] = {{.value = 1}, {.value = 2}, {.value = 3}};
	struct item *got;
	bool stopping = true;
	char err[64];

	(void)state;
	assert_int_equal(MAILBOX_OPEN(&mb, struct item, next, err, sizeof(err)),
			 0);
	assert_false(rung(&mb));
	assert_null(mailbox_take(&mb, &stopping));
	assert_false(stopping);
	for (int i = 0; i < 3; i++)
		assert_true(mailbox_post(&mb, &v[i]));
	assert_true(rung(&mb));
	mailbox_drain(&mb);
	assert_false(rung(&mb)); /* three posts, one ring */
	got = mailbox_take(&mb, &stopping);
	for (int i = 0; i < 3; i++, got = got->next)
		assert_int_equal(got->value, i + 1);
	assert_null(got);
	mailbox_wake(&mb);
	assert_true(rung(&mb));
	mailbox_close(&mb);
	mailbox_close(&mb); /* twice is harmless */
}

static void
test_stopping_refuses_posts(void **state)
{
	struct mailbox mb;
	struct item a = {.value = 1}, b = {.value = 2};
	struct item *got;
	bool stopping = false;
	char err[64];

	(void)state;
	assert_int_equal(MAILBOX_OPEN(&mb, struct item, next, err, sizeof(err)),
			 0);
	assert_true(mailbox_post(&mb, &a));
	mailbox_stop(&mb);
	assert_false(mailbox_post(&mb, &b));
	got = mailbox_take(&mb, &stopping);
	assert_true(stopping);
	assert_ptr_equal(got, &a); /* what came before the stop is kept */
	assert_null(got->next);
	mailbox_close(&mb);
}

#define POSTERS 4
#define EACH	2000

struct poster {
	struct mailbox *mb;
	struct item items[EACH];
};

static void *
post_all(void *arg)
{
	struct poster *p = arg;

	for (int i = 0; i < EACH; i++)
		mailbox_post(p->mb, &p->items[i]);
	return NULL;
}

static void
test_many_posters_lose_nothing(void **state)
{
	static struct poster posters[POSTERS];
	struct mailbox mb;
	pthread_t t[POSTERS];
	long seen = 0, last[POSTERS];
	bool stopping;
	char err[64];

	(void)state;
	assert_int_equal(MAILBOX_OPEN(&mb, struct item, next, err, sizeof(err)),
			 0);
	for (int k = 0; k < POSTERS; k++) {
		posters[k].mb = &mb;
		last[k] = -1;
		for (int i = 0; i < EACH; i++)
			posters[k].items[i].value = k * EACH + i;
		assert_int_equal(
			pthread_create(&t[k], NULL, post_all, &posters[k]), 0);
	}
	/* Bounded: every item is posted once the posters are joined. */
	for (int k = 0; k < POSTERS; k++)
		pthread_join(t[k], NULL);
	for (struct item *it = mailbox_take(&mb, &stopping); it != NULL;
	     it = it->next) {
		int k = it->value / EACH;

		/* Each poster's items arrive in the order it posted them. */
		assert_true(it->value > last[k]);
		last[k] = it->value;
		seen++;
	}
	assert_int_equal(seen, POSTERS * EACH);
	mailbox_close(&mb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oldest_first_and_one_ring_per_batch),
		cmocka_unit_test(test_stopping_refuses_posts),
		cmocka_unit_test(test_many_posters_lose_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
