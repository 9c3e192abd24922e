/*
 * session.h - what a worker knows about one client session and its
 * backend connection.  Internal to worker.c, session.c and backend.c.
 *
 * A session belongs to the worker that accepted it and is touched only by
 * that worker's thread.  Every ring operation that names a session holds a
 * reference (s->inflight); a closed session is freed when the last one
 * completes, so a late completion never touches freed memory.
 */
#ifndef MSAPROXY_SESSION_H
#define MSAPROXY_SESSION_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <liburing.h>
#include <openssl/ssl.h>

#include "auth/auth_pool.h"
#include "lib/buf.h"
#include "config/config.h"
#include "smtp/data_scan.h"
#include "config/generation.h"
#include "lib/ipnet.h"
#include "limits/policy.h"
#include "limits/ratelimit.h"
#include "smtp/smtp.h"
#include "smtp/smtp_reply.h"
#include "lib/timer.h"
#include "io/tls.h"

/* Ring operations, packed into the low bits of user_data. */
enum ring_op {
	OP_IGNORE = 0, /* cancels, closes: nothing to do */
	OP_ACCEPT,
	OP_CLIENT_RECV,
	OP_CLIENT_SEND,
	OP_BACKEND_CONNECT,
	OP_BACKEND_RECV,
	OP_BACKEND_SEND,
	OP_WAKE,
	OP_CHECK_CONNECT, /* health.c */
	OP_CHECK_RECV,
	OP_CHECK_SEND,
	OP_REFUSAL, /* a 421 to a connection refused at accept */
};
#define OP_BITS		 4u
#define OP_MASK		 ((1u << OP_BITS) - 1)

#define RECV_BUF_SIZE	 16384u /* one TLS record fits */
#define RECV_BUF_COUNT	 512u
#define RECV_GROUP	 0u	/* provided-buffer groups on the ring */
#define DATA_GROUP	 1u	/* a TLS session's message bytes */
#define DATA_BUF_SIZE	 65536u /* four TLS records */
#define DATA_BUF_COUNT	 64u
#define WIRE_CAP	 (64u * 1024)  /* to the client, ciphertext */
#define BACKEND_IN_CAP	 (16u * 1024)  /* replies from the backend */
#define BACKEND_OUT_CAP	 (128u * 1024) /* commands and message bytes */
#define BACKEND_WIRE_CAP (64u * 1024)  /* TLS records to the backend */

struct worker;
struct bans;
struct generation;

enum backend_state {
	BE_NONE,	  /* no connection */
	BE_CONNECTING,	  /* connect() in flight */
	BE_GREETING,	  /* waiting for 220 */
	BE_EHLO,	  /* sent EHLO */
	BE_STARTTLS,	  /* sent STARTTLS, waiting for 220 */
	BE_TLS,		  /* TLS handshake with the backend */
	BE_XCLIENT,	  /* sent XCLIENT, waiting for the new 220 */
	BE_EHLO_AGAIN,	  /* sent EHLO after XCLIENT */
	BE_READY,	  /* idle, ready for a command */
	BE_WAIT_REPLY,	  /* a client command is at the backend */
	BE_DATA,	  /* message bytes flowing */
	BE_WAIT_DATA_END, /* end of data sent, waiting for the verdict */
};

/*
 * The backend side is its own allocation with its own references, so a
 * connection that failed over or closed can finish its last ring
 * operations after the session moved on (s == NULL: detached).
 */
struct backend_conn {
	struct session *s; /* NULL once detached */
	struct worker *w;
	struct generation *gen; /* held: its server list and pool */
	unsigned refs;		/* ring operations in flight */
	int fd;
	enum backend_state state;
	size_t server;	   /* index into cfg->backends */
	unsigned attempts; /* servers tried for this command */
	uint64_t tried;	   /* bit i: server i tried for this command */
	uint64_t deadline; /* for the step in progress */
	uint64_t began_us; /* connect, then end of data: for latencies */
	bool quit_sent;
	bool sending;
	bool send_wire; /* the send in flight is from wire, not out */
	bool recv_armed;
	SSL *ssl;		 /* tls: starttls*, once STARTTLS got its 220 */
	bool tls_up;		 /* handshake done */
	struct buf wire;	 /* TLS records for the backend */
	char xclient_attrs[256]; /* its attribute list */
	uint64_t size_max;	 /* its SIZE, 0 = none given */
	struct buf in, out;
	struct smtp_reply reply;
};

/* Why a session is sinking the rest of a message instead of relaying it. */
enum data_sink {
	SINK_NONE,
	SINK_BAD_BYTES, /* bare LF/CR or NUL: 550 at the end */
	SINK_TOO_BIG,	/* over limits.max_message_size: 552 */
	SINK_LOST,	/* the backend went away: 451 */
	SINK_LIMIT,	/* over the user's byte rate: 451 */
};

/*
 * Every idle connection costs one of these besides OpenSSL's state, so
 * small fields sit next to each other where the compiler would otherwise
 * pad (docs/PERFORMANCE.md, change 8).
 */
struct session {
	struct worker *w;
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
	bool sending;
	bool recv_armed;
	bool closing;	    /* flush wire, then close */
	bool close_started; /* closing: flush deadline set, close_notify */
	bool dead;	    /* closed; freed when inflight reaches 0 */
	bool auth_delay;    /* auth's failure reply waits for the timer */
	struct auth_request *auth; /* in flight at the pool, or delaying */

	uint64_t last_read_ms; /* client activity, for the DATA timeout */
	uint64_t cmd_since_ms; /* the client's turn began: command timeout */
	unsigned long progress_seen; /* smtp.progress at cmd_since_ms */
	uint64_t deadline_ms; /* handshake, auth delay or closing flush */

	/* For the session-end line (backend.c counts delivered mail). */
	uint64_t bytes;		  /* of messages the backend took */
	const char *backend_used; /* address text of the last one */
	unsigned recipients;	  /* of messages the backend took */

	enum data_sink sink;
	struct data_scan ds;

	struct policy_state pol; /* policy.c's: its limits, what it holds */

	struct backend_conn *be; /* NULL when not connected */
	struct timer timer;

	struct session *prev, *next; /* the worker's list */
};

/* The idle-memory target (16 KiB per idle TLS session: docs/PERFORMANCE.md)
 * counts on a session fitting jemalloc's 768-byte size class; the next one
 * up, 896, costs every connection 128 bytes more. */
_Static_assert(sizeof(struct session) <= 768,
	       "struct session outgrew jemalloc's 768-byte size class");

/* worker.c: ring access for session.c and backend.c. */
struct io_uring_sqe *worker_sqe(struct worker *w);
void worker_prep(struct io_uring_sqe *sqe, void *ptr, enum ring_op op);
struct generation *worker_generation(const struct worker *w);
struct auth_pool *worker_auth(const struct worker *w);
struct ratelimit *worker_limits(const struct worker *w);
struct bans *worker_bans(const struct worker *w);
struct caps *worker_caps(const struct worker *w);
struct timer_heap *worker_timers(struct worker *w);
unsigned worker_id(const struct worker *w);
/* The worker's own counters, to add to (counters.h). */
struct worker_counters *worker_stats(struct worker *w);
/* A server of s's generation for a new backend connection, or
 * BACKEND_POOL_NONE. */
size_t worker_pick_backend(struct worker *w, const struct session *s,
			   const char *login, uint64_t tried);
void worker_auth_done(struct auth_request *req);
const char *worker_recv_buf(const struct worker *w, unsigned bid);
void worker_recv_buf_return(struct worker *w, unsigned bid);
/* DATA_GROUP's buffers. */
const char *worker_data_buf(const struct worker *w, unsigned bid);
void worker_data_buf_return(struct worker *w, unsigned bid);
void worker_session_gone(struct worker *w, struct session *s);
/* Sessions and backend connections count themselves in and out, so the
 * worker ends only after their last completion. */
void worker_object_new(struct worker *w);
void worker_object_freed(struct worker *w);

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

/* session.c */
struct session *session_new(struct worker *w, int fd,
			    const struct config_listener *l,
			    const union sockaddr_ip *peer);
void session_on_client_recv(struct session *s, int res, unsigned flags);
void session_on_client_send(struct session *s, int res);
void session_on_auth(struct session *s, struct auth_request *req);
void session_on_timer(struct session *s);
void session_run(struct session *s);
void session_close(struct session *s, const char *reason);
/* Stop now with 421 (shutdown, drain deadline). */
void session_shutdown(struct session *s);
/* Finish the transaction in progress, then 421 (a drain). */
void session_drain(struct session *s);
/* One line about the session for the control socket. */
void session_describe(const struct session *s, FILE *f, bool json);
void session_release(struct session *s); /* an op completed */
/* backend.c is about to send a forwarded BDAT: false means do not. */
bool session_chunk_begin(struct session *s);

/* backend.c */
void backend_forward(struct session *s);
void backend_on_connect(struct backend_conn *be, int res);
void backend_on_recv(struct backend_conn *be, int res, unsigned flags);
void backend_on_send(struct backend_conn *be, int res);
void backend_release(struct backend_conn *be); /* an op completed */
void backend_send(struct backend_conn *be);
/* Detach the connection from its session; QUIT first when polite. */
void backend_close(struct session *s, bool polite);
void backend_on_timer(struct session *s);
bool backend_waiting(const struct session *s);
/* Log a pool state change (enum backend_pool_change) of server b. */
void backend_health_log(const struct config_backend *b, int change,
			const char *source, const char *reason);

#endif
