/*
 * fuzz_buf.c - libFuzzer target: the bounded buffer (buf.c) under random
 * sequences of operations, against a plain FIFO model.
 *
 * Input: bytes 0-1 give the capacity (1..512), then pairs of (operation,
 * argument): append, append-all, tail + commit, consume, clear, pin (what
 * a send in flight does), unpin, free.
 *
 * Checked after every operation: the bytes in the buffer are the model's;
 * off <= len <= cap; append takes a prefix and stops short only at the
 * end of the storage, append-all is all or nothing; buf_room() bytes at
 * buf_tail() are writable (the storage is exactly cap bytes, so ASan sees
 * more); while pinned the storage does not move and the bytes a send is
 * reading stay put; an unpinned buffer that drains holds no storage.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "fuzz_check.h"

#define CAP_MAX 512

enum op {
	OP_APPEND,
	OP_APPEND_ALL,
	OP_TAIL_COMMIT,
	OP_CONSUME,
	OP_CLEAR,
	OP_PIN,
	OP_UNPIN,
	OP_FREE,
	OP_COUNT,
};

struct model {
	char bytes[CAP_MAX];
	size_t used;
	unsigned char next; /* the next byte value to write */
	/* while pinned: where the send reads, and what it must find */
	const char *pin_data;
	size_t pin_off, pin_len;
	char pin_bytes[CAP_MAX];
};

static void
check(const struct buf *b, const struct model *m)
{
	CHECK(b->off <= b->len && b->len <= b->cap, "off %u len %u cap %u",
	      b->off, b->len, b->cap);
	CHECK(buf_used(b) == m->used, "used %zu, model %zu", buf_used(b),
	      m->used);
	CHECK(m->used == 0 || memcmp(buf_head(b), m->bytes, m->used) == 0,
	      "contents differ from the model");
	if (b->pinned) {
		CHECK(b->data == m->pin_data, "storage moved while pinned");
		CHECK(memcmp(b->data + m->pin_off, m->pin_bytes, m->pin_len) ==
			      0,
		      "bytes under a send changed");
	}
}

/* Make n bytes of the model's running pattern. */
static void
pattern(struct model *m, char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)m->next++;
}

static void
model_push(struct model *m, const char *p, size_t n)
{
	CHECK(m->used + n <= CAP_MAX, "model overflow");
	memcpy(m->bytes + m->used, p, n);
	m->used += n;
}

static void
model_pop(struct model *m, size_t n)
{
	memmove(m->bytes, m->bytes + n, m->used - n);
	m->used -= n;
}

static void
run_op(struct buf *b, struct model *m, enum op op, unsigned arg)
{
	char tmp[CAP_MAX + 256];
	size_t n, k, room;
	char *t;

	switch (op) {
	case OP_APPEND:
		n = arg;
		pattern(m, tmp, n);
		k = buf_append(b, tmp, n);
		CHECK(k <= n && m->used + k <= b->cap, "appended %zu of %zu", k,
		      n);
		CHECK(k == n || b->len == b->cap,
		      "append stopped at %zu of %zu with room left", k, n);
		model_push(m, tmp, k);
		break;
	case OP_APPEND_ALL:
		n = arg;
		pattern(m, tmp, n);
		if (buf_append_all(b, tmp, n) == 0) {
			CHECK(m->used + n <= b->cap, "append_all overfilled");
			model_push(m, tmp, n);
		} else {
			CHECK(n > 0, "append_all of nothing failed");
		}
		break;
	case OP_TAIL_COMMIT:
		room = buf_room(b);
		CHECK(room <= b->cap - buf_used(b), "room %zu", room);
		if (room == 0)
			break;
		t = buf_tail(b);
		CHECK(t != NULL, "out of memory");
		CHECK(buf_room(b) == room, "room changed by buf_tail()");
		n = arg % (room + 1);
		pattern(m, tmp, room);
		memcpy(t, tmp, room); /* all of the room is writable */
		buf_commit(b, n);
		model_push(m, tmp, n);
		break;
	case OP_CONSUME:
		n = arg % (m->used + 1);
		buf_consume(b, n);
		model_pop(m, n);
		break;
	case OP_CLEAR:
		buf_clear(b);
		model_pop(m, m->used);
		break;
	case OP_PIN:
		if (b->pinned || buf_used(b) == 0)
			break;
		b->pinned = true; /* as session.c does before a send */
		m->pin_data = b->data;
		m->pin_off = b->off;
		m->pin_len = buf_used(b);
		memcpy(m->pin_bytes, buf_head(b), m->pin_len);
		break;
	case OP_UNPIN:
		buf_unpin(b);
		break;
	case OP_FREE:
		if (b->pinned)
			break; /* a send still reads it */
		buf_free(b);
		CHECK(b->data == NULL && buf_used(b) == 0, "after buf_free()");
		model_pop(m, m->used);
		break;
	default:
		break;
	}
	if (!b->pinned && buf_used(b) == 0 &&
	    (op == OP_CONSUME || op == OP_CLEAR || op == OP_UNPIN))
		CHECK(b->data == NULL, "drained buffer keeps its storage");
	check(b, m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct model m;
	struct buf b;
	size_t cap;

	if (size < 2)
		return 0;
	cap = 1 + ((size_t)data[0] | (size_t)data[1] << 8) % CAP_MAX;
	memset(&m, 0, sizeof(m));
	buf_init(&b, cap);
	CHECK(b.cap == cap && b.data == NULL && buf_used(&b) == 0, "init");
	for (size_t i = 2; i + 1 < size; i += 2)
		run_op(&b, &m, (enum op)(data[i] % OP_COUNT), data[i + 1]);
	b.pinned = false; /* the send completed */
	buf_free(&b);
	return 0;
}
