/*
 * blocklist.c - user-space side of the XDP blocklist: load the libbpf
 * skeleton of bpf/blocklist.bpf.c with its maps pinned, attach it to
 * interfaces, and edit, read and sweep its tries.
 *
 * The kernel program and this file read the same maps; nothing is kept in
 * user space but file descriptors, so several processes (the proxy, the
 * test tool, a restarted proxy) can share one pinned set of maps and see
 * each other's changes at once.  blocklist_match() answers the program's
 * question from those maps for the accept() fallback: same tries, same
 * longest-live-prefix rule, same scope.
 *
 * Security stance: inputs are struct ipnet values already validated by
 * ipnet.c; TTLs and ports are range-checked here.  Attach replaces only a
 * program named like ours (a previous run), never someone else's XDP
 * program.  Nothing is logged; libbpf's own messages are captured during
 * open and attach and appended to err.
 *
 * Config keys (read by the caller, passed in): xdp.interfaces, xdp.mode,
 * xdp.pin_dir, xdp.scope, xdp.ports, xdp.blocklist files.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/if_link.h>
#include <netinet/in.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bans/blocklist.h"
#include "blocklist.skel.h"

#define PROG_NAME   "msa_blocklist"
#define LINK_PREFIX "msa_link_"
#define ATTACH_MAX  16
#define LIBBPF_MSG  256
#define NS_PER_MS   1000000ull
#define ERR_SCRATCH 256

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
	int fd_block[2]; /* [0] IPv4, [1] IPv6 */
	int fd_allow[2];
	int fd_config;
	int fd_stats;
	int ncpus;
	pthread_mutex_t lock; /* serialises read-modify-write edits */
	struct attachment att[ATTACH_MAX];
	size_t natt;
};

/* Key of either family: the kernel's LPM key layout, v6 sized. */
union lpm_key {
	struct blocklist_key4 k4;
	struct blocklist_key6 k6;
	__u32 prefixlen;
};

/* One snapshot row. */
struct row {
	int v6;
	union lpm_key key;
	struct blocklist_value val;
};

struct rows {
	struct row *v;
	size_t n, cap;
};

/* libbpf print capture (open and attach only; see blocklist.h). */
static char libbpf_msg[LIBBPF_MSG];

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

static libbpf_print_fn_t
capture_begin(void)
{
	libbpf_msg[0] = '\0';
	return libbpf_set_print(capture_print);
}

static void
capture_end(libbpf_print_fn_t old)
{
	libbpf_set_print(old);
}

/* "what: strerror (libbpf: last warning)" into err. */
static int fail_errno(char *err, size_t errlen, int e, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int
fail_errno(char *err, size_t errlen, int e, const char *fmt, ...)
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

static uint64_t
now_ns(void)
{
	struct timespec ts;

	/* The clock bpf_ktime_get_ns() reads. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool
live(const struct blocklist_value *v, uint64_t now)
{
	return v->expires_ns == 0 || v->expires_ns > now;
}

static int
table_fd(const struct blocklist *bl, enum blocklist_table t, int v6)
{
	return t == BLOCKLIST_TABLE_ALLOW ? bl->fd_allow[v6] : bl->fd_block[v6];
}

/* ipnet's one 16-byte form to the program's two tries: an IPv4-mapped
 * prefix of at least /96 is IPv4 (what an IPv4 packet carries), anything
 * else IPv6 (so ::/0 covers IPv6 only). */
static void
key_from_net(const struct ipnet *n, union lpm_key *k, int *v6)
{
	memset(k, 0, sizeof(*k));
	*v6 = !(ipnet_is_v4(n->addr) && n->len >= 96);
	if (*v6) {
		k->prefixlen = n->len;
		memcpy(k->k6.addr, n->addr, 16);
	} else {
		k->prefixlen = n->len - 96u;
		memcpy(k->k4.addr, n->addr + 12, 4);
	}
}

static void
net_from_key(const union lpm_key *k, int v6, struct ipnet *n)
{
	memset(n, 0, sizeof(*n));
	if (v6) {
		memcpy(n->addr, k->k6.addr, 16);
		n->len = (uint8_t)k->prefixlen;
	} else {
		n->addr[10] = n->addr[11] = 0xff;
		memcpy(n->addr + 12, k->k4.addr, 4);
		n->len = (uint8_t)(96 + k->prefixlen);
	}
}

static int
check_net(const struct ipnet *n, char *err, size_t errlen)
{
	if (n->len <= 128)
		return 0;
	snprintf(err, errlen, "prefix length %u", n->len);
	return -1;
}

/*
 * The exact entry for key k (not a shorter covering one): a trie lookup
 * returns the longest prefix <= k's, and the value records its length.
 * 1 found, 0 absent, -errno.
 */
static int
lookup_exact(int fd, const union lpm_key *k, struct blocklist_value *v)
{
	if (bpf_map_lookup_elem(fd, k, v) < 0)
		return errno == ENOENT ? 0 : -errno;
	return v->prefixlen == k->prefixlen ? 1 : 0;
}

/* The program's lookup_live(), in user space: longest live entry covering
 * the host key k (modified), stepping over expired ones. */
static int
lookup_live(int fd, union lpm_key *k, uint64_t now, struct blocklist_value *out)
{
	for (int i = 0; i < BLOCKLIST_MAX_SHADOW; i++) {
		if (bpf_map_lookup_elem(fd, k, out) < 0)
			return errno == ENOENT ? 0 : -errno;
		if (live(out, now))
			return 1;
		if (out->prefixlen == 0 || out->prefixlen > k->prefixlen)
			return 0;
		k->prefixlen = out->prefixlen - 1u;
	}
	return 0;
}

static int
rows_push(struct rows *r, const struct row *row)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 256;
		struct row *v = realloc(r->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n++] = *row;
	return 0;
}

/*
 * Every entry of table t, IPv4 then IPv6.  Bounded by the map sizes: a
 * table edited meanwhile by another process cannot make this loop
 * forever (a trie's next-key walk restarts when its key vanishes).
 */
static int
snapshot(struct blocklist *bl, enum blocklist_table t, struct rows *out,
	 char *err, size_t errlen)
{
	size_t limit = t == BLOCKLIST_TABLE_ALLOW ? BLOCKLIST_MAX_ALLOW
						  : BLOCKLIST_MAX_BLOCK;

	memset(out, 0, sizeof(*out));
	for (int v6 = 0; v6 <= 1; v6++) {
		int fd = table_fd(bl, t, v6);
		union lpm_key cur, next;
		void *prev = NULL;
		struct row row;

		for (size_t i = 0; i <= limit; i++) {
			if (bpf_map_get_next_key(fd, prev, &next) < 0) {
				if (errno == ENOENT)
					break;
				free(out->v);
				return fail_errno(err, errlen, errno,
						  "reading the %s table",
						  t == BLOCKLIST_TABLE_ALLOW
							  ? "allow"
							  : "block");
			}
			cur = next;
			prev = &cur;
			row.v6 = v6;
			row.key = cur;
			if (bpf_map_lookup_elem(fd, &cur, &row.val) < 0)
				continue; /* deleted meanwhile */
			if (rows_push(out, &row) < 0) {
				free(out->v);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
		}
	}
	return 0;
}

static void
entry_from_row(const struct row *r, enum blocklist_table t, uint64_t now,
	       struct blocklist_entry *e)
{
	memset(e, 0, sizeof(*e));
	net_from_key(&r->key, r->v6, &e->net);
	e->table = t;
	e->reason = r->val.reason < BLOCKLIST_REASON_COUNT
			    ? (enum blocklist_reason)r->val.reason
			    : BLOCKLIST_REASON_MANUAL;
	e->expires_ns = r->val.expires_ns;
	if (r->val.expires_ns == 0)
		e->remaining_ms = -1;
	else if (r->val.expires_ns <= now)
		e->remaining_ms = 0;
	else /* round up: 1 ns left is still "1 ms left", never "expired" */
		e->remaining_ms =
			(int64_t)((r->val.expires_ns - now + NS_PER_MS - 1) /
				  NS_PER_MS);
}

/* ---- attach ---------------------------------------------------------- */

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
		return fail_errno(err, errlen, errno,
				  "%s: inspecting attached XDP program %u",
				  ifname, id);
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0) {
		fail_errno(err, errlen, errno,
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
		return fail_errno(err, errlen, e, "%s: querying XDP", ifname);
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
		return fail_errno(err, errlen, errno, "interface %s", ifname);
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
static void
adopt_links(struct blocklist *bl)
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
	int prog = bpf_program__fd(bl->skel->progs.msa_blocklist);
	char path[PATH_MAX];
	int fd;

	fd = bpf_link_create(prog, ifindex, BPF_XDP, &o);
	if (fd < 0)
		return fail_errno(err, errlen, errno,
				  "%s: attaching XDP in %s mode", ifname,
				  blocklist_mode_name(m));
	if (link_path(bl, ifname, path, sizeof(path))) {
		unlink(path); /* a stale one, checked by the caller */
		if (bpf_obj_pin(fd, path) < 0) {
			fail_errno(err, errlen, errno, "pinning %s", path);
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
		return fail_errno(err, errlen, e,
				  "%s: detaching XDP program %u", ifname, id);
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
	libbpf_print_fn_t old = capture_begin();
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
		if (bpf_link_update(
			    lfd, bpf_program__fd(bl->skel->progs.msa_blocklist),
			    NULL) < 0) {
			fail_errno(err, errlen, errno,
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
		libbpf_msg[0] = '\0';
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
	capture_end(old);
	return rc;
}

int
blocklist_detach(struct blocklist *bl, const char *ifname, char *err,
		 size_t errlen)
{
	enum blocklist_mode m = BLOCKLIST_MODE_GENERIC;
	int ifindex, lfd, e;
	__u32 id;

	libbpf_msg[0] = '\0';
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
			return fail_errno(err, errlen, e, "%s: detaching XDP",
					  ifname);
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

	libbpf_msg[0] = '\0';
	while (bl->natt > 0) {
		struct attachment *a = &bl->att[bl->natt - 1];
		int e = a->link_fd >= 0 ? drop_link(bl, a->ifname, a->link_fd)
					: 0;

		if (e < 0 && rc == 0) {
			fail_errno(one, sizeof(one), e, "%s: detaching XDP",
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
	libbpf_msg[0] = '\0';
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

/* ---- open and close ------------------------------------------------ */

struct blocklist *
blocklist_open(const char *pin_dir, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	libbpf_print_fn_t old = capture_begin();
	struct blocklist *bl = calloc(1, sizeof(*bl));
	int e;

	if (bl == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	pthread_mutex_init(&bl->lock, NULL);
	if (pin_dir != NULL) {
		if (mkdir(pin_dir, 0700) < 0 && errno != EEXIST) {
			fail_errno(err, errlen, errno, "%s", pin_dir);
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
		fail_errno(err, errlen, errno, "opening the BPF object");
		goto fail;
	}
	if (pin_dir == NULL) {
		struct bpf_map *m;

		bpf_object__for_each_map(m, bl->skel->obj)
			bpf_map__set_pin_path(m, NULL);
	}
	e = blocklist_bpf__load(bl->skel);
	if (e < 0) {
		fail_errno(err, errlen, e, "loading the XDP blocklist%s%s",
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
	bl->ncpus = libbpf_num_possible_cpus();
	if (bl->ncpus <= 0) {
		fail_errno(err, errlen, bl->ncpus, "counting possible CPUs");
		goto fail;
	}
	if (bl->pin_dir != NULL)
		adopt_links(bl);
	capture_end(old);
	return bl;
fail:
	if (bl != NULL) {
		blocklist_bpf__destroy(bl->skel);
		free(bl->pin_dir);
		pthread_mutex_destroy(&bl->lock);
		free(bl);
	}
	capture_end(old);
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

/* ---- entries --------------------------------------------------------- */

/*
 * Does the new value win over the existing live one?  Never weaken a ban:
 * permanent beats TTL, a later expiry beats an earlier one.  Between two
 * permanent entries an operator's or the proxy's own (manual, auto) wins
 * over a file's, so a file reload never removes a ban someone asked for.
 */
static bool
stronger(const struct blocklist_value *nv, const struct blocklist_value *old)
{
	if (old->expires_ns == 0)
		return nv->expires_ns == 0 && nv->reason != old->reason &&
		       nv->reason != BLOCKLIST_REASON_FILE;
	return nv->expires_ns == 0 || nv->expires_ns > old->expires_ns;
}

static int
add_locked(struct blocklist *bl, enum blocklist_table t, const struct ipnet *c,
	   uint64_t ttl_ms, enum blocklist_reason reason, uint64_t now,
	   char *err, size_t errlen)
{
	struct blocklist_value nv = {0}, old;
	union lpm_key k;
	int v6, fd, e;

	key_from_net(c, &k, &v6);
	fd = table_fd(bl, t, v6);
	nv.expires_ns = ttl_ms ? now + ttl_ms * NS_PER_MS : 0;
	nv.reason = reason;
	nv.prefixlen = (__u8)k.prefixlen;
	e = lookup_exact(fd, &k, &old);
	if (e < 0)
		return fail_errno(err, errlen, e, "reading the table");
	if (e == 1 && live(&old, now) && !stronger(&nv, &old))
		return 1;
	if (bpf_map_update_elem(fd, &k, &nv, BPF_ANY) < 0) {
		char s[IPNET_TEXT_MAX];

		if (errno == ENOSPC || errno == E2BIG)
			snprintf(err, errlen, "%s: the %s table is full",
				 ipnet_format(c, s, sizeof(s)),
				 t == BLOCKLIST_TABLE_ALLOW ? "allow"
							    : "block");
		else
			fail_errno(err, errlen, errno, "%s",
				   ipnet_format(c, s, sizeof(s)));
		return -1;
	}
	return 0;
}

int
blocklist_table_add(struct blocklist *bl, enum blocklist_table t,
		    const struct ipnet *c, uint64_t ttl_ms,
		    enum blocklist_reason reason, char *err, size_t errlen)
{
	int rc;

	libbpf_msg[0] = '\0';
	if (check_net(c, err, errlen) < 0)
		return -1;
	if (ttl_ms > BLOCKLIST_TTL_MAX_MS) {
		snprintf(err, errlen, "TTL longer than %llu days",
			 BLOCKLIST_TTL_MAX_MS / 86400000ull);
		return -1;
	}
	if ((unsigned)reason >= BLOCKLIST_REASON_COUNT) {
		snprintf(err, errlen, "bad reason %u", (unsigned)reason);
		return -1;
	}
	pthread_mutex_lock(&bl->lock);
	rc = add_locked(bl, t, c, ttl_ms, reason, now_ns(), err, errlen);
	pthread_mutex_unlock(&bl->lock);
	return rc;
}

int
blocklist_table_del(struct blocklist *bl, enum blocklist_table t,
		    const struct ipnet *c, char *err, size_t errlen)
{
	union lpm_key k;
	int v6, rc = 0;

	libbpf_msg[0] = '\0';
	if (check_net(c, err, errlen) < 0)
		return -1;
	key_from_net(c, &k, &v6);
	pthread_mutex_lock(&bl->lock);
	if (bpf_map_delete_elem(table_fd(bl, t, v6), &k) < 0) {
		char s[IPNET_TEXT_MAX];

		if (errno == ENOENT)
			rc = 1;
		else
			rc = fail_errno(err, errlen, errno, "deleting %s",
					ipnet_format(c, s, sizeof(s)));
	}
	pthread_mutex_unlock(&bl->lock);
	return rc;
}

int
blocklist_add(struct blocklist *bl, const struct ipnet *c, uint64_t ttl_ms,
	      enum blocklist_reason reason, char *err, size_t errlen)
{
	return blocklist_table_add(bl, BLOCKLIST_TABLE_BLOCK, c, ttl_ms, reason,
				   err, errlen);
}

int
blocklist_del(struct blocklist *bl, const struct ipnet *c, char *err,
	      size_t errlen)
{
	return blocklist_table_del(bl, BLOCKLIST_TABLE_BLOCK, c, err, errlen);
}

int
blocklist_allow_add(struct blocklist *bl, const struct ipnet *c, char *err,
		    size_t errlen)
{
	return blocklist_table_add(bl, BLOCKLIST_TABLE_ALLOW, c, 0,
				   BLOCKLIST_REASON_MANUAL, err, errlen);
}

int
blocklist_allow_del(struct blocklist *bl, const struct ipnet *c, char *err,
		    size_t errlen)
{
	return blocklist_table_del(bl, BLOCKLIST_TABLE_ALLOW, c, err, errlen);
}

int
blocklist_apply(struct blocklist *bl, enum blocklist_table t,
		const struct blocklist_file *list,
		struct blocklist_apply_result *res, char *err, size_t errlen)
{
	struct blocklist_apply_result r = {0};
	struct rows rows;
	uint64_t now;
	int rc = -1;

	libbpf_msg[0] = '\0';
	pthread_mutex_lock(&bl->lock);
	if (snapshot(bl, t, &rows, err, errlen) < 0)
		goto done;
	now = now_ns();
	/* Add first, then remove: a prefix that stays listed is never
	 * missing, and one that moved (say /24 -> /23) is covered by both
	 * for a moment rather than by neither. */
	for (size_t i = 0; i < list->n; i++) {
		const struct ipnet *c = &list->v[i];
		struct blocklist_value old;
		union lpm_key k;
		int v6, e;

		if (check_net(c, err, errlen) < 0)
			goto done;
		key_from_net(c, &k, &v6);
		e = lookup_exact(table_fd(bl, t, v6), &k, &old);
		if (e < 0) {
			fail_errno(err, errlen, e, "reading the table");
			goto done;
		}
		if (e == 1 && old.expires_ns == 0 &&
		    old.reason == BLOCKLIST_REASON_FILE) {
			r.unchanged++;
			continue;
		}
		e = add_locked(bl, t, c, 0, BLOCKLIST_REASON_FILE, now, err,
			       errlen);
		if (e < 0)
			goto done;
		if (e == 1)
			r.kept++;
		else
			r.added++;
	}
	for (size_t i = 0; i < rows.n; i++) {
		struct ipnet c;

		if (rows.v[i].val.reason != BLOCKLIST_REASON_FILE)
			continue;
		net_from_key(&rows.v[i].key, rows.v[i].v6, &c);
		if (blocklist_file_has(list, &c))
			continue;
		if (bpf_map_delete_elem(table_fd(bl, t, rows.v[i].v6),
					&rows.v[i].key) == 0)
			r.removed++;
		else if (errno != ENOENT) {
			char s[IPNET_TEXT_MAX];

			fail_errno(err, errlen, errno, "deleting %s",
				   ipnet_format(&c, s, sizeof(s)));
			goto done;
		}
	}
	rc = 0;
done:
	pthread_mutex_unlock(&bl->lock);
	free(rows.v);
	if (res)
		*res = r;
	return rc;
}

int
blocklist_foreach(struct blocklist *bl, enum blocklist_table t,
		  int (*fn)(const struct blocklist_entry *e, void *arg),
		  void *arg, char *err, size_t errlen)
{
	struct blocklist_entry e;
	struct rows rows;
	uint64_t now;
	int rc = 0;

	libbpf_msg[0] = '\0';
	if (snapshot(bl, t, &rows, err, errlen) < 0)
		return -1;
	now = now_ns();
	for (size_t i = 0; i < rows.n && rc == 0; i++) {
		entry_from_row(&rows.v[i], t, now, &e);
		rc = fn(&e, arg);
	}
	free(rows.v);
	return rc;
}

long
blocklist_sweep(struct blocklist *bl, char *err, size_t errlen)
{
	long n = 0;

	libbpf_msg[0] = '\0';
	pthread_mutex_lock(&bl->lock);
	for (int t = BLOCKLIST_TABLE_BLOCK; t <= BLOCKLIST_TABLE_ALLOW; t++) {
		struct rows rows;
		uint64_t now;

		if (snapshot(bl, (enum blocklist_table)t, &rows, err, errlen) <
		    0) {
			n = -1;
			break;
		}
		now = now_ns();
		for (size_t i = 0; i < rows.n; i++) {
			int fd = table_fd(bl, (enum blocklist_table)t,
					  rows.v[i].v6);
			struct blocklist_value cur;

			if (live(&rows.v[i].val, now))
				continue;
			/* Re-read: it may have been refreshed since. */
			if (lookup_exact(fd, &rows.v[i].key, &cur) == 1 &&
			    !live(&cur, now) &&
			    bpf_map_delete_elem(fd, &rows.v[i].key) == 0)
				n++;
		}
		free(rows.v);
	}
	pthread_mutex_unlock(&bl->lock);
	return n;
}

int
blocklist_stats(struct blocklist *bl, struct blocklist_stats *st, char *err,
		size_t errlen)
{
	struct blocklist_counter *per;
	int rc = 0;

	libbpf_msg[0] = '\0';
	memset(st, 0, sizeof(*st));
	per = calloc((size_t)bl->ncpus, sizeof(*per));
	if (per == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (__u32 i = 0; i < BLOCKLIST_CNT_MAX; i++) {
		struct blocklist_counter sum = {0};

		if (bpf_map_lookup_elem(bl->fd_stats, &i, per) < 0) {
			rc = fail_errno(err, errlen, errno, "reading counters");
			break;
		}
		for (int c = 0; c < bl->ncpus; c++) {
			sum.packets += per[c].packets;
			sum.bytes += per[c].bytes;
		}
		if (i < BLOCKLIST_REASON_COUNT) {
			st->dropped_packets[i] = sum.packets;
			st->dropped_bytes[i] = sum.bytes;
		} else if (i == BLOCKLIST_CNT_PASS) {
			st->passed_packets = sum.packets;
			st->passed_bytes = sum.bytes;
		} else if (i == BLOCKLIST_CNT_ALLOWED) {
			st->allowed_packets = sum.packets;
		} else if (i == BLOCKLIST_CNT_EXPIRED) {
			st->expired_packets = sum.packets;
		}
	}
	free(per);
	return rc;
}

/* ---- scope ------------------------------------------------------------ */

int
blocklist_set_scope(struct blocklist *bl, enum blocklist_scope scope,
		    const uint16_t *ports, size_t nports, char *err,
		    size_t errlen)
{
	struct blocklist_config cfg = {0};
	__u32 zero = 0;

	libbpf_msg[0] = '\0';
	if (scope == BLOCKLIST_SCOPE_TCP_PORTS) {
		if (nports == 0 || nports > BLOCKLIST_MAX_PORTS) {
			snprintf(err, errlen,
				 "scope tcp-ports needs 1 to %d ports",
				 BLOCKLIST_MAX_PORTS);
			return -1;
		}
		for (size_t i = 0; i < nports; i++) {
			if (ports[i] == 0) {
				snprintf(err, errlen, "port 0");
				return -1;
			}
			cfg.ports[i] = htons(ports[i]);
		}
		cfg.nports = (__u32)nports;
	} else if (scope != BLOCKLIST_SCOPE_ALL) {
		snprintf(err, errlen, "bad scope %u", (unsigned)scope);
		return -1;
	}
	cfg.scope = scope;
	if (bpf_map_update_elem(bl->fd_config, &zero, &cfg, BPF_ANY) < 0)
		return fail_errno(err, errlen, errno, "writing the scope");
	return 0;
}

static int
read_config(struct blocklist *bl, struct blocklist_config *cfg)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(bl->fd_config, &zero, cfg);
}

int
blocklist_get_scope(struct blocklist *bl, enum blocklist_scope *scope,
		    uint16_t ports[BLOCKLIST_MAX_PORTS], size_t *nports,
		    char *err, size_t errlen)
{
	struct blocklist_config cfg;

	libbpf_msg[0] = '\0';
	if (read_config(bl, &cfg) < 0)
		return fail_errno(err, errlen, errno, "reading the scope");
	*scope = cfg.scope == BLOCKLIST_SCOPE_TCP_PORTS
			 ? BLOCKLIST_SCOPE_TCP_PORTS
			 : BLOCKLIST_SCOPE_ALL;
	*nports = 0;
	if (*scope == BLOCKLIST_SCOPE_TCP_PORTS) {
		for (__u32 i = 0; i < cfg.nports && i < BLOCKLIST_MAX_PORTS;
		     i++)
			ports[(*nports)++] = ntohs(cfg.ports[i]);
	}
	return 0;
}

/* ---- the accept() fallback ------------------------------------------- */

/* The program's in_scope() for a TCP connection to local. */
static bool
in_scope(struct blocklist *bl, const struct sockaddr *local)
{
	struct blocklist_config cfg;
	__u16 port;

	if (local == NULL || read_config(bl, &cfg) < 0 ||
	    cfg.scope != BLOCKLIST_SCOPE_TCP_PORTS)
		return true;
	if (local->sa_family == AF_INET)
		port = ((const struct sockaddr_in *)(const void *)local)
			       ->sin_port;
	else if (local->sa_family == AF_INET6)
		port = ((const struct sockaddr_in6 *)(const void *)local)
			       ->sin6_port;
	else
		return true;
	for (__u32 i = 0; i < cfg.nports && i < BLOCKLIST_MAX_PORTS; i++) {
		if (cfg.ports[i] == port)
			return true;
	}
	return false;
}

enum blocklist_verdict
blocklist_match(struct blocklist *bl, const struct sockaddr *peer,
		const struct sockaddr *local, enum blocklist_reason *reason)
{
	struct blocklist_value v;
	struct ipnet host = {.len = 128};
	union lpm_key k, start;
	uint64_t now;
	int v6;

	if (!ipnet_from_sockaddr(peer, host.addr) || !in_scope(bl, local))
		return BLOCKLIST_PASS;
	key_from_net(&host, &start, &v6);
	now = now_ns();
	k = start;
	if (lookup_live(bl->fd_allow[v6], &k, now, &v) == 1)
		return BLOCKLIST_ALLOWED;
	k = start;
	if (lookup_live(bl->fd_block[v6], &k, now, &v) != 1)
		return BLOCKLIST_PASS;
	if (reason)
		*reason = v.reason < BLOCKLIST_REASON_COUNT
				  ? (enum blocklist_reason)v.reason
				  : BLOCKLIST_REASON_MANUAL;
	return BLOCKLIST_DROP;
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
