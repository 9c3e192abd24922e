/*
 * proxy_in.c - read the PROXY protocol header of a connection before it
 * becomes a session (listeners[].proxy_protocol).
 *
 * A balancer in front of the proxy (HAProxy's send-proxy or
 * send-proxy-v2, a cloud load balancer's proxy protocol) opens each
 * connection with one header naming the client; the proxy then treats
 * that client as the peer for everything (limits, bans, XCLIENT, PROXY
 * v2 to backends, logs, metrics).  The header is only believed from the
 * listener's trusted prefixes: worker.c asks proxy_in_trusted() before
 * anything is read and closes the others.
 *
 * Not one byte after the header is taken from the socket: each read
 * PEEKs (recv MSG_PEEK) at what has arrived, smtp/proxy_header.c says
 * whether it is a header, a prefix of one or neither, and only the
 * header's own bytes are then read off (a prefix of a header is all
 * header bytes, so it is taken and the next peek waits for new bytes).
 * The session that follows starts on a socket positioned at the client's
 * first byte: an EHLO or a TLS ClientHello that came in the same segment
 * as the header is read by the session as if no header had been there,
 * and nothing of this phase lives in struct session.
 *
 * Bounded: the whole header must arrive within the listener's
 * proxy_protocol.timeout (each peek carries a linked timeout for what is
 * left of it; taking off bytes a peek saw cannot wait), is at most
 * PROXY_HEADER_MAX bytes, and a read never asks for more.  Failures end the
 * connection (worker.c logs and counts them): not a header (missing), a bad one
 * (malformed, unsupported), a v2 length over 1 KiB (oversize, at its 16th
 * byte), part of one then the end or the timeout (truncated), nothing at all
 * (timeout, or closed: a balancer's TCP check).
 *
 * Config keys: listeners[].proxy_protocol.trusted, .timeout.
 * Spec: HAProxy's proxy-protocol.txt.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/proxy_in.h"
#include "lib/timer.h"

bool
proxy_in_trusted(const struct config_listener *cl,
		 const union sockaddr_ip *peer)
{
	uint8_t addr[16];

	return ipnet_from_sockaddr(&peer->sa, addr) &&
	       ipnet_list_contains(cl->proxy_trusted.v, cl->proxy_trusted.n,
				   addr);
}

/* A read of len bytes into buf + have: a peek, with what is left of the
 * deadline as its linked timeout, or taking off bytes a peek saw (they
 * are on the socket already: no timeout needed).  False: the time is up
 * already. */
static bool
arm(struct proxy_in *p, size_t len, bool peek)
{
	uint64_t now = timer_now_ms(), left;
	struct io_uring_sqe *sqe;

	if (now >= p->deadline_ms)
		return false;
	left = p->deadline_ms - now;
	p->ts.tv_sec = (long long)(left / 1000);
	p->ts.tv_nsec = (long long)(left % 1000) * 1000000;
	p->taking = peek ? 0 : len;
	/* A peek and its timeout go to the kernel together. */
	if (peek && io_uring_sq_space_left(&p->ring->uring) < 2)
		io_uring_submit(&p->ring->uring);
	sqe = ring_sqe(p->ring);
	io_uring_prep_recv(sqe, p->fd, p->buf + p->have, len,
			   peek ? MSG_PEEK : MSG_WAITALL);
	ring_prep(sqe, p, OP_PROXY_RECV);
	p->inflight = true;
	if (!peek)
		return true;
	sqe->flags |= IOSQE_IO_LINK;
	sqe = ring_sqe(p->ring);
	io_uring_prep_link_timeout(sqe, &p->ts, 0);
	ring_prep(sqe, NULL, OP_IGNORE);
	return true;
}

static bool
peek(struct proxy_in *p)
{
	return arm(p, sizeof(p->buf) - p->have, true);
}

struct proxy_in *
proxy_in_new(struct ring *r, int fd, const struct config_listener *cl,
	     const union sockaddr_ip *peer)
{
	struct proxy_in *p = aligned_alloc(1u << OP_BITS, sizeof(*p));

	if (p == NULL)
		return NULL;
	memset(p, 0, sizeof(*p));
	p->ring = r;
	p->gen = generation_hold(r->gen);
	p->cl = cl;
	p->fd = fd;
	p->peer = *peer;
	p->deadline_ms = timer_now_ms() + cl->proxy_timeout_ms;
	r->objects++;
	peek(p);
	return p;
}

/* Nothing (more) came: a prefix of a header is truncated, nothing at all
 * a timeout or a close. */
static enum proxy_in_step
ended(struct proxy_in *p, bool timeout)
{
	if (p->have > 0)
		p->reason = PROXY_IN_TRUNCATED;
	else
		p->reason = timeout ? PROXY_IN_TIMEOUT : PROXY_IN_CLOSED;
	return PROXY_IN_FAIL;
}

static enum proxy_in_step
failed(struct proxy_in *p, enum proxy_header_error e)
{
	switch (e) {
	case PROXY_ERR_MISSING:
		p->reason = PROXY_IN_MISSING;
		break;
	case PROXY_ERR_OVERSIZE:
		p->reason = PROXY_IN_OVERSIZE;
		break;
	case PROXY_ERR_UNSUPPORTED:
		p->reason = PROXY_IN_UNSUPPORTED;
		break;
	default:
		p->reason = PROXY_IN_MALFORMED;
		break;
	}
	return PROXY_IN_FAIL;
}

/* n bytes taken off the socket. */
static enum proxy_in_step
taken(struct proxy_in *p, size_t n)
{
	p->have += n;
	if (n < p->taking) /* MSG_WAITALL cut short: the connection ended */
		return ended(p, false);
	if (p->done) {
		p->reason = p->hdr.local ? PROXY_IN_LOCAL : PROXY_IN_CLIENT;
		return PROXY_IN_READY;
	}
	return peek(p) ? PROXY_IN_WAIT : ended(p, true);
}

/* n more bytes seen (still on the socket) after the have taken. */
static enum proxy_in_step
peeked(struct proxy_in *p, size_t n)
{
	switch (proxy_header_parse(p->buf, p->have + n, &p->hdr)) {
	case PROXY_HEADER_ERROR:
		return failed(p, p->hdr.error);
	case PROXY_HEADER_DONE:
		p->done = true;
		n = p->hdr.len - p->have;
		break;
	case PROXY_HEADER_MORE:
		break; /* all n are header bytes: take them */
	}
	return arm(p, n, false) ? PROXY_IN_WAIT : ended(p, true);
}

enum proxy_in_step
proxy_in_on_recv(struct proxy_in *p, int res)
{
	p->inflight = false;
	if (p->stop) {
		p->reason = PROXY_IN_CLOSED;
		return PROXY_IN_FAIL;
	}
	if (res == -ECANCELED || res == -ETIME ||
	    timer_now_ms() >= p->deadline_ms)
		return ended(p, true);
	if (res <= 0)
		return ended(p, false); /* the end, or a reset */
	if (p->taking > 0)
		return taken(p, (size_t)res);
	return peeked(p, (size_t)res);
}

const union sockaddr_ip *
proxy_in_client(const struct proxy_in *p)
{
	return p->hdr.local ? &p->peer : &p->hdr.src;
}

void
proxy_in_stop(struct proxy_in *p)
{
	p->stop = true;
	if (p->inflight)
		shutdown(p->fd, SHUT_RD);
}

void
proxy_in_free(struct proxy_in *p)
{
	if (p->fd >= 0)
		close(p->fd);
	generation_drop(p->gen);
	p->ring->objects--;
	free(p);
}
