/*
 * blocklist.c - user-space side of the XDP blocklist: load the libbpf
 * skeleton of bpf/blocklist.bpf.c with its maps pinned, and close it.
 * Attaching is blocklist_attach.c's; editing, reading and sweeping the
 * maps (and the accept() fallback) blocklist_maps.c's; libbpf's messages
 * blocklist_msg.c's; the names of modes, scopes and reasons
 * blocklist_names.c's.
 *
 * The kernel program and user space read the same maps; nothing is kept
 * in user space but file descriptors, so several processes (the proxy,
 * the test tool, a restarted proxy) can share one pinned set of maps and
 * see each other's changes at once.  Only this file includes the
 * skeleton.
 *
 * Security stance: maps already pinned are reused only with our layout
 * (libbpf refuses another; the first layout's tries are carried over by
 * blocklist_migrate.c); the pin directory is created mode 0700.
 * Nothing is logged; libbpf's own messages are captured during open and
 * attach and appended to err (blocklist_msg.c).
 *
 * Config keys (read by the caller, bans.c, and passed in):
 * blocklist.xdp.pin_dir.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bans/blocklist.h"
#include "bans/blocklist_internal.h"
#include "blocklist.skel.h"

/* ---- open and close ------------------------------------------------ */

struct blocklist *
blocklist_open(const char *pin_dir, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	libbpf_print_fn_t old = blocklist_capture_begin();
	struct blocklist *bl = calloc(1, sizeof(*bl));
	struct blocklist_carry carry = {0};
	int e;

	if (bl == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	pthread_mutex_init(&bl->lock, NULL);
	if (pin_dir != NULL) {
		if (mkdir(pin_dir, 0700) < 0 && errno != EEXIST) {
			blocklist_fail(err, errlen, errno, "%s", pin_dir);
			goto fail;
		}
		opts.pin_root_path = pin_dir;
		if (blocklist_carry_out(pin_dir, &carry, err, errlen) != 0)
			goto fail;
		bl->pin_dir = strdup(pin_dir);
		if (bl->pin_dir == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	bl->skel = blocklist_bpf__open_opts(&opts);
	if (bl->skel == NULL) {
		blocklist_fail(err, errlen, errno, "opening the BPF object");
		goto fail;
	}
	if (pin_dir == NULL) {
		struct bpf_map *m;

		bpf_object__for_each_map(m, bl->skel->obj)
			bpf_map__set_pin_path(m, NULL);
	}
	e = blocklist_bpf__load(bl->skel);
	if (e < 0) {
		blocklist_fail(err, errlen, e, "loading the XDP blocklist%s%s",
			       pin_dir ? " with maps pinned in " : "",
			       pin_dir ? pin_dir : "");
		goto fail;
	}
	bl->fd_block[0] = bpf_map__fd(bl->skel->maps.msa_block4);
	bl->fd_block[1] = bpf_map__fd(bl->skel->maps.msa_block6);
	bl->fd_allow[0] = bpf_map__fd(bl->skel->maps.msa_allow4);
	bl->fd_allow[1] = bpf_map__fd(bl->skel->maps.msa_allow6);
	bl->fd_config = bpf_map__fd(bl->skel->maps.msa_config);
	bl->fd_stats = bpf_map__fd(bl->skel->maps.msa_stats);
	bl->prog_fd = bpf_program__fd(bl->skel->progs.msa_blocklist);
	bl->ncpus = libbpf_num_possible_cpus();
	if (bl->ncpus <= 0) {
		blocklist_fail(err, errlen, bl->ncpus,
			       "counting possible CPUs");
		goto fail;
	}
	if (blocklist_carry_in(bl, &carry, err, errlen) != 0)
		goto fail;
	bl->carried = carry.n;
	blocklist_carry_free(&carry);
	if (bl->pin_dir != NULL)
		blocklist_adopt_links(bl);
	blocklist_capture_end(old);
	return bl;
fail:
	/* The older build's tries go back where they were, for the next
	 * start (blocklist_migrate.c). */
	if (carry.held != 0)
		blocklist_carry_restore(pin_dir, &carry, err, errlen);
	blocklist_carry_free(&carry);
	if (bl != NULL) {
		blocklist_bpf__destroy(bl->skel);
		free(bl->pin_dir);
		pthread_mutex_destroy(&bl->lock);
		free(bl);
	}
	blocklist_capture_end(old);
	return NULL;
}

size_t
blocklist_carried(const struct blocklist *bl)
{
	return bl->carried;
}

void
blocklist_close(struct blocklist *bl)
{
	if (bl == NULL)
		return;
	/* Closing fds only: pinned maps and pinned links stay, so the
	 * program stays attached.  Without a pin directory, closing the
	 * last link fd detaches. */
	for (size_t i = 0; i < bl->natt; i++) {
		if (bl->att[i].link_fd >= 0)
			close(bl->att[i].link_fd);
	}
	blocklist_bpf__destroy(bl->skel);
	free(bl->pin_dir);
	pthread_mutex_destroy(&bl->lock);
	free(bl);
}
