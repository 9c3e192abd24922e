/*
 * blocklist_migrate.c - pinned prefix tries of the first value layout
 * carried over to the current one, so that an upgrade keeps its bans.
 *
 * The first layout's value was 16 bytes: the current struct
 * blocklist_value without its drop counter (the fields before it are the
 * same).  libbpf refuses to reuse a pinned map whose value size differs,
 * so before the skeleton loads, blocklist_carry_out() reads every entry of
 * such a trie, and unpins it; once the new maps exist,
 * blocklist_carry_in() writes the entries back with no drops counted.
 * The old maps live on only while the old program, still attached through
 * its pinned link, holds them; attaching the new program lets them go.
 *
 * Until the new maps hold the entries, the old tries are kept open: a
 * start that fails between the unpin and the write (the load refused, a
 * write failed) pins them back where they were, with
 * blocklist_carry_restore(), so that the bans are neither lost nor left
 * only in memory, and the next start carries them again.
 *
 * A pinned trie of any other size is left alone: libbpf refuses it with
 * its own message, as before.  Runs at start, as root.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "bans/blocklist_internal.h"

/* The first layout: the value without drops (expires_ns, reason,
 * prefixlen, pad[3]). */
#define OLD_VALUE_SIZE offsetof(struct blocklist_value, drops)
#define KEY_MAX	       sizeof(struct blocklist_key6)
_Static_assert(OLD_VALUE_SIZE == 16, "the first value layout is 16 bytes");

static const char *const trie_names[BLOCKLIST_TRIES] = {
	"msa_block4", "msa_block6", "msa_allow4", "msa_allow6"};

struct carried {
	unsigned trie; /* index into trie_names */
	unsigned char key[KEY_MAX];
	struct blocklist_value value;
};

void
blocklist_carry_free(struct blocklist_carry *c)
{
	for (unsigned t = 0; t < BLOCKLIST_TRIES; t++)
		if (c->held & 1u << t)
			close(c->old_fd[t]);
	free(c->v);
	*c = (struct blocklist_carry){0};
}

static void
pin_path(char *path, size_t size, const char *pin_dir, unsigned trie)
{
	snprintf(path, size, "%s/%s", pin_dir, trie_names[trie]);
}

void
blocklist_carry_restore(const char *pin_dir, struct blocklist_carry *c,
			char *err, size_t errlen)
{
	for (unsigned t = 0; t < BLOCKLIST_TRIES; t++) {
		char path[512];
		size_t used = strlen(err);

		if (!(c->held & 1u << t))
			continue;
		pin_path(path, sizeof(path), pin_dir, t);
		/* What is there now is a new map of this failed start's. */
		if ((unlink(path) != 0 && errno != ENOENT) ||
		    bpf_obj_pin(c->old_fd[t], path) != 0) {
			snprintf(err + used, errlen - used,
				 "; pinning the older build's %s back: %s",
				 trie_names[t], strerror(errno));
			continue;
		}
		close(c->old_fd[t]);
		c->held &= ~(1u << t);
	}
}

static int
push(struct blocklist_carry *c, unsigned trie, const void *key, size_t key_size,
     const void *old)
{
	struct carried *e;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct carried *v = realloc(c->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		c->v = v;
		c->cap = cap;
	}
	e = &c->v[c->n++];
	memset(e, 0, sizeof(*e));
	e->trie = trie;
	memcpy(e->key, key, key_size);
	memcpy(&e->value, old, OLD_VALUE_SIZE); /* drops: 0 */
	return 0;
}

/* Every entry of one old-layout trie (fd) into c; bounded by its size. */
static int
read_trie(int fd, unsigned trie, const struct bpf_map_info *info,
	  struct blocklist_carry *c, char *err, size_t errlen)
{
	unsigned char key[KEY_MAX], next[KEY_MAX], value[OLD_VALUE_SIZE];
	void *prev = NULL;

	for (__u32 seen = 0; seen <= info->max_entries; seen++) {
		if (bpf_map_get_next_key(fd, prev, next) != 0)
			return errno == ENOENT
				       ? 0
				       : blocklist_fail(err, errlen, -errno,
							"reading the pinned %s",
							trie_names[trie]);
		memcpy(key, next, info->key_size);
		prev = key;
		if (bpf_map_lookup_elem(fd, key, value) != 0)
			continue; /* gone meanwhile */
		if (push(c, trie, key, info->key_size, value) != 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
}

int
blocklist_carry_out(const char *pin_dir, struct blocklist_carry *c, char *err,
		    size_t errlen)
{
	*c = (struct blocklist_carry){0};
	for (unsigned t = 0; t < BLOCKLIST_TRIES; t++) {
		struct bpf_map_info info;
		__u32 len = sizeof(info);
		char path[512];
		int fd, rc;

		pin_path(path, sizeof(path), pin_dir, t);
		if ((fd = bpf_obj_get(path)) < 0)
			continue; /* not pinned yet: nothing to carry */
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 ||
		    info.value_size != OLD_VALUE_SIZE ||
		    info.key_size > KEY_MAX) {
			close(fd);
			continue;
		}
		rc = read_trie(fd, t, &info, c, err, errlen);
		if (rc == 0 && unlink(path) != 0)
			rc = blocklist_fail(err, errlen, -errno, "unpinning %s",
					    path);
		if (rc != 0) {
			close(fd);
			blocklist_carry_restore(pin_dir, c, err, errlen);
			blocklist_carry_free(c);
			return -1;
		}
		c->old_fd[t] = fd;
		c->held |= 1u << t;
	}
	return 0;
}

int
blocklist_carry_in(struct blocklist *bl, const struct blocklist_carry *c,
		   char *err, size_t errlen)
{
	const int fds[BLOCKLIST_TRIES] = {bl->fd_block[0], bl->fd_block[1],
					  bl->fd_allow[0], bl->fd_allow[1]};

	for (size_t i = 0; i < c->n; i++) {
		const struct carried *e = &c->v[i];

		if (bpf_map_update_elem(fds[e->trie], e->key, &e->value,
					BPF_ANY) != 0)
			return blocklist_fail(err, errlen, -errno,
					      "writing a carried %s entry",
					      trie_names[e->trie]);
	}
	return 0;
}
