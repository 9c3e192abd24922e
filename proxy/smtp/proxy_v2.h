/*
 * proxy_v2.h - HAProxy PROXY protocol version 2 header writer (pure).
 *
 * What a backend with identity proxy-v2 gets as the first bytes of the
 * connection: the client's and the listener's address and port, and TLVs
 * with the TLS facts and the login.  Spec: HAProxy's proxy-protocol.txt,
 * section 2.2 (binary header) and 2.2.x (TLVs).
 */
#ifndef MSAPROXY_PROXY_V2_H
#define MSAPROXY_PROXY_V2_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PROXY_V2_SIG	    "\r\n\r\n\0\r\nQUIT\n"
#define PROXY_V2_SIG_LEN    12
#define PROXY_V2_HEADER_MIN 16	 /* signature, command, family, length */
#define PROXY_V2_MAX	    2048 /* what proxy_v2_write() can need */

/* TLV types (proxy-protocol.txt 2.2.x); LOGIN is ours, in the custom
 * range 0xE0..0xEF. */
#define PP2_TYPE_AUTHORITY   0x02 /* TLS SNI host name */
#define PP2_TYPE_UNIQUE_ID   0x05 /* our session ID */
#define PP2_TYPE_SSL	     0x20
#define PP2_SUBTYPE_SSL_VER  0x21
#define PP2_SUBTYPE_SSL_CIPH 0x23
#define PP2_TYPE_MSA_LOGIN   0xE0 /* the authenticated login, UTF-8 */
#define PP2_CLIENT_SSL	     0x01

#define PROXY_V2_FIELD_MAX   255 /* longest login, SNI, version, cipher */

/* The facts a header carries; NULL or "" strings are left out. */
struct proxy_v2_info {
	const struct sockaddr *src; /* the client */
	const struct sockaddr *dst; /* the listener it connected to */
	const char *login;
	const char *unique_id;
	const char *sni;
	const char *tls_version; /* NULL: no TLS TLV */
	const char *tls_cipher;
};

/* A PROXY command header for info.  Addresses that are not both IPv4 or
 * IPv6 (after unmapping v4-mapped IPv6) are sent as IPv6; an unknown
 * family gives an UNSPEC header (addresses left out).  Strings longer than
 * PROXY_V2_FIELD_MAX are refused.  Returns the length written, or -1 when
 * out is too small or a field too long. */
ssize_t proxy_v2_write(const struct proxy_v2_info *info, uint8_t *out,
		       size_t cap);
/* A LOCAL command header (health checks: "this is the proxy itself"). */
ssize_t proxy_v2_write_local(uint8_t *out, size_t cap);

#endif
