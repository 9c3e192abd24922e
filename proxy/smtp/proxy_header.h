/*
 * proxy_header.h - HAProxy PROXY protocol header reader, v1 and v2 (pure).
 *
 * What a listener with proxy_protocol gets from a trusted balancer before
 * the client's first byte: the client's and the destination's address and
 * port.  Spec: HAProxy's proxy-protocol.txt, sections 2.1 (v1, text) and
 * 2.2 (v2, binary).  The writer for backends is proxy_v2.c.
 */
#ifndef MSAPROXY_PROXY_HEADER_H
#define MSAPROXY_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/ipnet.h"

#define PROXY_V1_MAX	 107  /* the longest v1 line, CRLF included */
#define PROXY_V2_LEN_MAX 1024 /* the longest v2 payload taken (see .c) */
#define PROXY_HEADER_MAX (16 + PROXY_V2_LEN_MAX)

enum proxy_header_status {
	PROXY_HEADER_MORE,  /* a prefix of a header: read more */
	PROXY_HEADER_DONE,  /* a whole header: see struct proxy_header */
	PROXY_HEADER_ERROR, /* not a header we take: see .error */
};

enum proxy_header_error {
	PROXY_ERR_NONE,
	PROXY_ERR_MISSING,     /* the bytes start neither signature */
	PROXY_ERR_MALFORMED,   /* a signature, then something else */
	PROXY_ERR_OVERSIZE,    /* a v2 length over PROXY_V2_LEN_MAX */
	PROXY_ERR_UNSUPPORTED, /* v2 over UNIX sockets or datagrams */
	PROXY_ERR_COUNT,
};

struct proxy_header {
	size_t len;	  /* bytes of the header, to skip */
	unsigned version; /* 1 or 2 */
	/* True: use the connection's own endpoints (v2 LOCAL, a balancer's
	 * health check; v1 UNKNOWN; v2 PROXY with AF_UNSPEC).  src and dst
	 * are then AF_UNSPEC. */
	bool local;
	union sockaddr_ip src, dst; /* AF_INET or AF_INET6, with ports */
	enum proxy_header_error error;
};

/*
 * Read a header from the first len bytes of a connection.  MORE: every
 * byte so far can start a header and more are needed; DONE: the header
 * is out->len bytes (what follows is the client's); ERROR: out->error
 * says why.  Never reads past data[len - 1]; never asks for more than
 * PROXY_HEADER_MAX bytes in all.
 */
enum proxy_header_status proxy_header_parse(const uint8_t *data, size_t len,
					    struct proxy_header *out);

/* "missing", "malformed", "oversize", "unsupported" (for reason=proxy-X). */
const char *proxy_header_error_name(enum proxy_header_error e);

#endif
