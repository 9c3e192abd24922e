/*
 * proxy_header.c - read HAProxy PROXY protocol headers, v1 and v2 (pure).
 *
 * A listener with proxy_protocol sits behind a balancer that opens each
 * connection with one header naming the client (proxy-protocol.txt).
 * This file decides, from the bytes read so far, whether they are a
 * header's prefix (read more), a whole header (its length and addresses)
 * or not one we take (why).  It trusts nothing in the bytes: whether the
 * sender may send a header at all is the caller's question (the listener's
 * trusted prefixes), asked before any byte is read.
 *
 * v1 (2.1): "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n", at most 107 bytes.
 * Parsed strictly: single spaces, addresses of the named family in their
 * canonical text form (inet_pton), ports 0..65535 without leading zeros,
 * CRLF.  "PROXY UNKNOWN[ anything]\r\n" means "use the connection's own
 * endpoints", as the spec asks.  A byte that cannot be in a v1 line (not
 * printable ASCII, a CR not followed by LF) is refused as soon as it is
 * seen, so garbage fails at once instead of at the timeout.
 *
 * v2 (2.2): the 12-byte signature, version 2 and the command (LOCAL or
 * PROXY), the family and transport, a big-endian length, the addresses,
 * then TLVs, which are skipped (nothing here needs them).  LOCAL (a
 * balancer's own health check) and PROXY with AF_UNSPEC mean "use the
 * connection's own endpoints"; TCP over IPv4 or IPv6 gives the addresses;
 * UNIX sockets and datagrams are refused.  The length is bounded by
 * PROXY_V2_LEN_MAX (1 KiB): the addresses need at most 36 bytes and the
 * TLVs balancers send (AWS's VPC endpoint ID, Azure's link ID, GCP's PSC
 * connection, HAProxy's SSL facts with a client CN) a few hundred; a
 * longer header is refused at its 16th byte instead of being buffered.
 *
 * No I/O, no allocation; unit-tested (test_proxy_header.c) and fuzzed
 * (fuzz_proxy_header.c).
 */
#include <arpa/inet.h>
#include <string.h>

#include "smtp/proxy_header.h"

#define V1_SIG	     "PROXY "
#define V1_SIG_LEN   6
#define V2_SIG	     "\r\n\r\n\0\r\nQUIT\n"
#define V2_SIG_LEN   12
#define V2_FIXED     16

#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_AF_UNSPEC 0x0
#define V2_AF_INET   0x1
#define V2_AF_INET6  0x2
#define V2_AF_UNIX   0x3
#define V2_STREAM    0x1
#define V2_DGRAM     0x2

static enum proxy_header_status
fail(struct proxy_header *out, enum proxy_header_error e)
{
	out->error = e;
	return PROXY_HEADER_ERROR;
}

/* The first n bytes of data equal the first n of sig. */
static bool
prefix_of(const uint8_t *data, size_t len, const char *sig, size_t siglen)
{
	size_t n = len < siglen ? len : siglen;

	return memcmp(data, sig, n) == 0;
}

/* ---- v1 ---------------------------------------------------------------- */

/* A port: "0", or 1 to 5 digits without a leading zero, at most 65535. */
static bool
v1_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long v = 0;

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = htons((uint16_t)v);
	return true;
}

/* An address of family af written as inet_pton() takes it. */
static bool
v1_addr(const char *s, size_t len, int af, union sockaddr_ip *out)
{
	char text[INET6_ADDRSTRLEN];

	if (len == 0 || len >= sizeof(text))
		return false;
	memcpy(text, s, len);
	text[len] = '\0';
	memset(out, 0, sizeof(*out));
	if (af == AF_INET) {
		out->in.sin_family = AF_INET;
		return inet_pton(AF_INET, text, &out->in.sin_addr) == 1;
	}
	out->in6.sin6_family = AF_INET6;
	return inet_pton(AF_INET6, text, &out->in6.sin6_addr) == 1;
}

/* The line between "PROXY " and CRLF: "TCP4 a b p q", "UNKNOWN...". */
static bool
v1_line(const char *p, size_t len, struct proxy_header *out)
{
	const char *tok[5];
	size_t tlen[5], n = 0, start = 0;
	uint16_t sport, dport;
	int af;

	if (len >= 7 && memcmp(p, "UNKNOWN", 7) == 0 &&
	    (len == 7 || p[7] == ' ')) {
		out->local = true;
		return true;
	}
	/* Exactly five tokens, one space between each. */
	for (size_t i = 0; i <= len; i++) {
		if (i < len && p[i] != ' ')
			continue;
		if (n == 5 || i == start)
			return false;
		tok[n] = p + start;
		tlen[n++] = i - start;
		start = i + 1;
	}
	if (n != 5 || tlen[0] != 4)
		return false;
	if (memcmp(tok[0], "TCP4", 4) == 0)
		af = AF_INET;
	else if (memcmp(tok[0], "TCP6", 4) == 0)
		af = AF_INET6;
	else
		return false;
	if (!v1_addr(tok[1], tlen[1], af, &out->src) ||
	    !v1_addr(tok[2], tlen[2], af, &out->dst) ||
	    !v1_port(tok[3], tlen[3], &sport) ||
	    !v1_port(tok[4], tlen[4], &dport))
		return false;
	if (af == AF_INET) {
		out->src.in.sin_port = sport;
		out->dst.in.sin_port = dport;
	} else {
		out->src.in6.sin6_port = sport;
		out->dst.in6.sin6_port = dport;
	}
	return true;
}

static enum proxy_header_status
parse_v1(const uint8_t *data, size_t len, struct proxy_header *out)
{
	size_t max = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;

	for (size_t i = V1_SIG_LEN; i < max; i++) {
		if (data[i] == '\r') {
			if (i + 1 == len)
				return PROXY_HEADER_MORE;
			if (i + 1 >= PROXY_V1_MAX || data[i + 1] != '\n')
				return fail(out, PROXY_ERR_MALFORMED);
			if (!v1_line((const char *)data + V1_SIG_LEN,
				     i - V1_SIG_LEN, out))
				return fail(out, PROXY_ERR_MALFORMED);
			out->len = i + 2;
			out->version = 1;
			return PROXY_HEADER_DONE;
		}
		if (data[i] < 0x20 || data[i] > 0x7e)
			return fail(out, PROXY_ERR_MALFORMED);
	}
	if (len >= PROXY_V1_MAX)
		return fail(out, PROXY_ERR_MALFORMED); /* no CRLF in 107 */
	return PROXY_HEADER_MORE;
}

/* ---- v2 ---------------------------------------------------------------- */

static enum proxy_header_status
parse_v2(const uint8_t *data, size_t len, struct proxy_header *out)
{
	unsigned cmd, fam, proto;
	size_t plen;

	if (len > V2_SIG_LEN) {
		if (data[12] >> 4 != 2)
			return fail(out, PROXY_ERR_MALFORMED);
		cmd = data[12] & 0xf;
		if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
			return fail(out, PROXY_ERR_MALFORMED);
	}
	if (len > 13 && (data[12] & 0xf) == V2_CMD_PROXY) {
		fam = data[13] >> 4;
		proto = data[13] & 0xf;
		if (fam > V2_AF_UNIX || proto > V2_DGRAM ||
		    (fam == V2_AF_UNSPEC) != (proto == 0))
			return fail(out, PROXY_ERR_MALFORMED);
		if (fam == V2_AF_UNIX || proto == V2_DGRAM)
			return fail(out, PROXY_ERR_UNSUPPORTED);
	}
	if (len < V2_FIXED)
		return PROXY_HEADER_MORE;
	plen = (size_t)data[14] << 8 | data[15];
	if (plen > PROXY_V2_LEN_MAX)
		return fail(out, PROXY_ERR_OVERSIZE);
	cmd = data[12] & 0xf;
	fam = data[13] >> 4;
	if (cmd == V2_CMD_PROXY && ((fam == V2_AF_INET && plen < 12) ||
				    (fam == V2_AF_INET6 && plen < 36)))
		return fail(out, PROXY_ERR_MALFORMED);
	if (len < V2_FIXED + plen)
		return PROXY_HEADER_MORE;

	const uint8_t *a = data + V2_FIXED;
	if (cmd == V2_CMD_LOCAL || fam == V2_AF_UNSPEC) {
		out->local = true;
	} else if (fam == V2_AF_INET) {
		out->src.in.sin_family = AF_INET;
		out->dst.in.sin_family = AF_INET;
		memcpy(&out->src.in.sin_addr, a, 4);
		memcpy(&out->dst.in.sin_addr, a + 4, 4);
		memcpy(&out->src.in.sin_port, a + 8, 2);
		memcpy(&out->dst.in.sin_port, a + 10, 2);
	} else {
		out->src.in6.sin6_family = AF_INET6;
		out->dst.in6.sin6_family = AF_INET6;
		memcpy(&out->src.in6.sin6_addr, a, 16);
		memcpy(&out->dst.in6.sin6_addr, a + 16, 16);
		memcpy(&out->src.in6.sin6_port, a + 32, 2);
		memcpy(&out->dst.in6.sin6_port, a + 34, 2);
	}
	out->len = V2_FIXED + plen;
	out->version = 2;
	return PROXY_HEADER_DONE;
}

/* ---- entry points ------------------------------------------------------ */

enum proxy_header_status
proxy_header_parse(const uint8_t *data, size_t len, struct proxy_header *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0)
		return PROXY_HEADER_MORE;
	if (prefix_of(data, len, V1_SIG, V1_SIG_LEN))
		return len <= V1_SIG_LEN ? PROXY_HEADER_MORE
					 : parse_v1(data, len, out);
	if (prefix_of(data, len, V2_SIG, V2_SIG_LEN))
		return len <= V2_SIG_LEN ? PROXY_HEADER_MORE
					 : parse_v2(data, len, out);
	return fail(out, PROXY_ERR_MISSING);
}

const char *
proxy_header_error_name(enum proxy_header_error e)
{
	static const char *const names[PROXY_ERR_COUNT] = {
		[PROXY_ERR_NONE] = "none",
		[PROXY_ERR_MISSING] = "missing",
		[PROXY_ERR_MALFORMED] = "malformed",
		[PROXY_ERR_OVERSIZE] = "oversize",
		[PROXY_ERR_UNSUPPORTED] = "unsupported",
	};

	return (unsigned)e < PROXY_ERR_COUNT ? names[e] : "unknown";
}
