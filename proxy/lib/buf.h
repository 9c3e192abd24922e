/*
 * buf.h - a bounded byte buffer.
 *
 * Storage is allocated on first use and freed when the buffer drains, so an
 * idle session holds no buffer memory.  The capacity is fixed: a buffer
 * never grows past it, which bounds what any peer can make us hold.
 *
 * While an I/O operation reads from the buffer ("pinned"), bytes may still
 * be appended at the tail but nothing moves: compaction and freeing wait
 * until the buffer is unpinned.
 *
 * A buffer marked secret (it may hold credentials: a session's input until
 * AUTH succeeds) never leaves a copy behind: bytes vacated by compaction
 * and storage about to be freed are wiped with OPENSSL_cleanse().
 */
#ifndef MSAPROXY_BUF_H
#define MSAPROXY_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data;
	uint32_t off; /* first unread byte */
	uint32_t len; /* end of stored bytes */
	uint32_t cap;
	bool pinned;
	bool secret; /* wipe what is vacated or freed */
};

void buf_init(struct buf *b, size_t cap);
void buf_free(struct buf *b);

static inline size_t
buf_used(const struct buf *b)
{
	return b->len - b->off;
}

static inline const char *
buf_head(const struct buf *b)
{
	return b->data + b->off;
}

/* Free space; the bytes move to the front first unless pinned. */
size_t buf_room(struct buf *b);
/* Pointer to the free tail (buf_room() bytes); NULL if out of memory. */
char *buf_tail(struct buf *b);
void buf_commit(struct buf *b, size_t n);
/* Append up to n bytes; returns how many fit. */
size_t buf_append(struct buf *b, const void *p, size_t n);
/* Append all n bytes or nothing; returns 0 or -1. */
int buf_append_all(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);
void buf_clear(struct buf *b);
void buf_unpin(struct buf *b);

#endif
