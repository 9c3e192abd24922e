/*
 * buf.c - bounded byte buffers.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "lib/buf.h"

/* Free the storage (wiped first when secret). */
static void
buf_release(struct buf *b)
{
	if (b->secret && b->data != NULL)
		OPENSSL_cleanse(b->data, b->len);
	free(b->data);
	b->data = NULL;
	b->off = b->len = 0;
}

/* Slide the unread bytes to the front; a secret buffer wipes the tail they
 * left (a stale copy of what was consumed or moved). */
static void
buf_compact(struct buf *b)
{
	uint32_t used = b->len - b->off;

	memmove(b->data, b->data + b->off, used);
	if (b->secret)
		OPENSSL_cleanse(b->data + used, b->len - used);
	b->len = used;
	b->off = 0;
}

void
buf_init(struct buf *b, size_t cap)
{
	memset(b, 0, sizeof(*b));
	b->cap = (uint32_t)cap;
}

void
buf_free(struct buf *b)
{
	buf_release(b);
	b->pinned = false;
}

/* Drop storage of an empty buffer, or slide the bytes to the front. */
static void
buf_tidy(struct buf *b)
{
	if (b->pinned)
		return;
	if (b->off == b->len)
		buf_release(b);
	else if (b->off > 0 && b->off >= b->cap / 2)
		buf_compact(b);
}

/* All free space is at the tail once the bytes slide to the front, so a
 * caller that sees room N can always append N. */
size_t
buf_room(struct buf *b)
{
	if (!b->pinned && b->off > 0)
		buf_compact(b);
	return b->cap - b->len;
}

char *
buf_tail(struct buf *b)
{
	if (b->data == NULL) {
		b->data = malloc(b->cap);
		if (b->data == NULL)
			return NULL;
		b->off = b->len = 0;
	}
	buf_room(b);
	return b->data + b->len;
}

void
buf_commit(struct buf *b, size_t n)
{
	b->len += (uint32_t)n;
}

size_t
buf_append(struct buf *b, const void *p, size_t n)
{
	char *t;
	size_t room;

	if (n == 0)
		return 0;
	if ((t = buf_tail(b)) == NULL)
		return 0;
	room = b->cap - b->len;
	if (n > room)
		n = room;
	memcpy(t, p, n);
	b->len += (uint32_t)n;
	return n;
}

int
buf_append_all(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (buf_tail(b) == NULL || b->cap - b->len < n)
		return -1;
	buf_append(b, p, n);
	return 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	b->off += (uint32_t)n;
	buf_tidy(b);
}

void
buf_clear(struct buf *b)
{
	b->off = b->len;
	buf_tidy(b);
}

void
buf_unpin(struct buf *b)
{
	b->pinned = false;
	buf_tidy(b);
}
