/*
 * xdp_tool.c - command-line front end to proxy/bans/blocklist*.c, for the XDP
 * integration tests (tests/integration/test_xdp.py) and for operators
 * poking at the pinned maps by hand.
 *
 *   xdp_tool [--pin DIR] [--drop-privs] COMMAND [ARGS]
 *
 *   attach IFACE [auto|native|generic]   prints "mode=native" etc.
 *   detach IFACE
 *   status IFACE                         "attached mode=..." or "detached"
 *   ban CIDR [TTL_MS] [file|manual|auto] default: permanent, manual
 *   unban CIDR
 *   allow CIDR | unallow CIDR
 *   list [block|allow]                   "CIDR reason=R ttl_ms=N|permanent"
 *   stats                                "name value" lines
 *   sweep                                "swept=N"
 *   scope all | scope tcp-ports PORT...  | scope (prints it)
 *   apply FILE                           blocklist file, diff-applied
 *   match ADDR [LOCAL_PORT]              "pass" | "allowed" | "drop R"
 *   old-pins CIDR                        pin tries of the first layout
 *                                        (16-byte values) holding CIDR as
 *                                        a manual ban: an older build's
 *                                        pins, for the migration test
 *   bad-pin NAME                         pin a map of a layout the
 *                                        skeleton refuses as NAME, so
 *                                        that a load fails
 *
 * --pin DIR: the bpffs directory of the pinned maps (default
 * /sys/fs/bpf/msaproxy; bpffs must be mounted).  --drop-privs: after
 * loading, become uid/gid 65534 with no capabilities at all, then run the
 * command: what the proxy can still do after it drops root.
 *
 * Exit: 0 done, 1 failed, 2 usage, 3 "unban"/"unallow" of an absent entry.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <bpf/bpf.h>

#include "bans/blocklist.h"

#define DEFAULT_PIN "/sys/fs/bpf/msaproxy"
#define NOBODY	    65534

static void
usage(void)
{
	fprintf(stderr,
		"usage: xdp_tool [--pin DIR] [--drop-privs] COMMAND [ARGS]\n"
		"  attach IFACE [auto|native|generic] | detach IFACE | "
		"status IFACE\n"
		"  ban CIDR [TTL_MS] [file|manual|auto] | unban CIDR\n"
		"  allow CIDR | unallow CIDR | list [block|allow] | stats | "
		"sweep\n"
		"  scope [all | tcp-ports PORT...] | apply FILE | "
		"match ADDR [LOCAL_PORT]\n"
		"  old-pins CIDR | bad-pin NAME (for the tests)\n");
	exit(2);
}

static void
die(const char *what, const char *err)
{
	fprintf(stderr, "xdp_tool: %s: %s\n", what, err);
	exit(1);
}

/* Become nobody with an empty capability set (setresuid from 0 to
 * non-zero clears them all, as KEEP_CAPS is off), and say so. */
static void
drop_privs(void)
{
	char line[256], cap[64] = "?";
	FILE *f;

	if (prctl(PR_SET_KEEPCAPS, 0) < 0 || setgroups(0, NULL) < 0 ||
	    setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) < 0)
		die("dropping privileges", strerror(errno));
	f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "CapEff: %63s", cap) == 1)
			break;
	}
	if (f)
		fclose(f);
	if (strspn(cap, "0") != strlen(cap))
		die("dropping privileges", "capabilities left");
	fprintf(stderr, "xdp_tool: running as uid=%d CapEff=%s\n",
		(int)getuid(), cap);
}

static struct ipnet
parse_net(const char *s)
{
	struct ipnet n;
	const char *why = ipnet_parse(s, &n);

	if (why != NULL)
		die(s, why);
	return n;
}

static unsigned long long
parse_num(const char *s, unsigned long long max)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max || s[0] == '-')
		die(s, "not a number in range");
	return v;
}

static int
print_entry(const struct blocklist_entry *e, void *arg)
{
	char s[IPNET_TEXT_MAX];

	(void)arg;
	ipnet_format(&e->net, s, sizeof(s));
	if (e->remaining_ms < 0)
		printf("%s reason=%s ttl_ms=permanent\n", s,
		       blocklist_reason_name(e->reason));
	else if (e->remaining_ms == 0)
		printf("%s reason=%s ttl_ms=expired\n", s,
		       blocklist_reason_name(e->reason));
	else
		printf("%s reason=%s ttl_ms=%lld\n", s,
		       blocklist_reason_name(e->reason),
		       (long long)e->remaining_ms);
	return 0;
}

static void
print_stats(const struct blocklist_stats *st)
{
	for (int r = 0; r < BLOCKLIST_REASON_COUNT; r++) {
		const char *n = blocklist_reason_name((enum blocklist_reason)r);

		printf("dropped_packets_%s %llu\n", n,
		       (unsigned long long)st->dropped_packets[r]);
		printf("dropped_bytes_%s %llu\n", n,
		       (unsigned long long)st->dropped_bytes[r]);
	}
	printf("passed_packets %llu\n", (unsigned long long)st->passed_packets);
	printf("passed_bytes %llu\n", (unsigned long long)st->passed_bytes);
	printf("allowed_packets %llu\n",
	       (unsigned long long)st->allowed_packets);
	printf("expired_packets %llu\n",
	       (unsigned long long)st->expired_packets);
}

static int
cmd_scope(struct blocklist *bl, int argc, char **argv, char *err, size_t errlen)
{
	uint16_t ports[BLOCKLIST_MAX_PORTS];
	enum blocklist_scope scope;
	size_t n = 0;

	if (argc == 0) {
		if (blocklist_get_scope(bl, &scope, ports, &n, err, errlen) < 0)
			return -1;
		printf("%s",
		       scope == BLOCKLIST_SCOPE_ALL ? "all" : "tcp-ports");
		for (size_t i = 0; i < n; i++)
			printf(" %u", ports[i]);
		printf("\n");
		return 0;
	}
	if (blocklist_scope_parse(argv[0], &scope) < 0)
		usage();
	for (int i = 1; i < argc; i++) {
		if (n == BLOCKLIST_MAX_PORTS)
			die("scope", "too many ports");
		ports[n++] = (uint16_t)parse_num(argv[i], 65535);
	}
	return blocklist_set_scope(bl, scope, ports, n, err, errlen);
}

static int
cmd_match(struct blocklist *bl, int argc, char **argv)
{
	struct sockaddr_storage peer = {0}, local = {0};
	struct sockaddr_in *p4 = (void *)&peer, *l4 = (void *)&local;
	struct sockaddr_in6 *p6 = (void *)&peer, *l6 = (void *)&local;
	enum blocklist_reason reason = BLOCKLIST_REASON_MANUAL;
	enum blocklist_verdict v;
	uint16_t port = 0;

	if (argc < 1 || argc > 2)
		usage();
	if (argc == 2)
		port = (uint16_t)parse_num(argv[1], 65535);
	if (inet_pton(AF_INET, argv[0], &p4->sin_addr) == 1) {
		p4->sin_family = l4->sin_family = AF_INET;
		l4->sin_port = htons(port);
	} else if (inet_pton(AF_INET6, argv[0], &p6->sin6_addr) == 1) {
		p6->sin6_family = l6->sin6_family = AF_INET6;
		l6->sin6_port = htons(port);
	} else {
		die(argv[0], "not an IP address");
	}
	v = blocklist_match(bl, (struct sockaddr *)&peer,
			    argc == 2 ? (struct sockaddr *)&local : NULL,
			    &reason);
	if (v == BLOCKLIST_DROP)
		printf("drop %s\n", blocklist_reason_name(reason));
	else
		printf("%s\n", v == BLOCKLIST_ALLOWED ? "allowed" : "pass");
	return 0;
}

static int
cmd_apply(struct blocklist *bl, const char *path, char *err, size_t errlen)
{
	struct blocklist_apply_result r;
	struct blocklist_file list;
	int rc;

	if (blocklist_file_read(path, BLOCKLIST_MAX_BLOCK, &list, err, errlen) <
	    0)
		return -1;
	rc = blocklist_apply(bl, BLOCKLIST_TABLE_BLOCK, &list, &r, err, errlen);
	blocklist_file_free(&list);
	if (rc == 0)
		printf("added=%zu removed=%zu unchanged=%zu kept=%zu\n",
		       r.added, r.removed, r.unchanged, r.kept);
	return rc;
}

static int
run(struct blocklist *bl, const char *cmd, int argc, char **argv)
{
	char err[512] = "";
	int rc = -1;

	if (strcmp(cmd, "attach") == 0 && (argc == 1 || argc == 2)) {
		enum blocklist_mode m = BLOCKLIST_MODE_AUTO, used;

		if (argc == 2 && blocklist_mode_parse(argv[1], &m) < 0)
			usage();
		rc = blocklist_attach(bl, argv[0], m, &used, err, sizeof(err));
		if (rc == 0)
			printf("mode=%s\n", blocklist_mode_name(used));
	} else if (strcmp(cmd, "detach") == 0 && argc == 1) {
		rc = blocklist_detach(bl, argv[0], err, sizeof(err));
	} else if (strcmp(cmd, "status") == 0 && argc == 1) {
		enum blocklist_mode m;

		rc = blocklist_attached(bl, argv[0], &m, err, sizeof(err));
		if (rc == 1)
			printf("attached mode=%s\n", blocklist_mode_name(m));
		else if (rc == 0)
			printf("detached\n");
		rc = rc < 0 ? -1 : 0;
	} else if (strcmp(cmd, "ban") == 0 && argc >= 1 && argc <= 3) {
		struct ipnet c = parse_net(argv[0]);
		enum blocklist_reason r = BLOCKLIST_REASON_MANUAL;
		unsigned long long ttl = 0;

		if (argc >= 2)
			ttl = parse_num(argv[1], BLOCKLIST_TTL_MAX_MS);
		if (argc == 3) {
			for (r = 0; r < BLOCKLIST_REASON_COUNT; r++) {
				if (strcmp(argv[2], blocklist_reason_name(r)) ==
				    0)
					break;
			}
			if (r == BLOCKLIST_REASON_COUNT)
				usage();
		}
		rc = blocklist_add(bl, &c, ttl, r, err, sizeof(err));
		if (rc == 1)
			printf("kept: an existing entry already lasts as "
			       "long\n");
		rc = rc < 0 ? -1 : 0;
	} else if ((strcmp(cmd, "unban") == 0 || strcmp(cmd, "unallow") == 0) &&
		   argc == 1) {
		struct ipnet c = parse_net(argv[0]);

		rc = strcmp(cmd, "unban") == 0
			     ? blocklist_del(bl, &c, err, sizeof(err))
			     : blocklist_allow_del(bl, &c, err, sizeof(err));
		if (rc == 1) {
			fprintf(stderr, "xdp_tool: %s: no such entry\n",
				argv[0]);
			return 3;
		}
	} else if (strcmp(cmd, "allow") == 0 && argc == 1) {
		struct ipnet c = parse_net(argv[0]);

		rc = blocklist_allow_add(bl, &c, err, sizeof(err));
		rc = rc < 0 ? -1 : 0;
	} else if (strcmp(cmd, "list") == 0 && argc <= 1) {
		enum blocklist_table t = BLOCKLIST_TABLE_BLOCK;

		if (argc == 1 && strcmp(argv[0], "allow") == 0)
			t = BLOCKLIST_TABLE_ALLOW;
		else if (argc == 1 && strcmp(argv[0], "block") != 0)
			usage();
		rc = blocklist_foreach(bl, t, print_entry, NULL, err,
				       sizeof(err));
	} else if (strcmp(cmd, "stats") == 0 && argc == 0) {
		struct blocklist_stats st;

		rc = blocklist_stats(bl, &st, err, sizeof(err));
		if (rc == 0)
			print_stats(&st);
	} else if (strcmp(cmd, "sweep") == 0 && argc == 0) {
		long n = blocklist_sweep(bl, err, sizeof(err));

		if (n >= 0)
			printf("swept=%ld\n", n);
		rc = n < 0 ? -1 : 0;
	} else if (strcmp(cmd, "scope") == 0) {
		rc = cmd_scope(bl, argc, argv, err, sizeof(err));
	} else if (strcmp(cmd, "apply") == 0 && argc == 1) {
		rc = cmd_apply(bl, argv[0], err, sizeof(err));
	} else if (strcmp(cmd, "match") == 0) {
		rc = cmd_match(bl, argc, argv);
	} else {
		usage();
	}
	if (rc < 0)
		die(cmd, err);
	return 0;
}

/* What a build before the per-entry drop counter pinned: the four tries
 * with 16-byte values, CIDR banned (manual, permanent) in its family's. */
static int
old_pins(const char *pin, const char *cidr)
{
	static const struct {
		const char *name;
		unsigned key_size, max;
	} tries[] = {
		{"msa_block4", 8, BLOCKLIST_MAX_BLOCK},
		{"msa_block6", 20, BLOCKLIST_MAX_BLOCK},
		{"msa_allow4", 8, BLOCKLIST_MAX_ALLOW},
		{"msa_allow6", 20, BLOCKLIST_MAX_ALLOW},
	};
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
	struct ipnet net = parse_net(cidr);
	bool v4 = ipnet_is_v4(net.addr);

	if (mkdir(pin, 0700) < 0 && errno != EEXIST)
		die("mkdir", strerror(errno));
	for (size_t t = 0; t < sizeof(tries) / sizeof(*tries); t++) {
		unsigned char key[20] = {0}, value[16] = {0};
		char path[512];
		int fd = bpf_map_create(BPF_MAP_TYPE_LPM_TRIE, tries[t].name,
					tries[t].key_size, sizeof(value),
					tries[t].max, &opts);

		if (fd < 0)
			die("bpf_map_create", strerror(errno));
		snprintf(path, sizeof(path), "%s/%s", pin, tries[t].name);
		if (bpf_obj_pin(fd, path) < 0)
			die("bpf_obj_pin", strerror(errno));
		if (t == (v4 ? 0u : 1u)) {
			__u32 prefixlen = v4 ? net.len - 96u : net.len;

			memcpy(key, &prefixlen, 4);
			memcpy(key + 4, v4 ? net.addr + 12 : net.addr,
			       v4 ? 4 : 16);
			value[8] = BLOCKLIST_REASON_MANUAL; /* reason, LE */
			value[12] = (unsigned char)prefixlen;
			if (bpf_map_update_elem(fd, key, value, BPF_ANY) != 0)
				die("bpf_map_update_elem", strerror(errno));
		}
		close(fd);
	}
	printf("pinned=4\n");
	return 0;
}

/* An array of 3-byte values pinned as name: libbpf refuses to reuse it
 * for any of the skeleton's maps, so the next load fails. */
static int
bad_pin(const char *pin, const char *name)
{
	char path[512];
	int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "msa_bad", 4, 3, 1, NULL);

	if (fd < 0)
		die("bpf_map_create", strerror(errno));
	if (mkdir(pin, 0700) < 0 && errno != EEXIST)
		die("mkdir", strerror(errno));
	snprintf(path, sizeof(path), "%s/%s", pin, name);
	if (bpf_obj_pin(fd, path) < 0)
		die("bpf_obj_pin", strerror(errno));
	close(fd);
	printf("pinned=%s\n", name);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *pin = DEFAULT_PIN;
	bool drop = false;
	struct blocklist *bl;
	char err[512];
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--pin") == 0 && i + 1 < argc)
			pin = argv[++i];
		else if (strcmp(argv[i], "--drop-privs") == 0)
			drop = true;
		else
			break;
	}
	if (i >= argc)
		usage();
	if (strcmp(argv[i], "old-pins") == 0 && i + 2 == argc)
		return old_pins(pin, argv[i + 1]);
	if (strcmp(argv[i], "bad-pin") == 0 && i + 2 == argc)
		return bad_pin(pin, argv[i + 1]);
	bl = blocklist_open(pin, err, sizeof(err));
	if (bl == NULL)
		die("open", err);
	if (drop)
		drop_privs();
	rc = run(bl, argv[i], argc - i - 1, argv + i + 1);
	fflush(stdout);
	blocklist_close(bl);
	return rc;
}
