/*
 * smtp.h - the client-facing SMTP state machine (pure: bytes in, replies
 * and actions out; no I/O, no clock, no logging).
 *
 * The worker owns the sockets.  It appends the client's plaintext to an
 * input buffer and calls smtp_input(), which consumes whole command lines,
 * writes replies to s->out and stops at the first command that needs
 * something only the worker can do: a TLS handshake, a password check, a
 * backend round trip, or closing.  The worker does it, reports back with
 * smtp_tls_ready(), smtp_auth_result(), smtp_backend_reply() or
 * smtp_backend_failed(), and calls smtp_input() again.  Pipelined input
 * waits in the buffer meanwhile, so replies always leave in order.
 *
 * Standards: RFC 5321 (SMTP), 6409 (submission), 3207 (STARTTLS), 8314
 * (implicit TLS), 4954 + 4616 (AUTH, PLAIN), 7628 (OAUTHBEARER; XOAUTH2
 * alike), 2920 (PIPELINING), 1870 (SIZE),
 * 6152 (8BITMIME), 3463 + 2034 (enhanced status codes); DSN (3461) and
 * SMTPUTF8 (6531) advertised when the backends offer them (their
 * parameters pass through); CHUNKING (3030, BDAT without BINARYMIME)
 * advertised when every backend offers it, each chunk relayed as a BDAT
 * of the same size.
 *
 * BDAT: the chunk's bytes follow the command line and are not lines.
 * smtp_input() never reads them as commands: a BDAT it forwards parks the
 * session until the worker has streamed the chunk (SMTP_CHUNK, counted
 * down in chunk_left); a BDAT refused for any reason after its size was
 * read has its chunk discarded (skip_left) before the next command.
 *
 * Security: STARTTLS throws away every byte buffered after its line
 * (CVE-2011-0411 class); EHLO state is forgotten after TLS; AUTH is refused
 * before TLS; credentials are reset on every attempt and cleared after use;
 * lines are bounded (a line with no newline is discarded, never grown);
 * XCLIENT, XFORWARD and PROXY from clients are refused.
 */
#ifndef MSAPROXY_SMTP_H
#define MSAPROXY_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stdatomic.h>

#include "lib/buf.h"
#include "config/config.h"
#include "smtp/sasl.h"
#include "smtp/smtp_reply.h"

/* Room s->out must have before another command is processed: the longest
 * backend reply, rebuilt with CRLF (one more byte per line), plus slack. */
#define SMTP_OUT_RESERVE (SMTP_REPLY_MAX + 2 * SMTP_REPLY_LINES_MAX + 256)
/* Room for a forwarded command line and its CRLF. */
#define SMTP_FWD_MAX (1024 + 8)
/* The longest EHLO or HELO name taken (backend.c's EHLO line has room for
 * it). */
#define SMTP_HELO_MAX 255

struct smtp_params {
	const char *hostname;
	enum listener_mode mode;
	unsigned auth_mechs;
	/* What the auth back end can check now (AUTH_MECH_*), read at EHLO
	 * and AUTH: offered is auth_mechs & *mechs_live.  NULL: all. */
	const atomic_uint *mechs_live;
	size_t max_line;
	size_t max_auth_line;
	uint64_t max_message_size;
	unsigned max_recipients;
	unsigned max_errors;
	unsigned max_auth_failures; /* per session; 0: no cap */
};

enum smtp_state {
	SMTP_IDLE,	       /* between commands */
	SMTP_AUTH_PLAIN,       /* sent "334 ", waiting for the response */
	SMTP_AUTH_LOGIN_USER,  /* sent "334 VXNlcm5hbWU6" */
	SMTP_AUTH_LOGIN_PASS,  /* sent "334 UGFzc3dvcmQ6" */
	SMTP_AUTH_OAUTH,       /* OAUTHBEARER, XOAUTH2: sent "334 " */
	SMTP_AUTH_OAUTH_ERROR, /* sent "334 <base64 JSON>": awaiting ^A */
	SMTP_AUTH_CHECK,       /* parked: the worker verifies the password */
	SMTP_TLS_HANDSHAKE,    /* parked: 220 sent, waiting for TLS */
	SMTP_BACKEND,	       /* parked: command forwarded, awaiting reply */
	SMTP_DATA,	       /* message bytes stream to the backend */
	SMTP_DATA_END,	       /* parked: end of data sent, awaiting verdict */
	SMTP_CHUNK,	       /* a BDAT chunk's bytes stream to the backend */
	SMTP_CLOSING,	       /* last reply written; flush and close */
};

enum smtp_action {
	SMTP_ACT_NONE,	   /* need more input (or room in s->out) */
	SMTP_ACT_STARTTLS, /* flush s->out, then handshake */
	SMTP_ACT_AUTH,	   /* verify s->creds, then smtp_auth_result() */
	SMTP_ACT_FORWARD,  /* send s->fwd to the backend, then reply */
	SMTP_ACT_DATA,	   /* stream message bytes (relay.h) */
	SMTP_ACT_CLOSE,	   /* flush s->out, then close */
};

/* What the forwarded command was, to interpret the backend's reply. */
enum smtp_fwd {
	SMTP_FWD_NONE,
	SMTP_FWD_MAIL,
	SMTP_FWD_RCPT,
	SMTP_FWD_DATA,
	SMTP_FWD_DATA_END,
	SMTP_FWD_RSET,
	SMTP_FWD_BDAT, /* a BDAT line; its chunk follows (smtp_chunk_begin) */
};

enum smtp_backend_failure {
	SMTP_BACKEND_UNAVAILABLE, /* no backend could be reached: 451 4.4.1 */
	SMTP_BACKEND_LOST,	  /* connection died or refused us: 4.4.2 */
	SMTP_BACKEND_TIMEOUT,	  /* no reply in time: 451 4.4.2 */
};

/* Limits smtp.c itself enforces, counted in struct smtp (the worker adds
 * them to its metrics when the session ends). */
enum smtp_limit {
	SMTP_LIMIT_LINE,       /* 500 5.5.6: limits.max_line, max_auth_line */
	SMTP_LIMIT_RECIPIENTS, /* 452 4.5.3: limits.max_recipients */
	SMTP_LIMIT_SIZE,       /* 552 5.3.4 at MAIL: SIZE= over the limit */
	SMTP_LIMIT_ERRORS,     /* 421 4.7.0: limits.max_errors */
	SMTP_LIMIT_AUTH_FAILURES, /* 421 4.7.0: auth.max_failures */
	SMTP_LIMIT_KINDS,
};

/*
 * Debug tracing, set by the worker (smtp.c itself never logs): called with
 * the verb of each command read (code 0; "unrecognized" for an unknown
 * one, "auth-response" for a line inside an AUTH exchange) and the code of
 * each reply written (verb NULL).  Never an argument: AUTH data,
 * addresses and host names stay out of traces.
 */
typedef void smtp_trace_fn(void *ctx, const char *verb, int code);
/* And every change of state, through smtp_set_state(). */
typedef void smtp_trace_state_fn(void *ctx, enum smtp_state from,
				 enum smtp_state to);

struct smtp {
	const struct smtp_params *p;
	smtp_trace_fn *trace; /* NULL: no tracing */
	smtp_trace_state_fn *trace_state;
	void *trace_ctx;
	struct buf out; /* replies to the client, plaintext */
	enum smtp_state state;
	enum smtp_fwd fwd; /* what is outstanding at the backend */

	bool tls;	   /* TLS active (after STARTTLS, or implicit) */
	bool esmtp;	   /* it was EHLO */
	bool authed;	   /* AUTH succeeded */
	bool in_mail;	   /* backend accepted MAIL */
	bool discarding;   /* inside an over-long line */
	bool drop_backend; /* worker: close the backend (its state is off) */
	bool draining;	   /* 421 once no transaction is in progress */
	unsigned errors;
	unsigned rcpts;	   /* accepted in this transaction */
	unsigned messages; /* accepted by the backend, whole session */
	unsigned auth_failures;
	unsigned discarded; /* bytes of the over-long line dropped so far */
	unsigned limit_hits[SMTP_LIMIT_KINDS]; /* by enum smtp_limit */
	/* Lines read plus replies written: when it moves, the client's
	 * next command is due a full limits.command_timeout from now. */
	unsigned long progress;

	/* The client's EHLO or HELO name, and its login once AUTH
	 * succeeded: each allocated at its length when set, NULL until then
	 * (read them with smtp_helo_name() and smtp_user()). */
	char *helo_name;
	char *user;
	/* Allocated by AUTH for its exchange; wiped and freed after it. */
	struct sasl_creds *creds;
	/* "PLAIN", "LOGIN", "OAUTHBEARER" or "XOAUTH2" during AUTH */
	const char *auth_mech;

	/* The command to send, CRLF-terminated (SMTP_FWD_MAX bytes,
	 * allocated by the first command forwarded). */
	char *fwd_line;
	size_t fwd_len;
	size_t path_off, path_len; /* MAIL/RCPT: the address in fwd_line */

	const char *close_reason; /* for the worker's log line */

	/* What the backends offer (smtp_backend_offer()), and what the
	 * connected one takes (smtp_backend_ready()). */
	uint64_t size_limit; /* advertised SIZE and MAIL's check */
	uint64_t be_size;    /* the connected one's SIZE, 0: none given */
	unsigned offer;	     /* SMTP_OFFER_* advertised in EHLO */
	bool be_chunking;    /* the connected one offered CHUNKING */

	/* BDAT (RFC 3030). */
	uint64_t chunk_left;  /* forwarded chunk: bytes not yet consumed */
	uint64_t skip_left;   /* refused chunk: bytes still to discard */
	uint64_t bdat_size;   /* sizes of the BDATs forwarded, summed */
	unsigned bdat_chunks; /* BDATs forwarded in this transaction */
	bool chunk_last;      /* the forwarded BDAT said LAST */
};

#define SMTP_OFFER_DSN	    0x1u /* RFC 3461: parameters pass through */
#define SMTP_OFFER_SMTPUTF8 0x2u /* RFC 6531: parameters pass through */
#define SMTP_OFFER_CHUNKING 0x4u /* RFC 3030: BDAT relayed as BDAT */

void smtp_init(struct smtp *s, const struct smtp_params *p, bool tls);
void smtp_free(struct smtp *s);
/* Write the greeting (at connect, or after the implicit TLS handshake). */
void smtp_start(struct smtp *s);

enum smtp_action smtp_input(struct smtp *s, struct buf *in);

void smtp_tls_ready(struct smtp *s);
/* What the backends take: SIZE becomes the smaller of ours and size (0:
 * theirs unknown), and the SMTP_OFFER_* extensions in offer are
 * advertised (the parameters pass through to the backend as they are). */
void smtp_backend_offer(struct smtp *s, uint64_t size, unsigned offer);
/* The backend connection finished its handshake: its SIZE (0: none) and
 * whether it takes BDAT, for the BDATs of this connection. */
void smtp_backend_ready(struct smtp *s, uint64_t size, bool chunking);
void smtp_auth_result(struct smtp *s, bool ok);
/* The back end's verdict: SMTP_AUTH_OK with login, the name the back end
 * gave (NULL: the one the client sent); SMTP_AUTH_TEMP answers 454 4.7.0
 * and counts no failure.  text (NULL or "": the default) replaces the 535
 * or 454 reply: the caller vouches it is one printable SMTP reply line.
 * status: the back end's JSON status for a refused OAUTHBEARER or
 * XOAUTH2 (NULL or "": {"status":"invalid_token"}).  RFC 7628 3.2.2: a
 * refused token is answered "334 <base64 status>" (the failure counted
 * then); the client's next line, its ^A ("AQ=="), gets the 535 5.7.8
 * (a "*" the 501 of a cancelled exchange).  text does not replace that
 * 535; a temporary failure is 454 at once, as for the others. */
enum smtp_auth_verdict { SMTP_AUTH_FAIL, SMTP_AUTH_OK, SMTP_AUTH_TEMP };
void smtp_auth_answer_status(struct smtp *s, enum smtp_auth_verdict v,
			     const char *login, const char *text,
			     const char *status);
enum smtp_action smtp_backend_reply(struct smtp *s, int code,
				    const char *const *lines,
				    const size_t *lens, size_t nlines);
void smtp_backend_failed(struct smtp *s, enum smtp_backend_failure why);
/* The message after DATA ended: sent (await verdict), or refused here. */
void smtp_data_sent(struct smtp *s);
void smtp_data_refused(struct smtp *s, const char *reply);
/* The forwarded BDAT line went to the backend: its chunk's bytes now
 * stream (SMTP_CHUNK); the worker counts them off chunk_left. */
void smtp_chunk_begin(struct smtp *s);
/* All of the chunk went to the backend (chunk_left is 0): await its
 * reply, the verdict after a LAST one.  A chunk refused here is answered
 * with smtp_data_refused(). */
void smtp_chunk_sent(struct smtp *s);
/* The worker will not forward the MAIL or RCPT it was handed (a limit, the
 * sender check): answer reply instead; error counts it as a client error. */
void smtp_refuse(struct smtp *s, const char *reply, bool error);
/* A timeout or shutdown: write 421 with text and close. */
void smtp_shutdown(struct smtp *s, const char *reply, const char *reason);
/* A drain: the transaction in progress (MAIL accepted, or a command at
 * the backend) may finish; then, or at once if there is none, 421. */
void smtp_drain(struct smtp *s);
/* "idle", "auth", "data", ...: for listings. */
const char *smtp_state_name(enum smtp_state st);

/* The client's EHLO or HELO name; "" before one (and after STARTTLS). */
static inline const char *
smtp_helo_name(const struct smtp *s)
{
	return s->helo_name != NULL ? s->helo_name : "";
}

/* The authenticated login; "" before AUTH succeeded. */
static inline const char *
smtp_user(const struct smtp *s)
{
	return s->user != NULL ? s->user : "";
}

#endif
