/*
 * test_upstream.c - the dialogue with a backend (upstream.c): every path
 * of the handshake table (greeting, EHLO, STARTTLS, TLS, XCLIENT with 220
 * or 250, EHLO again; XCLIENT before EHLO when its attributes are known,
 * and the EHLO after all when that is refused, EHLO_FIRST only when the
 * order was what the server refused), each failure step and its
 * detail, identities none,
 * xclient and proxy-v2, the relay states, the check mode's verdicts and
 * reasons, and the state trace.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/upstream.h"
#include "test_sockaddr.h"

#define HOST "proxy.example.net"

#define EHLO_PLAIN                                                             \
	"250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"        \
	"250 8BITMIME\r\n"
#define EHLO_XCLIENT                                                           \
	"250-mx.example.net\r\n250-PIPELINING\r\n"                             \
	"250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n250 8BITMIME\r\n"
#define EHLO_STARTTLS "250-mx.example.net\r\n250-STARTTLS\r\n250 PIPELINING\r\n"
#define EHLO_BOTH                                                              \
	"250-mx.example.net\r\n250-STARTTLS\r\n250-XCLIENT NAME ADDR HELO\r\n" \
	"250 8BITMIME\r\n"

/* The states the trace saw, in order. */
struct trace {
	size_t n;
	enum upstream_state from[64], to[64];
};

static void
trace_fn(void *ctx, enum upstream_state from, enum upstream_state to)
{
	struct trace *t = ctx;

	assert_true(t->n < 64);
	assert_int_not_equal(from, to);
	if (t->n > 0)
		assert_int_equal(from, t->to[t->n - 1]);
	t->from[t->n] = from;
	t->to[t->n++] = to;
}

static struct upstream *
new_upstream_early(enum upstream_mode mode, enum backend_identity id, bool tls,
		   unsigned early, struct trace *t)
{
	struct upstream_params p = {mode, id, tls, HOST, early};
	struct upstream *u = malloc(sizeof(*u));

	assert_non_null(u);
	upstream_init(u, &p);
	if (t != NULL) {
		memset(t, 0, sizeof(*t));
		u->trace = trace_fn;
		u->trace_ctx = t;
	}
	assert_int_equal(u->state, UPSTREAM_NONE);
	upstream_connecting(u);
	assert_int_equal(u->state, UPSTREAM_CONNECTING);
	upstream_connected(u);
	assert_int_equal(u->state, UPSTREAM_GREETING);
	return u;
}

static struct upstream *
new_upstream(enum upstream_mode mode, enum backend_identity id, bool tls,
	     struct trace *t)
{
	return new_upstream_early(mode, id, tls, 0, t);
}

static struct smtp_reply reply;

/* One whole reply through the parser, then into the dialogue. */
static enum upstream_action
feed(struct upstream *u, const char *text)
{
	size_t used;

	smtp_reply_init(&reply);
	assert_int_equal(smtp_reply_feed(&reply, text, strlen(text), &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(used, strlen(text));
	return upstream_reply(u, &reply);
}

static void
expect_send(struct upstream *u, enum upstream_action act, const char *line)
{
	assert_int_equal(act, UPSTREAM_ACT_SEND);
	assert_int_equal(u->len, strlen(line));
	assert_string_equal(u->line, line);
}

static void
expect_fail(struct upstream *u, enum upstream_action act, const char *step,
	    const char *detail)
{
	assert_int_equal(act, UPSTREAM_ACT_FAIL);
	assert_int_equal(u->state, UPSTREAM_FAILED);
	assert_string_equal(u->step, step);
	assert_string_equal(u->detail, detail);
	assert_int_equal(u->len, 0);
	/* Sticky: whatever comes next, nothing more is sent. */
	assert_int_equal(feed(u, "250 ok\r\n"), UPSTREAM_ACT_FAIL);
	assert_int_equal(feed(u, "220 hi\r\n"), UPSTREAM_ACT_FAIL);
	assert_int_equal(u->len, 0);
	assert_int_equal(upstream_tls_done(u), UPSTREAM_ACT_FAIL);
	assert_false(upstream_forward(u, UPSTREAM_FWD_COMMAND));
	assert_int_equal(u->state, UPSTREAM_FAILED);
	assert_false(upstream_waiting(u));
	assert_false(upstream_in_handshake(u));
}

/* Up to the first EHLO's reply. */
static struct upstream *
to_ehlo(enum upstream_mode mode, enum backend_identity id, bool tls,
	struct trace *t)
{
	struct upstream *u = new_upstream(mode, id, tls, t);

	expect_send(u, feed(u, "220 mx.example.net ESMTP\r\n"),
		    "EHLO " HOST "\r\n");
	assert_int_equal(u->state, UPSTREAM_EHLO);
	return u;
}

static void
test_identity_none(void **state)
{
	struct trace t;
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_NONE, false, &t);

	(void)state;
	assert_false(upstream_proxy_header(u));
	assert_true(upstream_in_handshake(u));
	/* XCLIENT offered, but not asked for. */
	assert_int_equal(feed(u, EHLO_XCLIENT), UPSTREAM_ACT_READY);
	assert_int_equal(u->state, UPSTREAM_READY);
	assert_int_equal(u->len, 0);
	assert_true(smtp_reply_has_ext(&reply, "PIPELINING", NULL, NULL));
	assert_false(upstream_in_handshake(u));
	assert_false(upstream_waiting(u));
	assert_int_equal(t.n, 4);
	assert_int_equal(t.to[0], UPSTREAM_CONNECTING);
	assert_int_equal(t.to[1], UPSTREAM_GREETING);
	assert_int_equal(t.to[2], UPSTREAM_EHLO);
	assert_int_equal(t.to[3], UPSTREAM_READY);
	free(u);
}

static void
test_identity_proxy_v2(void **state)
{
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_PROXY_V2, false, NULL);

	(void)state;
	assert_true(upstream_proxy_header(u));
	assert_int_equal(feed(u, EHLO_XCLIENT), UPSTREAM_ACT_READY);
	assert_int_equal(u->state, UPSTREAM_READY);
	free(u);
}

static void
xclient_path(const char *after, const char *helo, const char *ehlo_again)
{
	union sockaddr_ip client = v4("198.51.100.7", 40123);
	struct xclient_info info = {&client.sa, NULL, helo, "demo"};
	struct trace t;
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_XCLIENT, false, &t);

	assert_int_equal(feed(u, EHLO_XCLIENT), UPSTREAM_ACT_XCLIENT);
	assert_int_equal(u->state, UPSTREAM_XCLIENT);
	assert_string_equal(u->xclient_attrs,
			    "NAME ADDR PORT PROTO HELO LOGIN");
	assert_true(upstream_in_handshake(u));
	assert_true(upstream_waiting(u));
	expect_send(u, upstream_xclient(u, &info),
		    helo[0] != '\0'
			    ? "XCLIENT NAME=[UNAVAILABLE] ADDR=198.51.100.7 "
			      "PORT=40123 PROTO=ESMTP HELO=laptop.example.org "
			      "LOGIN=demo\r\n"
			    : "XCLIENT NAME=[UNAVAILABLE] ADDR=198.51.100.7 "
			      "PORT=40123 PROTO=ESMTP HELO=[UNAVAILABLE] "
			      "LOGIN=demo\r\n");
	expect_send(u, feed(u, after), ehlo_again);
	assert_int_equal(u->state, UPSTREAM_EHLO_AGAIN);
	/* The last EHLO's reply is the one that counts: no XCLIENT now. */
	assert_int_equal(feed(u, EHLO_PLAIN), UPSTREAM_ACT_READY);
	assert_int_equal(u->state, UPSTREAM_READY);
	assert_int_equal(t.n, 6);
	assert_int_equal(t.to[3], UPSTREAM_XCLIENT);
	assert_int_equal(t.to[4], UPSTREAM_EHLO_AGAIN);
	assert_int_equal(t.to[5], UPSTREAM_READY);
	free(u);
}

static void
test_xclient_220(void **state)
{
	(void)state;
	xclient_path("220 mx.example.net ESMTP\r\n", "laptop.example.org",
		     "EHLO laptop.example.org\r\n");
}

static void
test_xclient_250(void **state)
{
	(void)state;
	xclient_path("250 2.0.0 Ok\r\n", "laptop.example.org",
		     "EHLO laptop.example.org\r\n");
	/* No client name: our own. */
	xclient_path("250 2.0.0 Ok\r\n", "", "EHLO " HOST "\r\n");
}

static void
test_xclient_not_offered(void **state)
{
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_XCLIENT, false, NULL);

	(void)state;
	expect_fail(u, feed(u, EHLO_PLAIN), "xclient",
		    "backend does not offer XCLIENT");
	free(u);
}

static void
test_xclient_refused(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 40123);
	struct xclient_info info = {&client.sa, NULL, "h", "u"};
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_XCLIENT, false, NULL);

	(void)state;
	assert_int_equal(feed(u, EHLO_XCLIENT), UPSTREAM_ACT_XCLIENT);
	assert_int_equal(upstream_xclient(u, &info), UPSTREAM_ACT_SEND);
	expect_fail(u,
		    feed(u, "550 5.7.0 Error: insufficient authorization\r\n"),
		    "xclient", "unexpected reply 550");
	free(u);
}

static void
test_xclient_too_long(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 40123);
	char login[1200];
	struct xclient_info info = {&client.sa, NULL, "h", login};
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_XCLIENT, false, NULL);

	(void)state;
	/* Every byte xtext-encoded as "+XX": three times too long. */
	memset(login, '=', sizeof(login) - 1);
	login[sizeof(login) - 1] = '\0';
	assert_int_equal(feed(u, EHLO_XCLIENT), UPSTREAM_ACT_XCLIENT);
	expect_fail(u, upstream_xclient(u, &info), "xclient",
		    "XCLIENT line too long");
	free(u);
}

static void
test_xclient_attrs_bounded(void **state)
{
	char ehlo[700];
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_XCLIENT, false, NULL);

	(void)state;
	snprintf(ehlo, sizeof(ehlo), "250-mx\r\n250 XCLIENT NAME %0500d\r\n",
		 0);
	assert_int_equal(feed(u, ehlo), UPSTREAM_ACT_XCLIENT);
	assert_int_equal(strlen(u->xclient_attrs),
			 sizeof(u->xclient_attrs) - 1);
	assert_memory_equal(u->xclient_attrs, "NAME 000", 8);
	free(u);
}

#define EARLY_ATTRS                                                            \
	(XCLIENT_ATTR_NAME | XCLIENT_ATTR_ADDR | XCLIENT_ATTR_PORT |           \
	 XCLIENT_ATTR_HELO | XCLIENT_ATTR_LOGIN)

/* Known attributes: XCLIENT right after the greeting, then the EHLO with
 * the client's name; one EHLO in all. */
static void
test_xclient_early(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 40123);
	struct xclient_info info = {&client.sa, NULL, "laptop.example.org",
				    "demo"};
	struct trace t;
	struct upstream *u = new_upstream_early(
		UPSTREAM_SESSION, IDENTITY_XCLIENT, false, EARLY_ATTRS, &t);

	(void)state;
	assert_string_equal(u->xclient_attrs, "NAME ADDR PORT HELO LOGIN");
	assert_int_equal(feed(u, "220 mx.example.net ESMTP\r\n"),
			 UPSTREAM_ACT_XCLIENT);
	assert_int_equal(u->state, UPSTREAM_XCLIENT);
	expect_send(u, upstream_xclient(u, &info),
		    "XCLIENT NAME=[UNAVAILABLE] ADDR=198.51.100.7 PORT=40123 "
		    "HELO=laptop.example.org LOGIN=demo\r\n");
	expect_send(u, feed(u, "220 mx.example.net ESMTP\r\n"),
		    "EHLO laptop.example.org\r\n");
	assert_int_equal(feed(u, EHLO_PLAIN), UPSTREAM_ACT_READY);
	assert_int_equal(t.n,
			 5); /* connecting, greeting, xclient, again, ready */
	assert_int_equal(t.to[2], UPSTREAM_XCLIENT);
	free(u);
}

/* Up to the early XCLIENT's refusal: the EHLO goes, nothing failed. */
static struct upstream *
early_refused_by(const char *refusal, const struct xclient_info *info)
{
	struct upstream *u = new_upstream_early(
		UPSTREAM_SESSION, IDENTITY_XCLIENT, false, EARLY_ATTRS, NULL);

	assert_int_equal(feed(u, "220 mx ESMTP\r\n"), UPSTREAM_ACT_XCLIENT);
	assert_int_equal(upstream_xclient(u, info), UPSTREAM_ACT_SEND);
	expect_send(u, feed(u, refusal), "EHLO " HOST "\r\n");
	assert_int_equal(u->state, UPSTREAM_EHLO);
	assert_false(upstream_early(u));
	return u;
}

/* Refused before EHLO, then the same XCLIENT taken after it: the order
 * was the trouble, and the I/O side hears so (EHLO_FIRST). */
static void
test_xclient_early_refused_ehlo_first(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 40123);
	struct xclient_info info = {&client.sa, NULL, "h", "demo"};
	struct upstream *u = early_refused_by(
		"503 5.5.1 Error: send HELO/EHLO first\r\n", &info);

	(void)state;
	assert_int_equal(u->early_code, 503);
	/* The list it was learned with, in another order and case. */
	assert_int_equal(feed(u, "250-mx\r\n250 XCLIENT login helo PORT ADDR "
				 "NAME\r\n"),
			 UPSTREAM_ACT_XCLIENT);
	assert_int_equal(upstream_xclient(u, &info), UPSTREAM_ACT_SEND);
	assert_int_equal(feed(u, "220 mx ESMTP\r\n"), UPSTREAM_ACT_EHLO_FIRST);
	assert_int_equal(u->state, UPSTREAM_EHLO_AGAIN);
	assert_string_equal(u->line, "EHLO h\r\n");
	assert_int_equal(feed(u, EHLO_PLAIN), UPSTREAM_ACT_READY);
	free(u);
}

/* Refused before EHLO because the server's list changed: the EHLO's new
 * list is used and taken; no EHLO_FIRST (the next session goes early with
 * the new list).  A refusal of the XCLIENT after EHLO is a failure, as
 * it always was (a value of this client's), and so is 421 at once. */
static void
test_xclient_early_refused_otherwise(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 40123);
	struct xclient_info info = {&client.sa, NULL, "h", "demo"};
	struct upstream *u = early_refused_by(
		"501 5.5.4 Bad XCLIENT attribute name: LOGIN\r\n", &info);

	(void)state;
	assert_int_equal(feed(u, EHLO_BOTH), UPSTREAM_ACT_XCLIENT);
	assert_string_equal(u->xclient_attrs, "NAME ADDR HELO");
	expect_send(u, upstream_xclient(u, &info),
		    "XCLIENT NAME=[UNAVAILABLE] ADDR=198.51.100.7 HELO=h\r\n");
	expect_send(u, feed(u, "220 mx ESMTP\r\n"), "EHLO h\r\n");
	free(u);

	u = early_refused_by("501 5.5.4 Bad HELO syntax\r\n", &info);
	assert_int_equal(feed(u, EHLO_XCLIENT), UPSTREAM_ACT_XCLIENT);
	assert_int_equal(upstream_xclient(u, &info), UPSTREAM_ACT_SEND);
	expect_fail(u, feed(u, "501 5.5.4 Bad HELO syntax\r\n"), "xclient",
		    "unexpected reply 501");
	free(u);

	u = new_upstream_early(UPSTREAM_SESSION, IDENTITY_XCLIENT, false,
			       EARLY_ATTRS, NULL);
	assert_int_equal(feed(u, "220 mx ESMTP\r\n"), UPSTREAM_ACT_XCLIENT);
	assert_int_equal(upstream_xclient(u, &info), UPSTREAM_ACT_SEND);
	expect_fail(u, feed(u, "421 4.3.2 shutting down\r\n"), "xclient",
		    "unexpected reply 421");
	free(u);
}

/* Only a session's connection to a plaintext XCLIENT server goes early;
 * a check, a STARTTLS server and the other identities read the EHLO. */
static void
test_xclient_early_only_where_it_fits(void **state)
{
	const struct {
		enum upstream_mode mode;
		enum backend_identity id;
		bool tls;
	} cases[] = {
		{UPSTREAM_CHECK, IDENTITY_XCLIENT, false},
		{UPSTREAM_SESSION, IDENTITY_XCLIENT, true},
		{UPSTREAM_SESSION, IDENTITY_NONE, false},
		{UPSTREAM_SESSION, IDENTITY_PROXY_V2, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct upstream *u =
			new_upstream_early(cases[i].mode, cases[i].id,
					   cases[i].tls, EARLY_ATTRS, NULL);

		expect_send(u, feed(u, "220 mx ESMTP\r\n"),
			    "EHLO " HOST "\r\n");
		free(u);
	}
}

/* A check keeps what the server's XCLIENT takes, for the sessions. */
static void
test_check_keeps_xclient_attrs(void **state)
{
	struct upstream *u =
		to_ehlo(UPSTREAM_CHECK, IDENTITY_XCLIENT, false, NULL);

	(void)state;
	assert_int_equal(feed(u, EHLO_XCLIENT), UPSTREAM_ACT_GOOD);
	assert_string_equal(u->xclient_attrs,
			    "NAME ADDR PORT PROTO HELO LOGIN");
	free(u);
}

static void
test_starttls(void **state)
{
	struct trace t;
	struct upstream *u = to_ehlo(UPSTREAM_SESSION, IDENTITY_NONE, true, &t);

	(void)state;
	expect_send(u, feed(u, EHLO_STARTTLS), "STARTTLS\r\n");
	assert_int_equal(u->state, UPSTREAM_STARTTLS);
	/* Not before the handshake. */
	assert_int_equal(upstream_tls_done(u), UPSTREAM_ACT_WAIT);
	assert_int_equal(feed(u, "220 2.0.0 Ready to start TLS\r\n"),
			 UPSTREAM_ACT_START_TLS);
	assert_int_equal(u->state, UPSTREAM_TLS);
	assert_true(upstream_in_handshake(u));
	expect_send(u, upstream_tls_done(u), "EHLO " HOST "\r\n");
	assert_int_equal(u->state, UPSTREAM_EHLO);
	/* Over TLS, STARTTLS is no longer listed, nor needed. */
	assert_int_equal(feed(u, EHLO_PLAIN), UPSTREAM_ACT_READY);
	assert_int_equal(t.n, 7);
	assert_int_equal(t.to[3], UPSTREAM_STARTTLS);
	assert_int_equal(t.to[4], UPSTREAM_TLS);
	assert_int_equal(t.to[5], UPSTREAM_EHLO);
	free(u);
}

static void
test_starttls_then_xclient(void **state)
{
	union sockaddr_ip client = v6("2001:db8::7", 40123);
	union sockaddr_ip dest = v4("192.0.2.25", 587);
	struct xclient_info info = {&client.sa, &dest.sa, "laptop", "demo"};
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_XCLIENT, true, NULL);

	(void)state;
	/* STARTTLS first, even when XCLIENT is offered in plaintext. */
	expect_send(u, feed(u, EHLO_BOTH), "STARTTLS\r\n");
	assert_int_equal(feed(u, "220 go ahead\r\n"), UPSTREAM_ACT_START_TLS);
	expect_send(u, upstream_tls_done(u), "EHLO " HOST "\r\n");
	assert_int_equal(feed(u, "250-mx\r\n250 XCLIENT ADDR PORT DESTADDR "
				 "DESTPORT HELO\r\n"),
			 UPSTREAM_ACT_XCLIENT);
	expect_send(u, upstream_xclient(u, &info),
		    "XCLIENT ADDR=IPV6:2001:db8::7 PORT=40123 "
		    "DESTADDR=192.0.2.25 DESTPORT=587 HELO=laptop\r\n");
	expect_send(u, feed(u, "220 mx ESMTP\r\n"), "EHLO laptop\r\n");
	assert_int_equal(feed(u, EHLO_PLAIN), UPSTREAM_ACT_READY);
	free(u);
}

static void
test_starttls_not_offered(void **state)
{
	struct upstream *u;

	(void)state;
	/* Never plaintext instead, XCLIENT or not. */
	u = to_ehlo(UPSTREAM_SESSION, IDENTITY_NONE, true, NULL);
	expect_fail(u, feed(u, EHLO_PLAIN), "starttls",
		    "backend does not offer STARTTLS");
	free(u);
	u = to_ehlo(UPSTREAM_SESSION, IDENTITY_XCLIENT, true, NULL);
	expect_fail(u, feed(u, EHLO_XCLIENT), "starttls",
		    "backend does not offer STARTTLS");
	free(u);
}

static void
test_starttls_refused(void **state)
{
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_NONE, true, NULL);

	(void)state;
	expect_send(u, feed(u, EHLO_STARTTLS), "STARTTLS\r\n");
	expect_fail(u, feed(u, "454 4.7.0 TLS not available\r\n"), "starttls",
		    "unexpected reply 454");
	free(u);
}

static void
test_greeting_fails(void **state)
{
	static const int codes[] = {554, 421, 250};
	char text[32], detail[32];

	(void)state;
	for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++) {
		struct upstream *u = new_upstream(UPSTREAM_SESSION,
						  IDENTITY_NONE, false, NULL);
		snprintf(text, sizeof(text), "%d no\r\n", codes[i]);
		snprintf(detail, sizeof(detail), "unexpected reply %d",
			 codes[i]);
		expect_fail(u, feed(u, text), "greeting", detail);
		free(u);
	}
}

static void
test_ehlo_fails(void **state)
{
	union sockaddr_ip client = v4("198.51.100.7", 1);
	struct xclient_info info = {&client.sa, NULL, "h", "u"};
	struct upstream *u;

	(void)state;
	u = to_ehlo(UPSTREAM_SESSION, IDENTITY_NONE, false, NULL);
	expect_fail(u, feed(u, "502 5.5.1 no EHLO\r\n"), "ehlo",
		    "unexpected reply 502");
	free(u);
	/* A multi-line failure is one reply. */
	u = to_ehlo(UPSTREAM_SESSION, IDENTITY_NONE, false, NULL);
	expect_fail(u, feed(u, "554-no\r\n554 really\r\n"), "ehlo",
		    "unexpected reply 554");
	free(u);
	/* The EHLO after XCLIENT. */
	u = to_ehlo(UPSTREAM_SESSION, IDENTITY_XCLIENT, false, NULL);
	assert_int_equal(feed(u, EHLO_XCLIENT), UPSTREAM_ACT_XCLIENT);
	assert_int_equal(upstream_xclient(u, &info), UPSTREAM_ACT_SEND);
	expect_send(u, feed(u, "220 again\r\n"), "EHLO h\r\n");
	expect_fail(u, feed(u, "421 4.3.2 bye\r\n"), "ehlo",
		    "unexpected reply 421");
	free(u);
	/* Over TLS. */
	u = to_ehlo(UPSTREAM_SESSION, IDENTITY_NONE, true, NULL);
	expect_send(u, feed(u, EHLO_STARTTLS), "STARTTLS\r\n");
	assert_int_equal(feed(u, "220 go\r\n"), UPSTREAM_ACT_START_TLS);
	expect_send(u, upstream_tls_done(u), "EHLO " HOST "\r\n");
	expect_fail(u, feed(u, "500 what\r\n"), "ehlo", "unexpected reply 500");
	free(u);
}

/* Whichever way the EHLO reply is cut, the dialogue sees one reply. */
static void
test_multiline_ehlo_split(void **state)
{
	static const char in[] = EHLO_XCLIENT "250 extra\r\n";
	const size_t ehlo_len = sizeof(EHLO_XCLIENT) - 1;

	(void)state;
	for (size_t cut = 0; cut <= ehlo_len; cut++) {
		struct upstream *u = to_ehlo(UPSTREAM_SESSION, IDENTITY_XCLIENT,
					     false, NULL);
		size_t used, off;
		enum smtp_reply_status st;

		smtp_reply_init(&reply);
		st = smtp_reply_feed(&reply, in, cut, &used);
		assert_int_equal(st, cut == ehlo_len ? SMTP_REPLY_DONE
						     : SMTP_REPLY_MORE);
		off = used;
		if (st == SMTP_REPLY_MORE) {
			st = smtp_reply_feed(&reply, in + off,
					     sizeof(in) - 1 - off, &used);
			off += used;
		}
		assert_int_equal(st, SMTP_REPLY_DONE);
		assert_int_equal(off, ehlo_len); /* the next one waits */
		assert_int_equal(upstream_reply(u, &reply),
				 UPSTREAM_ACT_XCLIENT);
		assert_string_equal(u->xclient_attrs,
				    "NAME ADDR PORT PROTO HELO LOGIN");
		free(u);
	}
}

static struct upstream *
ready_upstream(void)
{
	struct upstream *u =
		to_ehlo(UPSTREAM_SESSION, IDENTITY_NONE, false, NULL);

	assert_int_equal(feed(u, EHLO_PLAIN), UPSTREAM_ACT_READY);
	return u;
}

static void
test_relay(void **state)
{
	struct trace t;
	struct upstream *u = ready_upstream();

	(void)state;
	memset(&t, 0, sizeof(t));
	u->trace = trace_fn;
	u->trace_ctx = &t;
	/* MAIL, RCPT: one at a time. */
	assert_true(upstream_forward(u, UPSTREAM_FWD_COMMAND));
	assert_int_equal(u->state, UPSTREAM_WAIT_REPLY);
	assert_true(upstream_waiting(u));
	assert_false(upstream_forward(u, UPSTREAM_FWD_COMMAND));
	assert_int_equal(feed(u, "250 2.1.0 Ok\r\n"), UPSTREAM_ACT_RELAY);
	assert_int_equal(u->state, UPSTREAM_READY);
	assert_true(upstream_forward(u, UPSTREAM_FWD_COMMAND));
	assert_int_equal(feed(u, "550 5.1.1 no such user\r\n"),
			 UPSTREAM_ACT_RELAY);
	/* DATA, 354, the message, the verdict. */
	assert_true(upstream_forward(u, UPSTREAM_FWD_COMMAND));
	assert_int_equal(feed(u, "354 go ahead\r\n"), UPSTREAM_ACT_RELAY);
	upstream_data_begin(u);
	assert_int_equal(u->state, UPSTREAM_DATA);
	assert_false(upstream_waiting(u));
	upstream_data_sent(u, true);
	assert_int_equal(u->state, UPSTREAM_WAIT_DATA_END);
	assert_true(upstream_waiting(u));
	assert_int_equal(feed(u, "250 2.0.0 Ok: queued as 4Xy\r\n"),
			 UPSTREAM_ACT_VERDICT);
	assert_int_equal(u->state, UPSTREAM_READY);
	/* BDAT: the chunk follows the line; its reply, then LAST's. */
	assert_true(upstream_forward(u, UPSTREAM_FWD_CHUNK));
	assert_int_equal(u->state, UPSTREAM_DATA);
	upstream_data_sent(u, false);
	assert_int_equal(u->state, UPSTREAM_WAIT_REPLY);
	assert_int_equal(feed(u, "250 2.0.0 1000 octets\r\n"),
			 UPSTREAM_ACT_RELAY);
	assert_true(upstream_forward(u, UPSTREAM_FWD_CHUNK));
	upstream_data_sent(u, true);
	assert_int_equal(feed(u, "554 5.7.1 rejected\r\n"),
			 UPSTREAM_ACT_VERDICT);
	/* Out of turn: nothing moves. */
	upstream_data_sent(u, true);
	assert_int_equal(u->state, UPSTREAM_READY);
	assert_int_equal(upstream_xclient(u, NULL), UPSTREAM_ACT_WAIT);
	assert_int_equal(upstream_tls_done(u), UPSTREAM_ACT_WAIT);
	assert_int_equal(u->len, 0);
	assert_int_equal(t.n, 15);
	free(u);
}

static void
test_relay_failures(void **state)
{
	struct upstream *u;

	(void)state;
	/* 421 instead of an answer. */
	u = ready_upstream();
	assert_true(upstream_forward(u, UPSTREAM_FWD_COMMAND));
	expect_fail(u, feed(u, "421 4.4.2 timeout\r\n"), "reply",
		    "backend said 421");
	free(u);
	/* 421 instead of a verdict. */
	u = ready_upstream();
	assert_true(upstream_forward(u, UPSTREAM_FWD_COMMAND));
	assert_int_equal(feed(u, "354 go\r\n"), UPSTREAM_ACT_RELAY);
	upstream_data_begin(u);
	upstream_data_sent(u, true);
	expect_fail(u, feed(u, "421 4.3.0 shutting down\r\n"), "reply",
		    "backend said 421");
	free(u);
	/* Nobody asked: idle, or in the middle of the message. */
	u = ready_upstream();
	expect_fail(u, feed(u, "421 4.4.2 idle timeout\r\n"), "reply",
		    "unsolicited reply");
	free(u);
	u = ready_upstream();
	assert_true(upstream_forward(u, UPSTREAM_FWD_CHUNK));
	expect_fail(u, feed(u, "554 5.3.4 too big\r\n"), "reply",
		    "unsolicited reply");
	free(u);
}

/* The I/O side's failures end the dialogue the same way. */
static void
test_io_failure(void **state)
{
	struct upstream *u;

	(void)state;
	u = to_ehlo(UPSTREAM_SESSION, IDENTITY_NONE, false, NULL);
	upstream_fail(u, "read", "connection closed");
	expect_fail(u, UPSTREAM_ACT_FAIL, "read", "connection closed");
	/* The first failure is the one that counts. */
	upstream_fail(u, "timeout", "no answer in time");
	assert_string_equal(u->step, "read");
	free(u);
	u = ready_upstream();
	assert_true(upstream_forward(u, UPSTREAM_FWD_COMMAND));
	upstream_fail(u, "timeout", "no reply in time");
	expect_fail(u, UPSTREAM_ACT_FAIL, "timeout", "no reply in time");
	free(u);
}

static void
test_check_good(void **state)
{
	static const struct {
		enum backend_identity id;
		bool tls;
		const char *ehlo;
	} cases[] = {
		{IDENTITY_NONE, false, EHLO_PLAIN},
		{IDENTITY_XCLIENT, false, EHLO_XCLIENT},
		{IDENTITY_PROXY_V2, false, EHLO_PLAIN},
		{IDENTITY_NONE, true, EHLO_STARTTLS},
		{IDENTITY_XCLIENT, true, EHLO_BOTH},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct trace t;
		struct upstream *u =
			to_ehlo(UPSTREAM_CHECK, cases[i].id, cases[i].tls, &t);

		assert_int_equal(upstream_proxy_header(u),
				 cases[i].id == IDENTITY_PROXY_V2);
		assert_int_equal(feed(u, cases[i].ehlo), UPSTREAM_ACT_GOOD);
		assert_int_equal(u->state, UPSTREAM_QUIT);
		assert_string_equal(u->line, "QUIT\r\n");
		assert_int_equal(u->len, 6);
		assert_string_equal(u->detail, "greeting and EHLO ok");
		assert_false(upstream_waiting(u));
		/* The answer to QUIT asks for nothing. */
		assert_int_equal(feed(u, "221 bye\r\n"), UPSTREAM_ACT_WAIT);
		assert_int_equal(u->len, 0);
		assert_int_equal(t.n, 4);
		assert_int_equal(t.to[3], UPSTREAM_QUIT);
		free(u);
	}
}

static void
test_check_bad(void **state)
{
	struct upstream *u;

	(void)state;
	/* The reasons health checks have always logged. */
	u = new_upstream(UPSTREAM_CHECK, IDENTITY_XCLIENT, false, NULL);
	expect_fail(u, feed(u, "554 go away\r\n"), "greeting", "554");
	free(u);
	u = to_ehlo(UPSTREAM_CHECK, IDENTITY_NONE, false, NULL);
	expect_fail(u, feed(u, "550 no\r\n"), "ehlo", "550");
	free(u);
	u = to_ehlo(UPSTREAM_CHECK, IDENTITY_XCLIENT, false, NULL);
	expect_fail(u, feed(u, EHLO_PLAIN), "ehlo", "XCLIENT not offered");
	free(u);
	u = to_ehlo(UPSTREAM_CHECK, IDENTITY_NONE, true, NULL);
	expect_fail(u, feed(u, EHLO_XCLIENT), "ehlo", "STARTTLS not offered");
	free(u);
	/* Both missing: XCLIENT is named, as before. */
	u = to_ehlo(UPSTREAM_CHECK, IDENTITY_XCLIENT, true, NULL);
	expect_fail(u, feed(u, EHLO_PLAIN), "ehlo", "XCLIENT not offered");
	free(u);
	u = to_ehlo(UPSTREAM_CHECK, IDENTITY_XCLIENT, true, NULL);
	expect_fail(u, feed(u, EHLO_XCLIENT), "ehlo", "STARTTLS not offered");
	free(u);
}

static void
test_state_names(void **state)
{
	(void)state;
	assert_string_equal(upstream_state_name(UPSTREAM_GREETING), "greeting");
	assert_string_equal(upstream_state_name(UPSTREAM_EHLO_AGAIN),
			    "ehlo-again");
	assert_string_equal(upstream_state_name(UPSTREAM_WAIT_DATA_END),
			    "wait-data-end");
	assert_string_equal(upstream_state_name(UPSTREAM_FAILED), "failed");
	assert_string_equal(upstream_state_name((enum upstream_state)99), "?");
	/* The numbers the backend-lost line has always shown. */
	assert_int_equal(UPSTREAM_READY, 8);
	assert_int_equal(UPSTREAM_WAIT_DATA_END, 11);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_none),
		cmocka_unit_test(test_identity_proxy_v2),
		cmocka_unit_test(test_xclient_220),
		cmocka_unit_test(test_xclient_250),
		cmocka_unit_test(test_xclient_not_offered),
		cmocka_unit_test(test_xclient_refused),
		cmocka_unit_test(test_xclient_too_long),
		cmocka_unit_test(test_xclient_attrs_bounded),
		cmocka_unit_test(test_xclient_early),
		cmocka_unit_test(test_xclient_early_refused_ehlo_first),
		cmocka_unit_test(test_xclient_early_refused_otherwise),
		cmocka_unit_test(test_xclient_early_only_where_it_fits),
		cmocka_unit_test(test_check_keeps_xclient_attrs),
		cmocka_unit_test(test_starttls),
		cmocka_unit_test(test_starttls_then_xclient),
		cmocka_unit_test(test_starttls_not_offered),
		cmocka_unit_test(test_starttls_refused),
		cmocka_unit_test(test_greeting_fails),
		cmocka_unit_test(test_ehlo_fails),
		cmocka_unit_test(test_multiline_ehlo_split),
		cmocka_unit_test(test_relay),
		cmocka_unit_test(test_relay_failures),
		cmocka_unit_test(test_io_failure),
		cmocka_unit_test(test_check_good),
		cmocka_unit_test(test_check_bad),
		cmocka_unit_test(test_state_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
