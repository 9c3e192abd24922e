/*
 * backend.h - a session's connection to a backend MTA, on its worker's
 * ring.  Private to proxy/io/.
 *
 * The backend leg owns its state: backend.c alone writes struct
 * backend_conn, and the owner's link to it (s->be), which failover moves
 * to the next connection.  It knows nothing of the session beyond struct
 * backend_owner: the client's facts it passes on, the link, and the task
 * that wakes the session.  What the session must learn (the handshake is
 * done, a reply came, the connection failed, bytes left) is kept here and
 * the session is woken (ring_wake()); session_run() then asks with the
 * calls below and acts.
 */
#ifndef MSAPROXY_BACKEND_H
#define MSAPROXY_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "io/ring.h"
#include "lib/buf.h"
#include "smtp/smtp.h"
#include "smtp/smtp_reply.h"
#include "smtp/upstream.h"

#define BACKEND_IN_CAP	 (16u * 1024)  /* replies from the backend */
#define BACKEND_OUT_CAP	 (128u * 1024) /* commands and message bytes */
#define BACKEND_WIRE_CAP (64u * 1024)  /* TLS records to the backend */

struct generation;
struct config_backend;
struct sockaddr;

/* The client's facts a backend connection passes on (XCLIENT, PROXY v2,
 * the EHLO after XCLIENT); the strings are the session's and outlive the
 * link. */
struct backend_client {
	uint64_t id; /* the session's: logs, PROXY v2's unique id */
	const struct sockaddr *addr;
	int fd;		  /* the client's socket: the address it reached */
	const char *helo; /* NULL: none given */
	const char *login;
	const char *sni, *tls_version, *tls_cipher; /* NULL: none */
	unsigned pin; /* 0: the pool picks; i + 1: only cfg->backends[i] */
};

/* Who a connection works for. */
struct backend_owner {
	struct ring *ring;
	struct generation *gen;	    /* the session's (the server list) */
	struct backend_conn **link; /* NULL once detached */
	struct ring_task *wake;	    /* runs the session */
	struct backend_client client;
};

/*
 * Its own allocation with its own references, so a connection that failed
 * over or closed can finish its last ring operations after the session
 * moved on (owner.link == NULL: detached).
 */
struct backend_conn {
	struct backend_owner owner;
	struct generation *gen; /* held: its server list and pool */
	unsigned refs;		/* ring operations in flight */
	int fd;
	struct upstream up; /* the dialogue and its state (smtp/upstream.c) */
	enum smtp_backend_failure failure; /* up FAILED after ready: why */
	size_t server;			   /* index into cfg->backends */
	unsigned attempts;		   /* servers tried for this command */
	uint64_t tried;	   /* bit i: server i tried for this command */
	uint64_t deadline; /* for the step in progress */
	uint64_t began_us; /* connect, then end of data: for latencies */
	uint64_t sent_ms;  /* the last send completion: the data moves */
	bool quit_sent;
	bool sending;
	bool send_wire; /* the send in flight is from wire, not out */
	bool recv_armed;
	bool hello;	   /* handshake done, the session not told yet */
	bool chunking;	   /* it offered CHUNKING */
	bool reply_ready;  /* be->reply holds one for the session */
	bool verdict;	   /* ... and it is the end of data's */
	SSL *ssl;	   /* tls: starttls*, once STARTTLS got its 220 */
	bool tls_up;	   /* handshake done */
	struct buf wire;   /* TLS records for the backend */
	uint64_t size_max; /* its SIZE, 0 = none given */
	struct buf in, out;
	struct smtp_reply reply;
};

/* Connect *o->link to a server for the command smtp.c forwarded; the
 * handshake then runs on its own, failing over as it must.  When no server
 * could be tried (none left, no memory) *o->link stays NULL and the
 * session answers 451 4.4.1. */
void backend_open(const struct backend_owner *o);
/* Detach *link from its owner.  Polite: QUIT first when between
 * transactions; otherwise cut, so a partial message is never completed. */
void backend_close(struct backend_conn **link, bool polite);

/* What the session learns when it runs. */
/* The handshake finished since the last call: the server's SIZE (0: none)
 * and whether it takes BDAT. */
bool backend_hello(struct backend_conn *be, uint64_t *size, bool *chunking);
/* Idle and ready for a command. */
bool backend_ready(const struct backend_conn *be);
/* A reply to the session's command, or NULL. */
const struct smtp_reply *backend_reply(const struct backend_conn *be);
/* The session used the reply; data: it opened the message (354). */
void backend_reply_done(struct backend_conn *be, bool data);
/* Broken beyond failover: why (the session closes it and answers). */
bool backend_failed(const struct backend_conn *be,
		    enum smtp_backend_failure *why);
/* Waiting for the backend, and until when. */
bool backend_waiting(const struct backend_conn *be);
uint64_t backend_deadline(const struct backend_conn *be);
/* The last time the backend took bytes (ms): a message on its way. */
uint64_t backend_sent_ms(const struct backend_conn *be);
/* The server's SIZE, 0 = none. */
uint64_t backend_size_max(const struct backend_conn *be);
const char *backend_name(const struct backend_conn *be);

/* What the session tells it. */
/* Send a forwarded command; bdat: its chunk follows at once and the reply
 * is awaited once the chunk has gone (backend_data_sent()). */
void backend_command(struct backend_conn *be, const char *line, size_t len,
		     bool bdat);
/* Where message bytes go, and send what it holds. */
struct buf *backend_outbox(struct backend_conn *be);
void backend_flush(struct backend_conn *be);
/* The end of the message (last) or of a chunk is in the outbox: await the
 * verdict. */
void backend_data_sent(struct backend_conn *be, bool last);
/* The session's timer fired while backend_waiting(): fail over, or fail. */
void backend_on_timer(struct backend_conn *be);

/* Completions (worker.c). */
void backend_on_connect(struct backend_conn *be, int res);
void backend_on_recv(struct backend_conn *be, int res, unsigned flags);
void backend_on_send(struct backend_conn *be, int res);
void backend_release(struct backend_conn *be); /* an op completed */

/* Log a pool state change (enum backend_pool_change) of server i of
 * pool, and note it there for the status page. */
struct backend_pool;
void backend_health_log(struct backend_pool *pool, size_t i,
			const struct config_backend *b, int change,
			const char *source, const char *reason);

#endif
