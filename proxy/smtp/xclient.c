/*
 * xclient.c - the XCLIENT command (Postfix XCLIENT_README).
 *
 * After the backend's EHLO offers "XCLIENT NAME ADDR PORT ...", the proxy
 * tells it the client's facts, so the backend logs and applies its
 * policies to the client and not to the proxy.  Postfix answers a good
 * XCLIENT with a fresh 220 (and the EHLO must be sent again; backend.c).
 *
 * Security: the HELO name and the login are the client's words; every
 * value is xtext-encoded (RFC 3461 4), so none can add an attribute, a
 * space or a line end.  An attribute the backend did not offer is never
 * sent (Postfix refuses the whole command for one it does not know).
 * Pure: no I/O, no allocation.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/bit_names.h"
#include "lib/ipnet.h"
#include "smtp/xclient.h"
#include "smtp/xtext.h"

#define UNAVAILABLE "[UNAVAILABLE]"

bool
xclient_offers(const char *attrs, const char *name)
{
	size_t n = strlen(name);
	const char *p = attrs;

	while (*p) {
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == n && strncasecmp(p, name, n) == 0)
			return true;
		p = *e ? e + 1 : e;
	}
	return false;
}

static const struct bit_name attr_names[] = {
	{XCLIENT_ATTR_NAME, "NAME"},
	{XCLIENT_ATTR_ADDR, "ADDR"},
	{XCLIENT_ATTR_PORT, "PORT"},
	{XCLIENT_ATTR_DESTADDR, "DESTADDR"},
	{XCLIENT_ATTR_DESTPORT, "DESTPORT"},
	{XCLIENT_ATTR_PROTO, "PROTO"},
	{XCLIENT_ATTR_HELO, "HELO"},
	{XCLIENT_ATTR_LOGIN, "LOGIN"},
};
#define NATTRS (sizeof(attr_names) / sizeof(*attr_names))

unsigned
xclient_attr_bits(const char *attrs)
{
	unsigned bits = 0;

	for (size_t i = 0; i < NATTRS; i++)
		if (xclient_offers(attrs, attr_names[i].name))
			bits |= attr_names[i].bit;
	return bits;
}

void
xclient_attr_list(unsigned bits, char *out, size_t cap)
{
	bit_names_join(attr_names, NATTRS, bits, " ", out, cap);
}

/* ADDR-style text: "192.0.2.7" or "IPV6:2001:db8::7"; false (and
 * nothing) for a socket address that is neither. */
static bool
addr_text(const struct sockaddr *sa, char *buf, size_t len, char *port,
	  size_t plen)
{
	char ip[INET6_ADDRSTRLEN];
	unsigned p;

	if (sa == NULL || !ipnet_sockaddr_text(sa, ip, sizeof(ip), &p))
		return false;
	snprintf(buf, len, "%s%s", strchr(ip, ':') ? "IPV6:" : "", ip);
	snprintf(port, plen, "%u", p);
	return true;
}

/* " NAME=xtext(value)" when offered; false when it does not fit. */
static bool
add(const char *attrs, char *out, size_t cap, size_t *len, const char *name,
    const char *value)
{
	char enc[3 * 256 + 1];
	int n;

	if (value == NULL || !xclient_offers(attrs, name))
		return true;
	if (xtext_encode(value, strlen(value), enc, sizeof(enc)) < 0)
		return false;
	n = snprintf(out + *len, cap - *len, " %s=%s", name, enc);
	if (n < 0 || (size_t)n >= cap - *len)
		return false;
	*len += (size_t)n;
	return true;
}

ssize_t
xclient_line(const char *attrs, const struct xclient_info *in, char *out,
	     size_t cap)
{
	char addr[INET6_ADDRSTRLEN + 8], port[8];
	char daddr[INET6_ADDRSTRLEN + 8], dport[8];
	bool have_dest;
	size_t len;

	if (cap > XCLIENT_LINE_MAX + 1)
		cap = XCLIENT_LINE_MAX + 1; /* with the NUL */
	if (cap > 0)
		out[0] = '\0';
	if (cap < sizeof("XCLIENT\r\n"))
		return -1;
	if (!addr_text(in->client, addr, sizeof(addr), port, sizeof(port))) {
		snprintf(addr, sizeof(addr), UNAVAILABLE);
		snprintf(port, sizeof(port), "%s", "");
	}
	have_dest =
		addr_text(in->dest, daddr, sizeof(daddr), dport, sizeof(dport));
	len = (size_t)snprintf(out, cap, "XCLIENT");
	if (!add(attrs, out, cap - 2, &len, "NAME", UNAVAILABLE) ||
	    !add(attrs, out, cap - 2, &len, "ADDR", addr) ||
	    !add(attrs, out, cap - 2, &len, "PORT",
		 port[0] ? port : UNAVAILABLE) ||
	    !add(attrs, out, cap - 2, &len, "DESTADDR",
		 have_dest ? daddr : NULL) ||
	    !add(attrs, out, cap - 2, &len, "DESTPORT",
		 have_dest ? dport : NULL) ||
	    !add(attrs, out, cap - 2, &len, "PROTO", "ESMTP") ||
	    !add(attrs, out, cap - 2, &len, "HELO",
		 in->helo[0] ? in->helo : UNAVAILABLE) ||
	    !add(attrs, out, cap - 2, &len, "LOGIN",
		 in->login[0] ? in->login : NULL)) {
		out[0] = '\0';
		return -1;
	}
	memcpy(out + len, "\r\n", 3);
	return (ssize_t)(len + 2);
}
