/*
 * xclient.h - the XCLIENT command that tells a backend who the client is
 * (Postfix XCLIENT_README), built from the attributes the backend offers.
 * Pure: no I/O.
 */
#ifndef MSAPROXY_XCLIENT_H
#define MSAPROXY_XCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* An XCLIENT line is at most this long, CRLF included: Postfix reads
 * command lines of up to 2048 bytes (line_length_limit). */
#define XCLIENT_LINE_MAX 2048

struct xclient_info {
	const struct sockaddr *client; /* ADDR, PORT */
	/* DESTADDR, DESTPORT: the proxy's end of the client's connection
	 * (NULL, or not IPv4/IPv6: left out). */
	const struct sockaddr *dest;
	const char *helo;  /* the client's EHLO name; "": [UNAVAILABLE] */
	const char *login; /* LOGIN; "": left out */
};

/* Is name in attrs, the space-separated list after "XCLIENT" in the
 * backend's EHLO reply (case-insensitive)? */
bool xclient_offers(const char *attrs, const char *name);

/*
 * "XCLIENT NAME=... ADDR=... PORT=... DESTADDR=... DESTPORT=... PROTO=...
 * HELO=... LOGIN=...\r\n" into out (NUL-terminated), with only the
 * attributes attrs offers, in that order, each value xtext-encoded.
 * NAME is [UNAVAILABLE] (the proxy does no DNS), PROTO is ESMTP, an
 * address is IPv4 dotted or "IPV6:" and the IPv6 text.  Returns the
 * length (CRLF included), or -1 with out empty (when cap > 0) if it does
 * not fit in cap (or in XCLIENT_LINE_MAX).
 */
ssize_t xclient_line(const char *attrs, const struct xclient_info *in,
		     char *out, size_t cap);

#endif
