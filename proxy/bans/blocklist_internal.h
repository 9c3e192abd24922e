/*
 * blocklist_internal.h - internal to proxy/bans/blocklist*.c: the handle
 * that loading (blocklist.c), attaching (blocklist_attach.c) and the maps
 * (blocklist_maps.c) share, and the capture of libbpf's messages into
 * err.  Everything else sees blocklist.h.
 */
#ifndef MSAPROXY_BLOCKLIST_INTERNAL_H
#define MSAPROXY_BLOCKLIST_INTERNAL_H

#include <net/if.h>
#include <pthread.h>
#include <stddef.h>

#include <bpf/libbpf.h>

#include "bans/blocklist.h"

#define ATTACH_MAX  16
#define ERR_SCRATCH 256

struct blocklist_bpf; /* the skeleton: blocklist.c alone includes it */

/* An interface we attached to, with the XDP link holding the program
 * there (pinned as <pin_dir>/msa_link_<ifname> when pinning). */
struct attachment {
	int ifindex;
	int link_fd;
	char ifname[IF_NAMESIZE];
};

struct blocklist {
	struct blocklist_bpf *skel;
	char *pin_dir;	 /* NULL: nothing pinned */
	int prog_fd;	 /* the XDP program, for links */
	int fd_block[2]; /* [0] IPv4, [1] IPv6 */
	int fd_allow[2];
	int fd_config;
	int fd_stats;
	int ncpus;
	pthread_mutex_t lock; /* serialises read-modify-write edits */
	struct attachment att[ATTACH_MAX];
	size_t natt;
	size_t carried; /* entries carried over from the first layout */
};

/* blocklist_migrate.c: the prefix tries of the first value layout (an
 * older build's pins) read and unpinned before the load, and written into
 * the new maps after it.  Until then the old tries stay open, so that a
 * start that fails pins them back (blocklist_carry_restore). */
#define BLOCKLIST_TRIES 4 /* block4, block6, allow4, allow6 */
struct carried;
struct blocklist_carry {
	struct carried *v;
	size_t n, cap;
	unsigned held;		     /* bit t: old_fd[t] open, its pin gone */
	int old_fd[BLOCKLIST_TRIES]; /* the old tries, valid where held */
};
int blocklist_carry_out(const char *pin_dir, struct blocklist_carry *c,
			char *err, size_t errlen);
int blocklist_carry_in(struct blocklist *bl, const struct blocklist_carry *c,
		       char *err, size_t errlen);
void blocklist_carry_restore(const char *pin_dir, struct blocklist_carry *c,
			     char *err, size_t errlen);
void blocklist_carry_free(struct blocklist_carry *c);

/* libbpf's first warning (the cause) and last (where it gave up), captured
 * between begin and end (open and attach) and appended to err by
 * blocklist_fail(); cleared by each call that may fail so that an old one
 * is not reported with a new error. */
libbpf_print_fn_t blocklist_capture_begin(void);
void blocklist_capture_end(libbpf_print_fn_t old);
void blocklist_msg_clear(void);
/* "what: strerror(|e|) (libbpf: first warning; last warning)" into err;
 * returns -1. */
int blocklist_fail(char *err, size_t errlen, int e, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* blocklist_attach.c: take over the links pinned by earlier runs. */
void blocklist_adopt_links(struct blocklist *bl);

#endif
