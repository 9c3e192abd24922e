/*
 * ring.c - a worker's io_uring, its provided-buffer groups and its list of
 * woken sessions.  Read ring.h first.
 *
 * One ring per worker thread, made by that thread: SINGLE_ISSUER |
 * DEFER_TASKRUN where the kernel has them (COOP_TASKRUN otherwise), no
 * SQPOLL (it would take a core of a small machine), the ring's own fd
 * registered (io_uring_register_ring_fd).  Receives take their
 * buffers from two provided-buffer rings (liburing's
 * io_uring_register_buf_ring): 16 KiB buffers for everything, 64 KiB ones
 * for a TLS session's message bytes.
 *
 * Config keys: worker_buffers.receive, worker_buffers.data (how many of
 * each; read once, at the worker's start), workers (one ring each).
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "config/generation.h"
#include "io/ring.h"

#define RING_ENTRIES 1024

struct io_uring_sqe *
ring_sqe(struct ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);

	if (sqe == NULL) {
		/* Submission queue full: hand the batch to the kernel. */
		io_uring_submit(&r->uring);
		sqe = io_uring_get_sqe(&r->uring);
	}
	return sqe;
}

void
ring_prep(struct io_uring_sqe *sqe, void *ptr, enum ring_op op)
{
	/* Objects on the ring are at least 16-byte aligned (malloc, or
	 * declared so): the op rides in the low bits. */
	assert(((uintptr_t)ptr & OP_MASK) == 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)ptr | op);
}

const char *
ring_buf(const struct ring *r, unsigned group, unsigned bid)
{
	const struct buf_ring *p = &r->bufs[group];

	return p->bufs + (size_t)bid * p->size;
}

void
ring_buf_return(struct ring *r, unsigned group, unsigned bid)
{
	struct buf_ring *p = &r->bufs[group];

	io_uring_buf_ring_add(p->br, p->bufs + (size_t)bid * p->size, p->size,
			      (unsigned short)bid,
			      io_uring_buf_ring_mask(p->count), 0);
	io_uring_buf_ring_advance(p->br, 1);
}

void
ring_wake(struct ring *r, struct ring_task *t)
{
	if (t->queued)
		return;
	t->queued = true;
	t->next = NULL;
	*r->woken_tail = t;
	r->woken_tail = &t->next;
}

struct ring_task *
ring_next_woken(struct ring *r)
{
	struct ring_task *t = r->woken;

	if (t == NULL)
		return NULL;
	r->woken = t->next;
	if (r->woken == NULL)
		r->woken_tail = &r->woken;
	t->queued = false;
	return t;
}

size_t
ring_pick_backend(struct ring *r, struct generation *gen, const char *login,
		  uint64_t tried)
{
	struct backend_pool_cursor c;
	size_t server;

	if (gen == r->gen)
		return backend_pool_pick(gen->backend_pool, &r->cursor, login,
					 tried, timer_now_ms());
	if (backend_pool_cursor_init(&c, gen->backend_pool) != 0)
		return BACKEND_POOL_NONE;
	server = backend_pool_pick(gen->backend_pool, &c, login, tried,
				   timer_now_ms());
	backend_pool_cursor_free(&c);
	return server;
}

/* ---------------------------------------------------------------------
 * Set-up and tear-down
 */

/* Buffer group `group`: count buffers of size bytes, all on the ring. */
static int
setup_group(struct ring *r, unsigned group, unsigned size, unsigned count,
	    char *err, size_t errlen)
{
	struct buf_ring *p = &r->bufs[group];
	struct io_uring_buf_reg reg;
	int rc;

	p->size = size;
	p->count = count;
	p->br_size = sizeof(struct io_uring_buf) * count;
	p->br = mmap(NULL, p->br_size, PROT_READ | PROT_WRITE,
		     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	p->bufs = malloc((size_t)count * size);
	if (p->br == MAP_FAILED || p->bufs == NULL) {
		p->br = NULL;
		snprintf(err, errlen, "out of memory for receive buffers");
		return -1;
	}
	io_uring_buf_ring_init(p->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)p->br;
	reg.ring_entries = count;
	reg.bgid = (unsigned short)group;
	rc = io_uring_register_buf_ring(&r->uring, &reg, 0);
	if (rc < 0) {
		snprintf(err, errlen, "io_uring_register_buf_ring: %s",
			 strerror(-rc));
		return -1;
	}
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(p->br, p->bufs + (size_t)i * size, size,
				      (unsigned short)i,
				      io_uring_buf_ring_mask(count), (int)i);
	io_uring_buf_ring_advance(p->br, (int)count);
	return 0;
}

int
ring_setup(struct ring *r, char *err, size_t errlen)
{
	struct io_uring_params p;
	int rc;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_SUBMIT_ALL;
	rc = io_uring_queue_init_params(RING_ENTRIES, &r->uring, &p);
	if (rc == -EINVAL) {
		/* Older kernel: cooperative task running is enough. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_COOP_TASKRUN;
		rc = io_uring_queue_init_params(RING_ENTRIES, &r->uring, &p);
	}
	if (rc < 0) {
		snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-rc));
		return -1;
	}
	r->uring_ok = true;
	/* io_uring_enter() by the ring's registered index, not its fd: no
	 * look-up in the process's fd table (shared by every thread, so an
	 * atomic on the file each time) per wait.  Older kernels: the fd. */
	(void)io_uring_register_ring_fd(&r->uring);
	if (setup_group(r, RECV_GROUP, RECV_BUF_SIZE, r->gen->cfg->recv_buffers,
			err, errlen) != 0 ||
	    setup_group(r, DATA_GROUP, DATA_BUF_SIZE, r->gen->cfg->data_buffers,
			err, errlen) != 0)
		return -1;
	return 0;
}

void
ring_free(struct ring *r)
{
	if (r->uring_ok)
		io_uring_queue_exit(&r->uring);
	r->uring_ok = false;
	for (unsigned i = 0; i < 2; i++) {
		if (r->bufs[i].br != NULL)
			munmap(r->bufs[i].br, r->bufs[i].br_size);
		free(r->bufs[i].bufs);
		r->bufs[i].br = NULL;
		r->bufs[i].bufs = NULL;
	}
}
