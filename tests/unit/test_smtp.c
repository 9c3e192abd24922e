/*
 * test_smtp.c - the client-facing SMTP state machine, bytes in, replies
 * out: framing (split and pipelined input, over-long lines), the protocol
 * contract before and after TLS, AUTH exchanges, and the relay hooks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "smtp/smtp.h"

static const struct smtp_params params_starttls = {
	.hostname = "mx.test",
	.mode = LISTENER_STARTTLS,
	.auth_mechs = AUTH_MECH_PLAIN | AUTH_MECH_LOGIN,
	.max_line = 1000,
	.max_auth_line = 12288,
	.max_message_size = 1000000,
	.max_recipients = 3,
	.max_errors = 5,
};

/* malloc() that fails for one size, to see what smtp.c does without
 * memory: test_smtp is linked with -Wl,--wrap=malloc (the Makefile), so
 * the library's calls and this file's come here, libc's own do not. */
void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
static size_t fail_size; /* 0: none fails */

void *
__wrap_malloc(size_t size)
{
	if (fail_size != 0 && size == fail_size)
		return NULL;
	return __real_malloc(size);
}

struct fixture {
	struct smtp s;
	struct buf in;
	char replies[65536];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	fail_size = 0;
	smtp_init(&f->s, &params_starttls, false);
	buf_init(&f->in, 12288 + 16384); /* as a session sizes it */
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	smtp_free(&f->s);
	buf_free(&f->in);
	free(f);
	return 0;
}

/* Feed bytes, run, and return all replies produced so far (drained). */
static enum smtp_action
feed(struct fixture *f, const char *bytes, size_t len)
{
	assert_int_equal(buf_append(&f->in, bytes, len), len);
	return smtp_input(&f->s, &f->in);
}

static enum smtp_action
feeds(struct fixture *f, const char *bytes)
{
	return feed(f, bytes, strlen(bytes));
}

static const char *
replies(struct fixture *f)
{
	size_t n = buf_used(&f->s.out);

	if (n > 0) /* an empty buffer may have no storage yet */
		memcpy(f->replies, buf_head(&f->s.out), n);
	f->replies[n] = '\0';
	buf_consume(&f->s.out, n);
	return f->replies;
}

/* Bring the session to "TLS on, EHLO done". */
static void
to_tls_ehlo(struct fixture *f)
{
	assert_int_equal(feeds(f, "EHLO c.test\r\nSTARTTLS\r\n"),
			 SMTP_ACT_STARTTLS);
	smtp_tls_ready(&f->s);
	assert_int_equal(feeds(f, "EHLO c.test\r\n"), SMTP_ACT_NONE);
	replies(f);
}

static void
to_authed(struct fixture *f)
{
	to_tls_ehlo(f);
	/* base64("\0demo\0pw") */
	assert_int_equal(feeds(f, "AUTH PLAIN AGRlbW8AcHc=\r\n"),
			 SMTP_ACT_AUTH);
	assert_string_equal(f->s.creds->user, "demo");
	assert_string_equal(f->s.creds->pass, "pw");
	smtp_auth_result(&f->s, true);
	assert_string_equal(replies(f),
			    "235 2.7.0 Authentication successful\r\n");
}

static void
reply_ok(struct fixture *f, int code, const char *text)
{
	const char *lines[1] = {text};
	size_t lens[1] = {strlen(text)};

	smtp_backend_reply(&f->s, code, lines, lens, 1);
}

static void
test_greeting_names_no_software(void **state)
{
	struct fixture *f = *state;

	smtp_start(&f->s);
	assert_string_equal(replies(f), "220 mx.test ESMTP\r\n");
}

static void
test_ehlo_before_tls(void **state)
{
	struct fixture *f = *state;
	const char *r;

	assert_int_equal(feeds(f, "EHLO client.test\r\n"), SMTP_ACT_NONE);
	r = replies(f);
	assert_non_null(strstr(r, "250-mx.test\r\n"));
	assert_non_null(strstr(r, "250-STARTTLS\r\n"));
	assert_non_null(strstr(r, "250-SIZE 1000000\r\n"));
	assert_null(strstr(r, "AUTH"));
	assert_null(strstr(r, "CHUNKING"));
}

static void
test_auth_before_tls_is_538(void **state)
{
	struct fixture *f = *state;

	feeds(f, "EHLO c\r\nAUTH PLAIN AGRlbW8AcHc=\r\n");
	assert_non_null(strstr(replies(f), "538 5.7.11 "));
	assert_null(f->s.creds);
}

static void
test_mail_before_auth_is_530(void **state)
{
	struct fixture *f = *state;

	feeds(f, "EHLO c\r\nMAIL FROM:<a@b>\r\n");
	assert_non_null(strstr(replies(f), "530 5.7.0 "));
}

static void
test_starttls_drops_pipelined_bytes(void **state)
{
	struct fixture *f = *state;

	feeds(f, "EHLO c\r\n");
	replies(f);
	assert_int_equal(feeds(f, "STARTTLS\r\nEHLO evil\r\nMAIL FROM:<x>\r\n"),
			 SMTP_ACT_STARTTLS);
	assert_string_equal(replies(f), "220 2.0.0 Ready to start TLS\r\n");
	assert_int_equal(buf_used(&f->in), 0);
	smtp_tls_ready(&f->s);
	/* EHLO state is forgotten: AUTH needs a new EHLO. */
	feeds(f, "AUTH PLAIN AGRlbW8AcHc=\r\n");
	assert_non_null(strstr(replies(f), "503 5.5.1 Send EHLO first"));
}

static void
test_after_tls_ehlo_offers_auth(void **state)
{
	struct fixture *f = *state;
	const char *r;

	feeds(f, "STARTTLS\r\n");
	smtp_tls_ready(&f->s);
	replies(f);
	feeds(f, "EHLO c\r\n");
	r = replies(f);
	assert_non_null(strstr(r, "250-AUTH PLAIN LOGIN\r\n"));
	assert_null(strstr(r, "STARTTLS"));
	assert_null(strstr(r, "CRAM-MD5"));
	feeds(f, "STARTTLS\r\n");
	assert_non_null(strstr(replies(f), "503 5.5.1 TLS already active"));
}

static void
test_split_input_every_byte(void **state)
{
	struct fixture *f = *state;
	const char *cmd = "EHLO split.test\r\n";

	for (size_t i = 0; cmd[i]; i++) {
		enum smtp_action a = feed(f, cmd + i, 1);
		assert_int_equal(a, SMTP_ACT_NONE);
		if (cmd[i + 1] != '\0')
			assert_int_equal(buf_used(&f->s.out), 0);
	}
	assert_non_null(strstr(replies(f), "250-mx.test"));
}

static void
test_pipelined_commands_stop_at_action(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	assert_int_equal(
		feeds(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
		SMTP_ACT_FORWARD);
	assert_memory_equal(f->s.fwd_line, "MAIL FROM:<a@b>\r\n", 17);
	/* The rest waits until the backend answered. */
	assert_int_equal(smtp_input(&f->s, &f->in), SMTP_ACT_NONE);
	reply_ok(f, 250, "2.1.0 Ok");
	assert_string_equal(replies(f), "250 2.1.0 Ok\r\n");
	assert_int_equal(smtp_input(&f->s, &f->in), SMTP_ACT_FORWARD);
	assert_memory_equal(f->s.fwd_line, "RCPT TO:<c@d>\r\n", 15);
	reply_ok(f, 250, "2.1.5 Ok");
	assert_int_equal(smtp_input(&f->s, &f->in), SMTP_ACT_FORWARD);
	assert_memory_equal(f->s.fwd_line, "DATA\r\n", 6);
	assert_int_equal(smtp_backend_reply(&f->s, 354, NULL, NULL, 0),
			 SMTP_ACT_DATA);
	assert_int_equal(f->s.state, SMTP_DATA);
	smtp_data_sent(&f->s);
	reply_ok(f, 250, "2.0.0 queued");
	assert_int_equal(f->s.messages, 1);
	assert_false(f->s.in_mail);
}

static void
test_line_too_long_is_discarded(void **state)
{
	struct fixture *f = *state;
	char big[3000];

	memset(big, 'A', sizeof(big));
	feed(f, big, sizeof(big));
	assert_true(f->s.discarding);
	/* Memory did not grow past what was read: the bytes were dropped. */
	assert_int_equal(buf_used(&f->in), 0);
	feeds(f, "tail\r\nNOOP\r\n");
	assert_string_equal(replies(f),
			    "500 5.5.6 Line too long\r\n250 2.0.0 OK\r\n");
}

static void
test_line_just_fits(void **state)
{
	struct fixture *f = *state;
	char line[1002];

	/* 998 characters + CRLF = 1000 octets: within the limit. */
	memcpy(line, "NOOP ", 5);
	memset(line + 5, 'x', 993);
	memcpy(line + 998, "\r\n", 2);
	feed(f, line, 1000);
	assert_string_equal(replies(f), "250 2.0.0 OK\r\n");
}

static void
test_auth_line_may_be_long(void **state)
{
	struct fixture *f = *state;
	char line[5000];

	to_tls_ehlo(f);
	memcpy(line, "AUTH PLAIN ", 11);
	memset(line + 11, 'A', 4000);
	memcpy(line + 4011, "\r\n", 2);
	feed(f, line, 4013);
	/* Decoded, but malformed: the limit did not cut it. */
	assert_non_null(strstr(replies(f), "501 5.5.2 "));
}

static void
test_drain_idle_session_gets_421_at_once(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	smtp_drain(&f->s);
	assert_int_equal(feed(f, "", 0), SMTP_ACT_CLOSE);
	assert_string_equal(replies(f), "421 4.3.2 mx.test Service "
					"shutting down, try again later\r\n");
	assert_string_equal(f->s.close_reason, "drain");
}

static void
test_drain_lets_the_transaction_finish(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	assert_int_equal(feeds(f, "MAIL FROM:<a@b.test>\r\n"),
			 SMTP_ACT_FORWARD);
	smtp_drain(&f->s); /* while MAIL is at the backend */
	reply_ok(f, 250, "2.1.0 Ok");
	assert_int_equal(feeds(f, "RCPT TO:<r@b.test>\r\n"), SMTP_ACT_FORWARD);
	reply_ok(f, 250, "2.1.5 Ok");
	assert_int_equal(feeds(f, "DATA\r\n"), SMTP_ACT_FORWARD);
	assert_int_equal(smtp_backend_reply(&f->s, 354, NULL, NULL, 0),
			 SMTP_ACT_DATA);
	smtp_data_sent(&f->s);
	reply_ok(f, 250, "2.0.0 Ok: queued");
	/* The verdict is relayed, then the session ends. */
	assert_int_equal(feed(f, "", 0), SMTP_ACT_CLOSE);
	assert_non_null(
		strstr(replies(f), "250 2.0.0 Ok: queued\r\n421 4.3.2"));
}

static void
test_too_many_errors_closes(void **state)
{
	struct fixture *f = *state;
	enum smtp_action a = SMTP_ACT_NONE;

	for (int i = 0; i < 5 && a != SMTP_ACT_CLOSE; i++)
		a = feeds(f, "BOGUS\r\n");
	assert_int_equal(a, SMTP_ACT_CLOSE);
	assert_non_null(strstr(replies(f), "421 4.7.0 mx.test Too many"));
	assert_string_equal(f->s.close_reason, "too-many-errors");
	assert_int_equal(f->s.limit_hits[SMTP_LIMIT_ERRORS], 1);
}

static void
test_last_auth_failure_closes(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(feeds(f, "AUTH PLAIN AGRlbW8AcHc=\r\n"),
				 SMTP_ACT_AUTH);
		smtp_auth_result(&f->s, false);
		if (f->s.state == SMTP_CLOSING)
			break;
	}
	/* The error limit was reached inside the completion: the next call
	 * must say close, with nothing more to read. */
	assert_int_equal(smtp_input(&f->s, &f->in), SMTP_ACT_CLOSE);
	assert_non_null(strstr(replies(f), "421 4.7.0 mx.test Too many"));
}

static void
test_overlong_line_as_last_error_closes(void **state)
{
	struct fixture *f = *state;
	char big[1100];

	for (int i = 0; i < 4; i++)
		feeds(f, "BOGUS\r\n");
	memset(big, 'A', sizeof(big) - 2);
	memcpy(big + sizeof(big) - 2, "\r\n", 2);
	assert_int_equal(feed(f, big, sizeof(big)), SMTP_ACT_CLOSE);
	assert_int_equal(f->s.limit_hits[SMTP_LIMIT_LINE], 1);
	assert_int_equal(f->s.limit_hits[SMTP_LIMIT_ERRORS], 1);
}

static void
test_long_backend_reply_fits_whole(void **state)
{
	struct fixture *f = *state;
	const char *lines[64];
	size_t lens[64];
	char text[120];
	const char *r;

	memset(text, 'r', sizeof(text));
	for (int i = 0; i < 64; i++) {
		lines[i] = text;
		lens[i] = sizeof(text);
	}
	to_authed(f);
	/* Fill s->out as a client that does not read would. */
	while (buf_room(&f->s.out) >= SMTP_OUT_RESERVE + 20)
		feeds(f, "NOOP\r\n");
	assert_int_equal(feeds(f, "MAIL FROM:<a@b>\r\n"), SMTP_ACT_FORWARD);
	smtp_backend_reply(&f->s, 250, lines, lens, 64);
	r = replies(f);
	assert_true(strlen(r) > 64 * 126);
	assert_non_null(strstr(r, "\r\n250 rrrr"));
	assert_int_equal(r[strlen(r) - 1], '\n');
}

static void
test_client_identity_commands_refused(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	feeds(f, "XCLIENT LOGIN=root\r\nXFORWARD ADDR=1.2.3.4\r\n"
		 "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
	assert_string_equal(replies(f), "550 5.7.1 Command not permitted\r\n"
					"550 5.7.1 Command not permitted\r\n"
					"550 5.7.1 Command not permitted\r\n");
}

static void
test_auth_plain_continuation_and_cancel(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	feeds(f, "AUTH PLAIN\r\n");
	assert_string_equal(replies(f), "334 \r\n");
	feeds(f, "*\r\n");
	assert_string_equal(replies(f),
			    "501 5.7.0 Authentication cancelled\r\n");
	assert_int_equal(feeds(f, "AUTH PLAIN\r\nAGRlbW8AcHc=\r\n"),
			 SMTP_ACT_AUTH);
	assert_string_equal(f->s.creds->user, "demo");
}

static void
test_auth_plain_equals_is_empty(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	feeds(f, "AUTH PLAIN =\r\n");
	assert_non_null(strstr(replies(f), "501 5.5.2 "));
	assert_int_equal(f->s.state, SMTP_IDLE);
}

static void
test_auth_plain_other_authzid_refused(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	/* base64("root\0demo\0pw") */
	feeds(f, "AUTH PLAIN cm9vdABkZW1vAHB3\r\n");
	assert_non_null(strstr(replies(f), "501 5.5.2 Malformed"));
}

static void
test_auth_login(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	feeds(f, "AUTH LOGIN\r\n");
	assert_string_equal(replies(f), "334 VXNlcm5hbWU6\r\n");
	feeds(f, "ZGVtbw==\r\n");
	assert_string_equal(replies(f), "334 UGFzc3dvcmQ6\r\n");
	assert_int_equal(feeds(f, "cHc=\r\n"), SMTP_ACT_AUTH);
	assert_string_equal(f->s.creds->user, "demo");
	assert_string_equal(f->s.creds->pass, "pw");
	smtp_auth_result(&f->s, false);
	assert_string_equal(replies(f),
			    "535 5.7.8 Authentication credentials invalid\r\n");
	assert_null(f->s.creds); /* wiped and freed */
	assert_false(f->s.authed);
	/* AUTH LOGIN with the user name as initial response. */
	feeds(f, "AUTH LOGIN YWxpY2U=\r\n");
	assert_string_equal(replies(f), "334 UGFzc3dvcmQ6\r\n");
	assert_int_equal(feeds(f, "cHc=\r\n"), SMTP_ACT_AUTH);
	assert_string_equal(f->s.creds->user, "alice");
}

/* Issue 18 item 7: an oversize password (PLAIN or LOGIN) goes to the check
 * like any other, flagged to fail there, and gets the wrong password's
 * 535; bad base64 and a missing NUL are still 501. */
static void
test_auth_huge_password_is_checked_and_refused(void **state)
{
	struct fixture *f = *state;
	static char raw[9100], line[13000];
	ssize_t n;

	to_tls_ehlo(f);
	memcpy(raw, "\0demo\0", 6);
	memset(raw + 6, 'p', 9000);
	memcpy(line, "AUTH PLAIN ", 11);
	n = sasl_b64_encode((unsigned char *)raw, 9006, line + 11,
			    sizeof(line) - 13);
	assert_true(n > 0);
	memcpy(line + 11 + n, "\r\n", 3);
	assert_int_equal(feeds(f, line), SMTP_ACT_AUTH);
	assert_string_equal(replies(f), "");
	assert_string_equal(f->s.creds->user, "demo");
	assert_true(f->s.creds->pass_too_long);
	smtp_auth_result(&f->s, false);
	assert_string_equal(replies(f),
			    "535 5.7.8 Authentication credentials invalid\r\n");
	assert_int_equal(f->s.auth_failures, 1);

	/* LOGIN: the same for its password step. */
	feeds(f, "AUTH LOGIN ZGVtbw==\r\n");
	assert_string_equal(replies(f), "334 UGFzc3dvcmQ6\r\n");
	n = sasl_b64_encode((unsigned char *)raw + 6, 9000, line,
			    sizeof(line) - 3);
	assert_true(n > 0);
	memcpy(line + n, "\r\n", 3);
	assert_int_equal(feeds(f, line), SMTP_ACT_AUTH);
	assert_true(f->s.creds->pass_too_long);
	smtp_auth_result(&f->s, false);
	assert_string_equal(replies(f),
			    "535 5.7.8 Authentication credentials invalid\r\n");

	/* A long message with no NUL in reach: still 501. */
	memset(raw, 'p', 9006);
	memcpy(line, "AUTH PLAIN ", 11);
	n = sasl_b64_encode((unsigned char *)raw, 9006, line + 11,
			    sizeof(line) - 13);
	memcpy(line + 11 + n, "\r\n", 3);
	assert_int_equal(feeds(f, line), SMTP_ACT_NONE);
	assert_non_null(strstr(replies(f), "501 5.5.2 "));
}

static void
test_failed_then_good_login_is_the_second(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	feeds(f, "AUTH PLAIN AGRlbW8AcHc=\r\n");
	smtp_auth_result(&f->s, false);
	replies(f);
	/* base64("\0alice\0pw2") */
	assert_int_equal(feeds(f, "AUTH PLAIN AGFsaWNlAHB3Mg==\r\n"),
			 SMTP_ACT_AUTH);
	smtp_auth_result(&f->s, true);
	assert_string_equal(f->s.user, "alice");
	assert_int_equal(f->s.auth_failures, 1);
}

static void
test_unknown_mechanism_and_cram_md5(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	feeds(f, "AUTH CRAM-MD5\r\n");
	assert_non_null(strstr(replies(f), "504 5.5.4 "));
	assert_null(f->s.creds); /* none allocated for a refused AUTH */
}

static void
test_second_auth_refused(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	feeds(f, "AUTH PLAIN AGRlbW8AcHc=\r\n");
	assert_non_null(strstr(replies(f), "503 5.5.1 Already"));
}

static void
test_mail_syntax_and_size(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	feeds(f, "MAIL FROM:a@b\r\n");
	assert_non_null(strstr(replies(f), "501 5.5.4 "));
	feeds(f, "MAIL FROM:<a@b> SIZE=2000000\r\n");
	assert_non_null(strstr(replies(f), "552 5.3.4 "));
	assert_int_equal(f->s.limit_hits[SMTP_LIMIT_SIZE], 1);
	feeds(f, "MAIL FROM:<a@b> SIZE=12x\r\n");
	assert_non_null(strstr(replies(f), "501 5.5.4 Bad SIZE"));
	assert_int_equal(feeds(f, "MAIL FROM:<> SIZE=100\r\n"),
			 SMTP_ACT_FORWARD);
}

/* What the backends take: the smaller SIZE is advertised and enforced,
 * DSN and SMTPUTF8 only when offered, and only after TLS. */
static void
test_backend_offer(void **state)
{
	struct fixture *f = *state;
	const char *r;

	smtp_backend_offer(&f->s, 5000, SMTP_OFFER_DSN | SMTP_OFFER_SMTPUTF8);
	feeds(f, "EHLO c.test\r\n");
	r = replies(f);
	assert_non_null(strstr(r, "250-SIZE 5000\r\n"));
	assert_null(strstr(r, "DSN"));
	assert_null(strstr(r, "SMTPUTF8"));
	to_authed(f);
	feeds(f, "EHLO c.test\r\n");
	r = replies(f);
	assert_non_null(strstr(r, "250-SIZE 5000\r\n"));
	assert_non_null(strstr(r, "250-DSN\r\n"));
	assert_non_null(strstr(r, "250-SMTPUTF8\r\n"));
	assert_non_null(strstr(r, "250 8BITMIME\r\n"));
	feeds(f, "MAIL FROM:<a@b> SIZE=5001\r\n");
	assert_non_null(strstr(replies(f), "552 5.3.4 "));
	assert_int_equal(feeds(f, "MAIL FROM:<a@b> SIZE=5000 RET=HDRS\r\n"),
			 SMTP_ACT_FORWARD);

	/* a bigger or unknown backend SIZE never raises ours */
	smtp_backend_offer(&f->s, 5000000, 0);
	assert_int_equal(f->s.size_limit, 1000000);
	smtp_backend_offer(&f->s, 0, 0);
	assert_int_equal(f->s.size_limit, 1000000);
}

static void
test_rcpt_and_data_order(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	feeds(f, "RCPT TO:<a@b>\r\n");
	assert_non_null(strstr(replies(f), "503 5.5.1 Need MAIL"));
	feeds(f, "DATA\r\n");
	assert_non_null(strstr(replies(f), "503 5.5.1 Need MAIL"));
	feeds(f, "MAIL FROM:<a@b>\r\n");
	reply_ok(f, 250, "ok");
	replies(f);
	feeds(f, "DATA\r\n");
	assert_non_null(strstr(replies(f), "554 5.5.1 No valid recipients"));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(feeds(f, "RCPT TO:<a@b>\r\n"),
				 SMTP_ACT_FORWARD);
		reply_ok(f, 250, "ok");
	}
	replies(f);
	assert_int_equal(f->s.limit_hits[SMTP_LIMIT_RECIPIENTS], 0);
	feeds(f, "RCPT TO:<a@b>\r\n");
	assert_string_equal(replies(f), "452 4.5.3 Too many recipients\r\n");
	assert_int_equal(f->s.limit_hits[SMTP_LIMIT_RECIPIENTS], 1);
}

static void
test_backend_failures(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	feeds(f, "MAIL FROM:<a@b>\r\n");
	smtp_backend_failed(&f->s, SMTP_BACKEND_UNAVAILABLE);
	assert_string_equal(
		replies(f),
		"451 4.4.1 No mail server available, try again later\r\n");
	assert_int_equal(f->s.state, SMTP_IDLE);
	assert_false(f->s.in_mail);
}

static void
test_multiline_backend_reply_relayed_with_crlf(void **state)
{
	struct fixture *f = *state;
	const char *lines[2] = {"first", "second"};
	size_t lens[2] = {5, 6};

	to_authed(f);
	feeds(f, "MAIL FROM:<a@b>\r\n");
	smtp_backend_reply(&f->s, 550, lines, lens, 2);
	assert_string_equal(replies(f), "550-first\r\n550 second\r\n");
	assert_false(f->s.in_mail);
}

static void
test_rset_vrfy_noop_help_quit(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	feeds(f, "RSET\r\nVRFY root\r\nNOOP\r\nHELP\r\n");
	assert_string_equal(
		replies(f),
		"250 2.0.0 OK\r\n"
		"252 2.5.2 Cannot VRFY user, but will accept message\r\n"
		"250 2.0.0 OK\r\n"
		"214 2.0.0 See RFC 5321, RFC 6409 and RFC 4954\r\n");
	assert_int_equal(feeds(f, "QUIT\r\nNOOP\r\n"), SMTP_ACT_CLOSE);
	assert_string_equal(replies(f), "221 2.0.0 Bye\r\n");
}

/* auth.max_failures: the failure that reaches the cap is answered 421
 * and the session ends; the ones before it get 535. */
static void
test_auth_failures_capped_per_session(void **state)
{
	struct fixture *f = *state;
	struct smtp_params p = params_starttls;

	p.max_auth_failures = 3;
	smtp_free(&f->s);
	smtp_init(&f->s, &p, false);
	to_tls_ehlo(f);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(feeds(f, "AUTH PLAIN AGRlbW8AcHc=\r\n"),
				 SMTP_ACT_AUTH);
		smtp_auth_result(&f->s, false);
		assert_string_equal(
			replies(f),
			"535 5.7.8 Authentication credentials invalid\r\n");
	}
	assert_int_equal(feeds(f, "AUTH PLAIN AGRlbW8AcHc=\r\n"),
			 SMTP_ACT_AUTH);
	smtp_auth_result(&f->s, false);
	assert_string_equal(replies(f), "421 4.7.0 mx.test Too many failed "
					"logins, closing connection\r\n");
	assert_int_equal(f->s.state, SMTP_CLOSING);
	assert_string_equal(f->s.close_reason, "auth-failures");
	assert_int_equal(f->s.limit_hits[SMTP_LIMIT_AUTH_FAILURES], 1);
	assert_null(f->s.creds);
	assert_int_equal(feeds(f, "NOOP\r\n"), SMTP_ACT_CLOSE);
}

/* Only CRLF ends a command line: a bare LF is refused, and what it ended
 * is never re-framed and forwarded (SMTP smuggling in commands). */
static void
test_bare_lf_command_line_refused(void **state)
{
	struct fixture *f = *state;

	feeds(f, "NOOP\nNOOP\r\n\n");
	assert_string_equal(
		replies(f),
		"500 5.5.2 Bare LF in a command, lines end in CRLF\r\n"
		"250 2.0.0 OK\r\n"
		"500 5.5.2 Bare LF in a command, lines end in CRLF\r\n");
	f->s.errors = 0;
	to_authed(f);
	assert_int_equal(feeds(f, "MAIL FROM:<a@b>\nNOOP\r\n"), SMTP_ACT_NONE);
	assert_null(f->s.fwd_line); /* nothing for the backend */
	assert_string_equal(replies(f), "500 5.5.2 Bare LF in a command, "
					"lines end in CRLF\r\n"
					"250 2.0.0 OK\r\n");
	/* Inside an AUTH exchange too: the exchange ends. */
	assert_int_equal(feeds(f, "AUTH LOGIN\r\n"), SMTP_ACT_NONE);
	replies(f);
	feeds(f, "ZGVtbw==\n");
	assert_int_equal(f->s.state, SMTP_IDLE);
	assert_null(f->s.creds);
}

/* On a starttls listener before TLS only EHLO, HELO, STARTTLS, NOOP,
 * RSET and QUIT are taken; AUTH answers 538 (RFC 4954), a BDAT is refused
 * with its chunk skipped. */
static void
test_commands_before_starttls_get_530(void **state)
{
	struct fixture *f = *state;
	static const char *const refused[] = {
		"VRFY root",	 "EXPN staff", "HELP",	 "MAIL FROM:<a@b>",
		"RCPT TO:<a@b>", "DATA",       "ETRN x", "XCLIENT ADDR=1.2.3.4",
	};

	for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
		char line[64];

		snprintf(line, sizeof(line), "%s\r\n", refused[i]);
		feeds(f, line);
		assert_string_equal(replies(f), "530 5.7.0 Must issue a "
						"STARTTLS command first\r\n");
		f->s.errors = 0;
	}
	feeds(f, "EHLO c.test\r\nNOOP\r\nRSET\r\n");
	assert_non_null(strstr(replies(f), "250 2.0.0 OK\r\n250 2.0.0 OK"));
	feeds(f, "AUTH PLAIN AGRlbW8AcHc=\r\n");
	assert_non_null(strstr(replies(f), "538 5.7.11"));
}

/* A line that never ends is read only so far: 500 5.5.6, then the
 * session ends (the same inside an AUTH exchange). */
static void
test_endless_line_ends_the_session(void **state)
{
	struct fixture *f = *state;
	char chunk[4096];

	memset(chunk, 'A', sizeof(chunk));
	for (int i = 0; i < 15; i++)
		assert_int_equal(feed(f, chunk, sizeof(chunk)), SMTP_ACT_NONE);
	assert_string_equal(replies(f), ""); /* 60 KiB: not yet */
	assert_int_equal(feed(f, chunk, sizeof(chunk)), SMTP_ACT_NONE);
	assert_int_equal(feed(f, chunk, sizeof(chunk)), SMTP_ACT_CLOSE);
	assert_string_equal(replies(f), "500 5.5.6 Line too long\r\n");
	assert_string_equal(f->s.close_reason, "line-too-long");
}

static void
test_endless_auth_line_ends_the_session(void **state)
{
	struct fixture *f = *state;
	char chunk[4096];
	enum smtp_action act = SMTP_ACT_NONE;

	to_tls_ehlo(f);
	assert_int_equal(feeds(f, "AUTH PLAIN\r\n"), SMTP_ACT_NONE);
	replies(f);
	memset(chunk, 'A', sizeof(chunk));
	for (int i = 0; i < 40 && act == SMTP_ACT_NONE; i++)
		act = feed(f, chunk, sizeof(chunk));
	assert_int_equal(act, SMTP_ACT_CLOSE);
	assert_string_equal(replies(f), "500 5.5.6 Line too long\r\n");
	assert_null(f->s.creds);
}

/* A browser made to talk to the port (cross-protocol): one 5xx, then the
 * session ends, whatever follows. */
static void
test_http_request_ends_the_session(void **state)
{
	struct fixture *f = *state;
	static const char *const requests[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /form HTTP/1.1\r\n",
		"CONNECT mx.test:25 HTTP/1.1\r\n",
		"Host: mx.test\r\n",
	};

	for (size_t i = 0; i < sizeof(requests) / sizeof(*requests); i++) {
		smtp_free(&f->s);
		smtp_init(&f->s, &params_starttls, false);
		buf_clear(&f->in);
		assert_int_equal(feeds(f, requests[i]), SMTP_ACT_CLOSE);
		assert_string_equal(replies(f), "500 5.5.1 This is an SMTP "
						"service, not HTTP\r\n");
		assert_string_equal(f->s.close_reason, "http-request");
	}
	/* SMTP lines with colons are not headers. */
	smtp_free(&f->s);
	smtp_init(&f->s, &params_starttls, false);
	assert_int_equal(feeds(f, "MAIL FROM:<a@b>\r\n"), SMTP_ACT_NONE);
	assert_null(f->s.close_reason);
}

static void
test_nul_in_command(void **state)
{
	struct fixture *f = *state;

	feed(f, "NOOP\0x\r\n", 8);
	assert_non_null(strstr(replies(f), "500 5.5.2 Invalid character"));
}

static void
test_ehlo_mid_transaction_drops_backend(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	feeds(f, "MAIL FROM:<a@b>\r\n");
	reply_ok(f, 250, "ok");
	replies(f);
	feeds(f, "EHLO again\r\n");
	assert_true(f->s.drop_backend);
	assert_false(f->s.in_mail);
}

/* ---------------------------------------------------------------------
 * The EHLO name and the login: each allocated at its length when set,
 * NULL (read as "") until then, freed by smtp_free() (the ASan build of
 * these tests finds a leak).
 */

/* "EHLO " and n bytes of c, CRLF-terminated, into line. */
static const char *
ehlo_line(char *line, char c, size_t n)
{
	memcpy(line, "EHLO ", 5);
	memset(line + 5, c, n);
	memcpy(line + 5 + n, "\r\n", 3);
	return line;
}

static void
test_helo_name_set_replaced_and_forgotten(void **state)
{
	struct fixture *f = *state;
	char line[SMTP_HELO_MAX + 16];

	assert_null(f->s.helo_name);
	assert_string_equal(smtp_helo_name(&f->s), "");
	feeds(f, "EHLO first.test\r\n");
	assert_string_equal(f->s.helo_name, "first.test");
	assert_true(f->s.esmtp);
	feeds(f, "HELO second.test\r\n");
	assert_string_equal(smtp_helo_name(&f->s), "second.test");
	assert_false(f->s.esmtp);
	/* The longest name taken, then one byte longer: refused, and the
	 * name before stays. */
	feeds(f, ehlo_line(line, 'a', SMTP_HELO_MAX));
	assert_int_equal(strlen(f->s.helo_name), SMTP_HELO_MAX);
	assert_int_equal(strspn(f->s.helo_name, "a"), SMTP_HELO_MAX);
	replies(f);
	feeds(f, ehlo_line(line, 'b', SMTP_HELO_MAX + 1));
	assert_string_equal(replies(f), "501 5.5.4 Syntax: EHLO hostname\r\n");
	assert_int_equal(strlen(f->s.helo_name), SMTP_HELO_MAX);
	assert_int_equal(f->s.helo_name[0], 'a');
	/* Forgotten with everything else learned before TLS. */
	assert_int_equal(feeds(f, "STARTTLS\r\n"), SMTP_ACT_STARTTLS);
	smtp_tls_ready(&f->s);
	assert_null(f->s.helo_name);
	assert_string_equal(smtp_helo_name(&f->s), "");
	feeds(f, "EHLO c.test\r\n");
	assert_string_equal(f->s.helo_name, "c.test");
}

static void
test_helo_name_without_memory(void **state)
{
	struct fixture *f = *state;

	feeds(f, "EHLO first.test\r\n");
	replies(f);
	fail_size = sizeof("other.test");
	assert_int_equal(feeds(f, "EHLO other.test\r\n"), SMTP_ACT_NONE);
	fail_size = 0;
	assert_string_equal(
		replies(f),
		"451 4.3.0 Temporary local problem, try again later\r\n");
	assert_string_equal(f->s.helo_name, "first.test");
	assert_int_equal(f->s.errors, 0);
	/* Nothing learned, nothing lost: the client tries again. */
	feeds(f, "EHLO other.test\r\n");
	assert_non_null(strstr(replies(f), "250 8BITMIME\r\n"));
	assert_string_equal(f->s.helo_name, "other.test");
}

/* AUTH LOGIN for a user name of n bytes of 'u', password "pw": parked for
 * the check. */
static void
auth_login_as(struct fixture *f, size_t n)
{
	unsigned char user[SASL_FIELD_MAX];
	char b64[4 * SASL_FIELD_MAX / 3 + 8];

	memset(user, 'u', n);
	EVP_EncodeBlock((unsigned char *)b64, user, (int)n);
	feeds(f, "AUTH LOGIN\r\n");
	feeds(f, b64);
	feeds(f, "\r\n");
	assert_int_equal(feeds(f, "cHc=\r\n"), SMTP_ACT_AUTH);
	assert_int_equal(strlen(f->s.creds->user), n);
	replies(f);
}

static void
test_login_kept_only_after_success(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	assert_null(f->s.user);
	assert_string_equal(smtp_user(&f->s), "");
	auth_login_as(f, 4);
	smtp_auth_result(&f->s, false);
	assert_null(f->s.user);
	assert_string_equal(smtp_user(&f->s), "");
	/* The longest login there is. */
	auth_login_as(f, SASL_FIELD_MAX - 1);
	smtp_auth_result(&f->s, true);
	assert_true(f->s.authed);
	assert_int_equal(strlen(smtp_user(&f->s)), SASL_FIELD_MAX - 1);
	assert_int_equal(strspn(f->s.user, "u"), SASL_FIELD_MAX - 1);
	/* Kept through a new EHLO (AUTH is not asked again). */
	feeds(f, "EHLO again.test\r\n");
	assert_int_equal(strlen(smtp_user(&f->s)), SASL_FIELD_MAX - 1);
}

static void
test_login_without_memory(void **state)
{
	struct fixture *f = *state;

	to_tls_ehlo(f);
	auth_login_as(f, 7);
	fail_size = 7 + 1;
	smtp_auth_result(&f->s, true);
	fail_size = 0;
	assert_string_equal(replies(f),
			    "454 4.7.0 Temporary authentication failure\r\n");
	assert_false(f->s.authed);
	assert_null(f->s.user);
	assert_null(f->s.creds);
	assert_int_equal(f->s.state, SMTP_IDLE);
	assert_int_equal(f->s.auth_failures, 0);
	assert_int_equal(f->s.errors, 0);
	feeds(f, "MAIL FROM:<a@b>\r\n");
	assert_non_null(strstr(replies(f), "530 5.7.0 "));
	/* The client tries again. */
	auth_login_as(f, 7);
	smtp_auth_result(&f->s, true);
	assert_string_equal(smtp_user(&f->s), "uuuuuuu");
}

/* ---------------------------------------------------------------------
 * BDAT (RFC 3030)
 */

/* Authenticated, CHUNKING offered and taken by the backend, MAIL and one
 * RCPT accepted. */
static void
to_transaction(struct fixture *f, uint64_t be_size, bool be_chunking)
{
	assert_int_equal(feeds(f, "MAIL FROM:<a@b>\r\n"), SMTP_ACT_FORWARD);
	smtp_backend_ready(&f->s, be_size, be_chunking);
	reply_ok(f, 250, "2.1.0 ok");
	assert_int_equal(feeds(f, "RCPT TO:<c@d>\r\n"), SMTP_ACT_FORWARD);
	reply_ok(f, 250, "2.1.5 ok");
	replies(f);
}

static void
to_bdat_ready(struct fixture *f)
{
	smtp_backend_offer(&f->s, 0, SMTP_OFFER_CHUNKING);
	to_authed(f);
	to_transaction(f, 0, true);
}

/* The worker's part after a forwarded BDAT: the chunk's bytes leave the
 * input (they must all be there) and the reply is awaited. */
static void
stream_chunk(struct fixture *f, const char *expect)
{
	assert_int_equal(f->s.fwd, SMTP_FWD_BDAT);
	smtp_chunk_begin(&f->s);
	assert_int_equal(f->s.state, SMTP_CHUNK);
	assert_true(buf_used(&f->in) >= f->s.chunk_left);
	assert_int_equal(f->s.chunk_left, strlen(expect));
	assert_memory_equal(buf_head(&f->in), expect, strlen(expect));
	buf_consume(&f->in, (size_t)f->s.chunk_left);
	f->s.chunk_left = 0;
	smtp_chunk_sent(&f->s);
}

static void
test_chunking_offered_after_tls_only_when_backends_take_it(void **state)
{
	struct fixture *f = *state;

	feeds(f, "EHLO c.test\r\n");
	assert_null(strstr(replies(f), "CHUNKING"));
	to_tls_ehlo(f);
	feeds(f, "EHLO c.test\r\n");
	assert_null(strstr(replies(f), "CHUNKING"));
	smtp_backend_offer(&f->s, 0, SMTP_OFFER_CHUNKING);
	feeds(f, "EHLO c.test\r\n");
	assert_non_null(strstr(replies(f), "250-CHUNKING\r\n"));
}

static void
test_bdat_chunks_relayed_in_order(void **state)
{
	struct fixture *f = *state;

	to_bdat_ready(f);
	/* Pipelined: both chunks and a NOOP in one read. */
	assert_int_equal(feeds(f, "BDAT 8\r\nab\r\ncd\r\nbdat 3 last\r\n"
				  "xy\nNOOP\r\n"),
			 SMTP_ACT_FORWARD);
	assert_int_equal(f->s.fwd_len, 8);
	assert_memory_equal(f->s.fwd_line, "BDAT 8\r\n", 8);
	stream_chunk(f, "ab\r\ncd\r\n");
	assert_int_equal(f->s.state, SMTP_BACKEND);
	assert_int_equal(smtp_input(&f->s, &f->in), SMTP_ACT_NONE); /* parked */
	reply_ok(f, 250, "2.0.0 8 octets received");
	assert_string_equal(replies(f), "250 2.0.0 8 octets received\r\n");
	assert_true(f->s.in_mail);
	assert_int_equal(smtp_input(&f->s, &f->in), SMTP_ACT_FORWARD);
	assert_int_equal(f->s.fwd_len, 13);
	assert_memory_equal(f->s.fwd_line, "BDAT 3 LAST\r\n", 13);
	stream_chunk(f, "xy\n");
	assert_int_equal(f->s.state, SMTP_DATA_END);
	assert_int_equal(f->s.fwd, SMTP_FWD_DATA_END);
	reply_ok(f, 250, "2.0.0 queued");
	assert_int_equal(f->s.messages, 1);
	assert_false(f->s.in_mail);
	assert_int_equal(f->s.bdat_chunks, 0);
	assert_int_equal(smtp_input(&f->s, &f->in), SMTP_ACT_NONE);
	assert_string_equal(replies(f), "250 2.0.0 queued\r\n250 2.0.0 OK\r\n");
}

static void
test_bdat_zero_last_and_every_byte_split(void **state)
{
	struct fixture *f = *state;
	const char *in = "BDAT 2\r\nhiBDAT 0 LAST\r\n";
	size_t i, n = strlen(in);

	to_bdat_ready(f);
	for (i = 0; i < n; i++) {
		if (feed(f, in + i, 1) == SMTP_ACT_FORWARD)
			break;
	}
	assert_int_equal(i, 7); /* at the LF of the first line */
	assert_int_equal(f->s.chunk_left, 2);
	feed(f, in + 8, 2);
	stream_chunk(f, "hi");
	reply_ok(f, 250, "ok");
	for (i = 10; i < n; i++) {
		if (feed(f, in + i, 1) == SMTP_ACT_FORWARD)
			break;
	}
	assert_int_equal(i, n - 1);
	assert_true(f->s.chunk_last);
	stream_chunk(f, "");
	assert_int_equal(f->s.state, SMTP_DATA_END);
}

/* A refused BDAT with a size: its chunk is dropped unread, never taken
 * for commands ("NOOP" inside it must not be answered). */
static void
test_bdat_refusals_skip_the_chunk(void **state)
{
	struct fixture *f = *state;

	/* Not offered (and before TLS, before AUTH). */
	feeds(f, "BDAT 6\r\nNOOP\r\nRSET\r\n");
	assert_string_equal(replies(f), "502 5.5.1 BDAT not available: "
					"CHUNKING was not offered\r\n"
					"250 2.0.0 OK\r\n");
	smtp_backend_offer(&f->s, 0, SMTP_OFFER_CHUNKING);
	to_tls_ehlo(f);
	feeds(f, "BDAT 6 LAST\r\nNOOP\r\nRSET\r\n");
	assert_string_equal(replies(f), "530 5.7.0 Authentication required\r\n"
					"250 2.0.0 OK\r\n");
	assert_int_equal(feeds(f, "AUTH PLAIN AGRlbW8AcHc=\r\n"),
			 SMTP_ACT_AUTH);
	smtp_auth_result(&f->s, true);
	replies(f);
	feeds(f, "BDAT 6\r\nNOOP\r\nRSET\r\n");
	assert_string_equal(replies(f), "503 5.5.1 Need MAIL command\r\n"
					"250 2.0.0 OK\r\n");
	feeds(f, "MAIL FROM:<a@b>\r\n");
	smtp_backend_ready(&f->s, 0, true);
	reply_ok(f, 250, "ok");
	replies(f);
	feeds(f, "BDAT 6\r\nNOOP\r\nRSET\r\n");
	assert_string_equal(replies(f), "554 5.5.1 No valid recipients\r\n");
	assert_int_equal(f->s.fwd, SMTP_FWD_RSET); /* in a transaction */
	reply_ok(f, 250, "ok");
	assert_false(f->s.in_mail);
	assert_int_equal(f->s.errors, 4);
	f->s.errors = 0;
	/* Split: the skip carries over reads. */
	feeds(f, "BDAT 10\r\nNOOP");
	assert_int_equal(f->s.skip_left, 6);
	feeds(f, "\r\nNOOP");
	feeds(f, "NOOP\r\n");
	assert_string_equal(replies(f), "250 ok\r\n" /* the RSET */
					"503 5.5.1 Need MAIL command\r\n"
					"250 2.0.0 OK\r\n");
	assert_int_equal(f->s.skip_left, 0);
}

static void
test_bdat_syntax_errors_skip_nothing(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"BDAT",		 "BDAT ",
		"BDAT x",	 "BDAT -1",
		"BDAT 5 LASTX",	 "BDAT 5 FIRST",
		"BDAT 5  LAST",	 "BDAT 12345678901234567890",
		"BDAT 5 LAST x", "BDAT +5",
	};

	to_bdat_ready(f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char line[64];

		snprintf(line, sizeof(line), "%s\r\nNOOP\r\n", bad[i]);
		f->s.errors = 0;
		assert_int_equal(feeds(f, line), SMTP_ACT_NONE);
		assert_string_equal(replies(f),
				    "501 5.5.4 Syntax: BDAT chunk-size "
				    "[LAST]\r\n250 2.0.0 OK\r\n");
		assert_true(f->s.in_mail);
	}
}

/* Over SIZE, or a backend without CHUNKING: the transaction ends, the
 * backend (which holds part of it) is dropped, the chunk skipped. */
static void
test_bdat_size_and_backend_without_chunking(void **state)
{
	struct fixture *f = *state;

	to_bdat_ready(f);
	smtp_backend_offer(&f->s, 100, SMTP_OFFER_CHUNKING);
	feeds(f, "BDAT 60\r\n0123456789012345678901234567890123456789"
		 "01234567890123456789");
	stream_chunk(f, "0123456789012345678901234567890123456789"
			"01234567890123456789");
	reply_ok(f, 250, "ok");
	replies(f);
	feeds(f, "BDAT 41 LAST\r\n");
	assert_string_equal(replies(f), "552 5.3.4 Message size exceeds "
					"fixed maximum message size\r\n");
	assert_true(f->s.drop_backend);
	assert_false(f->s.in_mail);
	assert_int_equal(f->s.skip_left, 41);
	assert_int_equal(f->s.errors, 0); /* not a syntax error */

	/* The connected server's own SIZE, when smaller. */
	buf_clear(&f->in);
	f->s.skip_left = 0;
	f->s.drop_backend = false;
	smtp_backend_offer(&f->s, 0, SMTP_OFFER_CHUNKING);
	to_transaction(f, 10, true);
	feeds(f, "BDAT 11 LAST\r\n");
	assert_non_null(strstr(replies(f), "552 5.3.4"));
	assert_true(f->s.drop_backend);

	/* Offered, but this connection's server lacks it. */
	buf_clear(&f->in);
	f->s.skip_left = 0;
	f->s.drop_backend = false;
	to_transaction(f, 0, false);
	feeds(f, "BDAT 2 LAST\r\nhiNOOP\r\n");
	assert_string_equal(replies(f),
			    "451 4.3.3 CHUNKING is not available right now, "
			    "try again later\r\n250 2.0.0 OK\r\n");
	assert_true(f->s.drop_backend);
	assert_false(f->s.in_mail);
}

static void
test_bdat_and_data_do_not_mix(void **state)
{
	struct fixture *f = *state;

	to_bdat_ready(f);
	feeds(f, "BDAT 1\r\nx");
	stream_chunk(f, "x");
	reply_ok(f, 250, "ok");
	replies(f);
	feeds(f, "DATA\r\nRCPT TO:<e@f>\r\nMAIL FROM:<a@b>\r\n");
	assert_string_equal(replies(f),
			    "503 5.5.1 DATA not permitted after BDAT\r\n"
			    "503 5.5.1 RCPT not permitted after BDAT\r\n"
			    "503 5.5.1 Nested MAIL command\r\n");
	assert_true(f->s.in_mail);
	/* RSET ends it; DATA and BDAT are both fine in the next one. */
	assert_int_equal(feeds(f, "RSET\r\n"), SMTP_ACT_FORWARD);
	reply_ok(f, 250, "ok");
	assert_int_equal(f->s.bdat_chunks, 0);
	assert_int_equal(f->s.bdat_size, 0);
}

/* A refused middle chunk ends the transaction (RFC 3030 2): pipelined
 * chunks after it are refused and dropped; the backend goes. */
static void
test_bdat_refused_chunk_ends_the_transaction(void **state)
{
	struct fixture *f = *state;

	to_bdat_ready(f);
	feeds(f, "BDAT 2\r\nabBDAT 2 LAST\r\ncdNOOP\r\n");
	stream_chunk(f, "ab");
	reply_ok(f, 452, "4.3.1 out of space");
	assert_true(f->s.drop_backend);
	assert_false(f->s.in_mail);
	f->s.drop_backend = false;
	assert_int_equal(smtp_input(&f->s, &f->in), SMTP_ACT_NONE);
	assert_string_equal(replies(f), "452 4.3.1 out of space\r\n"
					"503 5.5.1 Need MAIL command\r\n"
					"250 2.0.0 OK\r\n");
}

/* A BDAT that never reached the backend (it was lost, or the worker
 * refused it): its chunk is still skipped. */
static void
test_bdat_backend_lost_before_the_chunk(void **state)
{
	struct fixture *f = *state;

	to_bdat_ready(f);
	feeds(f, "BDAT 4 LAST\r\nNOOPNOOP\r\n");
	assert_int_equal(f->s.state, SMTP_BACKEND);
	smtp_backend_failed(&f->s, SMTP_BACKEND_LOST);
	assert_int_equal(f->s.skip_left, 4);
	assert_int_equal(f->s.chunk_left, 0);
	assert_int_equal(smtp_input(&f->s, &f->in), SMTP_ACT_NONE);
	assert_string_equal(replies(f), "451 4.4.2 Connection to mail server "
					"lost, try again later\r\n"
					"250 2.0.0 OK\r\n");
	/* Cut mid-chunk (the worker sinks and refuses at its end). */
	to_transaction(f, 0, true);
	feeds(f, "BDAT 4\r\nNO");
	smtp_chunk_begin(&f->s);
	buf_consume(&f->in, 2);
	f->s.chunk_left -= 2;
	smtp_data_refused(&f->s, "451 4.4.2 lost");
	assert_int_equal(f->s.skip_left, 2);
	feeds(f, "OPNOOP\r\n");
	assert_string_equal(replies(f), "451 4.4.2 lost\r\n250 2.0.0 OK\r\n");
}

static void
test_mail_body_binarymime_refused(void **state)
{
	struct fixture *f = *state;

	to_authed(f);
	feeds(f, "MAIL FROM:<a@b> BODY=BINARYMIME\r\n");
	assert_non_null(strstr(replies(f), "555 5.5.4 "));
	assert_int_equal(feeds(f, "MAIL FROM:<a@b> BODY=8BITMIME\r\n"),
			 SMTP_ACT_FORWARD);
}

/* Debug tracing sees verbs and reply codes, never an argument. */
static char trace_log[1024];

static void
trace(void *ctx, const char *verb, int code)
{
	size_t n = strlen(trace_log);

	assert_ptr_equal(ctx, trace_log);
	if (verb != NULL)
		snprintf(trace_log + n, sizeof(trace_log) - n, "%s ", verb);
	else
		snprintf(trace_log + n, sizeof(trace_log) - n, "%d ", code);
}

static void
test_trace_verbs_and_codes(void **state)
{
	struct fixture *f = *state;

	trace_log[0] = '\0';
	f->s.trace = trace;
	f->s.trace_ctx = trace_log;
	smtp_start(&f->s);
	to_tls_ehlo(f);
	assert_int_equal(feeds(f, "AUTH LOGIN\r\nZGVtbw==\r\ncHc=\r\n"),
			 SMTP_ACT_AUTH);
	smtp_auth_result(&f->s, false);
	feeds(f, "FROB x\r\nNOOP\r\n");
	assert_string_equal(trace_log,
			    "220 EHLO 250 STARTTLS 220 EHLO 250 AUTH 334 "
			    "auth-response 334 auth-response 535 "
			    "unrecognized 500 NOOP 250 ");
}

/* ---- OAUTHBEARER and XOAUTH2 (RFC 7628) ---- */

static const struct smtp_params params_oauth = {
	.hostname = "mx.test",
	.mode = LISTENER_STARTTLS,
	.auth_mechs = AUTH_MECH_PLAIN | AUTH_MECH_LOGIN | AUTH_MECH_OAUTH,
	.max_line = 1000,
	.max_auth_line = 12288,
	.max_message_size = 1000000,
	.max_recipients = 3,
	.max_errors = 8,
	.max_auth_failures = 4,
};

static int
setup_oauth(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	fail_size = 0;
	smtp_init(&f->s, &params_oauth, false);
	buf_init(&f->in, 12288 + 16384);
	*state = f;
	return 0;
}

/* "AUTH <mech> <base64 of raw>\r\n" (or the bare base64 line when mech
 * is NULL) into line. */
static void
oauth_line(char *line, size_t size, const char *mech, const char *raw)
{
	int n = mech != NULL ? snprintf(line, size, "AUTH %s ", mech) : 0;
	ssize_t b = sasl_b64_encode((const unsigned char *)raw, strlen(raw),
				    line + n, size - (size_t)n - 3);

	assert_true(b > 0);
	memcpy(line + n + b, "\r\n", 3);
}

static const char bearer_ir[] =
	"n,a=alice,\001host=mx.test\001port=587\001auth=Bearer tok-123\001\001";
static const char xoauth2_ir[] = "user=bob\001auth=Bearer abc.def\001\001";

static void
test_oauth_offered_after_tls_only(void **state)
{
	struct fixture *f = *state;
	atomic_uint live;
	struct smtp_params p = params_oauth;

	feeds(f, "EHLO c.test\r\n");
	assert_null(strstr(replies(f), "AUTH"));
	feeds(f, "AUTH XOAUTH2 dXNlcj1ib2IBAQ==\r\n");
	assert_non_null(strstr(replies(f), "538 5.7.11"));
	to_tls_ehlo(f);
	feeds(f, "EHLO c.test\r\n");
	assert_non_null(strstr(replies(f),
			       "250-AUTH PLAIN LOGIN OAUTHBEARER XOAUTH2\r\n"));

	/* A back end that cannot check tokens now: not offered, refused. */
	atomic_init(&live, AUTH_MECH_PLAIN | AUTH_MECH_LOGIN);
	p.mechs_live = &live;
	f->s.p = &p;
	feeds(f, "EHLO c.test\r\n");
	assert_non_null(strstr(replies(f), "250-AUTH PLAIN LOGIN\r\n"));
	feeds(f, "AUTH XOAUTH2\r\nAUTH OAUTHBEARER\r\n");
	assert_string_equal(replies(f),
			    "504 5.5.4 Unrecognized authentication type\r\n"
			    "504 5.5.4 Unrecognized authentication type\r\n");
	f->s.p = &params_oauth;
}

static void
test_oauthbearer_ok_keeps_response_and_canonical_login(void **state)
{
	struct fixture *f = *state;
	char line[512];

	to_tls_ehlo(f);
	oauth_line(line, sizeof(line), "OAUTHBEARER", bearer_ir);
	assert_int_equal(feeds(f, line), SMTP_ACT_AUTH);
	assert_string_equal(replies(f), "");
	assert_string_equal(f->s.auth_mech, "OAUTHBEARER");
	assert_string_equal(f->s.creds->user, "alice");
	assert_non_null(f->s.creds->oauth);
	assert_string_equal(f->s.creds->oauth->dec.token, "tok-123");
	/* The base64 as the client sent it, for Dovecot. */
	assert_int_equal(f->s.creds->oauth->b64_len,
			 strlen(line) - strlen("AUTH OAUTHBEARER \r\n"));
	assert_memory_equal(f->s.creds->oauth->b64, line + 17,
			    f->s.creds->oauth->b64_len);
	smtp_auth_answer_status(&f->s, SMTP_AUTH_OK, "alice@example.org", NULL,
				NULL);
	assert_string_equal(replies(f),
			    "235 2.7.0 Authentication successful\r\n");
	assert_true(f->s.authed);
	assert_string_equal(smtp_user(&f->s), "alice@example.org");
	assert_null(f->s.creds);
}

static void
test_oauth_error_exchange(void **state)
{
	struct fixture *f = *state;
	char line[512];
	const char *json = "{\"status\":\"invalid_token\",\"scope\":\"mail\"}";
	char want[256];
	ssize_t n;

	to_tls_ehlo(f);
	oauth_line(line, sizeof(line), "OAUTHBEARER", bearer_ir);
	assert_int_equal(feeds(f, line), SMTP_ACT_AUTH);
	smtp_auth_answer_status(&f->s, SMTP_AUTH_FAIL, NULL, NULL, json);
	memcpy(want, "334 ", 4);
	n = sasl_b64_encode((const unsigned char *)json, strlen(json), want + 4,
			    sizeof(want) - 6);
	memcpy(want + 4 + n, "\r\n", 3);
	assert_string_equal(replies(f), want);
	assert_int_equal(f->s.state, SMTP_AUTH_OAUTH_ERROR);
	assert_int_equal(f->s.auth_failures, 1); /* counted at the verdict */
	assert_null(f->s.creds);		 /* the token is gone */
	assert_false(f->s.authed);
	/* The client's ^A: then the 535. */
	assert_int_equal(feeds(f, "AQ==\r\n"), SMTP_ACT_NONE);
	assert_string_equal(replies(f),
			    "535 5.7.8 Authentication credentials invalid\r\n");
	assert_int_equal(f->s.state, SMTP_IDLE);
	assert_int_equal(f->s.auth_failures, 1);

	/* XOAUTH2, with the response on its own line, a generic status, and
	 * the ^A split at every byte. */
	feeds(f, "AUTH XOAUTH2\r\n");
	assert_string_equal(replies(f), "334 \r\n");
	oauth_line(line, sizeof(line), NULL, xoauth2_ir);
	assert_int_equal(feeds(f, line), SMTP_ACT_AUTH);
	assert_string_equal(f->s.creds->user, "bob");
	smtp_auth_answer_status(&f->s, SMTP_AUTH_FAIL, NULL, NULL, NULL);
	assert_string_equal(replies(f),
			    "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n");
	for (const char *p = "AQ==\r\n"; *p != '\0'; p++)
		feed(f, p, 1);
	assert_string_equal(replies(f),
			    "535 5.7.8 Authentication credentials invalid\r\n");

	/* A status that is no JSON object is not relayed. */
	feeds(f, "AUTH XOAUTH2\r\n");
	replies(f);
	feeds(f, line);
	smtp_auth_answer_status(&f->s, SMTP_AUTH_FAIL, NULL, NULL,
				"not json\r\n535 5.7.8 x");
	assert_string_equal(replies(f),
			    "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n");
	/* "*" cancels instead. */
	feeds(f, "*\r\n");
	assert_string_equal(replies(f),
			    "501 5.7.0 Authentication cancelled\r\n");
	assert_int_equal(f->s.state, SMTP_IDLE);
}

static void
test_oauth_temp_failure_and_last_failure(void **state)
{
	struct fixture *f = *state;
	char line[512];

	to_tls_ehlo(f);
	oauth_line(line, sizeof(line), "XOAUTH2", xoauth2_ir);
	assert_int_equal(feeds(f, line), SMTP_ACT_AUTH);
	smtp_auth_answer_status(&f->s, SMTP_AUTH_TEMP, NULL, NULL,
				"{\"status\":\"x\"}");
	assert_string_equal(replies(f),
			    "454 4.7.0 Temporary authentication failure\r\n");
	assert_int_equal(f->s.auth_failures, 0);
	assert_int_equal(f->s.state, SMTP_IDLE);
	/* The failure that reaches auth.max_failures closes at once: no
	 * exchange to wait for. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(feeds(f, line), SMTP_ACT_AUTH);
		smtp_auth_answer_status(&f->s, SMTP_AUTH_FAIL, NULL, NULL,
					NULL);
		feeds(f, "AQ==\r\n");
		replies(f);
	}
	assert_int_equal(feeds(f, line), SMTP_ACT_AUTH);
	smtp_auth_answer_status(&f->s, SMTP_AUTH_FAIL, NULL, NULL, NULL);
	assert_non_null(
		strstr(replies(f), "421 4.7.0 mx.test Too many failed"));
	assert_int_equal(f->s.state, SMTP_CLOSING);
}

static void
test_oauth_malformed_responses(void **state)
{
	struct fixture *f = *state;
	char line[512];

	to_tls_ehlo(f);
	/* No authzid: the login must be named. */
	oauth_line(line, sizeof(line), "OAUTHBEARER",
		   "n,,\001auth=Bearer tok\001\001");
	assert_int_equal(feeds(f, line), SMTP_ACT_NONE);
	assert_string_equal(replies(f),
			    "501 5.5.2 Malformed OAUTHBEARER response\r\n");
	assert_null(f->s.creds);
	/* XOAUTH2 without user=. */
	oauth_line(line, sizeof(line), "XOAUTH2", "auth=Bearer tok\001\001");
	feeds(f, line);
	assert_string_equal(replies(f),
			    "501 5.5.2 Malformed XOAUTH2 response\r\n");
	feeds(f, "AUTH XOAUTH2 not*base64\r\n");
	assert_string_equal(replies(f), "501 5.5.2 Cannot decode response\r\n");
	assert_int_equal(f->s.state, SMTP_IDLE);
	assert_int_equal(f->s.auth_failures, 0);
	/* No memory for the exchange: a temporary failure, nothing held. */
	oauth_line(line, sizeof(line), "XOAUTH2", xoauth2_ir);
	fail_size = sizeof(struct sasl_oauth_exchange) + strlen(line) -
		    strlen("AUTH XOAUTH2 \r\n") + 1;
	assert_int_equal(feeds(f, line), SMTP_ACT_NONE);
	fail_size = 0;
	assert_string_equal(replies(f),
			    "454 4.7.0 Temporary authentication failure\r\n");
	assert_null(f->s.creds);
	assert_int_equal(f->s.state, SMTP_IDLE);
	assert_int_equal(feeds(f, line), SMTP_ACT_AUTH);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_greeting_names_no_software),
		T(test_trace_verbs_and_codes),
		T(test_ehlo_before_tls),
		T(test_auth_before_tls_is_538),
		T(test_mail_before_auth_is_530),
		T(test_starttls_drops_pipelined_bytes),
		T(test_after_tls_ehlo_offers_auth),
		T(test_split_input_every_byte),
		T(test_pipelined_commands_stop_at_action),
		T(test_line_too_long_is_discarded),
		T(test_line_just_fits),
		T(test_auth_line_may_be_long),
		T(test_auth_huge_password_is_checked_and_refused),
		T(test_drain_idle_session_gets_421_at_once),
		T(test_drain_lets_the_transaction_finish),
		T(test_too_many_errors_closes),
		T(test_last_auth_failure_closes),
		T(test_overlong_line_as_last_error_closes),
		T(test_long_backend_reply_fits_whole),
		T(test_client_identity_commands_refused),
		T(test_auth_plain_continuation_and_cancel),
		T(test_auth_plain_equals_is_empty),
		T(test_auth_plain_other_authzid_refused),
		T(test_auth_login),
		T(test_failed_then_good_login_is_the_second),
		T(test_unknown_mechanism_and_cram_md5),
		T(test_second_auth_refused),
		T(test_mail_syntax_and_size),
		T(test_backend_offer),
		T(test_rcpt_and_data_order),
		T(test_backend_failures),
		T(test_multiline_backend_reply_relayed_with_crlf),
		T(test_rset_vrfy_noop_help_quit),
		T(test_auth_failures_capped_per_session),
		T(test_bare_lf_command_line_refused),
		T(test_commands_before_starttls_get_530),
		T(test_endless_line_ends_the_session),
		T(test_endless_auth_line_ends_the_session),
		T(test_http_request_ends_the_session),
		T(test_nul_in_command),
		T(test_ehlo_mid_transaction_drops_backend),
		T(test_helo_name_set_replaced_and_forgotten),
		T(test_helo_name_without_memory),
		T(test_login_kept_only_after_success),
		T(test_login_without_memory),
		T(test_chunking_offered_after_tls_only_when_backends_take_it),
		T(test_bdat_chunks_relayed_in_order),
		T(test_bdat_zero_last_and_every_byte_split),
		T(test_bdat_refusals_skip_the_chunk),
		T(test_bdat_syntax_errors_skip_nothing),
		T(test_bdat_size_and_backend_without_chunking),
		T(test_bdat_and_data_do_not_mix),
		T(test_bdat_refused_chunk_ends_the_transaction),
		T(test_bdat_backend_lost_before_the_chunk),
		T(test_mail_body_binarymime_refused),
#define TO(name) cmocka_unit_test_setup_teardown(name, setup_oauth, teardown)
		TO(test_oauth_offered_after_tls_only),
		TO(test_oauthbearer_ok_keeps_response_and_canonical_login),
		TO(test_oauth_error_exchange),
		TO(test_oauth_temp_failure_and_last_failure),
		TO(test_oauth_malformed_responses),
#undef TO
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
