/*
 * test_log.c - log lines: log_kv_to_json(), log_quote(), the level and
 * facility names.
 *
 * The JSON form must always be valid JSON, whatever the key=value line
 * holds (quoted client bytes, cut lines), and say what the line said.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/log.h"

static void
assert_json(const char *kv, const char *want)
{
	char out[1024];
	size_t n = log_kv_to_json(out, sizeof(out), kv, strlen(kv));

	assert_true(n < sizeof(out));
	out[n] = '\0';
	assert_string_equal(out, want);
}

static void
test_json_fields(void **state)
{
	(void)state;
	assert_json("ts=2026-01-02T03:04:05.006Z level=info msg=auth "
		    "session=1a client=198.51.100.7 port=50000",
		    "{\"ts\":\"2026-01-02T03:04:05.006Z\",\"level\":\"info\","
		    "\"msg\":\"auth\",\"session\":\"1a\","
		    "\"client\":\"198.51.100.7\",\"port\":50000}");
	/* Keys that name things stay strings, even all digits. */
	assert_json("session=10 user=1234 messages=0 bytes=-5",
		    "{\"session\":\"10\",\"user\":\"1234\",\"messages\":0,"
		    "\"bytes\":-5}");
	/* Not JSON numbers: leading zeros, too long, mixed. */
	assert_json("a=007 b=12345678901234567 c=1.5 d=- e=",
		    "{\"a\":\"007\",\"b\":\"12345678901234567\",\"c\":\"1.5\","
		    "\"d\":\"-\",\"e\":\"\"}");
	assert_json("", "{}");
	assert_json("flag", "{\"flag\":true}");
}

static void
test_json_quoted(void **state)
{
	char q[256], kv[300];

	(void)state;
	assert_json("error=\"a b \\\"c\\\" \\\\ d\" next=1",
		    "{\"error\":\"a b \\\"c\\\" \\\\ d\",\"next\":1}");
	/* log_quote() output round-trips: control bytes, high bytes, '='. */
	log_quote(q, sizeof(q), "x\ty\r\n\x01\xc3\xa9=", 9);
	snprintf(kv, sizeof(kv), "user=%s n=2", q);
	assert_json(kv, "{\"user\":\"x\\u0009y\\u000d\\u000a\\u0001\\u00c3"
			"\\u00a9=\",\"n\":2}");
	/* A line cut inside a quoted value still closes it. */
	assert_json("detail=\"never closed", "{\"detail\":\"never closed\"}");
	/* Raw bytes that did not go through log_quote(): still valid. */
	assert_json("k=\x7f\xff", "{\"k\":\"\\u007f\\u00ff\"}");
}

static void
test_json_truncated(void **state)
{
	char out[64], big[200];
	size_t n;

	(void)state;
	memset(big, 0, sizeof(big));
	strcpy(big, "a=1 b=");
	memset(big + 6, 'x', 120);
	n = log_kv_to_json(out, sizeof(out), big, strlen(big));
	assert_true(n < sizeof(out));
	out[n] = '\0';
	assert_string_equal(out, "{\"a\":1,\"truncated\":true}");

	n = log_kv_to_json(out, sizeof(out), big + 4, strlen(big + 4));
	out[n] = '\0';
	assert_string_equal(out, "{\"truncated\":true}");
}

static void
test_names(void **state)
{
	enum log_level l;

	(void)state;
	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_level_parse("verbose", &l), -1);
	assert_int_equal(log_facility_parse("mail"), 2);
	assert_int_equal(log_facility_parse("daemon"), 3);
	assert_int_equal(log_facility_parse("local7"), 23);
	assert_int_equal(log_facility_parse("kern"), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_fields),
		cmocka_unit_test(test_json_quoted),
		cmocka_unit_test(test_json_truncated),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
