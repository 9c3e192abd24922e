/*
 * fuzz_smtp.c - libFuzzer target: whole client sessions through the SMTP
 * state machine (smtp.c), driven the way session.c drives it.
 *
 * Input layout:
 *   byte 0      setup: listener mode, AUTH mechanisms, bare-newline
 *               policy, limits profile, CHUNKING offered, and whether
 *               the connected backend takes BDAT (see setup())
 *   byte 1      N, the length of the tape that follows
 *   N bytes     the tape: the worker's side of the session, one byte per
 *               decision (chunk sizes, whether the client reads its
 *               replies, handshake and password results, backend replies
 *               and failures, timeouts).  Once it runs out every decision
 *               takes its default, which is the happy path: the client
 *               sends one line at a time and reads every reply, the
 *               handshake works, the password is right, the backend says
 *               250 (354 to DATA), a forwarded BDAT goes out.
 *   the rest    the client's byte stream (plaintext, before and after TLS)
 *
 * So "\0\0EHLO x\r\nSTARTTLS\r\n..." is a plain session, and seeds stay
 * readable.
 *
 * The harness plays the worker: it appends the stream to the input buffer
 * in chunks (only when a read would be armed), calls smtp_input(), and
 * answers each action the way session.c and backend.c do (smtp_tls_ready,
 * smtp_auth_result, smtp_backend_reply or smtp_backend_failed), moves
 * message bytes through the real relay (relay.c: relay_data, relay_chunk,
 * relay_chunk_begin, relay_finish, with a byte rate that runs out in the
 * tight profile) into a backend buffer it drains, and stops at
 * SMTP_ACT_CLOSE.
 *
 * Checked after every call: buffers within their capacity; the action
 * agrees with the state; no action means the session is not parked (else
 * nobody would ever wake it); nothing buffered after STARTTLS survives;
 * EHLO is forgotten after TLS; AUTH only under TLS; no credentials are
 * held outside the AUTH states; the forwarded line is one CRLF-terminated
 * command; a chunk streams only inside a transaction with a recipient,
 * and a refused one is skipped, never read as commands (skip_left, and
 * the chunk counters, agree with the state); the BDAT sizes of a
 * transaction stay within SIZE; and the reply stream is well formed:
 * CRLF lines of at most 1000
 * bytes, each starting with 3 digits and ' ', '-' or the line end, no
 * control bytes, continuation lines repeating the code, and no partial
 * line left at the end.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "smtp/relay.h"
#include "smtp/smtp.h"
#include "smtp/smtp_reply.h"
#include "fuzz_check.h"

#define RECV_BUF_SIZE  16384u	     /* ring.h: one read, and the input slack */
#define OUT_CAP	       (128u * 1024) /* backend.h: BACKEND_OUT_CAP */
#define TIGHT_BYTES    3000u  /* the tight profile's byte rate allowance */
#define MAX_STEPS      100000 /* a session never needs this many */
#define REPLY_LINE_MAX 1000   /* a reply line to the client, CRLF included */

/* Tape byte values with a meaning of their own, checked first. */
#define EV_TIMEOUT  0xff /* the command timeout fires: 421 and close */
#define EV_LOST	    0xfe /* the idle backend drops the connection */
#define STEP_NOREAD 0x40 /* the client does not read its replies now */
#define STEP_LARGE  0x80 /* chunk size in units of 256 bytes (0: all) */

/* What the client has read so far, checked as a stream of reply lines. */
struct reply_check {
	size_t col;	   /* bytes of the current line so far */
	bool cr;	   /* the previous byte was CR */
	bool more;	   /* the current line is "DDD-" */
	bool in_reply;	   /* the previous line was "DDD-" */
	char code[3];	   /* of the current line */
	char prev_code[3]; /* of the previous line */
};

struct sim {
	struct smtp_params p;
	struct smtp s;
	struct buf in;
	uint32_t out_cap, in_cap;
	bool tls_layer; /* TLS is under the session: reads fill any room */
	bool normalize;
	unsigned setup;	  /* byte 0 */
	bool be_chunking; /* the backend connection takes BDAT */
	uint64_t be_size; /* and its SIZE */

	const uint8_t *tape;
	size_t tape_len, tape_off;
	const uint8_t *stream;
	size_t stream_len, stream_off;

	struct relay relay;
	struct buf out;	     /* the backend's, drained after each call */
	uint64_t bytes_left; /* of the byte rate (UINT64_MAX: none) */
	uint64_t forwarded;  /* message bytes the backend got */

	struct reply_check rc;
};

static const char hostname[] = "mx.fuzz.test";

/* FUZZ_TRACE=1 in the environment: print the session (for reproducers). */
static bool trace;

/* Backend reply text: every byte class the reply parser lets through. */
static char filler[SMTP_REPLY_LINE_MAX + SMTP_REPLY_LINES_MAX];

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A line of the FUZZ_TRACE log about what the worker did. */
static void
note(const char *fmt, ...)
{
	va_list ap;

	if (!trace)
		return;
	va_start(ap, fmt);
	fputs("W: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static unsigned
tape_next(struct sim *m)
{
	if (m->tape_off >= m->tape_len)
		return 0;
	return m->tape[m->tape_off++];
}

/* ---------------------------------------------------------------------
 * Invariants
 */

static bool
auth_state(enum smtp_state st)
{
	return st == SMTP_AUTH_PLAIN || st == SMTP_AUTH_LOGIN_USER ||
	       st == SMTP_AUTH_LOGIN_PASS || st == SMTP_AUTH_OAUTH ||
	       st == SMTP_AUTH_CHECK;
}

static void
check_buf(const struct buf *b, uint32_t cap, const char *name)
{
	CHECK(b->cap == cap, "%s: capacity changed", name);
	CHECK(b->off <= b->len, "%s: off %u > len %u", name, b->off, b->len);
	CHECK(b->len <= b->cap, "%s: len %u > cap %u", name, b->len, b->cap);
	CHECK(buf_used(b) <= b->cap, "%s: used > cap", name);
	CHECK(b->data != NULL || b->len == 0, "%s: bytes without storage",
	      name);
}

static void
check_session(const struct sim *m)
{
	const struct smtp *s = &m->s;

	check_buf(&s->out, m->out_cap, "out");
	/* Replies go in whole lines: a buffer not ending in CRLF lost the
	 * end of one (and the client would read the next one glued on). */
	CHECK(buf_used(&s->out) == 0 ||
		      memcmp(s->out.data + s->out.len - 2, "\r\n", 2) == 0,
	      "s->out holds a truncated reply");
	check_buf(&m->in, m->in_cap, "in");
	CHECK(s->state <= SMTP_CLOSING, "state %d", (int)s->state);
	if (!auth_state(s->state))
		CHECK(s->creds == NULL, "credentials held in state %d",
		      (int)s->state);
	if (s->helo_name != NULL)
		CHECK(s->helo_name[0] != '\0' &&
			      strlen(s->helo_name) <= SMTP_HELO_MAX &&
			      strchr(s->helo_name, ' ') == NULL,
		      "helo_name empty, too long or with a space");
	CHECK((s->user != NULL) == s->authed, "a login without AUTH, or none");
	if (s->user != NULL)
		CHECK(s->user[0] != '\0' && strlen(s->user) < SASL_FIELD_MAX,
		      "login empty or too long");
	CHECK(s->fwd_len <= SMTP_FWD_MAX, "fwd_len %zu", s->fwd_len);
	CHECK(!s->authed || s->tls, "authenticated without TLS");
	CHECK(!auth_state(s->state) || s->tls, "AUTH exchange without TLS");
	CHECK(!s->in_mail || s->authed, "mail transaction without AUTH");
	CHECK(s->rcpts <= s->p->max_recipients, "rcpts %u", s->rcpts);
	CHECK(s->errors <= s->p->max_errors, "errors %u", s->errors);
	CHECK(s->state != SMTP_BACKEND || s->fwd != SMTP_FWD_NONE,
	      "waiting for the backend with nothing forwarded");
	CHECK(s->state != SMTP_DATA_END || s->fwd == SMTP_FWD_DATA_END,
	      "DATA_END with fwd %d", (int)s->fwd);
	CHECK(s->state != SMTP_CHUNK || s->fwd == SMTP_FWD_BDAT,
	      "streaming a chunk with fwd %d", (int)s->fwd);
	CHECK(s->state != SMTP_CHUNK || (s->in_mail && s->rcpts > 0),
	      "a chunk outside a transaction with a recipient");
	CHECK(s->skip_left == 0 || s->chunk_left == 0,
	      "skipping and streaming at once");
	CHECK(s->chunk_left == 0 || s->fwd == SMTP_FWD_BDAT,
	      "chunk bytes pending with fwd %d", (int)s->fwd);
	CHECK(s->bdat_size <= s->size_limit, "BDAT sizes %llu over SIZE %llu",
	      (unsigned long long)s->bdat_size,
	      (unsigned long long)s->size_limit);
	CHECK(s->bdat_chunks == 0 || s->in_mail,
	      "BDAT chunks counted outside a transaction");
}

/* The line for the backend: one command, CRLF-terminated. */
static void
check_forward(const struct smtp *s)
{
	static const char *const verbs[] = {
		[SMTP_FWD_MAIL] = "MAIL ", [SMTP_FWD_RCPT] = "RCPT ",
		[SMTP_FWD_DATA] = "DATA",  [SMTP_FWD_RSET] = "RSET",
		[SMTP_FWD_BDAT] = "BDAT ",
	};
	const char *line = s->fwd_line;
	size_t len = s->fwd_len;

	CHECK(s->fwd == SMTP_FWD_MAIL || s->fwd == SMTP_FWD_RCPT ||
		      s->fwd == SMTP_FWD_DATA || s->fwd == SMTP_FWD_RSET ||
		      s->fwd == SMTP_FWD_BDAT,
	      "forwarded kind %d", (int)s->fwd);
	CHECK(s->fwd != SMTP_FWD_BDAT ||
		      (s->be_chunking && (s->offer & SMTP_OFFER_CHUNKING)),
	      "BDAT forwarded that was not offered or not taken");
	CHECK(len >= 6 && line[len - 2] == '\r' && line[len - 1] == '\n',
	      "forwarded line not CRLF-terminated");
	for (size_t i = 0; i < len - 2; i++)
		CHECK(line[i] != '\r' && line[i] != '\n' && line[i] != '\0',
		      "CR, LF or NUL inside the forwarded line at %zu", i);
	CHECK(strncasecmp(line, verbs[s->fwd], strlen(verbs[s->fwd])) == 0,
	      "forwarded line does not match its kind %d", (int)s->fwd);
}

/* Does what smtp_input() returned agree with the state it left? */
static void
check_action(const struct sim *m, enum smtp_action act, bool had_tls)
{
	const struct smtp *s = &m->s;

	switch (act) {
	case SMTP_ACT_NONE:
		/* Parked states wait for the worker, and the worker only
		 * acts on an action: parked with none is a hang. */
		CHECK(s->state == SMTP_IDLE || s->state == SMTP_AUTH_PLAIN ||
			      s->state == SMTP_AUTH_LOGIN_USER ||
			      s->state == SMTP_AUTH_LOGIN_PASS ||
			      s->state == SMTP_AUTH_OAUTH ||
			      s->state == SMTP_AUTH_OAUTH_ERROR,
		      "SMTP_ACT_NONE but the session is parked in state %d",
		      (int)s->state);
		break;
	case SMTP_ACT_STARTTLS:
		CHECK(s->state == SMTP_TLS_HANDSHAKE, "state %d",
		      (int)s->state);
		CHECK(!had_tls, "STARTTLS under TLS");
		CHECK(buf_used(&m->in) == 0,
		      "%zu plaintext bytes survive STARTTLS", buf_used(&m->in));
		break;
	case SMTP_ACT_AUTH:
		CHECK(s->state == SMTP_AUTH_CHECK, "state %d", (int)s->state);
		CHECK(s->creds->user[0] != '\0', "AUTH with an empty user");
		CHECK(memchr(s->creds->user, '\0', sizeof(s->creds->user)) &&
			      memchr(s->creds->pass, '\0',
				     sizeof(s->creds->pass)),
		      "creds unterminated");
		CHECK(s->auth_mech != NULL, "AUTH without a mechanism");
		break;
	case SMTP_ACT_FORWARD:
		CHECK(s->state == SMTP_BACKEND, "state %d", (int)s->state);
		check_forward(s);
		break;
	case SMTP_ACT_DATA:
		CHECK(0, "smtp_input() returned SMTP_ACT_DATA");
		break;
	case SMTP_ACT_CLOSE:
		CHECK(s->state == SMTP_CLOSING, "state %d", (int)s->state);
		break;
	default:
		CHECK(0, "unknown action %d", (int)act);
	}
}

/* Reply bytes as the client reads them, in pieces of any size. */
static void
check_replies(struct reply_check *rc, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (rc->cr) {
			CHECK(c == '\n', "bare CR in a reply");
			rc->cr = false;
			rc->in_reply = rc->more;
			memcpy(rc->prev_code, rc->code, 3);
			rc->col = 0;
			continue;
		}
		if (c == '\r') {
			CHECK(rc->col >= 3, "reply line shorter than its code");
			rc->more = rc->more && rc->col > 3;
			rc->cr = true;
			continue;
		}
		CHECK(rc->col + 2 < REPLY_LINE_MAX,
		      "reply line longer than %d bytes", REPLY_LINE_MAX);
		if (rc->col < 3) {
			CHECK(c >= '0' && c <= '9',
			      "reply line does not start with 3 digits");
			rc->code[rc->col] = (char)c;
			if (rc->col == 2 && rc->in_reply)
				CHECK(memcmp(rc->code, rc->prev_code, 3) == 0,
				      "continuation line changes the code");
		} else if (rc->col == 3) {
			CHECK(c == ' ' || c == '-',
			      "reply code followed by 0x%02x", c);
			rc->more = c == '-';
		} else {
			CHECK(c == '\t' || (c >= 0x20 && c != 0x7f),
			      "control byte 0x%02x in a reply", c);
		}
		rc->col++;
	}
}

/* The client reads up to max bytes of replies. */
static void
client_read(struct sim *m, size_t max)
{
	size_t n = buf_used(&m->s.out);

	if (n > max)
		n = max;
	if (n == 0)
		return;
	check_replies(&m->rc, buf_head(&m->s.out), n);
	if (trace)
		fprintf(stderr, "S: %.*s", (int)n, buf_head(&m->s.out));
	buf_consume(&m->s.out, n);
	check_session(m);
}

/* ---------------------------------------------------------------------
 * The worker's side
 */

/* Append the next chunk of the client's stream, as a completed read
 * would.  Returns false when the session can get no more input. */
static bool
client_send(struct sim *m, unsigned step)
{
	size_t room = buf_room(&m->in), want, left;
	char *t;

	left = m->stream_len - m->stream_off;
	if (left == 0)
		return false; /* the client closed */
	/* session.c arms a plaintext read only with RECV_BUF_SIZE free;
	 * under TLS, SSL_read() fills whatever room there is. */
	CHECK(m->tls_layer ? room > 0 : room >= RECV_BUF_SIZE,
	      "input stalled: %zu bytes buffered, room %zu, no complete "
	      "line, and no read can be armed",
	      buf_used(&m->in), room);
	if (!m->tls_layer)
		room = RECV_BUF_SIZE;
	want = step & 0x3f;
	if (step & STEP_LARGE) {
		want = want == 0 ? room : want * 256;
	} else if (want == 0) {
		/* By default the client sends one line and waits. */
		const uint8_t *nl =
			memchr(m->stream + m->stream_off, '\n', left);
		want = nl ? (size_t)(nl - (m->stream + m->stream_off)) + 1
			  : left;
	}
	if (want > room)
		want = room;
	if (want > left)
		want = left;
	t = buf_tail(&m->in);
	CHECK(t != NULL, "out of memory");
	memcpy(t, m->stream + m->stream_off, want);
	if (trace)
		fprintf(stderr, "C: %.*s", (int)want, t);
	buf_commit(&m->in, want);
	m->stream_off += want;
	check_session(m);
	return true;
}

static int
default_code(enum smtp_fwd what)
{
	return what == SMTP_FWD_DATA ? 354 : 250;
}

/*
 * The backend answers what was forwarded (or the end of data): a reply
 * as smtp_reply.c would hand it over (1..64 lines, each at most 1000 bytes
 * with its CRLF, all of it at most SMTP_REPLY_MAX), or one of the
 * failures backend.c reports.
 */
static void
backend_answer(struct sim *m)
{
	static const int codes[] = {
		250, 251, 252, 354, 421, 450, 451, 452, 500, 501, 503,
		550, 551, 552, 553, 554, 555, 221, 220, 235, 334, 211,
	};
	static const enum smtp_backend_failure failures[] = {
		SMTP_BACKEND_UNAVAILABLE,
		SMTP_BACKEND_LOST,
		SMTP_BACKEND_TIMEOUT,
	};
	const char *lines[SMTP_REPLY_LINES_MAX];
	size_t lens[SMTP_REPLY_LINES_MAX];
	enum smtp_fwd what = m->s.fwd;
	unsigned t = tape_next(m);
	size_t nlines = 1, tlen;
	enum smtp_action act;
	int code;

	if (t >= 0xf0 && t % 4 != 3) {
		note("backend failure %u", t % 4);
		smtp_backend_failed(&m->s, failures[t % 4]);
		check_session(m);
		CHECK(m->s.state == SMTP_IDLE || m->s.state == SMTP_CLOSING,
		      "state %d after a backend failure", (int)m->s.state);
		CHECK(!m->s.in_mail, "transaction survives a lost backend");
		return;
	}
	code = t == 0 ? default_code(what)
		      : codes[t % (sizeof(codes) / sizeof(*codes))];
	if (t >= 0xf0 || code == 421) {
		/* backend.c: a 421 is a lost connection. */
		note("backend says 421: lost");
		smtp_backend_failed(&m->s, SMTP_BACKEND_LOST);
		check_session(m);
		return;
	}
	if (t == 0) {
		lines[0] = code == 354 ? "End data with <CR><LF>.<CR><LF>"
				       : "2.0.0 Ok";
		lens[0] = strlen(lines[0]);
	} else {
		nlines = 1 + (tape_next(m) & 0x3f);
		tlen = tape_next(m) * 4u;
		if (tlen > SMTP_REPLY_LINE_MAX - 6)
			tlen = SMTP_REPLY_LINE_MAX - 6;
		while (nlines > 1 && nlines * (tlen + 6) > SMTP_REPLY_MAX)
			nlines--;
		for (size_t i = 0; i < nlines; i++) {
			lines[i] = filler + i;
			lens[i] = tlen;
		}
	}
	note("backend replies %d, %zu line(s)", code, nlines);
	act = smtp_backend_reply(&m->s, code, lines, lens, nlines);
	check_session(m);
	if (act == SMTP_ACT_DATA) {
		CHECK(what == SMTP_FWD_DATA && code == 354,
		      "DATA action for fwd %d code %d", (int)what, code);
		CHECK(m->s.state == SMTP_DATA, "state %d", (int)m->s.state);
		relay_begin(&m->relay);
		return;
	}
	CHECK(act == SMTP_ACT_NONE, "backend reply gave action %d", (int)act);
	CHECK(m->s.state == SMTP_IDLE, "state %d after a backend reply",
	      (int)m->s.state);
	if (what == SMTP_FWD_MAIL && code / 100 == 2)
		CHECK(m->s.in_mail && m->s.rcpts == 0, "MAIL accepted");
	if (what == SMTP_FWD_DATA_END || what == SMTP_FWD_RSET)
		CHECK(!m->s.in_mail, "transaction survives its end");
}

/* The user's byte rate: the tight profile has TIGHT_BYTES in all. */
static bool
take_bytes(void *ctx, size_t n)
{
	struct sim *m = ctx;

	if (n > m->bytes_left)
		return false;
	m->bytes_left -= n;
	return true;
}

/* The end of the message: sent on (await the verdict) or refused by the
 * relay with session.c's replies. */
static void
finish_message(struct sim *m)
{
	static const char limit[] = "451 4.7.1 Message data rate limit "
				    "reached (3000 bytes per 1h), try again "
				    "in 60 seconds";
	bool chunk = m->s.state == SMTP_CHUNK, last = m->s.chunk_last;
	enum relay_sink sink;

	note("end of %s, size %llu, sink %d", chunk ? "chunk" : "data",
	     (unsigned long long)m->relay.ds.size, (int)m->relay.sink);
	sink = relay_finish(&m->relay, &m->s, limit);
	check_session(m);
	CHECK(m->relay.sink == RELAY_SINK_NONE, "sink survives the end");
	if (sink == RELAY_SINK_NONE) {
		CHECK(m->s.state ==
			      (chunk && !last ? SMTP_BACKEND : SMTP_DATA_END),
		      "state %d after a %s", (int)m->s.state,
		      chunk ? "chunk" : "message");
		backend_answer(m);
		return;
	}
	CHECK(m->s.state == SMTP_IDLE, "state %d after a refused message",
	      (int)m->s.state);
	CHECK(!m->s.in_mail, "transaction survives a refused message");
}

/* session.c's relay(): message bytes from the input buffer through the
 * relay into the backend's buffer.  Returns true when the message or
 * chunk ended. */
static bool
relay(struct sim *m)
{
	struct relay_io io = {
		.in = &m->in,
		.out = &m->out,
		.max_size = m->p.max_message_size,
		.normalize = m->normalize,
		.take_bytes = take_bytes,
		.ctx = m,
	};
	size_t before = buf_used(&m->in), used;
	bool ended;

	if (m->s.state == SMTP_DATA)
		ended = relay_data(&m->relay, &io);
	else
		ended = relay_chunk(&m->relay, &io, &m->s.chunk_left,
				    m->s.chunk_last);
	used = before - buf_used(&m->in);
	CHECK(io.forwarded == buf_used(&m->out), "forwarded %llu, out %zu",
	      (unsigned long long)io.forwarded, buf_used(&m->out));
	CHECK(m->normalize || io.forwarded <= used,
	      "forwarded %llu of %zu bytes read",
	      (unsigned long long)io.forwarded, used);
	m->forwarded += io.forwarded;
	buf_consume(&m->out, buf_used(&m->out)); /* the backend took it */
	check_session(m);
	if (ended)
		finish_message(m);
	return ended;
}

/* backend.c's ready() for a forwarded BDAT: it goes out and its chunk
 * streams (session.c's send_forward()), or the backend is found gone
 * first (the chunk is skipped). */
static void
bdat_forward(struct sim *m)
{
	uint64_t left = m->s.chunk_left;

	if (tape_next(m) == 0xfd) {
		note("backend lost before the BDAT went out");
		smtp_backend_failed(&m->s, SMTP_BACKEND_LOST);
		check_session(m);
		CHECK(m->s.skip_left == left && m->s.chunk_left == 0,
		      "chunk of a lost BDAT not skipped");
		return;
	}
	smtp_chunk_begin(&m->s);
	if (!relay_chunk_begin(&m->relay, &m->s))
		CHECK(m->relay.sink == RELAY_SINK_BAD_BYTES,
		      "BDAT held back without a reason");
	check_session(m);
}

/* Act on what smtp_input() asked for.  Returns false when the session
 * ends. */
static bool
worker_act(struct sim *m, enum smtp_action act)
{
	bool ok;

	switch (act) {
	case SMTP_ACT_STARTTLS:
		/* The 220 leaves in plaintext before the handshake. */
		client_read(m, SIZE_MAX);
		if (tape_next(m) == 1) {
			note("TLS handshake failed");
			return false; /* the worker closes */
		}
		note("TLS up");
		smtp_tls_ready(&m->s);
		m->tls_layer = true;
		check_session(m);
		CHECK(m->s.state == SMTP_IDLE && m->s.tls, "after TLS");
		CHECK(!m->s.esmtp && m->s.helo_name == NULL,
		      "EHLO survives STARTTLS");
		return true;
	case SMTP_ACT_AUTH: {
		/* The verdict and, for the OAuth mechanisms, a status: none,
		 * a good one, or one to be replaced. */
		static const char *const status[4] = {
			NULL, "{\"status\":\"invalid_token\"}",
			"{\"a\":\"\r\n535 5.7.8 x\"}", "not json"};
		unsigned t = tape_next(m);
		bool oauth = m->s.creds->oauth != NULL;

		ok = (t & 1) == 0;
		if (oauth)
			CHECK(m->s.creds->oauth->dec.token_len > 0 &&
				      m->s.creds->oauth->b64_len > 0 &&
				      m->s.creds->oauth->b64
						      [m->s.creds->oauth
							       ->b64_len] ==
					      '\0',
			      "an OAuth exchange without its token");
		note("password of %s: %s", m->s.creds->user, ok ? "ok" : "bad");
		smtp_auth_answer_status(&m->s,
					ok	  ? SMTP_AUTH_OK
					: (t & 2) ? SMTP_AUTH_TEMP
						  : SMTP_AUTH_FAIL,
					NULL, NULL, status[(t >> 2) & 3]);
		check_session(m);
		CHECK(m->s.creds == NULL, "creds not freed after the check");
		if (oauth && !ok && !(t & 2) && m->s.state != SMTP_CLOSING)
			CHECK(m->s.state == SMTP_AUTH_OAUTH_ERROR,
			      "a refused token without the error exchange");
		return true;
	}
	case SMTP_ACT_FORWARD:
		if (m->s.fwd == SMTP_FWD_BDAT) {
			bdat_forward(m);
			return true;
		}
		if (m->s.fwd == SMTP_FWD_MAIL)
			/* The handshake before the MAIL told what it takes. */
			smtp_backend_ready(&m->s, m->be_size, m->be_chunking);
		backend_answer(m);
		return true;
	case SMTP_ACT_CLOSE:
		note("close");
		return false;
	default:
		CHECK(0, "action %d", (int)act);
		return false;
	}
}

/* backend.c's lost() for a backend that dies while nothing is pending. */
static void
backend_lost(struct sim *m)
{
	note("backend connection lost");
	if (m->s.state == SMTP_DATA || m->s.state == SMTP_CHUNK) {
		relay_lost(&m->relay);
	} else if (m->s.in_mail) {
		smtp_backend_failed(&m->s, SMTP_BACKEND_LOST);
		check_session(m);
		CHECK(!m->s.in_mail, "transaction survives a lost backend");
	}
}

static void
command_timeout(struct sim *m)
{
	char text[400];

	snprintf(text, sizeof(text), "421 4.4.2 %s Error: timeout exceeded",
		 hostname);
	note("command timeout");
	smtp_shutdown(&m->s, text, "client-timeout");
	check_session(m);
	CHECK(m->s.state == SMTP_CLOSING, "state %d after shutdown",
	      (int)m->s.state);
}

/* ---------------------------------------------------------------------
 * Setup and the session loop
 */

static void
setup(struct sim *m, unsigned b)
{
	static const unsigned mechs[4] = {
		AUTH_MECH_PLAIN | AUTH_MECH_LOGIN | AUTH_MECH_OAUTH,
		AUTH_MECH_PLAIN,
		AUTH_MECH_LOGIN,
		0,
	};
	struct smtp_params *p = &m->p;

	m->setup = b;
	p->hostname = hostname;
	p->mode = (b & 1) ? LISTENER_IMPLICIT : LISTENER_STARTTLS;
	m->normalize = (b & 2) != 0;
	p->auth_mechs = mechs[(b >> 2) & 3];
	/* The limits, within the ranges config_schema.c accepts. */
	p->max_line = 1000;
	p->max_auth_line = 12288;
	p->max_message_size = 50 * 1024 * 1024;
	p->max_recipients = 100;
	p->max_errors = 10;
	switch ((b >> 4) & 3) {
	case 1: /* tight */
		p->max_line = 512;
		p->max_auth_line = 1000;
		p->max_message_size = 1024;
		p->max_recipients = 2;
		p->max_errors = 3;
		break;
	case 2: /* huge lines */
		p->max_line = 65536;
		p->max_auth_line = 65536;
		p->max_errors = 1000;
		break;
	case 3: /* one strike */
		p->max_recipients = 1;
		p->max_errors = 1;
		break;
	}
	/* Bit 6: CHUNKING offered.  Bit 7: the connected backend does not
	 * take it (else it does, with a SIZE of its own below ours). */
	m->be_chunking = (b & 0x80) == 0;
	m->be_size = m->be_chunking ? 4096 : 0;
}

static void
run_session(struct sim *m)
{
	bool implicit = m->p.mode == LISTENER_IMPLICIT;

	smtp_init(&m->s, &m->p, implicit);
	if (m->setup & 0x40)
		smtp_backend_offer(&m->s, 0, SMTP_OFFER_CHUNKING);
	m->out_cap = m->s.out.cap;
	m->in_cap = (uint32_t)(m->p.max_auth_line + RECV_BUF_SIZE);
	buf_init(&m->in, m->in_cap);
	m->tls_layer = implicit;
	buf_init(&m->out, OUT_CAP);
	m->bytes_left = ((m->setup >> 4) & 3) == 1 ? TIGHT_BYTES : UINT64_MAX;
	/* Greeting: at connect, or after the implicit TLS handshake. */
	smtp_start(&m->s);
	check_session(m);

	for (int i = 0; i < MAX_STEPS; i++) {
		unsigned step = tape_next(m);
		enum smtp_action act;
		bool had_tls;

		if (step == EV_TIMEOUT) {
			command_timeout(m);
			break;
		}
		if (step == EV_LOST)
			backend_lost(m);
		if ((step & STEP_NOREAD) == 0)
			client_read(m, SIZE_MAX);
		if (m->s.state == SMTP_DATA || m->s.state == SMTP_CHUNK) {
			if (!relay(m) && !client_send(m, step))
				break;
			continue;
		}
		had_tls = m->s.tls;
		act = smtp_input(&m->s, &m->in);
		m->s.drop_backend = false; /* session_run() closes it */
		check_session(m);
		check_action(m, act, had_tls);
		if (act != SMTP_ACT_NONE) {
			if (!worker_act(m, act))
				break;
			continue;
		}
		/* Replies pile up: nothing runs until the client reads. */
		if (buf_room(&m->s.out) < SMTP_OUT_RESERVE)
			continue;
		if (!client_send(m, step))
			break;
	}
	/* The worker flushes everything before it closes. */
	client_read(m, SIZE_MAX);
	CHECK(m->rc.col == 0 && !m->rc.cr && !m->rc.in_reply,
	      "replies end in a partial line or an unfinished reply");
	smtp_free(&m->s);
	CHECK(m->s.creds == NULL, "creds not freed by smtp_free()");
	CHECK(m->s.helo_name == NULL && m->s.user == NULL,
	      "EHLO name or login not freed by smtp_free()");
	buf_free(&m->in);
	buf_free(&m->out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sim m;

	if (size < 2)
		return 0;
	if (filler[0] == '\0') {
		trace = getenv("FUZZ_TRACE") != NULL;
		static const char cls[] =
			"\t !~\x80\xbf\xc3\xa9\xff"
			"abcdefghijklmnopqrstuvwxyz0123456789";
		for (size_t i = 0; i < sizeof(filler); i++)
			filler[i] = cls[i % (sizeof(cls) - 1)];
	}
	memset(&m, 0, sizeof(m));
	setup(&m, data[0]);
	m.tape = data + 2;
	m.tape_len = data[1] < size - 2 ? data[1] : size - 2;
	m.stream = m.tape + m.tape_len;
	m.stream_len = size - 2 - m.tape_len;
	run_session(&m);
	return 0;
}
