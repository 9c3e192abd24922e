/*
 * fuzz_upstream.c - libFuzzer target: the dialogue with a backend
 * (upstream.c), fed a hostile server's byte stream through the reply
 * parser (smtp_reply.c), the way backend.c and health.c drive it.
 *
 * Input layout:
 *   byte 0    setup: bit 0 check mode, bits 1-2 identity (none, xclient,
 *             proxy-v2, xclient with its attributes known: XCLIENT
 *             before EHLO), bit 3 tls asked for, bit 4 the client has
 *             no EHLO name, bit 5 a long login (its XCLIENT line does not
 *             fit), bit 6 the TLS handshake fails, bit 7 the connection
 *             may break before any reply (upstream_fail())
 *   byte 1    seeds the chunk sizes (1..64) and the relay's choices
 *             (command or BDAT chunk, LAST or not)
 *   the rest  what the server sends
 *
 * The harness plays the I/O side: bytes go to smtp_reply_feed() in
 * chunks, each whole reply to upstream_reply(), and every action is
 * answered (START_TLS at once with upstream_tls_done(), XCLIENT with the
 * client's facts, READY and RELAY with the next client command, a 354
 * with the message and its end).  A malformed reply ends the run, as it
 * ends the connection.
 *
 * Checked: states move only along the table's edges (through the trace
 * hook, which must see every change); each action agrees with the state
 * it leaves; XCLIENT comes before EHLO only when its attributes were
 * given, a refusal there is the EHLO after all, never a failure, and
 * EHLO_FIRST comes only once the same XCLIENT was taken after EHLO; a
 * line to send is what the state says (EHLO with our or the
 * client's name, STARTTLS, XCLIENT, QUIT), bounded, NUL-terminated at
 * len and CRLF-terminated with no other CR or LF; after a failure nothing
 * is ever sent again and every call answers FAIL; a failure names a step
 * and a detail; a server that should do TLS is never READY before TLS,
 * nor one configured for XCLIENT before its XCLIENT was answered; a check
 * never asks for TLS, XCLIENT or relaying, a session never gives a check
 * verdict.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "smtp/upstream.h"
#include "fuzz_check.h"

#define HOST "proxy.example.net"
#define HELO "laptop.example.org"

struct run {
	struct upstream u;
	struct smtp_reply r;
	struct upstream_params p;
	unsigned seed;
	bool failed;		    /* a FAIL was returned */
	bool saw_tls;		    /* upstream_tls_done() went through */
	bool saw_xclient;	    /* an XCLIENT line went out */
	bool no_helo;		    /* the client has no EHLO name */
	bool tls_fails;		    /* the I/O side's handshake fails */
	bool long_login;	    /* its XCLIENT line does not fit */
	bool closed;		    /* the I/O side gave up (TLS failed) */
	bool io_breaks;		    /* upstream_fail() before some replies */
	bool retried;		    /* EHLO_FIRST was answered */
	enum upstream_state traced; /* the last state the trace saw */
	unsigned changes;
};

static unsigned
next_rand(struct run *t)
{
	t->seed = t->seed * 1103515245u + 12345u;
	return t->seed >> 16;
}

/* A session to a plaintext XCLIENT server with its list given. */
static bool
early(const struct run *t)
{
	return t->p.mode == UPSTREAM_SESSION &&
	       t->p.identity == IDENTITY_XCLIENT && !t->p.starttls &&
	       t->p.xclient_early != 0;
}

/* The table's edges (upstream.c), as upstream.h describes them. */
static bool
edge_ok(const struct run *t, enum upstream_state from, enum upstream_state to)
{
	bool check = t->p.mode == UPSTREAM_CHECK;

	if (to == UPSTREAM_FAILED)
		return from >= UPSTREAM_GREETING && from != UPSTREAM_QUIT &&
		       from != UPSTREAM_FAILED;
	switch (from) {
	case UPSTREAM_NONE:
		return to == UPSTREAM_CONNECTING;
	case UPSTREAM_CONNECTING:
		return to == UPSTREAM_GREETING;
	case UPSTREAM_GREETING:
		return to == UPSTREAM_EHLO ||
		       (to == UPSTREAM_XCLIENT && early(t));
	case UPSTREAM_EHLO:
		if (check)
			return to == UPSTREAM_QUIT;
		return (to == UPSTREAM_STARTTLS && t->p.starttls) ||
		       (to == UPSTREAM_XCLIENT &&
			t->p.identity == IDENTITY_XCLIENT) ||
		       to == UPSTREAM_READY;
	case UPSTREAM_STARTTLS:
		return to == UPSTREAM_TLS;
	case UPSTREAM_TLS:
		return to == UPSTREAM_EHLO;
	case UPSTREAM_XCLIENT:
		return to == UPSTREAM_EHLO_AGAIN ||
		       (to == UPSTREAM_EHLO && early(t));
	case UPSTREAM_EHLO_AGAIN:
		return to == UPSTREAM_READY;
	case UPSTREAM_READY:
		return to == UPSTREAM_WAIT_REPLY || to == UPSTREAM_DATA;
	case UPSTREAM_WAIT_REPLY:
	case UPSTREAM_WAIT_DATA_END:
		return to == UPSTREAM_READY;
	case UPSTREAM_DATA:
		return to == UPSTREAM_WAIT_REPLY ||
		       to == UPSTREAM_WAIT_DATA_END;
	default:
		return false;
	}
}

static void
trace(void *ctx, enum upstream_state from, enum upstream_state to)
{
	struct run *t = ctx;

	CHECK(from == t->traced, "trace from %s, last seen %s",
	      upstream_state_name(from), upstream_state_name(t->traced));
	CHECK(edge_ok(t, from, to), "edge %s -> %s", upstream_state_name(from),
	      upstream_state_name(to));
	if (to == UPSTREAM_READY && from != UPSTREAM_WAIT_REPLY &&
	    from != UPSTREAM_WAIT_DATA_END) {
		CHECK(!t->p.starttls || t->saw_tls, "READY without TLS");
		CHECK(t->p.identity != IDENTITY_XCLIENT || t->saw_xclient,
		      "READY without XCLIENT");
	}
	t->traced = to;
	t->changes++;
}

/* A line to send: bounded, CRLF once, at the end. */
static void
check_line(const struct run *t, const char *want_prefix)
{
	const struct upstream *u = &t->u;

	CHECK(!t->failed, "a line after a failure");
	CHECK(u->len >= 2 && u->len <= UPSTREAM_LINE_MAX, "line length %zu",
	      u->len);
	CHECK(u->line[u->len] == '\0' && strlen(u->line) == u->len,
	      "line not NUL-terminated at len");
	CHECK(u->line[u->len - 2] == '\r' && u->line[u->len - 1] == '\n',
	      "line without CRLF");
	CHECK(memchr(u->line, '\r', u->len - 2) == NULL &&
		      memchr(u->line, '\n', u->len - 2) == NULL,
	      "CR or LF inside the line");
	CHECK(strncmp(u->line, want_prefix, strlen(want_prefix)) == 0,
	      "line %s is not %s", u->line, want_prefix);
}

static void
check_failed(struct run *t)
{
	CHECK(t->u.state == UPSTREAM_FAILED, "FAIL in state %s",
	      upstream_state_name(t->u.state));
	CHECK(t->u.step != NULL && t->u.step[0] != '\0' &&
		      t->u.detail[0] != '\0',
	      "a failure without step or detail");
	CHECK(t->u.len == 0, "a failure with a line");
	t->failed = true;
}

static void act(struct run *t, enum upstream_action a);

/* The next client command, as backend.c hands it over. */
static void
forward(struct run *t)
{
	bool chunk = next_rand(t) % 4 == 0;

	CHECK(upstream_forward(&t->u, chunk ? UPSTREAM_FWD_CHUNK
					    : UPSTREAM_FWD_COMMAND),
	      "not ready after READY");
	if (chunk)
		upstream_data_sent(&t->u, next_rand(t) % 2 == 0);
}

static void
act(struct run *t, enum upstream_action a)
{
	struct upstream *u = &t->u;
	bool check = t->p.mode == UPSTREAM_CHECK;

	if (t->failed) {
		CHECK(a == UPSTREAM_ACT_FAIL, "action %d after a failure",
		      (int)a);
		CHECK(u->len == 0, "a line after a failure");
		return;
	}
	switch (a) {
	case UPSTREAM_ACT_WAIT:
		CHECK(u->state == UPSTREAM_QUIT, "WAIT in state %s",
		      upstream_state_name(u->state));
		break;
	case UPSTREAM_ACT_SEND:
		switch (u->state) {
		case UPSTREAM_EHLO:
			check_line(t, "EHLO " HOST "\r\n");
			break;
		case UPSTREAM_EHLO_AGAIN:
			check_line(t, t->no_helo ? "EHLO " HOST "\r\n"
						 : "EHLO " HELO "\r\n");
			break;
		case UPSTREAM_STARTTLS:
			check_line(t, "STARTTLS\r\n");
			break;
		default:
			CHECK(false, "SEND in state %s",
			      upstream_state_name(u->state));
		}
		break;
	case UPSTREAM_ACT_EHLO_FIRST:
		CHECK(early(t) && !t->retried && u->early_code >= 400 &&
			      u->early_code != 421 &&
			      u->state == UPSTREAM_EHLO_AGAIN && t->saw_xclient,
		      "EHLO_FIRST in state %s", upstream_state_name(u->state));
		CHECK(t->r.code == 220 || t->r.code == 250,
		      "EHLO_FIRST after %d", t->r.code);
		check_line(t, t->no_helo ? "EHLO " HOST "\r\n"
					 : "EHLO " HELO "\r\n");
		t->retried = true;
		break;
	case UPSTREAM_ACT_START_TLS: {
		enum upstream_action b;

		CHECK(!check && u->state == UPSTREAM_TLS, "START_TLS");
		if (t->tls_fails) {
			t->closed = true; /* the I/O side's failure */
			return;
		}
		b = upstream_tls_done(u);
		t->saw_tls = true;
		CHECK(b == UPSTREAM_ACT_SEND && u->state == UPSTREAM_EHLO,
		      "after TLS: %d", (int)b);
		act(t, b);
		break;
	}
	case UPSTREAM_ACT_XCLIENT: {
		struct sockaddr_in6 client = {.sin6_family = AF_INET6,
					      .sin6_port = htons(40123)};
		struct sockaddr_in dest = {.sin_family = AF_INET,
					   .sin_port = htons(587),
					   .sin_addr.s_addr =
						   htonl(0xc0000219)};
		char login[700];
		struct xclient_info info = {
			.client = (const struct sockaddr *)&client,
			.dest = (const struct sockaddr *)&dest,
			.helo = t->no_helo ? "" : HELO,
			.login = login,
		};
		enum upstream_action b;

		CHECK(!check && u->state == UPSTREAM_XCLIENT &&
			      t->p.identity == IDENTITY_XCLIENT,
		      "XCLIENT");
		CHECK(strlen(u->xclient_attrs) < sizeof(u->xclient_attrs),
		      "attributes unbounded");
		client.sin6_addr.s6_addr[15] = 7;
		/* "+" is three bytes in xtext: 699 of them never fit. */
		memset(login, t->long_login ? '+' : 'u', sizeof(login) - 1);
		login[t->long_login ? sizeof(login) - 1 : 4] = '\0';
		b = upstream_xclient(u, &info);
		if (b == UPSTREAM_ACT_FAIL) {
			check_failed(t);
			return;
		}
		CHECK(b == UPSTREAM_ACT_SEND, "after XCLIENT facts: %d",
		      (int)b);
		check_line(t, "XCLIENT");
		t->saw_xclient = true;
		break;
	}
	case UPSTREAM_ACT_READY:
		CHECK(!check && u->state == UPSTREAM_READY, "READY");
		forward(t);
		break;
	case UPSTREAM_ACT_RELAY:
	case UPSTREAM_ACT_VERDICT:
		CHECK(!check && u->state == UPSTREAM_READY, "RELAY");
		if (t->r.code == 354 && a == UPSTREAM_ACT_RELAY) {
			upstream_data_begin(u);
			CHECK(u->state == UPSTREAM_DATA, "no DATA after 354");
			upstream_data_sent(u, true);
		} else {
			forward(t);
		}
		break;
	case UPSTREAM_ACT_GOOD:
		CHECK(check && u->state == UPSTREAM_QUIT, "GOOD");
		check_line(t, "QUIT\r\n");
		CHECK(u->len == 6, "QUIT and more");
		break;
	case UPSTREAM_ACT_FAIL:
		check_failed(t);
		break;
	default:
		CHECK(false, "unknown action %d", (int)a);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run t;
	static const enum backend_identity ids[4] = {
		IDENTITY_NONE, IDENTITY_XCLIENT, IDENTITY_PROXY_V2,
		IDENTITY_XCLIENT};
	size_t off = 2;

	if (size < 2)
		return 0;
	memset(&t, 0, sizeof(t));
	t.p.mode = data[0] & 1 ? UPSTREAM_CHECK : UPSTREAM_SESSION;
	t.p.identity = ids[(data[0] >> 1) & 3];
	t.p.starttls = (data[0] & 8) != 0;
	t.p.hostname = HOST;
	if (((data[0] >> 1) & 3) == 3)
		t.p.xclient_early = XCLIENT_ATTR_NAME | XCLIENT_ATTR_ADDR |
				    XCLIENT_ATTR_HELO | XCLIENT_ATTR_LOGIN;
	t.long_login = (data[0] & 32) != 0;
	t.no_helo = (data[0] & 16) != 0;
	t.tls_fails = (data[0] & 64) != 0;
	t.io_breaks = (data[0] & 128) != 0;
	t.seed = data[1];
	upstream_init(&t.u, &t.p);
	t.u.trace = trace;
	t.u.trace_ctx = &t;
	t.traced = UPSTREAM_NONE;
	upstream_connecting(&t.u);
	upstream_connected(&t.u);
	CHECK(t.u.state == UPSTREAM_GREETING && t.changes == 2, "connect");
	CHECK(upstream_proxy_header(&t.u) ==
		      (t.p.identity == IDENTITY_PROXY_V2),
	      "proxy header");
	smtp_reply_init(&t.r);
	while (off < size && !t.closed) {
		size_t len = 1 + next_rand(&t) % 64, used;
		enum smtp_reply_status st;
		char *chunk;

		if (len > size - off)
			len = size - off;
		chunk = xmalloc(len);
		memcpy(chunk, data + off, len);
		st = smtp_reply_feed(&t.r, chunk, len, &used);
		free(chunk);
		off += used;
		if (st == SMTP_REPLY_ERROR)
			break; /* the I/O side drops the connection */
		if (st != SMTP_REPLY_DONE)
			continue;
		if (t.io_breaks && t.u.state != UPSTREAM_QUIT &&
		    next_rand(&t) % 8 == 0) {
			/* A read error, as the I/O side reports it. */
			upstream_fail(&t.u, "read", "connection closed");
			if (!t.failed)
				CHECK(strcmp(t.u.step, "read") == 0,
				      "upstream_fail() step");
			check_failed(&t);
		}
		act(&t, upstream_reply(&t.u, &t.r));
	}
	CHECK(t.traced == t.u.state, "a change the trace missed");
	if (t.failed) {
		CHECK(upstream_tls_done(&t.u) == UPSTREAM_ACT_FAIL &&
			      !upstream_forward(&t.u, UPSTREAM_FWD_COMMAND) &&
			      t.u.len == 0,
		      "a failure is not final");
	}
	return 0;
}
