/*
 * ipnet.c - IP prefixes: parse, mask, match, print.  Read ipnet.h first.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "lib/ipnet.h"

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool
ipnet_is_v4(const uint8_t addr[16])
{
	return memcmp(addr, v4_mapped, sizeof(v4_mapped)) == 0;
}

/* Clear every bit of addr after the first len. */
static void
clear_host_bits(uint8_t addr[16], unsigned len)
{
	for (unsigned i = 0; i < 16; i++) {
		if (len >= 8) {
			len -= 8;
			continue;
		}
		addr[i] &= (uint8_t)(0xff00u >> len);
		len = 0;
	}
}

const char *
ipnet_parse(const char *text, struct ipnet *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
	unsigned max, len;
	uint8_t check[16];

	memset(out, 0, sizeof(*out));
	if (hlen == 0 || hlen >= sizeof(host))
		return "expected an address or prefix, e.g. 192.0.2.0/24";
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, out->addr + 12) == 1) {
		memcpy(out->addr, v4_mapped, sizeof(v4_mapped));
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		max = 128;
	} else {
		return "expected an address or prefix, e.g. 192.0.2.0/24";
	}
	len = max;
	if (slash != NULL) {
		const char *p = slash + 1;
		len = 0;
		if (*p == '\0' || strlen(p) > 3)
			return "bad prefix length";
		for (; *p != '\0'; p++) {
			if (*p < '0' || *p > '9')
				return "bad prefix length";
			len = len * 10 + (unsigned)(*p - '0');
		}
		if (len > max)
			return max == 32 ? "IPv4 prefix length is at most 32"
					 : "IPv6 prefix length is at most 128";
	}
	out->len = (uint8_t)(len + (128 - max));
	memcpy(check, out->addr, sizeof(check));
	clear_host_bits(check, out->len);
	if (memcmp(check, out->addr, sizeof(check)) != 0)
		return "host bits set after the prefix length";
	return NULL;
}

bool
ipnet_from_sockaddr(const struct sockaddr *sa, uint8_t addr[16])
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		memcpy(addr, v4_mapped, sizeof(v4_mapped));
		memcpy(addr + 12, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		memcpy(addr, &in6->sin6_addr, 16);
		return true;
	}
	return false;
}

bool
ipnet_sockaddr_text(const struct sockaddr *sa, char *buf, size_t len,
		    unsigned *port)
{
	const char *ok = NULL;

	if (len > 0)
		buf[0] = '\0';
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
			ok = inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf,
				       (socklen_t)len);
		else
			ok = inet_ntop(AF_INET6, &a->sin6_addr, buf,
				       (socklen_t)len);
		*port = ntohs(a->sin6_port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)sa;
		ok = inet_ntop(AF_INET, &a->sin_addr, buf, (socklen_t)len);
		*port = ntohs(a->sin_port);
	}
	if (ok == NULL && len > 0)
		buf[0] = '\0';
	return ok != NULL;
}

struct ipnet
ipnet_mask(const uint8_t addr[16], unsigned v4_len, unsigned v6_len)
{
	struct ipnet n;

	memcpy(n.addr, addr, 16);
	if (ipnet_is_v4(addr))
		n.len = (uint8_t)(96 + (v4_len > 32 ? 32 : v4_len));
	else
		n.len = (uint8_t)(v6_len > 128 ? 128 : v6_len);
	clear_host_bits(n.addr, n.len);
	return n;
}

bool
ipnet_contains(const struct ipnet *net, const uint8_t addr[16])
{
	unsigned full = net->len / 8, rest = net->len % 8;

	if (memcmp(net->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((net->addr[full] ^ addr[full]) & (uint8_t)(0xff00u >> rest)) ==
	       0;
}

bool
ipnet_list_contains(const struct ipnet *nets, size_t n, const uint8_t addr[16])
{
	for (size_t i = 0; i < n; i++)
		if (ipnet_contains(&nets[i], addr))
			return true;
	return false;
}

const char *
ipnet_format(const struct ipnet *net, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ipnet_is_v4(net->addr) && net->len >= 96) {
		inet_ntop(AF_INET, net->addr + 12, host, sizeof(host));
		snprintf(buf, len, "%s/%u", host, net->len - 96u);
	} else {
		inet_ntop(AF_INET6, net->addr, host, sizeof(host));
		snprintf(buf, len, "%s/%u", host, (unsigned)net->len);
	}
	return buf;
}
