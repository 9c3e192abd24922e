/*
 * mailbox.h - requests handed from any thread to one thread that waits in
 * poll(): a list under a mutex and an eventfd doorbell.  The cluster
 * thread and the Dovecot and auth_http threads each own one.
 *
 * Items are the caller's structs, linked through a `next` pointer of
 * theirs (MAILBOX_OPEN gives its offset): the mailbox allocates nothing,
 * so a post never fails for memory.  The doorbell rings once per batch
 * (when the list was empty): the thread takes the whole list after every
 * wake-up, so no request waits for a second ring.
 */
#ifndef MSAPROXY_MAILBOX_H
#define MSAPROXY_MAILBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct mailbox {
	int efd; /* poll it for POLLIN, then mailbox_drain() */
	pthread_mutex_t mu;
	void *head;	 /* newest first, under mu */
	bool stopping;	 /* under mu */
	size_t next_off; /* where an item keeps its next pointer */
	bool open;	 /* mailbox_close() has something to close */
};

/* 0, or -1 with err ("eventfd: why"). */
int mailbox_open(struct mailbox *mb, size_t next_off, char *err, size_t errlen);
#define MAILBOX_OPEN(mb, type, member, err, errlen)                            \
	mailbox_open((mb), offsetof(type, member), (err), (errlen))
void mailbox_close(struct mailbox *mb);

/* Hand item to the thread: false (item not taken) once it is stopping. */
bool mailbox_post(struct mailbox *mb, void *item);
/* Wake the thread without an item (something else changed for it). */
void mailbox_wake(struct mailbox *mb);
/* Tell the thread to stop; posts fail from now on. */
void mailbox_stop(struct mailbox *mb);

/* The thread's side: everything posted, oldest first (NULL: nothing),
 * and whether it is to stop. */
void *mailbox_take(struct mailbox *mb, bool *stopping);
/* After poll() reported the doorbell. */
void mailbox_drain(struct mailbox *mb);

/* pthread_create() with every signal blocked in the new thread (signals
 * are the main thread's).  0 or an errno value. */
int mailbox_thread(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
