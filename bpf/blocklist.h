/*
 * blocklist.h - what the XDP blocklist program (blocklist.bpf.c) and its
 * user-space side (proxy/bans/blocklist*.c) share: map key and value layouts,
 * counter indexes and the scope configuration.
 *
 * Both sides compile this file, so it uses only the fixed-size types of
 * <linux/types.h> and has no padding the two compilers could disagree on.
 * Addresses and ports are kept in network byte order, exactly as they sit
 * in the packet, so the program compares bytes without swapping.
 *
 * Maps (all pinned by name under the user-space pin directory):
 *   msa_block4  LPM trie  key blocklist_key4  value blocklist_value
 *   msa_block6  LPM trie  key blocklist_key6  value blocklist_value
 *   msa_allow4  LPM trie  key blocklist_key4  value blocklist_value
 *   msa_allow6  LPM trie  key blocklist_key6  value blocklist_value
 *   msa_config  array[1]  value blocklist_config
 *   msa_stats   per-CPU array[BLOCKLIST_CNT_MAX]  value blocklist_counter
 *
 * Changing any layout here changes the map definitions: maps pinned by an
 * older build are then refused at load (libbpf checks key, value and size)
 * and must be removed by hand; see docs/XDP.md.
 */
#ifndef MSAPROXY_BPF_BLOCKLIST_H
#define MSAPROXY_BPF_BLOCKLIST_H

#include <linux/types.h>

/* Map capacities.  LPM tries allocate per entry (no preallocation), so a
 * large maximum costs nothing until it is used. */
#define BLOCKLIST_MAX_BLOCK 1048576
#define BLOCKLIST_MAX_ALLOW 65536
/* Destination ports for BLOCKLIST_SCOPE_TCP_PORTS. */
#define BLOCKLIST_MAX_PORTS 8
/* How many expired entries the program steps over, from the most specific
 * outwards, before it gives up and passes (see BLOCKLIST_VALUE). */
#define BLOCKLIST_MAX_SHADOW 4

/* Why an entry is there; also the index of its drop counter. */
enum blocklist_reason {
	BLOCKLIST_REASON_FILE = 0,   /* a blocklist file named in the config */
	BLOCKLIST_REASON_MANUAL = 1, /* an operator: control socket, CLI */
	BLOCKLIST_REASON_AUTO = 2,   /* the proxy's own abuse policy */
	BLOCKLIST_REASON_COUNT = 3,
};

/* LPM trie keys: prefixlen first (the kernel's struct bpf_lpm_trie_key
 * layout), then the address in network byte order, host bits zero. */
struct blocklist_key4 {
	__u32 prefixlen; /* 0..32 */
	__u8 addr[4];
};

struct blocklist_key6 {
	__u32 prefixlen; /* 0..128 */
	__u8 addr[16];
};

/*
 * One entry of any of the four tries.  expires_ns is an absolute
 * CLOCK_MONOTONIC time as bpf_ktime_get_ns() reads it (user space:
 * clock_gettime(CLOCK_MONOTONIC)); 0 is permanent.  An entry whose expiry
 * has passed is ignored by the program (as if absent) until user space
 * sweeps it.  prefixlen repeats the key's, because a trie lookup returns
 * only the value: the program needs it to step past an expired entry to
 * the next shorter prefix that covers the same address.  The layout is
 * the pinned maps' value size: libbpf refuses to reuse a pinned map of
 * another size, so the first, 16-byte layout (without drops) is carried
 * over at start (blocklist_migrate.c); any other change needs the pin
 * directory cleared.
 */
struct blocklist_value {
	__u64 expires_ns;
	__u32 reason; /* enum blocklist_reason */
	__u8 prefixlen;
	__u8 pad[3];
	/* Frames this block entry dropped: the program adds with an atomic
	 * add (the value is shared by every CPU); user space carries it over
	 * when it rewrites the entry and reads it for the status page. */
	__u64 drops;
};

/* Counter indexes into msa_stats.  Drops are indexed by reason. */
enum blocklist_counter_index {
	BLOCKLIST_CNT_DROP_FILE = BLOCKLIST_REASON_FILE,
	BLOCKLIST_CNT_DROP_MANUAL = BLOCKLIST_REASON_MANUAL,
	BLOCKLIST_CNT_DROP_AUTO = BLOCKLIST_REASON_AUTO,
	BLOCKLIST_CNT_PASS = 3,	   /* every frame passed, IP or not */
	BLOCKLIST_CNT_ALLOWED = 4, /* of those: source on the allowlist */
	BLOCKLIST_CNT_EXPIRED = 5, /* of those: only expired entries matched */
	BLOCKLIST_CNT_MAX = 6,
};

/* One per-CPU counter.  bytes counts the frame as XDP sees it (from the
 * Ethernet header on, the linear part). */
struct blocklist_counter {
	__u64 packets;
	__u64 bytes;
};

enum blocklist_scope {
	BLOCKLIST_SCOPE_ALL = 0, /* drop every frame of a blocked source */
	BLOCKLIST_SCOPE_TCP_PORTS = 1, /* only TCP to one of ports[] */
};

/* msa_config[0].  ports[] in network byte order; nports <= MAX_PORTS.
 * The all-zero value (a fresh map) is scope "all". */
struct blocklist_config {
	__u32 scope; /* enum blocklist_scope */
	__u32 nports;
	__u16 ports[BLOCKLIST_MAX_PORTS];
};

#endif
