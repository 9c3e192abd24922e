/*
 * policy.h - what a session may do: the glue between a session and the
 * shared limits (ratelimit.h), the listener's allow/deny lists and the
 * sender check (sender.h).  Internal to session.c.
 *
 * The session calls in at fixed points: when it is accepted
 * (policy_admit), when a password check is answered (policy_auth_done,
 * policy_authed), before a MAIL or RCPT goes to the backend
 * (policy_forward), as message bytes go (policy_take_bytes), whenever a
 * transaction may have ended (policy_settle) and at the end
 * (policy_session_end).  Units taken for a transaction are held on the
 * session; policy_settle() gives them back unless the message was
 * delivered, so only mail the backend accepted costs tokens.
 *
 * Every refusal is answered (421 4.7.0 at connect, 451 4.7.1 for a rate,
 * 553 5.7.1 for a foreign sender, 451 4.3.1 for a MAIL while the process
 * is over limits.max_memory) and logged with msg=limit,
 * msg=session-refused or msg=mail-refused and the reason.
 */
#ifndef MSAPROXY_POLICY_H
#define MSAPROXY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct session;

/* A new connection: false when it is refused (the reply, if any, is
 * queued and the session set to close). */
bool policy_admit(struct session *s);
/* A password check answered for login: records a failure, and returns how
 * long to hold the answer (ms).  Sets s->banned when the failure earned
 * the client's network a ban. */
uint64_t policy_auth_done(struct session *s, const char *login, bool ok);
/* AUTH succeeded (after policy_auth_done() for the same login): find the
 * user's limits and senders. */
void policy_authed(struct session *s);
/* The MAIL or RCPT in s->smtp is about to be forwarded: false when it was
 * refused instead (the reply is queued). */
bool policy_forward(struct session *s);
/* n more message bytes for the backend: false when over the user's limit
 * (the session then sinks the message and answers 451 at its end). */
bool policy_take_bytes(struct session *s, size_t n);
/* Give back what an ended, undelivered transaction held. */
void policy_settle(struct session *s);
void policy_session_end(struct session *s);
/* The reply for a message sunk by policy_take_bytes(). */
const char *policy_bytes_reply(struct session *s, char *buf, size_t len);

#endif
