/*
 * cluster_link.h - a worker's own connection to the cluster's Redis, on
 * its ring, for the calls a session waits for (cluster.h: a take at MAIL
 * or RCPT, a login's verdict, and what goes back without waiting).
 *
 * The cluster thread could carry them all, but each call would then cost
 * two thread hops and two wake-ups; here it costs a send and a receive on
 * a ring that is awake anyway.  The thread keeps what is not per session:
 * the bans' subscription and resync, the operator's calls, and every call
 * while this link is down or still connecting.  With cluster.tls the
 * link's records go through memory BIOs.
 *
 * Answers are kept on the ring's list (ring.h) and the worker hands them
 * to their sessions after the batch of completions, as it does for the
 * mailbox: a session is never run from inside the link's receive.
 */
#ifndef MSAPROXY_CLUSTER_LINK_H
#define MSAPROXY_CLUSTER_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "limits/ratelimit.h"

struct cluster;
struct cluster_link;
struct cluster_request;
struct ring;

/* NULL when the cluster wants no links (TLS) or there is no memory. */
struct cluster_link *cluster_link_new(struct ring *r, struct cluster *c);
/* Take req onto the link: false when it is not up (send it through the
 * cluster thread instead). */
bool cluster_link_submit(struct cluster_link *l, struct cluster_request *req);
/* policy.h's policy_shared.give with the link as arg: units given back,
 * bytes charged, on the link (through the thread while it is down). */
void cluster_link_give(void *link, const char *login,
		       const struct config_user_limits *pol,
		       const uint64_t amount[LIMIT_USER_KINDS], bool charge);
/* Deadlines: the oldest call's timeout, the next connect attempt. */
uint64_t cluster_link_next(const struct cluster_link *l);
void cluster_link_tick(struct cluster_link *l, uint64_t now_ms);
/* Completions of its ring operations. */
void cluster_link_on_connect(struct cluster_link *l, int res);
void cluster_link_on_send(struct cluster_link *l, int res);
void cluster_link_on_recv(struct cluster_link *l, int res);
/* The worker stops: close, answer what is in flight; freed with its last
 * completion. */
void cluster_link_close(struct cluster_link *l);

#endif
