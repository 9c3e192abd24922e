/*
 * proxy_in.h - the PROXY header before a session: a connection accepted
 * on a proxy_protocol listener, read until its header is whole.
 * Private to proxy/io/.
 *
 * worker.c starts one per accepted connection from a trusted source,
 * hands it the completions tagged OP_PROXY_RECV, and when it is ready
 * (the header read, nothing after it) admits the header's client as if
 * it had connected directly; when it failed, refuses the connection.
 * No session exists until then, so a session carries nothing of this
 * phase (struct session is at its size cap).
 */
#ifndef MSAPROXY_PROXY_IN_H
#define MSAPROXY_PROXY_IN_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "config/generation.h"
#include "io/ring.h"
#include "lib/ipnet.h"
#include "ops/counters.h"
#include "smtp/proxy_header.h"

enum proxy_in_step {
	PROXY_IN_WAIT,	/* more completions to come */
	PROXY_IN_READY, /* the header is read: proxy_in_client() */
	PROXY_IN_FAIL,	/* close it: proxy_in_reason() */
};

struct proxy_in {
	struct ring *ring;
	struct generation *gen; /* held: cl is its */
	const struct config_listener *cl;
	int fd;
	union sockaddr_ip peer; /* the balancer */
	uint64_t deadline_ms;
	size_t have;   /* header bytes taken off the socket */
	size_t taking; /* a read of this many is in flight; 0: a peek */
	bool done;     /* hdr is whole: the last take ends it */
	bool inflight; /* a read is on the ring */
	bool stop;     /* a drain: end at the next completion */
	enum counter_proxy reason;
	struct __kernel_timespec ts; /* the linked timeout's, until submitted */
	struct proxy_header hdr;
	struct proxy_in *prev, *next; /* the worker's list */
	uint8_t buf[PROXY_HEADER_MAX];
} __attribute__((aligned(1u << OP_BITS)));

/* Is the connection's own source one that may send a header? */
bool proxy_in_trusted(const struct config_listener *cl,
		      const union sockaddr_ip *peer);

/* Start reading fd's header (the first read is armed).  NULL: no
 * memory (fd is still the caller's). */
struct proxy_in *proxy_in_new(struct ring *r, int fd,
			      const struct config_listener *cl,
			      const union sockaddr_ip *peer);
/* A completion of its read. */
enum proxy_in_step proxy_in_on_recv(struct proxy_in *p, int res);
/* Ready: the client to admit (the header's source, or the balancer for a
 * LOCAL or UNKNOWN header). */
const union sockaddr_ip *proxy_in_client(const struct proxy_in *p);
/* End now (a drain): the read in flight completes at once. */
void proxy_in_stop(struct proxy_in *p);
/* Free p; its fd is closed unless taken (set to -1). */
void proxy_in_free(struct proxy_in *p);

#endif
