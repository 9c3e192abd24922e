// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * blocklist.bpf.c - XDP program: drop frames from blocked sources before
 * the kernel's network stack sees them.
 *
 * For each frame: skip Ethernet and up to two VLAN tags (802.1Q, 802.1AD,
 * either order), read the IPv4 or IPv6 source, pass IPv6 neighbour
 * solicitations and advertisements (what ARP is to IPv4, and ARP passes:
 * one banned address of an on-link host must not stop its other
 * addresses from resolving ours), and
 *   1. scope "tcp-ports": unless the frame is TCP to one of the configured
 *      destination ports, pass it untouched;
 *   2. source in the allowlist (msa_allow4/6, longest prefix): pass;
 *   3. source in the blocklist (msa_block4/6, longest prefix): drop, and
 *      count it under the entry's reason and in the entry itself
 *      (blocklist_value.drops, an atomic add);
 *   4. anything else passes.
 * Entries carry an absolute CLOCK_MONOTONIC expiry (0 = permanent); an
 * expired entry is treated as absent, and the lookup steps past it to the
 * next shorter prefix covering the same address (up to
 * BLOCKLIST_MAX_SHADOW expired entries), so a stale /32 never hides a live
 * /24.  User space deletes expired entries (blocklist_sweep()).
 *
 * Trust: every byte of the frame is attacker-controlled; every header is
 * bounds-checked against data_end before it is read.  Frames that are not
 * IP, or too short to hold the headers the decision needs, pass: the stack
 * drops malformed frames itself, and this program only ever decides on a
 * source address it has actually read.  Under scope "tcp-ports" the TCP
 * header must be found: IPv6 extension headers are walked (hop-by-hop,
 * routing, destination options, fragment, AH; at most 4); a non-first
 * fragment, ESP, or a longer chain has no visible port and passes.
 *
 * Maps and layouts: ../bpf/blocklist.h.  Built with clang -target bpf
 * against the uapi and libbpf headers (no vmlinux.h).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "blocklist.h"

/* Not in the uapi headers. */
struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

struct ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | flags */
	__be32 id;
};

#define IPV4_OFFSET_MASK 0x1fff
#define IPV6_OFFSET_MASK 0xfff8
#define IPV6_EXT_MAX	 4
#define ICMPV6_NS	 135 /* neighbour solicitation (RFC 4861) */
#define ICMPV6_NA	 136 /* neighbour advertisement */

/* The four prefix tries: block and allow, IPv4 and IPv6; pinned by name so
 * user space finds them again after a restart. */
#define LPM_TRIE(name, key_type, max)                                          \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                           \
		__uint(max_entries, max);                                      \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__type(key, key_type);                                         \
		__type(value, struct blocklist_value);                         \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                           \
	} name SEC(".maps")

LPM_TRIE(msa_block4, struct blocklist_key4, BLOCKLIST_MAX_BLOCK);
LPM_TRIE(msa_block6, struct blocklist_key6, BLOCKLIST_MAX_BLOCK);
LPM_TRIE(msa_allow4, struct blocklist_key4, BLOCKLIST_MAX_ALLOW);
LPM_TRIE(msa_allow6, struct blocklist_key6, BLOCKLIST_MAX_ALLOW);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct blocklist_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} msa_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BLOCKLIST_CNT_MAX);
	__type(key, __u32);
	__type(value, struct blocklist_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} msa_stats SEC(".maps");

/* What the decision needs from one frame. */
struct frame {
	__u8 src[16];
	int v6;
	int tcp_port_known; /* dport below is a TCP destination port */
	int neighbour;	    /* an IPv6 neighbour solicitation/advertisement */
	__be16 dport;
};

static __always_inline void
count(__u32 idx, __u64 bytes)
{
	struct blocklist_counter *c = bpf_map_lookup_elem(&msa_stats, &idx);

	/* Per-CPU slot, and XDP runs with preemption off: no atomics. */
	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/*
 * Longest live match in one trie.  key holds the full address; returns
 * the entry, or NULL when nothing live covers it.  *expired is set when
 * an expired entry was stepped over.
 */
static __always_inline struct blocklist_value *
lookup_live(void *map, void *key, __u64 *now, int *expired)
{
	__u32 *prefixlen = key;

	for (int i = 0; i < BLOCKLIST_MAX_SHADOW; i++) {
		struct blocklist_value *v = bpf_map_lookup_elem(map, key);

		if (!v)
			return 0;
		if (v->expires_ns != 0) {
			if (*now == 0)
				*now = bpf_ktime_get_ns();
			if (v->expires_ns <= *now) {
				*expired = 1;
				if (v->prefixlen == 0 ||
				    v->prefixlen > *prefixlen)
					return 0;
				*prefixlen = v->prefixlen - 1;
				continue;
			}
		}
		return v;
	}
	return 0;
}

/* The TCP header at tcp, if the frame holds all of it: its port. */
static __always_inline void
tcp_port(struct tcphdr *tcp, void *end, struct frame *f)
{
	if ((void *)(tcp + 1) > end)
		return;
	f->tcp_port_known = 1;
	f->dport = tcp->dest;
}

/* IPv4: source, and the TCP destination port of a first fragment. */
static __always_inline int
parse_ipv4(void *cur, void *end, struct frame *f)
{
	struct iphdr *ip = cur;

	if ((void *)(ip + 1) > end)
		return -1;
	__builtin_memcpy(f->src, &ip->saddr, 4);
	if (ip->protocol != IPPROTO_TCP || ip->ihl < 5 ||
	    (ip->frag_off & bpf_htons(IPV4_OFFSET_MASK)) != 0)
		return 0;
	tcp_port(cur + ip->ihl * 4, end, f);
	return 0;
}

/* IPv6: source, and the TCP destination port if the chain of extension
 * headers before it is short and holds no non-first fragment. */
static __always_inline int
parse_ipv6(void *cur, void *end, struct frame *f)
{
	struct ipv6hdr *ip6 = cur;
	struct ipv6_opt_hdr *opt;
	struct ipv6_frag *frag;
	__u8 nh;

	if ((void *)(ip6 + 1) > end)
		return -1;
	__builtin_memcpy(f->src, &ip6->saddr, 16);
	f->v6 = 1;
	nh = ip6->nexthdr;
	cur = ip6 + 1;
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
		    nh == IPPROTO_DSTOPTS) {
			opt = cur;
			if ((void *)(opt + 1) > end)
				return 0;
			nh = opt->nexthdr;
			cur += (opt->hdrlen + 1) * 8;
		} else if (nh == IPPROTO_AH) {
			opt = cur;
			if ((void *)(opt + 1) > end)
				return 0;
			nh = opt->nexthdr;
			cur += (opt->hdrlen + 2) * 4;
		} else if (nh == IPPROTO_FRAGMENT) {
			frag = cur;
			if ((void *)(frag + 1) > end)
				return 0;
			if (frag->frag_off & bpf_htons(IPV6_OFFSET_MASK))
				return 0;
			nh = frag->nexthdr;
			cur = frag + 1;
		} else {
			break;
		}
	}
	if (nh == IPPROTO_TCP)
		tcp_port(cur, end, f);
	if (nh == IPPROTO_ICMPV6 && cur + 1 <= end) {
		__u8 type = *(__u8 *)cur;

		f->neighbour = type == ICMPV6_NS || type == ICMPV6_NA;
	}
	return 0;
}

/* Is this frame in scope?  A missing config reads as scope "all". */
static __always_inline int
in_scope(const struct frame *f)
{
	__u32 zero = 0;
	struct blocklist_config *cfg = bpf_map_lookup_elem(&msa_config, &zero);

	if (!cfg || cfg->scope != BLOCKLIST_SCOPE_TCP_PORTS)
		return 1;
	if (!f->tcp_port_known)
		return 0;
#pragma unroll
	for (__u32 i = 0; i < BLOCKLIST_MAX_PORTS; i++) {
		if (i < cfg->nports && cfg->ports[i] == f->dport)
			return 1;
	}
	return 0;
}

SEC("xdp")
int
msa_blocklist(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 bytes = end - data;
	struct ethhdr *eth = data;
	struct frame f = {};
	__u64 now = 0;
	struct blocklist_value *v;
	int expired = 0, rc;
	void *cur;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		goto pass;
	proto = eth->h_proto;
	cur = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_tag *tag = cur;

		if (proto != bpf_htons(ETH_P_8021Q) &&
		    proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(tag + 1) > end)
			goto pass;
		proto = tag->proto;
		cur = tag + 1;
	}

	if (proto == bpf_htons(ETH_P_IP))
		rc = parse_ipv4(cur, end, &f);
	else if (proto == bpf_htons(ETH_P_IPV6))
		rc = parse_ipv6(cur, end, &f);
	else
		goto pass;
	if (rc < 0 || f.neighbour || !in_scope(&f))
		goto pass;

	if (f.v6) {
		struct blocklist_key6 k6 = {.prefixlen = 128};

		__builtin_memcpy(k6.addr, f.src, 16);
		if (lookup_live(&msa_allow6, &k6, &now, &expired))
			goto allowed;
		k6.prefixlen = 128;
		v = lookup_live(&msa_block6, &k6, &now, &expired);
	} else {
		struct blocklist_key4 k4 = {.prefixlen = 32};

		__builtin_memcpy(k4.addr, f.src, 4);
		if (lookup_live(&msa_allow4, &k4, &now, &expired))
			goto allowed;
		k4.prefixlen = 32;
		v = lookup_live(&msa_block4, &k4, &now, &expired);
	}
	if (v) {
		count(v->reason < BLOCKLIST_REASON_COUNT
			      ? v->reason
			      : (__u32)BLOCKLIST_REASON_MANUAL,
		      bytes);
		__sync_fetch_and_add(&v->drops, 1);
		return XDP_DROP;
	}
	if (expired)
		count(BLOCKLIST_CNT_EXPIRED, bytes);
	goto pass;
allowed:
	count(BLOCKLIST_CNT_ALLOWED, bytes);
pass:
	count(BLOCKLIST_CNT_PASS, bytes);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
