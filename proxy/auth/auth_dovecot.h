/*
 * auth_dovecot.h - logins checked by Dovecot's auth server over its
 * auth-client socket (auth.backend: dovecot; docs/AUTH.md).
 *
 * One thread holds auth.dovecot.connections connections to
 * auth.dovecot.socket and multiplexes them with poll(): workers drop
 * requests in a mailbox and ring an eventfd; the thread sends each as an
 * AUTH line with its own id, many in flight per connection, and answers
 * it through req->done() when Dovecot's OK or FAIL comes back, or temp
 * when auth.dovecot.timeout passes, the connection drops or none is up.
 * Connections come back with a backoff (100 ms doubling to 5 s).
 */
#ifndef MSAPROXY_AUTH_AUTH_DOVECOT_H
#define MSAPROXY_AUTH_AUTH_DOVECOT_H

#include <stdatomic.h>
#include <stddef.h>

#include "auth/auth_backend.h"
#include "config/config.h"

struct auth_dovecot;

/* Starts the thread; it connects in the background (Dovecot may come up
 * later).  NULL with err set when the thread cannot start. */
struct auth_dovecot *auth_dovecot_start(const struct config *cfg, char *err,
					size_t errlen);
void auth_dovecot_submit(struct auth_dovecot *d, struct auth_request *req);
/* AUTH_MECH_* Dovecot can check: the configured mechanisms until the
 * first handshake, then those its last handshake offered (LOGIN needs
 * PLAIN too: a LOGIN exchange goes to Dovecot as PLAIN). */
const atomic_uint *auth_dovecot_offer(const struct auth_dovecot *d);
/* Answers every request still waiting (temp), then stops.  NULL is
 * fine. */
void auth_dovecot_stop(struct auth_dovecot *d);

#endif
