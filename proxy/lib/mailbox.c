/*
 * mailbox.c - requests handed from any thread to one polling thread.
 * Read mailbox.h first.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/mailbox.h"

/* An item's next pointer, read and written as bytes: the items are the
 * callers' own structs. */
static void *
next_of(const struct mailbox *mb, void *item)
{
	void *next;

	memcpy(&next, (char *)item + mb->next_off, sizeof(next));
	return next;
}

static void
set_next(const struct mailbox *mb, void *item, void *next)
{
	memcpy((char *)item + mb->next_off, &next, sizeof(next));
}

int
mailbox_open(struct mailbox *mb, size_t next_off, char *err, size_t errlen)
{
	memset(mb, 0, sizeof(*mb));
	mb->next_off = next_off;
	mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (mb->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -1;
	}
	pthread_mutex_init(&mb->mu, NULL);
	mb->open = true;
	return 0;
}

void
mailbox_close(struct mailbox *mb)
{
	if (!mb->open)
		return;
	close(mb->efd);
	mb->efd = -1;
	pthread_mutex_destroy(&mb->mu);
	mb->open = false;
}

/* A full counter (2^64 - 2 rings unread) only means the thread is awake
 * anyway: the write's failure changes nothing. */
static void
ring(struct mailbox *mb)
{
	uint64_t one = 1;

	if (write(mb->efd, &one, sizeof(one)) < 0)
		(void)0;
}

bool
mailbox_post(struct mailbox *mb, void *item)
{
	bool first;

	pthread_mutex_lock(&mb->mu);
	if (mb->stopping) {
		pthread_mutex_unlock(&mb->mu);
		return false;
	}
	first = mb->head == NULL;
	set_next(mb, item, mb->head);
	mb->head = item;
	pthread_mutex_unlock(&mb->mu);
	if (first)
		ring(mb);
	return true;
}

void
mailbox_wake(struct mailbox *mb)
{
	ring(mb);
}

void
mailbox_stop(struct mailbox *mb)
{
	pthread_mutex_lock(&mb->mu);
	mb->stopping = true;
	pthread_mutex_unlock(&mb->mu);
	ring(mb);
}

void *
mailbox_take(struct mailbox *mb, bool *stopping)
{
	void *list, *fifo = NULL;

	pthread_mutex_lock(&mb->mu);
	list = mb->head;
	mb->head = NULL;
	*stopping = mb->stopping;
	pthread_mutex_unlock(&mb->mu);
	while (list != NULL) { /* newest first: reversed */
		void *item = list;

		list = next_of(mb, item);
		set_next(mb, item, fifo);
		fifo = item;
	}
	return fifo;
}

void
mailbox_drain(struct mailbox *mb)
{
	uint64_t v;

	if (read(mb->efd, &v, sizeof(v)) < 0)
		(void)0; /* EAGAIN: another wake-up took it */
}

int
mailbox_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}
