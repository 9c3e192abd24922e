/*
 * smtp.c - the client-facing SMTP state machine.
 *
 * Read smtp.h first.  The file reads top-down: line framing, the command
 * table, one function per command (check, then reply or act), then the
 * entry points the worker calls when an action completes.
 *
 * Replies are constants with enhanced status codes (RFC 3463); the text
 * never names the software.  Every 5xx caused by the client counts as an
 * error; at limits.max_errors the session ends with 421.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "smtp/smtp.h"

#define SMTP_OUT_CAP (SMTP_OUT_RESERVE + 16384)

static void smtp_set_state(struct smtp *, enum smtp_state);
static void smtp_clear_creds(struct smtp *s);

/* Append one reply line; the caller adds the CRLF-free text. */
static void __attribute__((format(printf, 2, 3)))
reply(struct smtp *s, const char *fmt, ...)
{
	char line[1100];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	/* The last line of a reply ("250 ..." or a bare "250") is traced. */
	if (s->trace != NULL && n >= 3 && (n == 3 || line[3] == ' ') &&
	    line[0] >= '1' && line[0] <= '5')
		s->trace(s->trace_ctx, NULL,
			 (line[0] - '0') * 100 + (line[1] - '0') * 10 +
				 (line[2] - '0'));
	line[n++] = '\r';
	line[n++] = '\n';
	/* out always has SMTP_OUT_RESERVE free before a command runs. */
	buf_append(&s->out, line, (size_t)n);
	s->progress++;
}

static void
trace_verb(struct smtp *s, const char *verb)
{
	if (s->trace != NULL)
		s->trace(s->trace_ctx, verb, 0);
}

/* A client mistake: reply with a 5xx and count it. */
static void __attribute__((format(printf, 2, 3)))
reply_error(struct smtp *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	s->errors++;
	if (s->errors >= s->p->max_errors) {
		reply(s, "421 4.7.0 %s Too many errors, closing connection",
		      s->p->hostname);
		s->close_reason = "too-many-errors";
		s->limit_hits[SMTP_LIMIT_ERRORS]++;
		smtp_set_state(s, SMTP_CLOSING);
		return;
	}
	reply(s, "%s", line);
}

/* A client that is not speaking SMTP, or not within its bounds: the reply,
 * then the session ends (reason: the session-end line's reason=). */
static void
reply_and_close(struct smtp *s, const char *text, const char *reason)
{
	s->errors++;
	reply(s, "%s", text);
	smtp_clear_creds(s);
	s->close_reason = reason;
	smtp_set_state(s, SMTP_CLOSING);
}

/* len bytes as a string in an allocation of their own length: an idle
 * session keeps its EHLO name and login, and most are short.  NULL when
 * there is no memory.  Not strndup(): its malloc() is libc's own call,
 * which the unit tests' --wrap=malloc cannot fail on purpose. */
static char *
text_copy(const char *p, size_t len)
{
	char *t = malloc(len + 1);

	if (t != NULL) {
		memcpy(t, p, len);
		t[len] = '\0';
	}
	return t;
}

/* No memory for what the command needs: it had no effect, and the
 * client may try again. */
static void
reply_local_problem(struct smtp *s)
{
	reply(s, "451 4.3.0 Temporary local problem, try again later");
}

/* Credentials live only while an AUTH exchange runs: an idle session
 * holds none (and no copy of a password). */
static void
smtp_wipe_creds(struct smtp *s)
{
	if (s->creds != NULL) {
		struct sasl_oauth_exchange *x = s->creds->oauth;

		if (x != NULL) {
			OPENSSL_cleanse(x, sizeof(*x) + x->b64_len + 1);
			free(x);
		}
		OPENSSL_cleanse(s->creds, sizeof(*s->creds));
		free(s->creds);
		s->creds = NULL;
	}
}

static void
smtp_clear_creds(struct smtp *s)
{
	smtp_wipe_creds(s);
	s->auth_mech = NULL;
}

static void
smtp_set_state(struct smtp *s, enum smtp_state st)
{
	if (s->trace_state != NULL && st != s->state)
		s->trace_state(s->trace_ctx, s->state, st);
	s->state = st;
	/* Whatever closes the session (an error limit or a shutdown in the
	 * middle of an exchange) ends the exchange; the mechanism's name
	 * stays for the verdict's log line and counter. */
	if (st == SMTP_CLOSING)
		smtp_wipe_creds(s);
}

static void
smtp_reset_transaction(struct smtp *s)
{
	s->in_mail = false;
	s->rcpts = 0;
	s->bdat_chunks = 0;
	s->bdat_size = 0;
	s->chunk_last = false;
}

/* A forwarded BDAT that will not be streamed (or not to its end): what
 * is left of its chunk is discarded before the next command. */
static void
abandon_chunk(struct smtp *s)
{
	s->skip_left += s->chunk_left;
	s->chunk_left = 0;
}

void
smtp_init(struct smtp *s, const struct smtp_params *p, bool tls)
{
	memset(s, 0, sizeof(*s));
	s->p = p;
	s->tls = tls;
	s->size_limit = p->max_message_size;
	buf_init(&s->out, SMTP_OUT_CAP);
}

void
smtp_backend_offer(struct smtp *s, uint64_t size, unsigned offer)
{
	s->size_limit = s->p->max_message_size;
	if (size > 0 && size < s->size_limit)
		s->size_limit = size;
	s->offer = offer;
}

void
smtp_backend_ready(struct smtp *s, uint64_t size, bool chunking)
{
	s->be_size = size;
	s->be_chunking = chunking;
}

void
smtp_free(struct smtp *s)
{
	smtp_clear_creds(s);
	free(s->fwd_line);
	s->fwd_line = NULL;
	free(s->helo_name);
	s->helo_name = NULL;
	free(s->user);
	s->user = NULL;
	buf_free(&s->out);
}

void
smtp_start(struct smtp *s)
{
	reply(s, "220 %s ESMTP", s->p->hostname);
}

/* ---------------------------------------------------------------------
 * Small parsing helpers
 */

/* Case-insensitive prefix match; returns the rest or NULL. */
static const char *
skip_prefix(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	if (len < n || strncasecmp(s, prefix, n) != 0)
		return NULL;
	return s + n;
}

/* A printable argument without control bytes (HELO names, addresses). */
static bool
printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/*
 * "FROM:<path> params" / "TO:<path> params".  Returns the parameters
 * after the path (possibly empty) or NULL if the syntax is wrong.  A space
 * after the colon is tolerated, as most MTAs do.
 */
static const char *
parse_path(const char *arg, size_t len, const char *keyword)
{
	const char *p = skip_prefix(arg, len, keyword);
	const char *end = arg + len;

	if (p == NULL)
		return NULL;
	while (p < end && *p == ' ')
		p++;
	if (p == end || *p != '<')
		return NULL;
	for (p++; p < end && *p != '>'; p++) {
		if (*p == '<' || *p == ' ')
			return NULL;
	}
	if (p == end)
		return NULL;
	p++;
	if (p < end && *p != ' ')
		return NULL;
	return p;
}

/* Find "NAME=value" among ESMTP parameters; returns value or NULL. */
static const char *
find_param(const char *params, const char *end, const char *name, size_t *vlen)
{
	size_t n = strlen(name);
	const char *p = params;

	while (p < end) {
		const char *w, *we;
		while (p < end && *p == ' ')
			p++;
		w = p;
		while (p < end && *p != ' ')
			p++;
		we = p;
		if ((size_t)(we - w) > n && w[n] == '=' &&
		    strncasecmp(w, name, n) == 0) {
			*vlen = (size_t)(we - w) - n - 1;
			return w + n + 1;
		}
	}
	return NULL;
}

/* Queue a command for the backend, CRLF-terminated.  For MAIL and RCPT
 * the worker gets the address too (path_off/path_len into fwd_line). */
static enum smtp_action
forward(struct smtp *s, enum smtp_fwd what, const char *line, size_t len)
{
	const char *lt = memchr(line, '<', len);
	const char *gt = lt ? memchr(lt, '>', len - (size_t)(lt - line)) : NULL;

	s->path_off = s->path_len = 0;
	if (gt != NULL && (what == SMTP_FWD_MAIL || what == SMTP_FWD_RCPT)) {
		s->path_off = (size_t)(lt + 1 - line);
		s->path_len = (size_t)(gt - lt - 1);
	}
	if (len > SMTP_FWD_MAX - 2) {
		s->limit_hits[SMTP_LIMIT_LINE]++;
		reply_error(s, "500 5.5.6 Line too long");
		return SMTP_ACT_NONE;
	}
	if (s->fwd_line == NULL &&
	    (s->fwd_line = malloc(SMTP_FWD_MAX)) == NULL) {
		reply_local_problem(s);
		return SMTP_ACT_NONE;
	}
	memcpy(s->fwd_line, line, len);
	s->fwd_line[len++] = '\r';
	s->fwd_line[len++] = '\n';
	s->fwd_len = len;
	s->fwd = what;
	smtp_set_state(s, SMTP_BACKEND);
	return SMTP_ACT_FORWARD;
}

/* ---------------------------------------------------------------------
 * Commands.  Each gets the whole line (without CRLF) and the argument
 * after the verb and one space.
 */

struct smtp_cmd {
	const char *verb;
	enum smtp_action (*run)(struct smtp *s, const char *line, size_t len,
				const char *arg, size_t alen);
	/* Allowed on a starttls listener before TLS (AUTH answers 538
	 * itself, RFC 4954). */
	bool before_tls;
};

/* The mechanisms configured that the auth back end can check now. */
static unsigned
mechs_offered(const struct smtp *s)
{
	if (s->p->mechs_live == NULL)
		return s->p->auth_mechs;
	return s->p->auth_mechs &
	       atomic_load_explicit(s->p->mechs_live, memory_order_relaxed);
}

static enum smtp_action
cmd_ehlo_helo(struct smtp *s, const char *arg, size_t alen, bool esmtp)
{
	const char *h = s->p->hostname;
	char *name;

	if (alen == 0 || alen > SMTP_HELO_MAX || !printable(arg, alen) ||
	    memchr(arg, ' ', alen) != NULL) {
		reply_error(s, "501 5.5.4 Syntax: %s hostname",
			    esmtp ? "EHLO" : "HELO");
		return SMTP_ACT_NONE;
	}
	name = text_copy(arg, alen);
	if (name == NULL) {
		reply_local_problem(s);
		return SMTP_ACT_NONE;
	}
	free(s->helo_name);
	s->helo_name = name;
	s->esmtp = esmtp;
	if (s->in_mail) {
		/* EHLO resets the transaction (RFC 5321 4.1.4); the backend
		 * is mid-transaction, so let the worker drop it. */
		smtp_reset_transaction(s);
		s->drop_backend = true;
	}
	if (!esmtp) {
		reply(s, "250 %s", h);
		return SMTP_ACT_NONE;
	}
	reply(s, "250-%s", h);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %llu", (unsigned long long)s->size_limit);
	if (!s->tls) {
		reply(s, "250-STARTTLS");
	} else if (!s->authed && mechs_offered(s) != 0) {
		unsigned m = mechs_offered(s);

		reply(s, "250-AUTH%s%s%s%s",
		      (m & AUTH_MECH_PLAIN) ? " PLAIN" : "",
		      (m & AUTH_MECH_LOGIN) ? " LOGIN" : "",
		      (m & AUTH_MECH_OAUTHBEARER) ? " OAUTHBEARER" : "",
		      (m & AUTH_MECH_XOAUTH2) ? " XOAUTH2" : "");
	}
	reply(s, "250-ENHANCEDSTATUSCODES");
	if (s->tls && (s->offer & SMTP_OFFER_DSN))
		reply(s, "250-DSN");
	if (s->tls && (s->offer & SMTP_OFFER_SMTPUTF8))
		reply(s, "250-SMTPUTF8");
	if (s->tls && (s->offer & SMTP_OFFER_CHUNKING))
		reply(s, "250-CHUNKING");
	reply(s, "250 8BITMIME");
	return SMTP_ACT_NONE;
}

static enum smtp_action
cmd_ehlo(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	(void)line, (void)len;
	return cmd_ehlo_helo(s, arg, alen, true);
}

static enum smtp_action
cmd_helo(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	(void)line, (void)len;
	return cmd_ehlo_helo(s, arg, alen, false);
}

static enum smtp_action
cmd_starttls(struct smtp *s, const char *line, size_t len, const char *arg,
	     size_t alen)
{
	(void)line, (void)len, (void)arg;
	if (s->tls) {
		reply_error(s, "503 5.5.1 TLS already active");
		return SMTP_ACT_NONE;
	}
	if (alen != 0) {
		reply_error(s, "501 5.5.4 Syntax: STARTTLS");
		return SMTP_ACT_NONE;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	smtp_set_state(s, SMTP_TLS_HANDSHAKE);
	return SMTP_ACT_STARTTLS;
}

/* Decode a PLAIN response and park for the check. */
static enum smtp_action
auth_plain_response(struct smtp *s, const char *b64, size_t len)
{
	enum sasl_status st;

	/* "=" is the empty response: malformed for PLAIN. */
	if (len == 1 && b64[0] == '=')
		len = 0;
	st = sasl_plain_decode(b64, len, s->creds);
	if ((st == SASL_OK || st == SASL_PASS_TOO_LONG) &&
	    s->creds->authzid[0] != '\0' &&
	    strcmp(s->creds->authzid, s->creds->user) != 0)
		st = SASL_MALFORMED; /* no proxy authorization */
	if (st == SASL_PASS_TOO_LONG) {
		/* A wrong password, at a wrong password's price. */
		s->creds->pass_too_long = true;
		st = SASL_OK;
	}
	if (st != SASL_OK) {
		smtp_clear_creds(s);
		smtp_set_state(s, SMTP_IDLE);
		if (st == SASL_BAD_BASE64)
			reply_error(s, "501 5.5.2 Cannot decode response");
		else
			reply_error(s, "501 5.5.2 Malformed PLAIN response");
		return SMTP_ACT_NONE;
	}
	smtp_set_state(s, SMTP_AUTH_CHECK);
	return SMTP_ACT_AUTH;
}

/* LOGIN: the user name, then the password, each its own response. */
static enum smtp_action
auth_login_response(struct smtp *s, const char *b64, size_t len)
{
	bool is_user = s->state == SMTP_AUTH_LOGIN_USER;
	char *dst = is_user ? s->creds->user : s->creds->pass;
	enum sasl_status st = sasl_login_decode(b64, len, dst, SASL_FIELD_MAX);

	if (st == SASL_TOO_LONG && !is_user) {
		/* Checked and refused like a wrong one (docs/SECURITY.md). */
		s->creds->pass_too_long = true;
		st = SASL_OK;
	}
	if (st != SASL_OK || (is_user && dst[0] == '\0')) {
		smtp_clear_creds(s);
		smtp_set_state(s, SMTP_IDLE);
		reply_error(s, "501 5.5.2 Cannot decode response");
		return SMTP_ACT_NONE;
	}
	if (is_user) {
		reply(s, "334 UGFzc3dvcmQ6");
		smtp_set_state(s, SMTP_AUTH_LOGIN_PASS);
		return SMTP_ACT_NONE;
	}
	smtp_set_state(s, SMTP_AUTH_CHECK);
	return SMTP_ACT_AUTH;
}

/* OAUTHBEARER, XOAUTH2: decode the initial response, keep it and the
 * base64 as sent (a back end may run the mechanism itself), and park for
 * the check.  OAUTHBEARER must name the login (a=): the back ends key
 * their answer and the limits on it. */
static enum smtp_action
auth_oauth_response(struct smtp *s, const char *b64, size_t len)
{
	bool bearer = strcmp(s->auth_mech, "OAUTHBEARER") == 0;
	/* len is bounded by limits.max_auth_line. */
	struct sasl_oauth_exchange *x = malloc(sizeof(*x) + len + 1);
	enum sasl_status st;

	if (x == NULL) {
		smtp_clear_creds(s);
		smtp_set_state(s, SMTP_IDLE);
		reply(s, "454 4.7.0 Temporary authentication failure");
		return SMTP_ACT_NONE;
	}
	st = bearer ? sasl_oauthbearer_decode(b64, len, &x->dec)
		    : sasl_xoauth2_decode(b64, len, &x->dec);
	if (st == SASL_OK && x->dec.user[0] == '\0')
		st = SASL_MALFORMED;
	if (st != SASL_OK) {
		OPENSSL_cleanse(x, sizeof(*x));
		free(x);
		smtp_clear_creds(s);
		smtp_set_state(s, SMTP_IDLE);
		if (st == SASL_BAD_BASE64)
			reply_error(s, "501 5.5.2 Cannot decode response");
		else
			reply_error(s, "501 5.5.2 Malformed %s response",
				    bearer ? "OAUTHBEARER" : "XOAUTH2");
		return SMTP_ACT_NONE;
	}
	x->b64_len = len;
	memcpy(x->b64, b64, len);
	x->b64[len] = '\0';
	s->creds->oauth = x;
	memcpy(s->creds->user, x->dec.user, sizeof(s->creds->user));
	smtp_set_state(s, SMTP_AUTH_CHECK);
	return SMTP_ACT_AUTH;
}

/* A mechanism was chosen: the exchange's credentials get their own
 * allocation (freed by smtp_clear_creds()). */
static bool
creds_new(struct smtp *s)
{
	s->creds = calloc(1, sizeof(*s->creds));
	if (s->creds == NULL) {
		reply(s, "454 4.7.0 Temporary authentication failure");
		return false;
	}
	return true;
}

static enum smtp_action
cmd_auth(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	const char *sp, *ir = NULL;
	size_t mlen, irlen = 0;
	unsigned mech;

	(void)line, (void)len;
	if (!s->tls) {
		reply_error(s, "538 5.7.11 Encryption required for requested "
			       "authentication mechanism");
		return SMTP_ACT_NONE;
	}
	if (!s->esmtp) {
		reply_error(s, "503 5.5.1 Send EHLO first");
		return SMTP_ACT_NONE;
	}
	if (s->authed) {
		reply_error(s, "503 5.5.1 Already authenticated");
		return SMTP_ACT_NONE;
	}
	if (s->in_mail) {
		reply_error(s, "503 5.5.1 AUTH not permitted during a mail "
			       "transaction");
		return SMTP_ACT_NONE;
	}
	sp = memchr(arg, ' ', alen);
	mlen = sp ? (size_t)(sp - arg) : alen;
	if (sp != NULL) {
		ir = sp + 1;
		irlen = alen - mlen - 1;
	}
	smtp_clear_creds(s);
	mech = sasl_mech_of(arg, mlen) & mechs_offered(s);
	if (mech != 0 && !creds_new(s))
		return SMTP_ACT_NONE;
	s->auth_mech = sasl_mech_name(mech); /* NULL for none */
	if (mech == AUTH_MECH_PLAIN) {
		if (ir != NULL)
			return auth_plain_response(s, ir, irlen);
		reply(s, "334 ");
		smtp_set_state(s, SMTP_AUTH_PLAIN);
		return SMTP_ACT_NONE;
	}
	if (mech == AUTH_MECH_LOGIN) {
		smtp_set_state(s, SMTP_AUTH_LOGIN_USER);
		if (ir != NULL)
			return auth_login_response(s, ir, irlen);
		reply(s, "334 VXNlcm5hbWU6");
		return SMTP_ACT_NONE;
	}
	if (mech & AUTH_MECH_OAUTH) {
		if (ir != NULL)
			return auth_oauth_response(s, ir, irlen);
		reply(s, "334 ");
		smtp_set_state(s, SMTP_AUTH_OAUTH);
		return SMTP_ACT_NONE;
	}
	if (mlen == 0) {
		reply_error(s, "501 5.5.4 Syntax: AUTH mechanism");
		return SMTP_ACT_NONE;
	}
	reply_error(s, "504 5.5.4 Unrecognized authentication type");
	return SMTP_ACT_NONE;
}

/* A line received while an AUTH exchange waits for a response. */
static enum smtp_action
auth_continue(struct smtp *s, const char *line, size_t len)
{
	trace_verb(s, "auth-response");
	if (len == 1 && line[0] == '*') {
		smtp_clear_creds(s);
		smtp_set_state(s, SMTP_IDLE);
		reply_error(s, "501 5.7.0 Authentication cancelled");
		return SMTP_ACT_NONE;
	}
	if (s->state == SMTP_AUTH_OAUTH_ERROR) {
		/* RFC 7628 3.2.3: the client's ^A ends the exchange; the
		 * failure was counted with the verdict.  Any other line
		 * ends it alike. */
		s->auth_mech = NULL;
		smtp_set_state(s, SMTP_IDLE);
		reply_error(s, "535 5.7.8 Authentication credentials invalid");
		return SMTP_ACT_NONE;
	}
	if (s->state == SMTP_AUTH_PLAIN)
		return auth_plain_response(s, line, len);
	if (s->state == SMTP_AUTH_OAUTH)
		return auth_oauth_response(s, line, len);
	return auth_login_response(s, line, len);
}

static bool
check_authed(struct smtp *s)
{
	if (s->authed)
		return true;
	reply_error(s, "530 5.7.0 Authentication required");
	return false;
}

static enum smtp_action
cmd_mail(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	const char *params, *size, *body;
	size_t vlen;

	if (!check_authed(s))
		return SMTP_ACT_NONE;
	if (s->in_mail) {
		reply_error(s, "503 5.5.1 Nested MAIL command");
		return SMTP_ACT_NONE;
	}
	params = parse_path(arg, alen, "FROM:");
	if (params == NULL || !printable(arg, alen)) {
		reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return SMTP_ACT_NONE;
	}
	body = find_param(params, arg + alen, "BODY", &vlen);
	if (body != NULL && vlen == 10 &&
	    strncasecmp(body, "BINARYMIME", 10) == 0) {
		/* Not offered: BDAT chunks are checked for bare CR and LF. */
		reply_error(s, "555 5.5.4 BODY=BINARYMIME is not supported");
		return SMTP_ACT_NONE;
	}
	size = find_param(params, arg + alen, "SIZE", &vlen);
	if (size != NULL) {
		unsigned long long n = 0;
		size_t i;
		for (i = 0;
		     i < vlen && i < 20 && size[i] >= '0' && size[i] <= '9';
		     i++)
			n = n * 10 + (unsigned long long)(size[i] - '0');
		if (i != vlen || vlen == 0 || vlen > 19) {
			reply_error(s, "501 5.5.4 Bad SIZE parameter");
			return SMTP_ACT_NONE;
		}
		if (n > s->size_limit) {
			s->limit_hits[SMTP_LIMIT_SIZE]++;
			reply(s, "552 5.3.4 Message size exceeds fixed "
				 "maximum message size");
			return SMTP_ACT_NONE;
		}
	}
	return forward(s, SMTP_FWD_MAIL, line, len);
}

static enum smtp_action
cmd_rcpt(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	if (!check_authed(s))
		return SMTP_ACT_NONE;
	if (!s->in_mail) {
		reply_error(s, "503 5.5.1 Need MAIL command");
		return SMTP_ACT_NONE;
	}
	if (s->bdat_chunks > 0) {
		reply_error(s, "503 5.5.1 RCPT not permitted after BDAT");
		return SMTP_ACT_NONE;
	}
	if (parse_path(arg, alen, "TO:") == NULL || !printable(arg, alen)) {
		reply_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return SMTP_ACT_NONE;
	}
	if (s->rcpts >= s->p->max_recipients) {
		s->limit_hits[SMTP_LIMIT_RECIPIENTS]++;
		reply(s, "452 4.5.3 Too many recipients");
		return SMTP_ACT_NONE;
	}
	return forward(s, SMTP_FWD_RCPT, line, len);
}

static enum smtp_action
cmd_data(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	(void)line, (void)len, (void)arg;
	if (!check_authed(s))
		return SMTP_ACT_NONE;
	if (alen != 0) {
		reply_error(s, "501 5.5.4 Syntax: DATA");
		return SMTP_ACT_NONE;
	}
	if (!s->in_mail) {
		reply_error(s, "503 5.5.1 Need MAIL command");
		return SMTP_ACT_NONE;
	}
	if (s->bdat_chunks > 0) {
		/* RFC 3030 2: one transaction never mixes DATA and BDAT. */
		reply_error(s, "503 5.5.1 DATA not permitted after BDAT");
		return SMTP_ACT_NONE;
	}
	if (s->rcpts == 0) {
		reply_error(s, "554 5.5.1 No valid recipients");
		return SMTP_ACT_NONE;
	}
	return forward(s, SMTP_FWD_DATA, "DATA", 4);
}

/* "chunk-size [LAST]" (RFC 3030 4: 1*DIGIT, end-marker "LAST"). */
static bool
parse_bdat(const char *arg, size_t alen, uint64_t *size, bool *last)
{
	size_t i = 0;
	uint64_t n = 0;

	for (; i < alen && arg[i] >= '0' && arg[i] <= '9'; i++) {
		if (i == 19)
			return false; /* more than any limit, and overflow */
		n = n * 10 + (uint64_t)(arg[i] - '0');
	}
	if (i == 0)
		return false;
	*size = n;
	*last = false;
	if (i == alen)
		return true;
	if (alen - i == 5 && strncasecmp(arg + i, " LAST", 5) == 0) {
		*last = true;
		return true;
	}
	return false;
}

/* A BDAT refused: its chunk follows anyway and is discarded unread.  When
 * the transaction cannot go on (the backend holds part of it), it ends
 * here and the backend connection is dropped, so the backend never sees
 * a LAST chunk for it. */
static enum smtp_action
refuse_bdat(struct smtp *s, uint64_t size, bool error, bool end_transaction,
	    const char *text)
{
	s->skip_left = size;
	if (end_transaction && s->in_mail) {
		smtp_reset_transaction(s);
		s->drop_backend = true;
	}
	if (error)
		reply_error(s, "%s", text);
	else
		reply(s, "%s", text);
	return SMTP_ACT_NONE;
}

static enum smtp_action
cmd_bdat(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	uint64_t size, limit = s->size_limit;
	bool last;
	char fwd[48];
	int n;

	(void)line, (void)len;
	if (!parse_bdat(arg, alen, &size, &last)) {
		/* The chunk's length is unknown: nothing can be skipped, and
		 * what follows is read as commands (as Postfix does). */
		reply_error(s, "501 5.5.4 Syntax: BDAT chunk-size [LAST]");
		return SMTP_ACT_NONE;
	}
	if (!s->tls || !(s->offer & SMTP_OFFER_CHUNKING))
		return refuse_bdat(s, size, true, false,
				   "502 5.5.1 BDAT not available: CHUNKING "
				   "was not offered");
	if (!s->authed)
		return refuse_bdat(s, size, true, false,
				   "530 5.7.0 Authentication required");
	if (!s->in_mail)
		return refuse_bdat(s, size, true, false,
				   "503 5.5.1 Need MAIL command");
	if (s->rcpts == 0)
		return refuse_bdat(s, size, true, false,
				   "554 5.5.1 No valid recipients");
	if (!s->be_chunking)
		/* Offered (every server seen had it) but this one does not:
		 * the next session is offered no CHUNKING
		 * (backend_pool_learn()). */
		return refuse_bdat(s, size, false, true,
				   "451 4.3.3 CHUNKING is not available "
				   "right now, try again later");
	if (s->be_size > 0 && s->be_size < limit)
		limit = s->be_size;
	if (size > limit || s->bdat_size + size > limit)
		return refuse_bdat(s, size, false, true,
				   "552 5.3.4 Message size exceeds fixed "
				   "maximum message size");
	n = snprintf(fwd, sizeof(fwd), "BDAT %llu%s", (unsigned long long)size,
		     last ? " LAST" : "");
	s->bdat_chunks++;
	s->bdat_size += size;
	s->chunk_left = size;
	s->chunk_last = last;
	return forward(s, SMTP_FWD_BDAT, fwd, (size_t)n);
}

static enum smtp_action
cmd_rset(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	(void)line, (void)len, (void)arg, (void)alen;
	if (s->in_mail)
		return forward(s, SMTP_FWD_RSET, "RSET", 4);
	reply(s, "250 2.0.0 OK");
	return SMTP_ACT_NONE;
}

static enum smtp_action
cmd_noop(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	(void)line, (void)len, (void)arg, (void)alen;
	reply(s, "250 2.0.0 OK");
	return SMTP_ACT_NONE;
}

static enum smtp_action
cmd_quit(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	(void)line, (void)len, (void)arg, (void)alen;
	reply(s, "221 2.0.0 Bye");
	s->close_reason = "quit";
	smtp_set_state(s, SMTP_CLOSING);
	return SMTP_ACT_CLOSE;
}

static enum smtp_action
cmd_help(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	(void)line, (void)len, (void)arg, (void)alen;
	reply(s, "214 2.0.0 See RFC 5321, RFC 6409 and RFC 4954");
	return SMTP_ACT_NONE;
}

static enum smtp_action
cmd_vrfy(struct smtp *s, const char *line, size_t len, const char *arg,
	 size_t alen)
{
	(void)line, (void)len, (void)arg;
	if (alen == 0) {
		reply_error(s, "501 5.5.4 Syntax: VRFY address");
		return SMTP_ACT_NONE;
	}
	/* Never tell who exists. */
	reply(s, "252 2.5.2 Cannot VRFY user, but will accept message");
	return SMTP_ACT_NONE;
}

static enum smtp_action
cmd_refused(struct smtp *s, const char *line, size_t len, const char *arg,
	    size_t alen)
{
	(void)line, (void)len, (void)arg, (void)alen;
	/* XCLIENT, XFORWARD, PROXY: identity is ours to tell, not theirs. */
	reply_error(s, "550 5.7.1 Command not permitted");
	return SMTP_ACT_NONE;
}

static enum smtp_action
cmd_not_implemented(struct smtp *s, const char *line, size_t len,
		    const char *arg, size_t alen)
{
	(void)line, (void)len, (void)arg, (void)alen;
	reply_error(s, "502 5.5.1 Command not implemented");
	return SMTP_ACT_NONE;
}

static const struct smtp_cmd smtp_cmds[] = {
	{"EHLO", cmd_ehlo, true},
	{"HELO", cmd_helo, true},
	{"STARTTLS", cmd_starttls, true},
	{"AUTH", cmd_auth, true},
	{"MAIL", cmd_mail, false},
	{"RCPT", cmd_rcpt, false},
	{"DATA", cmd_data, false},
	{"RSET", cmd_rset, true},
	{"NOOP", cmd_noop, true},
	{"QUIT", cmd_quit, true},
	{"HELP", cmd_help, false},
	{"VRFY", cmd_vrfy, false},
	{"EXPN", cmd_not_implemented, false},
	{"BDAT", cmd_bdat, true}, /* its refusal skips the chunk */
	{"TURN", cmd_not_implemented, false},
	{"ETRN", cmd_not_implemented, false},
	{"XCLIENT", cmd_refused, false},
	{"XFORWARD", cmd_refused, false},
	{"PROXY", cmd_refused, false},
};

/* Cross-protocol requests (a browser made to talk to this port, the
 * ALPACA class): an HTTP method, or a header line ("Host: x").  They end
 * the session at once, as Postfix's smtpd_forbidden_commands does. */
static bool
looks_like_http(const char *line, size_t len, size_t vlen)
{
	static const char *const methods[] = {
		"GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS", "DELETE",
	};
	const char *colon = memchr(line, ':', len);

	for (size_t i = 0; i < sizeof(methods) / sizeof(*methods); i++)
		if (strlen(methods[i]) == vlen &&
		    strncasecmp(methods[i], line, vlen) == 0)
			return true;
	/* "Name: value": the first word ends in a colon and a space. */
	return colon != NULL && (size_t)(colon - line) + 1 == vlen &&
	       vlen > 1 && vlen < len && line[vlen] == ' ';
}

static enum smtp_action
smtp_command(struct smtp *s, const char *line, size_t len)
{
	const char *sp = memchr(line, ' ', len);
	size_t vlen = sp ? (size_t)(sp - line) : len;
	const char *arg = sp ? sp + 1 : line + len;
	size_t alen = sp ? len - vlen - 1 : 0;

	if (memchr(line, '\0', len) != NULL) {
		trace_verb(s, "unrecognized");
		reply_error(s, "500 5.5.2 Invalid character in command");
		return SMTP_ACT_NONE;
	}
	for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(*smtp_cmds); i++) {
		const struct smtp_cmd *c = &smtp_cmds[i];
		if (strlen(c->verb) != vlen ||
		    strncasecmp(c->verb, line, vlen) != 0)
			continue;
		trace_verb(s, c->verb);
		if (!s->tls && s->p->mode == LISTENER_STARTTLS &&
		    !c->before_tls) {
			reply_error(s, "530 5.7.0 Must issue a STARTTLS "
				       "command first");
			return SMTP_ACT_NONE;
		}
		return c->run(s, line, len, arg, alen);
	}
	if (looks_like_http(line, len, vlen)) {
		trace_verb(s, "http");
		reply_and_close(s,
				"500 5.5.1 This is an SMTP service, not HTTP",
				"http-request");
		return SMTP_ACT_CLOSE;
	}
	trace_verb(s, "unrecognized");
	reply_error(s, "500 5.5.2 Command unrecognized");
	return SMTP_ACT_NONE;
}

/* ---------------------------------------------------------------------
 * Line framing
 */

/* How much of a line past its limit is read and dropped before the
 * session ends: the line's own limit four times over, at least 64 KiB
 * (a client that lost its place gets its 500 and may go on; one that
 * sends without end is not read for the command timeout). */
static size_t
discard_bound(size_t limit)
{
	return limit * 4 > 65536 ? limit * 4 : 65536;
}

/* The longest line acceptable in the current state for this prefix. */
static size_t
line_limit(const struct smtp *s, const char *p, size_t avail)
{
	if (s->state == SMTP_AUTH_PLAIN || s->state == SMTP_AUTH_LOGIN_USER ||
	    s->state == SMTP_AUTH_LOGIN_PASS || s->state == SMTP_AUTH_OAUTH ||
	    s->state == SMTP_AUTH_OAUTH_ERROR)
		return s->p->max_auth_line;
	if (avail >= 5 && strncasecmp(p, "AUTH ", 5) == 0)
		return s->p->max_auth_line;
	return s->p->max_line;
}

static bool
smtp_parked(const struct smtp *s)
{
	switch (s->state) {
	case SMTP_AUTH_CHECK:
	case SMTP_TLS_HANDSHAKE:
	case SMTP_BACKEND:
	case SMTP_DATA:
	case SMTP_DATA_END:
	case SMTP_CHUNK:
	case SMTP_CLOSING:
		return true;
	default:
		return false;
	}
}

enum smtp_action
smtp_input(struct smtp *s, struct buf *in)
{
	enum smtp_action act = SMTP_ACT_NONE;

	/* A completion (AUTH failure, error limit) may have ended it. */
	if (s->state == SMTP_CLOSING)
		return SMTP_ACT_CLOSE;
	if (s->draining && s->state == SMTP_IDLE && !s->in_mail) {
		reply(s, "421 4.3.2 %s Service shutting down, try again later",
		      s->p->hostname);
		s->close_reason = "drain";
		smtp_set_state(s, SMTP_CLOSING);
		return SMTP_ACT_CLOSE;
	}
	while (act == SMTP_ACT_NONE && !smtp_parked(s) &&
	       buf_room(&s->out) >= SMTP_OUT_RESERVE && buf_used(in) > 0) {
		const char *p = buf_head(in);
		size_t avail = buf_used(in);
		size_t limit = line_limit(s, p, avail);
		const char *nl;
		size_t len;

		if (s->skip_left > 0) {
			/* A refused BDAT's chunk: never read as commands. */
			len = avail < s->skip_left ? avail
						   : (size_t)s->skip_left;
			buf_consume(in, len);
			s->skip_left -= len;
			continue;
		}
		nl = memchr(p, '\n', avail < limit ? avail : limit);
		if (s->discarding) {
			/* Inside an over-long line: drop until its end, or
			 * end a line that never ends. */
			nl = memchr(p, '\n', avail);
			if (nl == NULL) {
				buf_consume(in, avail);
				s->discarded += (unsigned)avail;
				if (s->discarded <= discard_bound(limit))
					break;
				s->limit_hits[SMTP_LIMIT_LINE]++;
				reply_and_close(s, "500 5.5.6 Line too long",
						"line-too-long");
				break;
			}
			buf_consume(in, (size_t)(nl - p) + 1);
			s->discarding = false;
			s->progress++;
			if (s->state != SMTP_IDLE) {
				smtp_clear_creds(s);
				smtp_set_state(s, SMTP_IDLE);
			}
			s->limit_hits[SMTP_LIMIT_LINE]++;
			reply_error(s, "500 5.5.6 Line too long");
			continue;
		}
		if (nl == NULL) {
			if (avail >= limit) {
				s->discarding = true;
				s->discarded = 0;
				continue;
			}
			break; /* wait for the rest of the line */
		}
		len = (size_t)(nl - p);
		s->progress++;
		if (len == 0 || p[len - 1] != '\r') {
			/* Only CRLF ends a line (RFC 5321 2.3.8): a bare LF
			 * is refused, never re-framed for the backend. */
			buf_consume(in, len + 1);
			if (s->state != SMTP_IDLE) {
				smtp_clear_creds(s);
				smtp_set_state(s, SMTP_IDLE);
			}
			reply_error(s, "500 5.5.2 Bare LF in a command, lines "
				       "end in CRLF");
			continue;
		}
		len--;
		if (s->state == SMTP_IDLE)
			act = smtp_command(s, p, len);
		else
			act = auth_continue(s, p, len);
		buf_consume(in, (size_t)(nl - buf_head(in)) + 1);
		if (act == SMTP_ACT_STARTTLS) {
			/* Anything pipelined after STARTTLS was sent in
			 * plaintext and must never be read (RFC 3207 4.2). */
			buf_clear(in);
		}
	}
	/* However the loop ended, a closing session says so. */
	if (s->state == SMTP_CLOSING)
		act = SMTP_ACT_CLOSE;
	return act;
}

/* ---------------------------------------------------------------------
 * Completions reported by the worker
 */

void
smtp_tls_ready(struct smtp *s)
{
	/* RFC 3207 4.2: forget everything learned before TLS. */
	s->tls = true;
	s->esmtp = false;
	free(s->helo_name);
	s->helo_name = NULL;
	smtp_set_state(s, SMTP_IDLE);
}

/* The password was right.  The login is kept at its length (an idle
 * session holds it); with no memory for it the client is not
 * authenticated and may try again, as when AUTH found none for its
 * exchange. */
static void
auth_succeeded(struct smtp *s, const char *login)
{
	if (login == NULL || login[0] == '\0')
		login = s->creds->user;
	s->user = text_copy(login, strlen(login));
	if (s->user == NULL) {
		reply(s, "454 4.7.0 Temporary authentication failure");
		return;
	}
	s->authed = true;
	reply(s, "235 2.7.0 Authentication successful");
}

void
smtp_auth_result(struct smtp *s, bool ok)
{
	smtp_auth_answer_status(s, ok ? SMTP_AUTH_OK : SMTP_AUTH_FAIL, NULL,
				NULL, NULL);
}

/* The OAuth mechanisms' refusal: the JSON status in a 334, and the
 * client's ^A awaited (its 535 is auth_continue()'s). */
static void
oauth_refused(struct smtp *s, const char *status)
{
	char line[SASL_CHALLENGE_MAX]; /* holds the longest (sasl.h) */

	sasl_oauth_challenge(status, line, sizeof(line));
	reply(s, "%s", line);
	smtp_wipe_creds(s);
	smtp_set_state(s, SMTP_AUTH_OAUTH_ERROR);
}

void
smtp_auth_answer_status(struct smtp *s, enum smtp_auth_verdict v,
			const char *login, const char *text, const char *status)
{
	bool ok = v == SMTP_AUTH_OK;
	bool own = text != NULL && text[0] != '\0';
	bool oauth = s->creds != NULL && s->creds->oauth != NULL;

	if (v == SMTP_AUTH_TEMP) {
		/* The back end could not say: not the client's failure. */
		reply(s, "%s",
		      own ? text
			  : "454 4.7.0 Temporary authentication failure");
	} else if (!ok && ++s->auth_failures >= s->p->max_auth_failures &&
		   s->p->max_auth_failures > 0) {
		/* auth.max_failures: a guesser reconnects, and pays for
		 * that, instead of trying on at the cost of one line. */
		s->limit_hits[SMTP_LIMIT_AUTH_FAILURES]++;
		reply(s,
		      "421 4.7.0 %s Too many failed logins, closing "
		      "connection",
		      s->p->hostname);
		s->close_reason = "auth-failures";
		smtp_set_state(s, SMTP_CLOSING);
	} else if (!ok && oauth && s->state == SMTP_AUTH_CHECK) {
		oauth_refused(s, status);
		return;
	} else if (!ok) {
		reply_error(s, "%s",
			    own ? text
				: "535 5.7.8 Authentication credentials "
				  "invalid");
	} else if (s->creds != NULL) { /* else closed while the check ran */
		auth_succeeded(s, login);
	}
	smtp_clear_creds(s);
	if (s->state != SMTP_CLOSING)
		smtp_set_state(s, SMTP_IDLE);
}

/* Relay the backend's reply, rebuilt with CRLF line ends. */
static void
relay_reply(struct smtp *s, int code, const char *const *lines,
	    const size_t *lens, size_t nlines)
{
	for (size_t i = 0; i < nlines; i++) {
		int n = lens[i] > 990 ? 990 : (int)lens[i];
		reply(s, "%03d%c%.*s", code, i + 1 < nlines ? '-' : ' ', n,
		      lines[i]);
	}
	if (nlines == 0)
		reply(s, "%03d", code);
}

enum smtp_action
smtp_backend_reply(struct smtp *s, int code, const char *const *lines,
		   const size_t *lens, size_t nlines)
{
	enum smtp_fwd what = s->fwd;
	bool ok = code >= 200 && code < 300;

	s->fwd = SMTP_FWD_NONE;
	smtp_set_state(s, SMTP_IDLE);
	relay_reply(s, code, lines, lens, nlines);
	switch (what) {
	case SMTP_FWD_MAIL:
		if (ok) {
			s->in_mail = true;
			s->rcpts = 0;
		}
		break;
	case SMTP_FWD_RCPT:
		if (ok)
			s->rcpts++;
		break;
	case SMTP_FWD_DATA:
		if (code == 354) {
			smtp_set_state(s, SMTP_DATA);
			return SMTP_ACT_DATA;
		}
		break;
	case SMTP_FWD_DATA_END:
		if (ok)
			s->messages++;
		smtp_reset_transaction(s);
		break;
	case SMTP_FWD_RSET:
		smtp_reset_transaction(s);
		break;
	case SMTP_FWD_BDAT:
		/* A chunk that is not the last one: a refusal ends the
		 * transaction (RFC 3030 2: the client sends no more of it),
		 * and the backend, which holds its first chunks, goes. */
		if (!ok) {
			smtp_reset_transaction(s);
			s->drop_backend = true;
		}
		break;
	case SMTP_FWD_NONE:
		break;
	}
	return SMTP_ACT_NONE;
}

void
smtp_backend_failed(struct smtp *s, enum smtp_backend_failure why)
{
	switch (why) {
	case SMTP_BACKEND_UNAVAILABLE:
		reply(s, "451 4.4.1 No mail server available, try again "
			 "later");
		break;
	case SMTP_BACKEND_LOST:
		reply(s, "451 4.4.2 Connection to mail server lost, try "
			 "again later");
		break;
	case SMTP_BACKEND_TIMEOUT:
		reply(s, "451 4.4.2 Mail server timed out, try again later");
		break;
	}
	abandon_chunk(s);
	s->fwd = SMTP_FWD_NONE;
	smtp_reset_transaction(s);
	if (s->state != SMTP_CLOSING)
		smtp_set_state(s, SMTP_IDLE);
}

void
smtp_data_sent(struct smtp *s)
{
	s->fwd = SMTP_FWD_DATA_END;
	smtp_set_state(s, SMTP_DATA_END);
}

void
smtp_data_refused(struct smtp *s, const char *text)
{
	reply(s, "%s", text);
	abandon_chunk(s);
	s->fwd = SMTP_FWD_NONE;
	smtp_reset_transaction(s);
	smtp_set_state(s, SMTP_IDLE);
}

void
smtp_chunk_begin(struct smtp *s)
{
	smtp_set_state(s, SMTP_CHUNK);
}

void
smtp_chunk_sent(struct smtp *s)
{
	if (s->chunk_last) {
		/* The verdict on the message, as after DATA's end. */
		s->fwd = SMTP_FWD_DATA_END;
		smtp_set_state(s, SMTP_DATA_END);
	} else {
		smtp_set_state(s, SMTP_BACKEND);
	}
}

void
smtp_refuse(struct smtp *s, const char *text, bool error)
{
	abandon_chunk(s);
	s->fwd = SMTP_FWD_NONE;
	smtp_set_state(s, SMTP_IDLE);
	if (error)
		reply_error(s, "%s", text);
	else
		reply(s, "%s", text);
}

void
smtp_drain(struct smtp *s)
{
	s->draining = true;
}

const char *
smtp_state_name(enum smtp_state st)
{
	static const char *const names[] = {
		[SMTP_IDLE] = "idle",
		[SMTP_AUTH_PLAIN] = "auth",
		[SMTP_AUTH_LOGIN_USER] = "auth",
		[SMTP_AUTH_LOGIN_PASS] = "auth",
		[SMTP_AUTH_OAUTH] = "auth",
		[SMTP_AUTH_OAUTH_ERROR] = "auth",
		[SMTP_AUTH_CHECK] = "auth-check",
		[SMTP_TLS_HANDSHAKE] = "tls-handshake",
		[SMTP_BACKEND] = "backend",
		[SMTP_DATA] = "data",
		[SMTP_DATA_END] = "data-end",
		[SMTP_CHUNK] = "bdat",
		[SMTP_CLOSING] = "closing",
	};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) && names[st]
		       ? names[st]
		       : "unknown";
}

void
smtp_shutdown(struct smtp *s, const char *text, const char *reason)
{
	reply(s, "%s", text);
	s->close_reason = reason;
	smtp_set_state(s, SMTP_CLOSING);
}
