/*
 * ipnet.h - IP addresses and network prefixes (CIDR), IPv4 and IPv6 in one
 * form.
 *
 * Every address is held as 16 bytes: IPv6 as is, IPv4 as the IPv4-mapped
 * IPv6 address ::ffff:a.b.c.d (RFC 4291 2.5.5.2), so one comparison covers
 * both families and an IPv4 client seen on a dual-stack socket matches an
 * IPv4 prefix.  A prefix length is always counted on the 128-bit form
 * (an IPv4 /24 is stored as /120); ipnet_format() prints it back as written.
 *
 * Pure: no I/O, no allocation.  Used for listener allow/deny lists and the
 * per-IP limits (ratelimit.c).
 */
#ifndef MSAPROXY_IPNET_H
#define MSAPROXY_IPNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define IPNET_TEXT_MAX 50 /* "ffff:...:ffff/128" and NUL */

/* An IPv4 or IPv6 socket address in the room it needs: 28 bytes, where a
 * struct sockaddr_storage takes 128 (a session keeps its client's). */
union sockaddr_ip {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct ipnet {
	uint8_t addr[16]; /* host bits are zero */
	uint8_t len;	  /* 0..128, on the 16-byte form */
};

/* "192.0.2.0/24", "2001:db8::/32", or a single address (/32, /128).  Host
 * bits set under the mask are refused ("192.0.2.1/24"), because they are
 * nearly always a typo.  Returns NULL, or why it is not a prefix. */
const char *ipnet_parse(const char *text, struct ipnet *out);

/* The 16-byte form of a socket address; false for other families. */
bool ipnet_from_sockaddr(const struct sockaddr *sa, uint8_t addr[16]);

/* An AF_INET or AF_INET6 socket address as text into buf (at least
 * INET6_ADDRSTRLEN bytes; an IPv4-mapped IPv6 address as plain IPv4, as a
 * dual-stack listener sees IPv4 clients) and its port into *port; false,
 * with buf empty, for other families. */
bool ipnet_sockaddr_text(const struct sockaddr *sa, char *buf, size_t len,
			 unsigned *port);

bool ipnet_is_v4(const uint8_t addr[16]);

/* addr with everything after its first bits cleared: v4_len bits of an
 * IPv4 address, v6_len bits of an IPv6 one. */
struct ipnet ipnet_mask(const uint8_t addr[16], unsigned v4_len,
			unsigned v6_len);

bool ipnet_contains(const struct ipnet *net, const uint8_t addr[16]);
/* Any of n prefixes contains addr. */
bool ipnet_list_contains(const struct ipnet *nets, size_t n,
			 const uint8_t addr[16]);

/* "192.0.2.0/24" or "2001:db8::/32" into buf (IPNET_TEXT_MAX bytes). */
const char *ipnet_format(const struct ipnet *net, char *buf, size_t len);

#endif
