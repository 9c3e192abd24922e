/*
 * ring.h - a worker's io_uring as session.c, backend.c and health.c see
 * it: the operations tagged on each submission, the provided-buffer
 * groups and buffer sizes, and the calls that prepare a submission and
 * hand receive buffers back.  Private to proxy/io/.
 *
 * A completion's user_data is {object pointer | op}: every object on the
 * ring is at least 16-byte aligned, so the op rides in the low bits, and
 * worker.c dispatches on it.
 */
#ifndef MSAPROXY_RING_H
#define MSAPROXY_RING_H

#include <liburing.h>

struct worker;

/* Ring operations, packed into the low bits of user_data. */
enum ring_op {
	OP_IGNORE = 0, /* cancels, closes: nothing to do */
	OP_ACCEPT,
	OP_CLIENT_RECV,
	OP_CLIENT_SEND,
	OP_BACKEND_CONNECT,
	OP_BACKEND_RECV,
	OP_BACKEND_SEND,
	OP_WAKE,
	OP_CHECK_CONNECT, /* health.c */
	OP_CHECK_RECV,
	OP_CHECK_SEND,
	OP_REFUSAL, /* a 421 to a connection refused at accept */
};
#define OP_BITS	       4u
#define OP_MASK	       ((1u << OP_BITS) - 1)

#define RECV_BUF_SIZE  16384u /* one TLS record fits */
#define RECV_BUF_COUNT 512u
#define RECV_GROUP     0u     /* provided-buffer groups on the ring */
#define DATA_GROUP     1u     /* a TLS session's message bytes */
#define DATA_BUF_SIZE  65536u /* four TLS records */
#define DATA_BUF_COUNT 64u

/* A submission entry, flushing the queue to the kernel when it is full. */
struct io_uring_sqe *worker_sqe(struct worker *w);
/* Tag sqe with its object and op.  The caller counts the reference the
 * completion will drop (s->inflight, be->refs, ...). */
void worker_prep(struct io_uring_sqe *sqe, void *ptr, enum ring_op op);

/* A completed receive's buffer, and giving it back to its group. */
const char *worker_recv_buf(const struct worker *w, unsigned bid);
void worker_recv_buf_return(struct worker *w, unsigned bid);
const char *worker_data_buf(const struct worker *w, unsigned bid);
void worker_data_buf_return(struct worker *w, unsigned bid);

#endif
