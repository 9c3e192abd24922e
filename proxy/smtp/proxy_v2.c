/*
 * proxy_v2.c - write HAProxy PROXY protocol v2 headers (pure).
 *
 * Layout (proxy-protocol.txt 2.2): the 12-byte signature, version 2 and
 * the command (PROXY, or LOCAL for the proxy's own connections), the
 * address family and transport (TCP over IPv4 or IPv6), the length of
 * what follows (big-endian), the source and destination addresses and
 * ports, then TLVs: PP2_TYPE_AUTHORITY (SNI), PP2_TYPE_UNIQUE_ID (our
 * session ID), PP2_TYPE_SSL with the version and cipher sub-TLVs, and
 * PP2_TYPE_MSA_LOGIN (0xE0, custom range) with the authenticated login.
 *
 * Trusts its input only as far as lengths go: every field is bounded and
 * every write checked against the output's capacity; a v4-mapped IPv6
 * address is sent as IPv4 so that backends see the client as it is.
 * No I/O; used by backend.c and health.c, fuzzed by fuzz_proxy_v2.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

#include "smtp/proxy_v2.h"

#define CMD_LOCAL  0x20 /* version 2, LOCAL */
#define CMD_PROXY  0x21 /* version 2, PROXY */
#define FAM_UNSPEC 0x00
#define FAM_TCP4   0x11
#define FAM_TCP6   0x21

struct out {
	uint8_t *p;
	size_t len, cap;
	bool bad;
};

static void
put(struct out *o, const void *data, size_t len)
{
	if (o->bad || len > o->cap - o->len) {
		o->bad = true;
		return;
	}
	memcpy(o->p + o->len, data, len);
	o->len += len;
}

static void
put_u8(struct out *o, unsigned v)
{
	uint8_t b = (uint8_t)v;

	put(o, &b, 1);
}

static void
put_u16(struct out *o, size_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	put(o, b, 2);
}

/* Patch a big-endian length written earlier at off. */
static void
set_u16(struct out *o, size_t off, size_t v)
{
	if (o->bad)
		return;
	o->p[off] = (uint8_t)(v >> 8);
	o->p[off + 1] = (uint8_t)v;
}

static bool
present(const char *s)
{
	return s != NULL && s[0] != '\0';
}

static void
put_tlv(struct out *o, unsigned type, const char *s)
{
	size_t n = strlen(s);

	put_u8(o, type);
	put_u16(o, n);
	put(o, s, n);
}

/* The address as IPv4 (4 bytes) or IPv6 (16), v4-mapped IPv6 unmapped.
 * Returns 4, 16, or 0 for an unknown family. */
static size_t
addr_of(const struct sockaddr *sa, uint8_t ip[16], uint16_t *port)
{
	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)sa;
		memcpy(ip, &a->sin_addr, 4);
		*port = a->sin_port; /* network order already */
		return 4;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)sa;
		*port = a->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
			memcpy(ip, &a->sin6_addr.s6_addr[12], 4);
			return 4;
		}
		memcpy(ip, &a->sin6_addr, 16);
		return 16;
	}
	return 0;
}

/* IPv4 as v4-mapped IPv6, when the other side is IPv6. */
static void
widen(uint8_t ip[16])
{
	uint8_t v4[4];

	memcpy(v4, ip, 4);
	memset(ip, 0, 10);
	ip[10] = ip[11] = 0xff;
	memcpy(ip + 12, v4, 4);
}

static void
put_addresses(struct out *o, const struct proxy_v2_info *info, size_t fam_off)
{
	uint8_t src[16], dst[16];
	uint16_t sport = 0, dport = 0;
	size_t sl = addr_of(info->src, src, &sport);
	size_t dl = addr_of(info->dst, dst, &dport);

	if (sl == 0 || dl == 0)
		return; /* UNSPEC: no addresses */
	if (sl != dl) {
		if (sl == 4)
			widen(src);
		else
			widen(dst);
		sl = dl = 16;
	}
	if (!o->bad)
		o->p[fam_off] = sl == 4 ? FAM_TCP4 : FAM_TCP6;
	put(o, src, sl);
	put(o, dst, dl);
	put(o, &sport, 2);
	put(o, &dport, 2);
}

static bool
fields_ok(const struct proxy_v2_info *info)
{
	const char *v[] = {info->login, info->unique_id, info->sni,
			   info->tls_version, info->tls_cipher};

	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++)
		if (v[i] != NULL && strlen(v[i]) > PROXY_V2_FIELD_MAX)
			return false;
	return true;
}

ssize_t
proxy_v2_write(const struct proxy_v2_info *info, uint8_t *out, size_t cap)
{
	struct out o = {.p = out, .cap = cap};
	size_t len_off, fam_off, ssl_off;

	if (!fields_ok(info))
		return -1;
	put(&o, PROXY_V2_SIG, PROXY_V2_SIG_LEN);
	put_u8(&o, CMD_PROXY);
	fam_off = o.len;
	put_u8(&o, FAM_UNSPEC);
	len_off = o.len;
	put_u16(&o, 0);
	put_addresses(&o, info, fam_off);
	if (present(info->sni))
		put_tlv(&o, PP2_TYPE_AUTHORITY, info->sni);
	if (present(info->unique_id))
		put_tlv(&o, PP2_TYPE_UNIQUE_ID, info->unique_id);
	if (info->tls_version != NULL) {
		/* client: PP2_CLIENT_SSL; verify: nonzero, no client cert */
		static const uint8_t head[5] = {PP2_CLIENT_SSL, 0, 0, 0, 1};
		put_u8(&o, PP2_TYPE_SSL);
		ssl_off = o.len;
		put_u16(&o, 0);
		put(&o, head, sizeof(head));
		if (present(info->tls_version))
			put_tlv(&o, PP2_SUBTYPE_SSL_VER, info->tls_version);
		if (present(info->tls_cipher))
			put_tlv(&o, PP2_SUBTYPE_SSL_CIPH, info->tls_cipher);
		set_u16(&o, ssl_off, o.len - ssl_off - 2);
	}
	if (present(info->login))
		put_tlv(&o, PP2_TYPE_MSA_LOGIN, info->login);
	set_u16(&o, len_off, o.len - PROXY_V2_HEADER_MIN);
	return o.bad ? -1 : (ssize_t)o.len;
}

ssize_t
proxy_v2_write_local(uint8_t *out, size_t cap)
{
	struct out o = {.p = out, .cap = cap};

	put(&o, PROXY_V2_SIG, PROXY_V2_SIG_LEN);
	put_u8(&o, CMD_LOCAL);
	put_u8(&o, FAM_UNSPEC);
	put_u16(&o, 0);
	return o.bad ? -1 : (ssize_t)o.len;
}
