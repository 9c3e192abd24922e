/*
 * test_blocklist_file.c - blocklist files (blocklist_file.c): comments,
 * blanks, CRLF, sorting and duplicates, and every refusal with its
 * "FILE:LINE: why" error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bans/blocklist_file.h"

#define S(lit) lit, sizeof(lit) - 1

static struct ipnet
P(const char *s) {
	struct ipnet n;
	const char *why = ipnet_parse(s, &n);

	if (why != NULL)
		fail_msg("%s: %s", s, why);
	return n;
}

/* Parse text as a file named "bl"; the caller frees the list. */
static struct blocklist_file
parse_ok(const char *text, size_t len, size_t max)
{
	struct blocklist_file l;
	char err[512] = "";

	if (blocklist_file_parse("bl", text, len, max, &l, err, sizeof(err)) !=
	    0)
		fail_msg("refused: %s", err);
	return l;
}

static void
parse_bad(const char *text, size_t len, size_t max, const char *want)
{
	struct blocklist_file l = {.n = 99};
	char err[512] = "";

	assert_int_equal(blocklist_file_parse("bl", text, len, max, &l, err,
					      sizeof(err)),
			 -1);
	if (strcmp(err, want) != 0)
		fail_msg("error \"%s\", want \"%s\"", err, want);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
}

static void
expect_entry(const struct blocklist_file *l, size_t i, const char *want)
{
	char buf[IPNET_TEXT_MAX];

	assert_true(i < l->n);
	assert_string_equal(ipnet_format(&l->v[i], buf, sizeof(buf)), want);
}

static void
test_parse(void **state)
{
	static const char text[] =
		"# Blocklist, one prefix per line\n"
		"\n"
		"203.0.113.0/24\n"
		"   198.51.100.7   # a password guesser\n"
		"2001:db8:dead::/48\r\n"
		"\t\r\n"
		"#203.0.113.99\n"
		"192.0.2.0/25#no space before the comment\n"
		"203.0.113.0/24\n" /* duplicate */
		"203.0.113.0/24 ; SBL0001, Spamhaus DROP style\n"
		";203.0.113.98\n"
		"198.51.100.0/24"; /* no final newline */
	struct blocklist_file l;
	struct ipnet n;

	(void)state;
	l = parse_ok(S(text), 100);
	assert_int_equal(l.n, 5);
	/* Sorted by the 16-byte form: IPv6 (2001:...) after IPv4-mapped
	 * (::ffff:...), addresses before lengths. */
	expect_entry(&l, 0, "192.0.2.0/25");
	expect_entry(&l, 1, "198.51.100.0/24");
	expect_entry(&l, 2, "198.51.100.7/32");
	expect_entry(&l, 3, "203.0.113.0/24");
	expect_entry(&l, 4, "2001:db8:dead::/48");
	n = P("198.51.100.7");
	assert_true(blocklist_file_has(&l, &n));
	n = P("198.51.100.8");
	assert_false(blocklist_file_has(&l, &n));
	n = P("203.0.113.99");
	assert_false(blocklist_file_has(&l, &n));
	n = P("203.0.113.0/25");
	assert_false(blocklist_file_has(&l, &n));
	blocklist_file_free(&l);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
}

static void
test_parse_empty(void **state)
{
	struct blocklist_file l;
	struct ipnet n = P("192.0.2.1");

	(void)state;
	l = parse_ok("", 0, 10);
	assert_int_equal(l.n, 0);
	assert_false(blocklist_file_has(&l, &n));
	blocklist_file_free(&l);
	l = parse_ok(S("# nothing\n\n  \n;\n"), 10);
	assert_int_equal(l.n, 0);
	blocklist_file_free(&l);
}

static void
test_parse_errors(void **state)
{
	char *big;

	(void)state;
	parse_bad(S("192.0.2.0/24\nexample.org\n"), 10,
		  "bl:2: expected an address or prefix, e.g. 192.0.2.0/24: "
		  "\"example.org\"");
	parse_bad(S("\n\n\n192.0.2.1/24 # oops\n"), 10,
		  "bl:4: host bits set after the prefix length: "
		  "\"192.0.2.1/24\"");
	parse_bad(S("192.0.2.0/33\n"), 10,
		  "bl:1: IPv4 prefix length is at most 32: \"192.0.2.0/33\"");
	parse_bad(S("192.0.2.0/-1\n"), 10,
		  "bl:1: bad prefix length: \"192.0.2.0/-1\"");
	parse_bad(S("192.0.2.1 192.0.2.2\n"), 10,
		  "bl:1: expected an address or prefix, e.g. 192.0.2.0/24: "
		  "\"192.0.2.1 192.0.2.2\"");
	/* A NUL inside a line is refused, not read as the end of it. */
	parse_bad(S("192.0.2.1\0/8\n"), 10,
		  "bl:1: expected an address or prefix, e.g. 192.0.2.0/24: "
		  "\"192.0.2.1?/8\"");
	parse_bad(S("\x01\xff\n"), 10,
		  "bl:1: expected an address or prefix, e.g. 192.0.2.0/24: "
		  "\"??\"");
	parse_bad(S("192.0.2.1\n192.0.2.2\n192.0.2.3\n"), 2,
		  "bl:3: more than 2 entries");
	/* Duplicates count towards the maximum while parsing. */
	parse_bad(S("192.0.2.1\n192.0.2.1\n"), 1, "bl:2: more than 1 entries");
	big = malloc(BLOCKLIST_FILE_LINE_MAX + 20);
	assert_non_null(big);
	memset(big, ' ', BLOCKLIST_FILE_LINE_MAX + 20);
	memcpy(big, "192.0.2.0/24\n", 13);
	big[BLOCKLIST_FILE_LINE_MAX + 19] = '\n';
	parse_bad(big, BLOCKLIST_FILE_LINE_MAX + 20, 10,
		  "bl:2: line longer than 1024 bytes");
	free(big);
}

/* Errors quote at most 64 bytes of the line. */
static void
test_parse_error_quote_cut(void **state)
{
	char line[200], err[512];
	struct blocklist_file l;
	const char *q;

	(void)state;
	memset(line, 'x', sizeof(line));
	assert_int_equal(blocklist_file_parse("bl", line, sizeof(line), 10, &l,
					      err, sizeof(err)),
			 -1);
	q = strchr(err, '"');
	assert_non_null(q);
	assert_int_equal(strlen(q), 64 + 2);
}

/* A line of exactly BLOCKLIST_FILE_LINE_MAX bytes is fine. */
static void
test_parse_line_max(void **state)
{
	char *line = malloc(BLOCKLIST_FILE_LINE_MAX + 1);
	struct blocklist_file l;

	(void)state;
	assert_non_null(line);
	memset(line, ' ', BLOCKLIST_FILE_LINE_MAX);
	memcpy(line, "192.0.2.0/24 #", 14);
	line[BLOCKLIST_FILE_LINE_MAX] = '\n';
	l = parse_ok(line, BLOCKLIST_FILE_LINE_MAX + 1, 10);
	assert_int_equal(l.n, 1);
	blocklist_file_free(&l);
	free(line);
}

/* Every split of a valid file into "first part + rest" parses as the
 * first part alone would, or is refused at the cut line: no byte is ever
 * read past len. */
static void
test_parse_every_length(void **state)
{
	static const char text[] = "192.0.2.0/24\n# c\n2001:db8::/32 ; x\n";
	char err[512];

	(void)state;
	for (size_t len = 0; len <= sizeof(text) - 1; len++) {
		char *copy = malloc(len ? len : 1);
		struct blocklist_file l;

		assert_non_null(copy);
		memcpy(copy, text, len);
		(void)blocklist_file_parse("bl", copy, len, 10, &l, err,
					   sizeof(err));
		blocklist_file_free(&l);
		free(copy);
	}
}

static void
test_merge(void **state)
{
	struct blocklist_file a, b;

	(void)state;
	a = parse_ok(S("192.0.2.0/24\n203.0.113.0/24\n"), 10);
	b = parse_ok(S("203.0.113.0/24\n2001:db8::/32\n10.0.0.0/8\n"), 10);
	assert_int_equal(blocklist_file_merge(&a, &b), 0);
	assert_int_equal(a.n, 4);
	for (size_t i = 1; i < a.n; i++)
		assert_true(blocklist_file_cmp(&a.v[i - 1], &a.v[i]) < 0);
	blocklist_file_free(&a);
	blocklist_file_free(&b);
}

static void
test_read(void **state)
{
	char path[] = "/tmp/test_blocklist_file_XXXXXX", err[512];
	struct blocklist_file l;
	FILE *f;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs("203.0.113.0/24\n# c\n2001:db8::/32\n", f);
	fclose(f);
	assert_int_equal(blocklist_file_read(path, 10, &l, err, sizeof(err)),
			 0);
	assert_int_equal(l.n, 2);
	blocklist_file_free(&l);

	f = fopen(path, "a");
	assert_non_null(f);
	fputs("bad\n", f);
	fclose(f);
	assert_int_equal(blocklist_file_read(path, 10, &l, err, sizeof(err)),
			 -1);
	assert_true(strncmp(err, path, strlen(path)) == 0);
	assert_string_equal(err + strlen(path),
			    ":4: expected an address or prefix, e.g. "
			    "192.0.2.0/24: \"bad\"");
	assert_int_equal(l.n, 0);
	unlink(path);

	assert_int_equal(blocklist_file_read(path, 10, &l, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "No such file or directory"));
	assert_int_equal(blocklist_file_read("/tmp", 10, &l, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "/tmp: not a regular file of at most 64 MiB");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_empty),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_error_quote_cut),
		cmocka_unit_test(test_parse_line_max),
		cmocka_unit_test(test_parse_every_length),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_read),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
