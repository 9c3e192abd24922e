/*
 * listen.h - the listening sockets: one SO_REUSEPORT socket per listener
 * per worker, so the kernel spreads connections across workers.
 *
 * Sockets are bound on the main thread, at start-up and on reload, so a
 * bad or busy address fails there with "FILE:LINE: listener ADDR: why".
 * A reload keeps the sockets of every address still configured (their
 * queued connections are never dropped) and binds only the new ones; the
 * workers close the sockets of addresses that went away.
 */
#ifndef MSAPROXY_LISTEN_H
#define MSAPROXY_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"

struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	int *fds; /* one per worker */
};

/* v[i] is cfg->listeners[i] of the config the set was built for. */
struct listen_set {
	struct listen_addr *v;
	size_t n;
	unsigned nworkers;
};

/*
 * The sockets cfg needs: those of cur (may be empty) whose address is still
 * configured are reused, the others bound now.  On failure nothing of cur
 * changes and what was bound is closed again.
 */
int listen_set_build(const struct listen_set *cur, const struct config *cfg,
		     unsigned nworkers, struct listen_set *next, char *err,
		     size_t errlen);
/* Is fd one of s's sockets? */
int listen_set_has(const struct listen_set *s, int fd);
/* Free the arrays; the sockets now belong to the workers. */
void listen_set_forget(struct listen_set *s);
/* Close the sockets of next that cur does not have (an aborted build or
 * start-up), then forget next. */
void listen_set_abort(const struct listen_set *cur, struct listen_set *next);

#endif
