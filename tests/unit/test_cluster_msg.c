/*
 * test_cluster_msg.c - the bans' publish messages between nodes
 * (proxy/cluster/cluster_msg.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cluster/cluster_msg.h"

#define S(lit) lit, sizeof(lit) - 1

static void
test_add(void **state)
{
	struct cluster_msg m;
	char text[IPNET_TEXT_MAX];

	(void)state;
	assert_true(cluster_msg_parse(
		S("add 198.51.100.0/24 3600000 1 node1#0011223344556677"), &m));
	assert_true(m.add);
	assert_string_equal(ipnet_format(&m.net, text, sizeof(text)),
			    "198.51.100.0/24");
	assert_int_equal(m.ttl_ms, 3600000);
	assert_int_equal(m.reason, 1);
	assert_string_equal(m.origin, "node1#0011223344556677");
	assert_true(cluster_msg_parse(S("add 2001:db8::/32 0 2 n#1"), &m));
	assert_int_equal(m.ttl_ms, 0);
	assert_int_equal(m.reason, 2);
}

static void
test_del(void **state)
{
	struct cluster_msg m;

	(void)state;
	assert_true(cluster_msg_parse(S("del 198.51.100.7/32 a#b"), &m));
	assert_false(m.add);
	assert_int_equal(m.net.len, 128);
	assert_string_equal(m.origin, "a#b");
}

static void
test_files(void **state)
{
	struct cluster_msg m;

	(void)state;
	assert_true(cluster_msg_parse(S("files node2#0011223344556677"), &m));
	assert_true(m.files);
	assert_false(m.add);
	assert_string_equal(m.origin, "node2#0011223344556677");
}

static void
test_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"add",
		"add 198.51.100.0/24",
		"add 198.51.100.0/24 10 1",   /* no origin */
		"add 198.51.100.0/24 10 0 n", /* reason: a file's */
		"add 198.51.100.0/24 10 3 n", /* no such reason */
		"add 198.51.100.0/24 -1 1 n", /* a sign */
		"add 198.51.100.0/24 99999999999999999999 1 n", /* overflow */
		"add 198.51.100.0/33 10 1 n",	    /* not a prefix */
		"add 198.51.100.0/24 10 1 n extra", /* more words */
		"add  198.51.100.0/24 10 1 n",	    /* an empty word */
		"add 198.51.100.0/24 10 1 n ",	    /* a trailing space */
		"del 198.51.100.0/24",		    /* no origin */
		"del 198.51.100.0/24 n\x01",	    /* a control byte */
		"ban 198.51.100.0/24 n",
		"addx 198.51.100.0/24 10 1 n",
		"files",		   /* no origin */
		"files n extra",	   /* more words */
		"files 198.51.100.0/24 n", /* a prefix has no place */
		"filesx n",
	};
	struct cluster_msg m;
	char big[CLUSTER_MSG_MAX + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_false(cluster_msg_parse(bad[i], strlen(bad[i]), &m));
	memset(big, 'a', sizeof(big));
	memcpy(big, "del 198.51.100.0/24 ", 20);
	assert_false(cluster_msg_parse(big, sizeof(big), &m));
	/* An origin that does not fit. */
	char line[200] = "del 198.51.100.0/24 ";
	size_t n = strlen(line);
	memset(line + n, 'x', CLUSTER_ORIGIN_MAX);
	assert_false(cluster_msg_parse(line, n + CLUSTER_ORIGIN_MAX, &m));
	assert_true(cluster_msg_parse(line, n + CLUSTER_ORIGIN_MAX - 1, &m));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_del),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
