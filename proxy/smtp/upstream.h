/*
 * upstream.h - the dialogue with a backend MTA (pure: replies in, lines
 * and actions out; no I/O, no clock, no logging), as smtp.h is for the
 * client side.
 *
 * The I/O side (backend.c for a session's connection, health.c for the
 * active checks) owns the socket, the TLS session and the timers.  It
 * parses the server's bytes with smtp_reply.c and feeds each complete
 * reply to upstream_reply(), which says what to do next: send a line
 * (u->line), start TLS, supply the client's facts for XCLIENT, go ready,
 * relay a reply to the client, or fail with a step and a detail for the
 * log.  The dialogue is a table (upstream.c): greeting 220, EHLO,
 * [STARTTLS, 220, TLS, EHLO], [XCLIENT, 220 or 250, EHLO with the
 * client's name], ready; then one client command at a time.  When the
 * I/O side already knows what a plaintext server's XCLIENT takes (an
 * earlier EHLO told it: upstream_params.xclient_early), XCLIENT follows
 * the greeting at once, one round trip fewer; a server that refuses it
 * there gets the EHLO after all, and if it then takes the same XCLIENT,
 * the I/O side is told it wants EHLO first (UPSTREAM_ACT_EHLO_FIRST).  A check
 * (UPSTREAM_CHECK) stops after the first EHLO with a verdict.
 *
 * Standards: RFC 5321 (SMTP), 3207 (STARTTLS), Postfix XCLIENT_README.
 */
#ifndef MSAPROXY_UPSTREAM_H
#define MSAPROXY_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "smtp/smtp_reply.h"
#include "smtp/xclient.h"

/* The longest line upstream.c writes, CRLF included (XCLIENT's bound;
 * an EHLO with a 255-byte name is far shorter). */
#define UPSTREAM_LINE_MAX XCLIENT_LINE_MAX

/* The numbering is what the backend-lost log line shows (state=N). */
enum upstream_state {
	UPSTREAM_NONE,		/* not connected */
	UPSTREAM_CONNECTING,	/* connect() in flight (the I/O side's) */
	UPSTREAM_GREETING,	/* waiting for 220 */
	UPSTREAM_EHLO,		/* sent EHLO */
	UPSTREAM_STARTTLS,	/* sent STARTTLS, waiting for 220 */
	UPSTREAM_TLS,		/* TLS handshake: upstream_tls_done() */
	UPSTREAM_XCLIENT,	/* XCLIENT: its 220 or 250 */
	UPSTREAM_EHLO_AGAIN,	/* sent EHLO after XCLIENT */
	UPSTREAM_READY,		/* idle, ready for a client command */
	UPSTREAM_WAIT_REPLY,	/* a client command is at the backend */
	UPSTREAM_DATA,		/* message bytes flowing */
	UPSTREAM_WAIT_DATA_END, /* end of data sent, waiting for the verdict */
	UPSTREAM_QUIT,		/* check: good, QUIT on its way */
	UPSTREAM_FAILED,	/* u->step, u->detail; nothing more is sent */
};

enum upstream_mode {
	UPSTREAM_SESSION, /* a session's connection: up to ready, relay */
	UPSTREAM_CHECK,	  /* a health check: greeting, EHLO, verdict */
};

enum upstream_action {
	/* Nothing to do: wait for the next reply. */
	UPSTREAM_ACT_WAIT,
	/* Send u->line (u->len bytes, CRLF at the end). */
	UPSTREAM_ACT_SEND,
	/* Drop what the server sent after its 220, run the TLS handshake,
	 * then upstream_tls_done(). */
	UPSTREAM_ACT_START_TLS,
	/* Supply the client's facts: upstream_xclient() (the attributes
	 * the server takes are in u->xclient_attrs). */
	UPSTREAM_ACT_XCLIENT,
	/* The server refused XCLIENT before EHLO (u->early_code) and took
	 * the same XCLIENT after it: note that it wants EHLO first, and
	 * send u->line (the EHLO with the client's name). */
	UPSTREAM_ACT_EHLO_FIRST,
	/* Handshake done; the reply just fed is the server's EHLO, with
	 * what it offers. */
	UPSTREAM_ACT_READY,
	/* The reply to the client's command: relay it. */
	UPSTREAM_ACT_RELAY,
	/* The reply to the end of data (or a LAST chunk): the verdict on
	 * the message, relay it. */
	UPSTREAM_ACT_VERDICT,
	/* Check: the server is usable (why: u->detail); send u->line
	 * (QUIT), the verdict stands once it is out. */
	UPSTREAM_ACT_GOOD,
	/* Failed: u->step, u->detail; nothing more is sent. */
	UPSTREAM_ACT_FAIL,
};

/* What the I/O side hands over when a client command goes out. */
enum upstream_fwd {
	UPSTREAM_FWD_COMMAND, /* a command line: its reply follows */
	UPSTREAM_FWD_CHUNK,   /* a BDAT line: its chunk follows at once */
};

/* Debug tracing, set by the I/O side (upstream.c never logs): every
 * change of state, through the one setter. */
typedef void upstream_trace_fn(void *ctx, enum upstream_state from,
			       enum upstream_state to);

struct upstream_params {
	enum upstream_mode mode;
	enum backend_identity identity; /* the server's identity setting */
	bool starttls;			/* its tls setting asks for TLS */
	const char *hostname;		/* our EHLO name; must outlive u */
	/* A session to a plaintext XCLIENT server: what its XCLIENT takes
	 * (XCLIENT_ATTR_* bits), learned from an earlier EHLO; 0: unknown,
	 * EHLO first. */
	unsigned xclient_early;
};

struct upstream {
	enum upstream_state state;
	enum upstream_mode mode;
	enum backend_identity identity;
	bool starttls;
	bool tls_up; /* upstream_tls_done() was called */
	/* XCLIENT before EHLO: its attributes (XCLIENT_ATTR_* bits; 0: EHLO
	 * first) and the code that refused it (0: not refused). */
	unsigned early_bits;
	int early_code;
	const char *hostname;
	upstream_trace_fn *trace; /* NULL: no tracing */
	void *trace_ctx;

	/* FAIL: the step ("greeting", "ehlo", "starttls", "xclient",
	 * "reply") and what went wrong, e.g. "unexpected reply 554" (a
	 * check's terse form: "554"); GOOD: why. */
	const char *step;
	char detail[64];

	/* What XCLIENT takes, as the EHLO reply listed it (or as
	 * xclient_early gave it); a check keeps it too. */
	char xclient_attrs[256];
	char helo[256];			  /* the client's EHLO name */
	size_t len;			  /* of line, CRLF included */
	char line[UPSTREAM_LINE_MAX + 1]; /* the next line, NUL-terminated */
};

void upstream_init(struct upstream *u, const struct upstream_params *p);
/* Does (or did) XCLIENT go before EHLO, unrefused?  Then its attributes
 * came from upstream_params, not from this server's EHLO. */
static inline bool
upstream_early(const struct upstream *u)
{
	return u->early_bits != 0 && u->early_code == 0;
}
/* The I/O side opened the socket and connects (NONE -> CONNECTING). */
void upstream_connecting(struct upstream *u);
/* The connection is up: wait for the greeting (-> GREETING).  A
 * proxy-v2 server first gets its header from the I/O side, which holds
 * the addresses (upstream_proxy_header()). */
void upstream_connected(struct upstream *u);
/* One complete reply from the server (smtp_reply_feed() said DONE). */
enum upstream_action upstream_reply(struct upstream *u,
				    const struct smtp_reply *r);
/* After UPSTREAM_ACT_XCLIENT, at once: the client's facts (the I/O side
 * asks the kernel only for what u->xclient_attrs takes).  SEND with the
 * XCLIENT line, or FAIL when it does not fit.  info->helo is copied for
 * the EHLO that follows. */
enum upstream_action upstream_xclient(struct upstream *u,
				      const struct xclient_info *info);
/* The I/O side's own failure (connect, read, write, TLS, timeout, a
 * malformed reply): the dialogue ends with step and detail, nothing more
 * is sent.  A dialogue that failed already keeps its first failure. */
void upstream_fail(struct upstream *u, const char *step, const char *detail);
/* After UPSTREAM_ACT_START_TLS: the handshake finished (SEND: the EHLO
 * over TLS).  A handshake that fails is the I/O side's failure. */
enum upstream_action upstream_tls_done(struct upstream *u);

/* Ready: a client command goes out (READY -> WAIT_REPLY, or -> DATA for
 * a BDAT line).  False, and nothing changes, when not ready. */
bool upstream_forward(struct upstream *u, enum upstream_fwd what);
/* The backend said 354 (relayed): message bytes flow (READY -> DATA). */
void upstream_data_begin(struct upstream *u);
/* The message bytes went out: wait for the verdict (the end of data or
 * a LAST chunk), or for the reply to a chunk that was not the last. */
void upstream_data_sent(struct upstream *u, bool verdict);

/* Does the connection start with a PROXY v2 header (identity proxy-v2)? */
bool upstream_proxy_header(const struct upstream *u);
/* Connecting through the last EHLO: a failure here moves to the next
 * server. */
bool upstream_in_handshake(const struct upstream *u);
/* Is the server's turn (handshake, a command's reply, the verdict)?
 * The I/O side keeps a deadline while it is. */
bool upstream_waiting(const struct upstream *u);
/* "greeting", "wait-reply", ...: for traces. */
const char *upstream_state_name(enum upstream_state st);

#endif
