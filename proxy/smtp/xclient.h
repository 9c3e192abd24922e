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

/* The attributes xclient_line() can send, as bits: what a backend offered
 * in a form that fits an atomic (backend_pool.c remembers it per server
 * so a session can send XCLIENT before any EHLO). */
#define XCLIENT_ATTR_NAME     0x01u
#define XCLIENT_ATTR_ADDR     0x02u
#define XCLIENT_ATTR_PORT     0x04u
#define XCLIENT_ATTR_DESTADDR 0x08u
#define XCLIENT_ATTR_DESTPORT 0x10u
#define XCLIENT_ATTR_PROTO    0x20u
#define XCLIENT_ATTR_HELO     0x40u
#define XCLIENT_ATTR_LOGIN    0x80u

/* attrs as bits; names xclient_line() never sends are left out. */
unsigned xclient_attr_bits(const char *attrs);
/* bits as a list ("NAME ADDR PORT ...") into out, NUL-terminated, the
 * names that fit in cap. */
void xclient_attr_list(unsigned bits, char *out, size_t cap);

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
