/*
 * generation.h - one loaded configuration and everything made from it:
 * the config, the users file, each worker's TLS contexts and the SMTP
 * parameters.  A reload makes a new generation beside the running one and
 * swaps it in only when all of it loaded; a session keeps the generation
 * it started on (its listener, users entry, limits and certificates) until
 * it ends, so a reload never changes the rules under a session in flight.
 *
 * Reference counted across threads: the main thread holds the current
 * generation, every worker holds the one it accepts on, every session the
 * one it started on.  The last generation_drop() frees it, on whichever
 * thread that is (everything in it is safe to free anywhere).
 */
#ifndef MSAPROXY_GENERATION_H
#define MSAPROXY_GENERATION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config/config.h"
#include "smtp/smtp.h"

struct passwd_db;
struct backend_pool;
struct tls_server;

struct generation {
	atomic_uint refs;
	unsigned id; /* 1 at start, +1 per reload: for logs */
	struct config *cfg;
	struct passwd_db *users;
	struct passwd_db *admin_users; /* metrics.admin_users, or NULL */
	struct tls_server **tls;       /* one per worker (see tls.h), or none */
	unsigned ntls;
	struct smtp_params params[2]; /* by enum listener_mode */
	struct backend_pool
		*backend_pool;	 /* the backends' balance and health */
	SSL_CTX **backend_tls;	 /* per server; NULL where tls is none */
	unsigned *listener_slot; /* per listener, counters slot (registry.h) */
	int64_t *cert_expiry;	 /* per cfg->certs: notAfter, Unix time (0:
				    unknown), read once at the load */
};

/* ntls for one set of TLS contexts per worker, as cfg->workers says. */
#define GENERATION_PER_WORKER 0xffffffffu

/*
 * Load path: the config, the users file (with its class= names checked
 * against the config), the backend pool and TLS client contexts (CA
 * files read now) and ntls sets of TLS contexts (0: check the
 * certificates once and keep none, for -t; GENERATION_PER_WORKER).  NULL
 * with a precise "FILE:LINE: key: why" or "auth.passwd_file: ..." in err.
 * vet (may be NULL) sees the config before any file it names is read (the
 * audit): -1 stops the load with its err.  The result holds one reference.
 */
struct generation *generation_load(const char *path, unsigned id, unsigned ntls,
				   int (*vet)(const struct config *cfg,
					      void *arg, char *err,
					      size_t errlen),
				   void *arg, char *err, size_t errlen);
/* The auth back end's live mechanisms (auth_backend_offer()) for both
 * modes' EHLO and AUTH; before any worker sees g. */
void generation_set_mechs(struct generation *g, const atomic_uint *live);
struct generation *generation_hold(struct generation *g);
/* The counters slot of listener l (one of g's), set by the server
 * (registry.h); 0 before. */
unsigned generation_listener_slot(const struct generation *g,
				  const struct config_listener *l);
void generation_drop(struct generation *g);

#endif
