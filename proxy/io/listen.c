/*
 * listen.c - bind the listening sockets, reuse them across reloads.
 *
 * Config keys: listeners (address).  IPv6 sockets also take IPv4
 * (IPV6_V6ONLY off), so "*:587" is one socket per worker.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/listen.h"

#define LISTEN_BACKLOG 1024

static bool
same_addr(const struct listen_addr *a, const struct config_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, b->len) == 0;
}

/* Errors name the listener's place in the config: "FILE:LINE: ...". */
static int
bind_one(const struct config *cfg, const struct config_listener *cl, char *err,
	 size_t errlen)
{
	int fd, one = 1, zero = 0, e;

	fd = socket(cl->addr.ss.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto fail;
	if (cl->addr.ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	/* Accepted sockets inherit it (Linux): no setsockopt() per session.
	 * TLS 1.3 tickets otherwise stall on delayed ACKs. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&cl->addr.ss, cl->addr.len) !=
		    0 ||
	    listen(fd, LISTEN_BACKLOG) != 0)
		goto fail;
	return fd;
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	snprintf(err, errlen, "%s:%d: listener %s: %s",
		 cfg->path ? cfg->path : "config", cl->line, cl->addr.text,
		 strerror(e));
	return -1;
}

static const struct listen_addr *
find(const struct listen_set *s, const struct config_addr *a)
{
	for (size_t i = 0; s != NULL && i < s->n; i++) {
		if (same_addr(&s->v[i], a))
			return &s->v[i];
	}
	return NULL;
}

int
listen_set_build(const struct listen_set *cur, const struct config *cfg,
		 unsigned nworkers, struct listen_set *next, char *err,
		 size_t errlen)
{
	memset(next, 0, sizeof(*next));
	next->nworkers = nworkers;
	next->v = calloc(cfg->nlisteners, sizeof(*next->v));
	if (next->v == NULL)
		goto oom;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *cl = &cfg->listeners[i];
		const struct listen_addr *old = NULL;
		struct listen_addr *la = &next->v[i];

		if (cur != NULL && cur->nworkers == nworkers)
			old = find(cur, &cl->addr);
		la->ss = cl->addr.ss;
		la->len = cl->addr.len;
		la->fds = malloc(nworkers * sizeof(int));
		if (la->fds == NULL)
			goto oom;
		next->n++;
		for (unsigned k = 0; k < nworkers; k++)
			la->fds[k] = -1;
		for (unsigned k = 0; k < nworkers; k++) {
			la->fds[k] = old != NULL
					     ? old->fds[k]
					     : bind_one(cfg, cl, err, errlen);
			if (la->fds[k] < 0)
				goto fail;
		}
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	listen_set_abort(cur, next);
	return -1;
}

int
listen_set_has(const struct listen_set *s, int fd)
{
	for (size_t i = 0; i < s->n; i++) {
		for (unsigned k = 0; k < s->nworkers; k++) {
			if (s->v[i].fds[k] == fd)
				return 1;
		}
	}
	return 0;
}

void
listen_set_forget(struct listen_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].fds);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

void
listen_set_abort(const struct listen_set *cur, struct listen_set *next)
{
	for (size_t i = 0; i < next->n; i++) {
		for (unsigned k = 0; k < next->nworkers; k++) {
			int fd = next->v[i].fds[k];

			if (fd >= 0 &&
			    (cur == NULL || !listen_set_has(cur, fd)))
				close(fd);
		}
	}
	listen_set_forget(next);
}
