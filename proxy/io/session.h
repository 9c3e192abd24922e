/*
 * session.h - one client session on its worker.  Private to proxy/io/.
 *
 * A session belongs to the worker that accepted it and is touched only by
 * that worker's thread.  session.c alone writes struct session, except
 * s->be, the link to the backend leg, which backend.c keeps (backend.h).
 * Every ring operation that names a session holds a reference
 * (s->inflight), and so does a pending wake-up; a closed session is freed
 * when the last one is gone, so a late completion never touches freed
 * memory.
 */
#ifndef MSAPROXY_SESSION_H
#define MSAPROXY_SESSION_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "auth/auth_backend.h"
#include "lib/buf.h"
#include "config/config.h"
#include "config/generation.h"
#include "lib/ipnet.h"
#include "lib/log.h"
#include "limits/policy.h"
#include "limits/ratelimit.h"
#include "smtp/smtp.h"
#include "smtp/relay.h"
#include "lib/timer.h"
#include "io/ring.h"
#include "io/tls.h"

#define WIRE_CAP (64u * 1024) /* to the client, ciphertext */

struct generation;
struct backend_conn;

/*
 * Every idle connection costs one of these besides OpenSSL's state, so
 * small fields sit next to each other where the compiler would otherwise
 * pad (docs/PERFORMANCE.md, change 8).
 */
struct session {
	struct ring *ring;	/* its worker's */
	struct generation *gen; /* held: the config it started on */
	uint64_t id;
	const struct config_listener *listener;
	unsigned listener_slot; /* its counters (registry.h) */
	int fd;
	union sockaddr_ip peer;
	unsigned peer_port;
	char peer_addr[INET6_ADDRSTRLEN];
	uint64_t started_ms;

	SSL *ssl;	   /* NULL until TLS starts */
	struct tls_io tio; /* its ciphertext: in place, held, to wire */
	int tls_agreed;	   /* enum counter_tls, once past the ClientHello */
	bool tls_done;	   /* handshake finished */
	bool tls_begun;	   /* the client sent handshake bytes */
	bool recv_data;	   /* the receive armed is from DATA_GROUP */
	bool data_starved; /* DATA_GROUP was empty: next one from RECV */
	struct smtp smtp;
	struct buf in;	 /* client plaintext waiting for smtp_input() */
	struct buf wire; /* bytes for the client socket */
	unsigned inflight;
	unsigned recipients; /* of messages the backend took (here: a hole) */
	bool sending;
	bool recv_armed;
	bool closing;	    /* flush wire, then close */
	bool close_started; /* closing: flush deadline set, close_notify */
	bool dead;	    /* closed; freed when inflight reaches 0 */
	bool auth_delay;    /* auth's failure reply waits for the timer */
	/* auth_http's Auth-Server: 1 + the index in backends.servers of the
	 * only backend this session uses; 0: the pool picks. */
	uint8_t backend_pin;
	struct auth_request *auth;    /* in flight at the pool, or delaying */
	struct cluster_request *creq; /* in flight at the cluster */

	struct ring_task wake; /* woken by the backend leg: run it */

	uint64_t last_read_ms; /* client activity, for the DATA timeout */
	uint64_t cmd_since_ms; /* the client's turn began: command timeout */
	unsigned long progress_seen; /* smtp.progress at cmd_since_ms */
	uint64_t deadline_ms; /* handshake, auth delay or closing flush */

	/* For the session-end line. */
	uint64_t bytes;		  /* of messages the backend took */
	const char *backend_used; /* address text of the last one */

	struct relay relay; /* a message's bytes on their way */

	struct policy_state pol; /* policy.c's: its limits, what it holds */

	struct backend_conn *be; /* NULL when not connected (backend.c's) */
	struct timer timer;

	struct session *prev, *next; /* the worker's list */
};

/* The idle-memory target (16 KiB per idle TLS session: docs/PERFORMANCE.md)
 * counts on a session fitting jemalloc's 768-byte size class; the next one
 * up, 896, costs every connection 128 bytes more. */
_Static_assert(sizeof(struct session) <= 768,
	       "struct session outgrew jemalloc's 768-byte size class");

/* The config a session started on. */
static inline const struct config *
session_config(const struct session *s)
{
	return s->gen->cfg;
}

/* A login name for a log line: the client chose it, so it is quoted when
 * it holds anything but plain printable bytes; "-" when there is none. */
#define LOG_USER_MAX (4 * SASL_FIELD_MAX + 3)
const char *session_log_user(char *buf, size_t len, const char *user);

/* session_log.c: a line about s, "session=ID client=ADDR user=LOGIN"
 * first, then fmt's keys. */
void session_log(const struct session *s, enum log_level level,
		 const char *event, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A message that did not reach the backend's verdict, and why. */
void session_log_refused(struct session *s, const char *why);

/* session_limits.c: policy.c's verdicts, acted on (false: refused, the
 * reply is queued). */
bool session_admit(struct session *s);
/* A password check answered: how long to hold the answer (ms). */
uint64_t session_auth_done(struct session *s, const struct auth_request *req);
void session_authed(struct session *s); /* the user's limits, senders */
/* session_backend.c: pin s to the server of backends.servers at
 * server:port (auth_http's Auth-Server, Auth-Port); false: none is. */
bool session_pin_backend(struct session *s, const char *server, unsigned port);
/* The MAIL or RCPT: false when refused, or when the cluster was asked
 * (s->creq; session_on_cluster() goes on). */
bool session_may_forward(struct session *s);
/* The cluster's answer to s->creq's take: false when refused. */
bool session_take_answered(struct session *s, struct cluster_request *req);
/* A password check answered, with the cluster asked for the login's and
 * the network's counts first: false when the cluster was asked (then
 * session_auth_answered() gives the hold). */
bool session_auth_ask(struct session *s, const struct auth_request *req);
uint64_t session_auth_answered(struct session *s,
			       const struct auth_request *req,
			       const struct cluster_request *creq);
/* n more message bytes (the relay's hook): false over the byte rate. */
bool session_take_bytes(struct session *s, size_t n);
const char *session_bytes_reply(struct session *s, char *buf, size_t len);
void session_settle(struct session *s); /* give back what an undelivered
					   transaction held */
void session_policy_end(struct session *s);

/* session_backend.c: the session's side of its backend leg. */
void session_open_backend(struct session *s);
void session_backend_news(struct session *s);

/* session.c */
/* via: the balancer whose PROXY header named peer (logged), or NULL. */
struct session *session_new(struct ring *r, int fd,
			    const struct config_listener *l,
			    const union sockaddr_ip *peer,
			    const union sockaddr_ip *via);
void session_on_client_recv(struct session *s, int res, unsigned flags);
void session_on_client_send(struct session *s, int res);
void session_on_auth(struct session *s, struct auth_request *req);
void session_on_cluster(struct session *s, struct cluster_request *req);
void session_on_timer(struct session *s);
void session_run(struct session *s);
/* Its ring_task came up (ring_wake): run it, or free it if it ended. */
void session_woken(struct session *s);
void session_close(struct session *s, const char *reason);
/* Stop now with 421 (shutdown, drain deadline). */
void session_shutdown(struct session *s);
/* Finish the transaction in progress, then 421 (a drain). */
void session_drain(struct session *s);
/* One line about the session for the control socket. */
void session_describe(const struct session *s, FILE *f, bool json);
void session_release(struct session *s); /* an op completed */

#endif
