/*
 * blocklist.c - user-space side of the XDP blocklist: load the libbpf
 * skeleton of bpf/blocklist.bpf.c with its maps pinned, close it, and the
 * names of its modes, scopes and reasons.  Attaching is
 * blocklist_attach.c's; editing, reading and sweeping the maps (and the
 * accept() fallback) blocklist_maps.c's.
 *
 * The kernel program and user space read the same maps; nothing is kept
 * in user space but file descriptors, so several processes (the proxy,
 * the test tool, a restarted proxy) can share one pinned set of maps and
 * see each other's changes at once.  Only this file includes the
 * skeleton.
 *
 * Security stance: maps already pinned are reused only with our layout
 * (libbpf refuses another); the pin directory is created mode 0700.
 * Nothing is logged; libbpf's own messages are captured during open and
 * attach and appended to err (blocklist_fail()).
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

#define LIBBPF_MSG 256

/* ---- libbpf's messages ---------------------------------------------- */

/* libbpf print capture (open and attach only; see blocklist.h). */
static char libbpf_msg[LIBBPF_MSG];

void
blocklist_msg_clear(void)
{
	libbpf_msg[0] = '\0';
}

static int
capture_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	size_t n;

	if (level != LIBBPF_WARN)
		return 0;
	vsnprintf(libbpf_msg, sizeof(libbpf_msg), fmt, ap);
	n = strlen(libbpf_msg);
	while (n > 0 && (libbpf_msg[n - 1] == '\n' || libbpf_msg[n - 1] == ' '))
		libbpf_msg[--n] = '\0';
	return 0;
}

libbpf_print_fn_t
blocklist_capture_begin(void)
{
	blocklist_msg_clear();
	return libbpf_set_print(capture_print);
}

void
blocklist_capture_end(libbpf_print_fn_t old)
{
	libbpf_set_print(old);
}

/* "what: strerror (libbpf: last warning)" into err. */
int
blocklist_fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
	char what[ERR_SCRATCH];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (e < 0)
		e = -e;
	if (libbpf_msg[0] != '\0')
		snprintf(err, errlen, "%s: %s (libbpf: %s)", what, strerror(e),
			 libbpf_msg);
	else
		snprintf(err, errlen, "%s: %s", what, strerror(e));
	return -1;
}

/* ---- open and close ------------------------------------------------ */

struct blocklist *
blocklist_open(const char *pin_dir, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	libbpf_print_fn_t old = blocklist_capture_begin();
	struct blocklist *bl = calloc(1, sizeof(*bl));
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
	if (bl->pin_dir != NULL)
		blocklist_adopt_links(bl);
	blocklist_capture_end(old);
	return bl;
fail:
	if (bl != NULL) {
		blocklist_bpf__destroy(bl->skel);
		free(bl->pin_dir);
		pthread_mutex_destroy(&bl->lock);
		free(bl);
	}
	blocklist_capture_end(old);
	return NULL;
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

/* ---- names ------------------------------------------------------------ */

const char *
blocklist_reason_name(enum blocklist_reason r)
{
	switch (r) {
	case BLOCKLIST_REASON_FILE:
		return "file";
	case BLOCKLIST_REASON_MANUAL:
		return "manual";
	case BLOCKLIST_REASON_AUTO:
		return "auto";
	case BLOCKLIST_REASON_COUNT:
		break;
	}
	return "?";
}

const char *
blocklist_mode_name(enum blocklist_mode m)
{
	switch (m) {
	case BLOCKLIST_MODE_AUTO:
		return "auto";
	case BLOCKLIST_MODE_NATIVE:
		return "native";
	case BLOCKLIST_MODE_GENERIC:
		return "generic";
	}
	return "?";
}

int
blocklist_mode_parse(const char *s, enum blocklist_mode *out)
{
	if (strcmp(s, "auto") == 0)
		*out = BLOCKLIST_MODE_AUTO;
	else if (strcmp(s, "native") == 0)
		*out = BLOCKLIST_MODE_NATIVE;
	else if (strcmp(s, "generic") == 0)
		*out = BLOCKLIST_MODE_GENERIC;
	else
		return -1;
	return 0;
}

int
blocklist_scope_parse(const char *s, enum blocklist_scope *out)
{
	if (strcmp(s, "all") == 0)
		*out = BLOCKLIST_SCOPE_ALL;
	else if (strcmp(s, "tcp-ports") == 0)
		*out = BLOCKLIST_SCOPE_TCP_PORTS;
	else
		return -1;
	return 0;
}
