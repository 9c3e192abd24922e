/*
 * blocklist_attach.c - attach the XDP blocklist program to interfaces and
 * take it off: through XDP links, pinned as <pin_dir>/msa_link_<ifname>
 * so that the program stays attached across restarts and a later run (or
 * the test tool) can replace or detach it without the pin directory's
 * permissions.
 *
 * Our program in the same mode is swapped in place (no gap); in another
 * mode, or attached the old way (netlink, no link), it is taken off
 * first.  AUTO tries native, then generic.  A pinned link that went
 * defunct (device gone, detached by someone) is removed.
 *
 * Security stance: only a program named like ours (PROG_NAME, a previous
 * run) is ever replaced or detached, never someone else's XDP program;
 * a hardware-offloaded program is refused; a pinned link on an interface
 * of the same name elsewhere (another network namespace) is an error, not
 * a takeover.  Needs CAP_NET_ADMIN (and CAP_BPF for links).
 *
 * Config keys (read by the caller, bans.c, and passed in):
 * blocklist.xdp.interfaces, blocklist.xdp.mode.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/if_link.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bans/blocklist.h"
#include "bans/blocklist_internal.h"

#define PROG_NAME   "msa_blocklist"
#define LINK_PREFIX "msa_link_"

static __u32
mode_flag(enum blocklist_mode m)
{
	return m == BLOCKLIST_MODE_NATIVE ? XDP_FLAGS_DRV_MODE
					  : XDP_FLAGS_SKB_MODE;
}

/* Is program id ours (by name)?  Returns an fd to it (caller closes) if
 * so, -1 with err if it is someone else's or cannot be inspected. */
static int
own_prog_fd(__u32 id, const char *ifname, char *err, size_t errlen)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);

	if (fd < 0)
		return blocklist_fail(err, errlen, errno,
				      "%s: inspecting attached XDP program %u",
				      ifname, id);
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0) {
		blocklist_fail(err, errlen, errno,
			       "%s: inspecting attached XDP program %u", ifname,
			       id);
		close(fd);
		return -1;
	}
	if (strncmp(info.name, PROG_NAME, sizeof(info.name)) != 0) {
		snprintf(err, errlen,
			 "%s: another XDP program is attached (id %u, name "
			 "\"%.16s\"); not replacing it",
			 ifname, id, info.name);
		close(fd);
		return -1;
	}
	return fd;
}

/* Current attachment: prog id and mode, id 0 when none. */
static int
query(int ifindex, const char *ifname, __u32 *id, enum blocklist_mode *mode,
      char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	int e = bpf_xdp_query(ifindex, 0, &q);

	if (e < 0)
		return blocklist_fail(err, errlen, e, "%s: querying XDP",
				      ifname);
	*id = 0;
	if (q.hw_prog_id != 0) {
		snprintf(err, errlen,
			 "%s: a hardware-offloaded XDP program is attached",
			 ifname);
		return -1;
	}
	if (q.drv_prog_id != 0) {
		*id = q.drv_prog_id;
		*mode = BLOCKLIST_MODE_NATIVE;
	} else if (q.skb_prog_id != 0) {
		*id = q.skb_prog_id;
		*mode = BLOCKLIST_MODE_GENERIC;
	}
	return 0;
}

static int
resolve(const char *ifname, char *err, size_t errlen)
{
	unsigned idx = if_nametoindex(ifname);

	if (idx == 0)
		return blocklist_fail(err, errlen, errno, "interface %s",
				      ifname);
	return (int)idx;
}

/* <pin_dir>/msa_link_<ifname>; false without a pin directory. */
static bool
link_path(const struct blocklist *bl, const char *ifname, char *buf, size_t len)
{
	if (bl->pin_dir == NULL)
		return false;
	return (size_t)snprintf(buf, len, "%s/" LINK_PREFIX "%s", bl->pin_dir,
				ifname) < len;
}

/* The interface an XDP link is attached to; 0 once it is defunct (the
 * device went away, or someone detached it). -1 if fd is no XDP link. */
static int
link_ifindex(int fd)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0 ||
	    info.type != BPF_LINK_TYPE_XDP)
		return -1;
	return (int)info.xdp.ifindex;
}

static struct attachment *
find_att(struct blocklist *bl, const char *ifname)
{
	for (size_t i = 0; i < bl->natt; i++) {
		if (strcmp(bl->att[i].ifname, ifname) == 0)
			return &bl->att[i];
	}
	return NULL;
}

static int
remember(struct blocklist *bl, int ifindex, const char *ifname, int link_fd)
{
	struct attachment *a = find_att(bl, ifname);

	if (a == NULL) {
		if (bl->natt == ATTACH_MAX)
			return -1;
		a = &bl->att[bl->natt++];
	} else if (a->link_fd >= 0 && a->link_fd != link_fd) {
		close(a->link_fd);
	}
	a->ifindex = ifindex;
	a->link_fd = link_fd;
	snprintf(a->ifname, sizeof(a->ifname), "%s", ifname);
	return 0;
}

static void
forget(struct blocklist *bl, const char *ifname)
{
	struct attachment *a = find_att(bl, ifname);

	if (a == NULL)
		return;
	if (a->link_fd >= 0)
		close(a->link_fd);
	*a = bl->att[--bl->natt];
}

/* Drop a link: detach it (if still attached), unpin it.  The unpin may
 * fail after privileges are gone; a defunct pinned link is harmless and
 * the next start removes it. */
static int
drop_link(struct blocklist *bl, const char *ifname, int fd)
{
	char path[PATH_MAX];
	int e = 0;

	if (link_ifindex(fd) > 0 && bpf_link_detach(fd) < 0)
		e = -errno;
	if (link_path(bl, ifname, path, sizeof(path)))
		unlink(path);
	return e;
}

/*
 * Adopt the links pinned by earlier runs (msa_link_<ifname>), so this
 * handle can replace or detach them without opening pins again (which
 * needs the pin directory's permissions, gone after dropping root).
 * Defunct ones are removed.
 */
void
blocklist_adopt_links(struct blocklist *bl)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(bl->pin_dir);

	while (d && (de = readdir(d)) != NULL) {
		const char *ifname = de->d_name + strlen(LINK_PREFIX);
		int fd, idx;

		if (strncmp(de->d_name, LINK_PREFIX, strlen(LINK_PREFIX)) !=
			    0 ||
		    strlen(ifname) >= IF_NAMESIZE ||
		    !link_path(bl, ifname, path, sizeof(path)))
			continue;
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		idx = link_ifindex(fd);
		if (idx == 0)
			unlink(path);
		if (idx <= 0 || remember(bl, idx, ifname, fd) < 0)
			close(fd);
	}
	if (d)
		closedir(d);
}

/* A new link in mode m, pinned when there is a pin directory. */
static int
new_link(struct blocklist *bl, int ifindex, const char *ifname,
	 enum blocklist_mode m, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_link_create_opts, o, .flags = mode_flag(m));
	int prog = bl->prog_fd;
	char path[PATH_MAX];
	int fd;

	fd = bpf_link_create(prog, ifindex, BPF_XDP, &o);
	if (fd < 0)
		return blocklist_fail(err, errlen, errno,
				      "%s: attaching XDP in %s mode", ifname,
				      blocklist_mode_name(m));
	if (link_path(bl, ifname, path, sizeof(path))) {
		unlink(path); /* a stale one, checked by the caller */
		if (bpf_obj_pin(fd, path) < 0) {
			blocklist_fail(err, errlen, errno, "pinning %s", path);
			bpf_link_detach(fd);
			close(fd);
			return -1;
		}
	}
	if (remember(bl, ifindex, ifname, fd) < 0) {
		snprintf(err, errlen, "more than %d interfaces", ATTACH_MAX);
		drop_link(bl, ifname, fd);
		close(fd);
		return -1;
	}
	return 0;
}

/* Take a program of ours off that was attached the old way (netlink, no
 * link: an earlier version, or `ip link set xdp`). */
static int
detach_legacy(int ifindex, const char *ifname, __u32 id, enum blocklist_mode m,
	      char *err, size_t errlen)
{
	int fd = own_prog_fd(id, ifname, err, errlen), e;

	if (fd < 0)
		return -1;
	{
		LIBBPF_OPTS(bpf_xdp_attach_opts, d, .old_prog_fd = fd);

		e = bpf_xdp_detach(ifindex, mode_flag(m), &d);
	}
	close(fd);
	if (e < 0)
		return blocklist_fail(err, errlen, e,
				      "%s: detaching XDP program %u", ifname,
				      id);
	return 0;
}

/* Our link for ifname, held or pinned and still on this interface:
 * its fd (owned by bl), or -1.  A pinned link that has gone defunct is
 * removed; one on another interface of the same name (another network
 * namespace) is an error (-2). */
static int
our_link(struct blocklist *bl, int ifindex, const char *ifname, char *err,
	 size_t errlen)
{
	struct attachment *a = find_att(bl, ifname);
	char path[PATH_MAX];
	int fd, idx;

	if (a == NULL && link_path(bl, ifname, path, sizeof(path))) {
		fd = bpf_obj_get(path);
		if (fd >= 0 && remember(bl, 0, ifname, fd) < 0)
			close(fd);
		a = find_att(bl, ifname);
	}
	if (a == NULL || a->link_fd < 0)
		return -1;
	idx = link_ifindex(a->link_fd);
	if (idx == ifindex)
		return a->link_fd;
	if (idx > 0) {
		snprintf(err, errlen,
			 "%s: the pinned link is on another interface "
			 "(ifindex %d, not %d): another network namespace?",
			 ifname, idx, ifindex);
		return -2;
	}
	drop_link(bl, ifname, a->link_fd);
	forget(bl, ifname);
	return -1;
}

int
blocklist_attach(struct blocklist *bl, const char *ifname,
		 enum blocklist_mode mode, enum blocklist_mode *used, char *err,
		 size_t errlen)
{
	libbpf_print_fn_t old = blocklist_capture_begin();
	enum blocklist_mode cur_mode = BLOCKLIST_MODE_GENERIC, m;
	int ifindex, lfd, rc = -1;
	__u32 cur_id = 0;

	ifindex = resolve(ifname, err, errlen);
	if (ifindex < 0)
		goto done;
	lfd = our_link(bl, ifindex, ifname, err, errlen);
	if (lfd == -2 ||
	    query(ifindex, ifname, &cur_id, &cur_mode, err, errlen) < 0)
		goto done;
	m = mode == BLOCKLIST_MODE_AUTO ? BLOCKLIST_MODE_NATIVE : mode;
	if (lfd >= 0 && cur_id != 0 &&
	    (mode == BLOCKLIST_MODE_AUTO || mode == cur_mode)) {
		/* Ours, same mode: swap the program in place, no gap. */
		if (bpf_link_update(lfd, bl->prog_fd, NULL) < 0) {
			blocklist_fail(err, errlen, errno,
				       "%s: replacing the XDP program", ifname);
			goto done;
		}
		m = cur_mode;
		goto attached;
	}
	/* Another mode (the kernel refuses native and generic together),
	 * or attached without a link: take ours off first. */
	if (lfd >= 0) {
		drop_link(bl, ifname, lfd);
		forget(bl, ifname);
	} else if (cur_id != 0 && detach_legacy(ifindex, ifname, cur_id,
						cur_mode, err, errlen) < 0) {
		goto done;
	}
	if (new_link(bl, ifindex, ifname, m, err, errlen) < 0) {
		char first[ERR_SCRATCH];

		if (mode != BLOCKLIST_MODE_AUTO || m != BLOCKLIST_MODE_NATIVE)
			goto done;
		snprintf(first, sizeof(first), "%s", err);
		blocklist_msg_clear();
		m = BLOCKLIST_MODE_GENERIC;
		if (new_link(bl, ifindex, ifname, m, err, errlen) < 0) {
			char second[ERR_SCRATCH];

			snprintf(second, sizeof(second), "%s", err);
			snprintf(err, errlen, "%s; then %s", first, second);
			goto done;
		}
	}
attached:
	if (used)
		*used = m;
	rc = 0;
done:
	blocklist_capture_end(old);
	return rc;
}

int
blocklist_detach(struct blocklist *bl, const char *ifname, char *err,
		 size_t errlen)
{
	enum blocklist_mode m = BLOCKLIST_MODE_GENERIC;
	int ifindex, lfd, e;
	__u32 id;

	blocklist_msg_clear();
	ifindex = resolve(ifname, err, errlen);
	if (ifindex < 0)
		return -1;
	lfd = our_link(bl, ifindex, ifname, err, errlen);
	if (lfd == -2)
		return -1;
	if (lfd >= 0) {
		e = drop_link(bl, ifname, lfd);
		forget(bl, ifname);
		if (e < 0)
			return blocklist_fail(err, errlen, e,
					      "%s: detaching XDP", ifname);
		return 0;
	}
	if (query(ifindex, ifname, &id, &m, err, errlen) < 0)
		return -1;
	if (id == 0)
		return 0;
	return detach_legacy(ifindex, ifname, id, m, err, errlen);
}

int
blocklist_detach_all(struct blocklist *bl, char *err, size_t errlen)
{
	char one[ERR_SCRATCH];
	int rc = 0;

	blocklist_msg_clear();
	while (bl->natt > 0) {
		struct attachment *a = &bl->att[bl->natt - 1];
		int e = a->link_fd >= 0 ? drop_link(bl, a->ifname, a->link_fd)
					: 0;

		if (e < 0 && rc == 0) {
			blocklist_fail(one, sizeof(one), e, "%s: detaching XDP",
				       a->ifname);
			snprintf(err, errlen, "%s", one);
			rc = -1;
		}
		forget(bl, a->ifname);
	}
	return rc;
}

int
blocklist_attached(struct blocklist *bl, const char *ifname,
		   enum blocklist_mode *mode, char *err, size_t errlen)
{
	int ifindex, fd;
	__u32 id;

	(void)bl; /* any run's program counts as ours */
	blocklist_msg_clear();
	ifindex = resolve(ifname, err, errlen);
	if (ifindex < 0 || query(ifindex, ifname, &id, mode, err, errlen) < 0)
		return -1;
	if (id == 0)
		return 0;
	fd = own_prog_fd(id, ifname, err, errlen);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}
