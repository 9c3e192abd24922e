/*
 * test_dovecot_proto.c - Dovecot's auth protocol, client side
 * (auth/dovecot_proto.c): the server's lines parsed, the tab-escaping,
 * and the handshake and AUTH lines this client writes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth/dovecot_proto.h"
#include "smtp/sasl.h"

#define S(lit) lit, sizeof(lit) - 1

static struct dovecot_line
parse(const char *line, size_t len)
{
	struct dovecot_line l;

	dovecot_parse(line, len, &l);
	return l;
}

static void
test_handshake_lines(void **state)
{
	struct dovecot_line l;

	(void)state;
	l = parse(S("VERSION\t1\t2"));
	assert_int_equal(l.kind, DOVECOT_VERSION);
	assert_int_equal(l.major, 1);
	assert_int_equal(l.minor, 2);
	l = parse(S("MECH\tPLAIN\tplaintext"));
	assert_int_equal(l.kind, DOVECOT_MECH);
	assert_int_equal(l.mech, AUTH_MECH_PLAIN);
	l = parse(S("MECH\tLOGIN\tplaintext"));
	assert_int_equal(l.mech, AUTH_MECH_LOGIN);
	/* Mechanisms this client cannot use, and the rest of the server's
	 * handshake, are ignored. */
	assert_int_equal(parse(S("MECH\tCRAM-MD5\tdictionary")).kind,
			 DOVECOT_IGNORED);
	assert_int_equal(parse(S("SPID\t29138")).kind, DOVECOT_IGNORED);
	assert_int_equal(parse(S("COOKIE\tabcdef")).kind, DOVECOT_IGNORED);
	assert_int_equal(parse(S("DONE")).kind, DOVECOT_DONE);
	assert_int_equal(parse(S("DONE\r")).kind, DOVECOT_DONE);
	/* Malformed. */
	assert_int_equal(parse(S("VERSION\t1")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("VERSION\tx\t2")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("MECH")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("\tOK\t1")).kind, DOVECOT_BAD);
}

static void
test_ok_with_canonical_user(void **state)
{
	struct dovecot_line l;

	(void)state;
	/* As Dovecot 2.3 sends it (with an empty field). */
	l = parse(S("OK\t1\tuser=alice@example.test\t\toriginal_user=alice"));
	assert_int_equal(l.kind, DOVECOT_OK);
	assert_int_equal(l.id, 1);
	assert_string_equal(l.user, "alice@example.test");
	l = parse(S("OK\t4294967295"));
	assert_int_equal(l.kind, DOVECOT_OK);
	assert_int_equal(l.id, 4294967295u);
	assert_string_equal(l.user, "");
	/* Escaped bytes in the name: \001 1 is a control byte. */
	l = parse(S("OK\t2\tuser=a\001\001b"));
	assert_int_equal(l.kind, DOVECOT_BAD);
	l = parse(S("OK\t2\tuser=a\001xb"));
	assert_int_equal(l.kind, DOVECOT_OK);
	assert_string_equal(l.user, "axb");
	/* A name that would split a log or XCLIENT line is refused. */
	assert_int_equal(parse(S("OK\t2\tuser=a\001nb")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("OK\t2\tuser=a\001rb")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("OK\t2\tuser=a\001tb")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("OK\t2\tuser=a\0010b")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("OK\t2\tuser=")).kind, DOVECOT_BAD);
	/* Ids: decimal, 32 bits. */
	assert_int_equal(parse(S("OK\t4294967296")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("OK\t-1")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("OK\t")).kind, DOVECOT_BAD);
	assert_int_equal(parse(S("OK")).kind, DOVECOT_BAD);
}

static void
test_ok_user_too_long(void **state)
{
	char line[600];
	size_t n;

	(void)state;
	n = (size_t)snprintf(line, sizeof(line), "OK\t3\tuser=");
	memset(line + n, 'u', SASL_FIELD_MAX - 1);
	n += SASL_FIELD_MAX - 1;
	assert_int_equal(parse(line, n).kind, DOVECOT_OK);
	assert_int_equal(strlen(parse(line, n).user), SASL_FIELD_MAX - 1);
	line[n++] = 'u';
	assert_int_equal(parse(line, n).kind, DOVECOT_BAD);
}

static void
test_fail(void **state)
{
	struct dovecot_line l;

	(void)state;
	l = parse(S("FAIL\t7\tuser=bob"));
	assert_int_equal(l.kind, DOVECOT_FAIL);
	assert_int_equal(l.id, 7);
	assert_false(l.temp);
	l = parse(S("FAIL\t8\treason=Internal error\ttemp"));
	assert_int_equal(l.kind, DOVECOT_FAIL);
	assert_true(l.temp);
	assert_string_equal(l.reason, "Internal error");
	/* Control bytes in a reason become '?'; it is cut to fit. */
	l = parse(S("FAIL\t9\treason=a\001nb\001tc"));
	assert_string_equal(l.reason, "a?b?c");
	{
		char line[400];
		size_t n = (size_t)snprintf(line, sizeof(line),
					    "FAIL\t1\treason=");

		memset(line + n, 'r', 300);
		l = parse(line, n + 300);
		assert_int_equal(l.kind, DOVECOT_FAIL);
		assert_int_equal(strlen(l.reason), DOVECOT_REASON_MAX - 1);
	}
	/* "temp" only as a whole field. */
	assert_false(parse(S("FAIL\t1\ttemporary")).temp);
	l = parse(S("CONT\t5\tVXNlcm5hbWU6"));
	assert_int_equal(l.kind, DOVECOT_CONT);
	assert_int_equal(l.id, 5);
}

static void
test_unescape(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(dovecot_unescape(S("a\001tb"), out, sizeof(out)), 3);
	assert_memory_equal(out, "a\tb", 4);
	assert_int_equal(
		dovecot_unescape(S("\001l\001n\001r\0011"), out, sizeof(out)),
		4);
	assert_memory_equal(out, "\n\n\r\001", 5);
	assert_int_equal(dovecot_unescape(S("\001"), out, sizeof(out)), -1);
	assert_int_equal(dovecot_unescape(S("\0010"), out, sizeof(out)), -1);
	assert_int_equal(dovecot_unescape(S("1234567"), out, sizeof(out)), 7);
	assert_int_equal(dovecot_unescape(S("12345678"), out, sizeof(out)), -1);
	assert_int_equal(dovecot_unescape(S(""), out, 0), -1);
}

static void
test_line_len(void **state)
{
	(void)state;
	assert_int_equal(dovecot_line_len(S("DONE\nOK")), 5);
	assert_int_equal(dovecot_line_len(S("DONE")), 0);
	assert_int_equal(dovecot_line_len(S("")), 0);
}

static void
test_format(void **state)
{
	char out[2048];
	struct dovecot_auth a = {
		.id = 42,
		.user = "alice",
		.pass = "pw",
		.rip = "192.0.2.7",
		.lip = "198.51.100.1",
		.rport = 40000,
		.lport = 587,
		.secured = true,
	};
	ssize_t n;

	(void)state;
	n = dovecot_format_handshake(out, sizeof(out), 123);
	assert_int_equal(n, strlen("VERSION\t1\t2\nCPID\t123\n"));
	assert_string_equal(out, "VERSION\t1\t2\nCPID\t123\n");
	assert_int_equal(dovecot_format_handshake(out, 10, 123), -1);

	n = dovecot_format_auth(out, sizeof(out), &a);
	/* base64("\0alice\0pw") */
	assert_string_equal(out, "AUTH\t42\tPLAIN\tservice=smtp\tno-penalty"
				 "\trip=192.0.2.7\trport=40000"
				 "\tlip=198.51.100.1\tlport=587\tsecured"
				 "\tresp=AGFsaWNlAHB3\n");
	assert_int_equal(n, strlen(out));
	assert_int_equal(dovecot_format_auth(out, (size_t)n, &a), -1);
	a.secured = false;
	a.lip = "";
	dovecot_format_auth(out, sizeof(out), &a);
	assert_string_equal(out, "AUTH\t42\tPLAIN\tservice=smtp\tno-penalty"
				 "\trip=192.0.2.7\trport=40000"
				 "\tresp=AGFsaWNlAHB3\n");
	/* Nothing that splits the line goes in a field. */
	a.rip = "1.2.3.4\tsecured";
	assert_int_equal(dovecot_format_auth(out, sizeof(out), &a), -1);
	a.rip = "";
	a.user = "";
	assert_int_equal(dovecot_format_auth(out, sizeof(out), &a), -1);
	/* A TAB or LF in the name or password is inside the base64. */
	a.user = "a\tb\nc";
	a.pass = "p\r\nq";
	n = dovecot_format_auth(out, sizeof(out), &a);
	assert_true(n > 0);
	assert_null(memchr(out, '\r', (size_t)n));
	assert_ptr_equal(memchr(out, '\n', (size_t)n), out + n - 1);
}

/* OAUTHBEARER and XOAUTH2: offered by MECH, sent with the client's
 * response as it came, refused with the JSON status in FAIL's resp=. */
static void
test_oauth(void **state)
{
	struct dovecot_line l;
	char out[DOVECOT_LINE_MAX + 64];
	static char big[DOVECOT_LINE_MAX];
	struct dovecot_auth a = {
		.id = 7,
		.user = "",
		.pass = "",
		.rip = "192.0.2.7",
		.lip = "",
		.rport = 40000,
		.secured = true,
		.mech = "XOAUTH2",
		.resp = "dXNlcj1ib2IBYXV0aD1CZWFyZXIgYWJjAQE=",
	};
	ssize_t n;

	(void)state;
	l = parse(S("MECH\tOAUTHBEARER\tplaintext"));
	assert_int_equal(l.kind, DOVECOT_MECH);
	assert_int_equal(l.mech, AUTH_MECH_OAUTHBEARER);
	l = parse(S("MECH\txoauth2"));
	assert_int_equal(l.mech, AUTH_MECH_XOAUTH2);

	/* base64 of {"status":"invalid_token"} */
	l = parse(S("FAIL\t9\tuser=bob\t"
		    "resp=eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0="));
	assert_int_equal(l.kind, DOVECOT_FAIL);
	assert_string_equal(l.status, "{\"status\":\"invalid_token\"}");
	/* Not a JSON object, not base64, a control byte: dropped. */
	assert_string_equal(parse(S("FAIL\t9\tresp=bm90IGpzb24=")).status, "");
	assert_string_equal(parse(S("FAIL\t9\tresp=*")).status, "");
	assert_string_equal(parse(S("FAIL\t9\tresp=ewp9")).status, "");
	assert_int_equal(parse(S("FAIL\t9\tresp=*")).kind, DOVECOT_FAIL);
	/* The longest status is kept whatever its length's remainder by 3
	 * (511 and 512 bytes encode to 684 characters); one byte more is
	 * dropped. */
	for (size_t want = SASL_STATUS_MAX - 2; want <= SASL_STATUS_MAX + 1;
	     want++) {
		static char json[SASL_STATUS_MAX + 2], line[1024];
		char b64[SASL_CHALLENGE_MAX + 8];
		int at;

		memset(json, 'x', want);
		memcpy(json, "{\"s\":\"", 6);
		memcpy(json + want - 2, "\"}", 2);
		json[want] = '\0';
		assert_true(sasl_b64_encode((const unsigned char *)json, want,
					    b64, sizeof(b64)) > 0);
		at = snprintf(line, sizeof(line), "FAIL\t9\tresp=%s", b64);
		l = parse(line, (size_t)at);
		assert_string_equal(l.status,
				    want <= SASL_STATUS_MAX ? json : "");
	}

	n = dovecot_format_auth(out, sizeof(out), &a);
	assert_string_equal(out,
			    "AUTH\t7\tXOAUTH2\tservice=smtp\tno-penalty"
			    "\trip=192.0.2.7\trport=40000\tsecured"
			    "\tresp=dXNlcj1ib2IBYXV0aD1CZWFyZXIgYWJjAQE=\n");
	assert_int_equal(n, strlen(out));
	a.mech = "OAUTHBEARER";
	assert_true(dovecot_format_auth(out, sizeof(out), &a) > 0);
	assert_non_null(strstr(out, "\tOAUTHBEARER\t"));
	/* Only base64 goes on the line; only the two mechanisms. */
	a.resp = "abc\tsecured";
	assert_int_equal(dovecot_format_auth(out, sizeof(out), &a), -1);
	a.resp = "";
	assert_int_equal(dovecot_format_auth(out, sizeof(out), &a), -1);
	a.resp = "AAAA";
	a.mech = "GSSAPI";
	assert_int_equal(dovecot_format_auth(out, sizeof(out), &a), -1);
	/* A line Dovecot would refuse is not written. */
	memset(big, 'A', sizeof(big) - 1);
	a.mech = "XOAUTH2";
	a.resp = big;
	assert_int_equal(dovecot_format_auth(out, sizeof(out), &a), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_lines),
		cmocka_unit_test(test_ok_with_canonical_user),
		cmocka_unit_test(test_ok_user_too_long),
		cmocka_unit_test(test_fail),
		cmocka_unit_test(test_unescape),
		cmocka_unit_test(test_line_len),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_oauth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
