/*
 * test_smtp_reply.c - the incremental backend reply parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_reply.h"

#define S(lit) lit, sizeof(lit) - 1

static struct smtp_reply *
new_reply(void)
{
	struct smtp_reply *r = malloc(sizeof(*r));

	assert_non_null(r);
	smtp_reply_init(r);
	return r;
}

/* Feed all of in at once. */
static enum smtp_reply_status
feed_all(struct smtp_reply *r, const char *in, size_t len, size_t *consumed)
{
	return smtp_reply_feed(r, in, len, consumed);
}

static void
assert_line(const struct smtp_reply *r, size_t i, const char *text)
{
	assert_true(i < r->nlines);
	assert_int_equal(r->text_len[i], strlen(text));
	assert_memory_equal(r->raw + r->text_off[i], text, strlen(text));
}

/*
 * Feed in[0..len) in two chunks cut at every offset, and byte by byte;
 * the status, consumed count and parsed reply must match the one-shot
 * parse.
 */
static void
check_all_splits(const char *in, size_t len)
{
	struct smtp_reply *whole = new_reply(), *part = new_reply();
	enum smtp_reply_status ws, ps;
	size_t wc, c1, c2, cut, i, total;

	ws = feed_all(whole, in, len, &wc);
	for (cut = 0; cut <= len; cut++) {
		smtp_reply_init(part);
		ps = smtp_reply_feed(part, in, cut, &c1);
		total = c1;
		if (ps == SMTP_REPLY_MORE) {
			assert_int_equal(c1, cut);
			ps = smtp_reply_feed(part, in + cut, len - cut, &c2);
			total += c2;
		}
		assert_int_equal(ps, ws);
		if (ws != SMTP_REPLY_ERROR)
			assert_int_equal(total, wc);
		if (ws == SMTP_REPLY_DONE) {
			assert_int_equal(part->code, whole->code);
			assert_int_equal(part->nlines, whole->nlines);
			assert_int_equal(part->len, whole->len);
			assert_memory_equal(part->raw, whole->raw, whole->len);
			for (i = 0; i < whole->nlines; i++) {
				assert_int_equal(part->text_off[i],
						 whole->text_off[i]);
				assert_int_equal(part->text_len[i],
						 whole->text_len[i]);
			}
		}
	}
	/* Byte by byte. */
	smtp_reply_init(part);
	ps = SMTP_REPLY_MORE;
	total = 0;
	for (i = 0; i < len && ps == SMTP_REPLY_MORE; i++) {
		ps = smtp_reply_feed(part, in + i, 1, &c1);
		total += c1;
	}
	assert_int_equal(ps, ws);
	if (ws != SMTP_REPLY_ERROR)
		assert_int_equal(total, wc);
	if (ws == SMTP_REPLY_DONE) {
		assert_int_equal(part->len, whole->len);
		assert_memory_equal(part->raw, whole->raw, whole->len);
	}
	free(whole);
	free(part);
}

static void
test_single_line(void **state)
{
	struct smtp_reply *r = new_reply();
	size_t used;

	(void)state;
	assert_int_equal(feed_all(r, S("250 OK\r\n"), &used), SMTP_REPLY_DONE);
	assert_int_equal(used, 8);
	assert_int_equal(r->code, 250);
	assert_int_equal(r->nlines, 1);
	assert_int_equal(r->len, 8);
	assert_memory_equal(r->raw, "250 OK\r\n", 8);
	assert_line(r, 0, "OK");

	smtp_reply_init(r);
	assert_int_equal(feed_all(r, S("554 5.7.1 go away\r\n"), &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(r->code, 554);
	assert_line(r, 0, "5.7.1 go away");

	/* Empty text after the space. */
	smtp_reply_init(r);
	assert_int_equal(feed_all(r, S("354 \r\n"), &used), SMTP_REPLY_DONE);
	assert_int_equal(r->code, 354);
	assert_line(r, 0, "");
	free(r);

	check_all_splits(S("250 OK\r\n"));
	check_all_splits(S("221 2.0.0 Bye\r\n"));
}

static void
test_code_only_line(void **state)
{
	struct smtp_reply *r = new_reply();
	size_t used;

	(void)state;
	assert_int_equal(feed_all(r, S("250\r\n"), &used), SMTP_REPLY_DONE);
	assert_int_equal(used, 5);
	assert_int_equal(r->code, 250);
	assert_int_equal(r->nlines, 1);
	assert_line(r, 0, "");

	smtp_reply_init(r);
	assert_int_equal(feed_all(r, S("250-first\r\n250\r\n"), &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(r->nlines, 2);
	assert_line(r, 0, "first");
	assert_line(r, 1, "");

	smtp_reply_init(r);
	assert_int_equal(feed_all(r, S("250\n"), &used), SMTP_REPLY_DONE);
	assert_line(r, 0, "");
	free(r);

	check_all_splits(S("250\r\n"));
	check_all_splits(S("250-first\r\n250\r\n"));
}

static void
test_multi_line(void **state)
{
	static const char ehlo[] =
		"250-mx.example.org Hello\r\n"
		"250-SIZE 10240000\r\n"
		"250-8BITMIME\r\n"
		"250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n"
		"250-\r\n"
		"250 SMTPUTF8\r\n";
	struct smtp_reply *r = new_reply();
	size_t used;

	(void)state;
	assert_int_equal(feed_all(r, S(ehlo), &used), SMTP_REPLY_DONE);
	assert_int_equal(used, sizeof(ehlo) - 1);
	assert_int_equal(r->code, 250);
	assert_int_equal(r->nlines, 6);
	assert_int_equal(r->len, sizeof(ehlo) - 1);
	assert_memory_equal(r->raw, ehlo, sizeof(ehlo) - 1);
	assert_line(r, 0, "mx.example.org Hello");
	assert_line(r, 1, "SIZE 10240000");
	assert_line(r, 2, "8BITMIME");
	assert_line(r, 3, "XCLIENT NAME ADDR PORT PROTO HELO LOGIN");
	assert_line(r, 4, "");
	assert_line(r, 5, "SMTPUTF8");
	free(r);
	check_all_splits(S(ehlo));
}

static void
test_bare_lf_line_end(void **state)
{
	struct smtp_reply *r = new_reply();
	size_t used;

	(void)state;
	assert_int_equal(feed_all(r, S("250-a\n250-b\r\n250 c\n"), &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(used, 19);
	assert_int_equal(r->nlines, 3);
	assert_line(r, 0, "a");
	assert_line(r, 1, "b");
	assert_line(r, 2, "c");
	/* Raw bytes are kept as received. */
	assert_memory_equal(r->raw, "250-a\n250-b\r\n250 c\n", 19);
	free(r);
	check_all_splits(S("250-a\n250-b\r\n250 c\n"));
}

static void
test_incomplete(void **state)
{
	struct smtp_reply *r = new_reply();
	size_t used;

	(void)state;
	assert_int_equal(feed_all(r, S(""), &used), SMTP_REPLY_MORE);
	assert_int_equal(used, 0);
	assert_int_equal(feed_all(r, S("25"), &used), SMTP_REPLY_MORE);
	assert_int_equal(used, 2);
	assert_int_equal(feed_all(r, S("0-hello\r\n250 wo"), &used),
			 SMTP_REPLY_MORE);
	assert_int_equal(used, 15);
	assert_int_equal(r->nlines, 1);
	assert_int_equal(feed_all(r, S("rld\r"), &used), SMTP_REPLY_MORE);
	assert_int_equal(feed_all(r, S("\n"), &used), SMTP_REPLY_DONE);
	assert_int_equal(used, 1);
	assert_int_equal(r->nlines, 2);
	assert_line(r, 1, "world");
	free(r);
}

static void
test_pipelined(void **state)
{
	static const char in[] = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n";
	struct smtp_reply *r = new_reply();
	size_t used, off = 0;

	(void)state;
	assert_int_equal(feed_all(r, in, sizeof(in) - 1, &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(used, 14);
	assert_int_equal(r->code, 250);
	off += used;
	/* The next feed starts a new reply. */
	assert_int_equal(feed_all(r, in + off, sizeof(in) - 1 - off, &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(used, 14);
	assert_int_equal(r->nlines, 1);
	assert_int_equal(r->len, 14);
	off += used;
	assert_int_equal(feed_all(r, in + off, sizeof(in) - 1 - off, &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(used, 8);
	assert_int_equal(r->code, 354);
	assert_line(r, 0, "go");
	off += used;
	assert_int_equal(off, sizeof(in) - 1);

	/* Garbage after a complete reply is not looked at. */
	smtp_reply_init(r);
	assert_int_equal(feed_all(r, S("250 ok\r\n\x01\x02junk"), &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(used, 8);
	free(r);
	check_all_splits(S("250-a\r\n250 b\r\n550 next\r\n"));
}

static void
test_has_ext(void **state)
{
	static const char ehlo[] = "250-mx.example.org XCLIENT SIZE\r\n"
				   "250-SIZE 10240000\r\n"
				   "250-8BITMIME\r\n"
				   "250-XCLIENT NAME ADDR PORT\r\n"
				   "250-AUTHX\r\n"
				   "250 pipelining\r\n";
	struct smtp_reply *r = new_reply();
	const char *args;
	size_t alen, used;

	(void)state;
	assert_int_equal(feed_all(r, S(ehlo), &used), SMTP_REPLY_DONE);

	assert_true(smtp_reply_has_ext(r, "XCLIENT", &args, &alen));
	assert_int_equal(alen, strlen("NAME ADDR PORT"));
	assert_memory_equal(args, "NAME ADDR PORT", alen);
	/* Case-insensitive both ways. */
	assert_true(smtp_reply_has_ext(r, "xclient", &args, &alen));
	assert_true(smtp_reply_has_ext(r, "PIPELINING", NULL, NULL));

	assert_true(smtp_reply_has_ext(r, "size", &args, &alen));
	assert_int_equal(alen, 8);
	assert_memory_equal(args, "10240000", 8);

	/* No arguments: an empty rest. */
	alen = 99;
	assert_true(smtp_reply_has_ext(r, "8BITMIME", &args, &alen));
	assert_int_equal(alen, 0);

	/* Whole words only. */
	assert_false(smtp_reply_has_ext(r, "XCLIEN", NULL, NULL));
	assert_false(smtp_reply_has_ext(r, "XCLIENTS", NULL, NULL));
	assert_false(smtp_reply_has_ext(r, "AUTH", NULL, NULL));
	assert_true(smtp_reply_has_ext(r, "AUTHX", NULL, NULL));
	assert_false(smtp_reply_has_ext(r, "NAME", NULL, NULL));
	assert_false(smtp_reply_has_ext(r, "", NULL, NULL));
	assert_false(smtp_reply_has_ext(r, NULL, NULL, NULL));
	/* The first line is the greeting, not a keyword. */
	assert_false(smtp_reply_has_ext(r, "mx.example.org", NULL, NULL));
	assert_false(smtp_reply_has_ext(r, "STARTTLS", NULL, NULL));

	/* A failure reply advertises nothing. */
	smtp_reply_init(r);
	assert_int_equal(feed_all(r,
				  S("550-x\r\n550-XCLIENT NAME\r\n550 no\r\n"),
				  &used),
			 SMTP_REPLY_DONE);
	assert_false(smtp_reply_has_ext(r, "XCLIENT", NULL, NULL));

	/* Nor does an unfinished one. */
	smtp_reply_init(r);
	assert_int_equal(feed_all(r, S("250-x\r\n250-XCLIENT NAME\r\n"), &used),
			 SMTP_REPLY_MORE);
	assert_false(smtp_reply_has_ext(r, "XCLIENT", NULL, NULL));

	/* Bare LF line ends do not leak into args. */
	smtp_reply_init(r);
	assert_int_equal(feed_all(r, S("250-x\n250 XCLIENT ADDR\n"), &used),
			 SMTP_REPLY_DONE);
	assert_true(smtp_reply_has_ext(r, "XCLIENT", &args, &alen));
	assert_int_equal(alen, 4);
	assert_memory_equal(args, "ADDR", 4);
	free(r);
}

static enum smtp_reply_status
parse(const char *in, size_t len)
{
	struct smtp_reply *r = new_reply();
	enum smtp_reply_status st;
	size_t used;

	st = feed_all(r, in, len, &used);
	free(r);
	check_all_splits(in, len);
	return st;
}

static void
test_bad_codes(void **state)
{
	(void)state;
	assert_int_equal(parse(S("25x ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("2x0 ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("x50 ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("25 ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("2500 ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("150 ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("650 ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("099 ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("260 ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S(" 250 ok\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("+OK\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("\xef\xbb\xbf"
				 "250 ok\r\n")),
			 SMTP_REPLY_ERROR);
	/* The edges that are fine. */
	assert_int_equal(parse(S("200 ok\r\n")), SMTP_REPLY_DONE);
	assert_int_equal(parse(S("559 ok\r\n")), SMTP_REPLY_DONE);
}

static void
test_bad_separator(void **state)
{
	(void)state;
	assert_int_equal(parse(S("250x\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250OK\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250\tOK\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250_OK\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250-a\r\n250x\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250\rX")), SMTP_REPLY_ERROR);
}

static void
test_code_mismatch(void **state)
{
	(void)state;
	assert_int_equal(parse(S("250-a\r\n251 b\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250-a\r\n550 b\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250-a\r\n250-b\r\n240 c\r\n")),
			 SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250-a\r\n25")), SMTP_REPLY_MORE);
	assert_int_equal(parse(S("250-a\r\n\r\n")), SMTP_REPLY_ERROR);
}

static void
test_bad_text_bytes(void **state)
{
	(void)state;
	assert_int_equal(parse(S("250 a\rb\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250 a\r\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250 a\0b\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250 a\x1b[2Jb\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250 a\x7f\r\n")), SMTP_REPLY_ERROR);
	assert_int_equal(parse(S("250 a\x01\r\n")), SMTP_REPLY_ERROR);
	/* HTAB and 8-bit text pass. */
	assert_int_equal(parse(S("250 a\tb\r\n")), SMTP_REPLY_DONE);
	assert_int_equal(parse(S("250 gr\xc3\xbc\xc3\x9f\r\n")),
			 SMTP_REPLY_DONE);
}

static void
test_too_many_lines(void **state)
{
	char *in = malloc(SMTP_REPLY_LINES_MAX * 8 + 16);
	size_t n = 0, i, used;
	struct smtp_reply *r = new_reply();

	(void)state;
	assert_non_null(in);
	/* Exactly the limit: 63 continuation lines and a last one. */
	for (i = 0; i + 1 < SMTP_REPLY_LINES_MAX; i++) {
		memcpy(in + n, "250-x\r\n", 7);
		n += 7;
	}
	memcpy(in + n, "250 y\r\n", 7);
	assert_int_equal(feed_all(r, in, n + 7, &used), SMTP_REPLY_DONE);
	assert_int_equal(r->nlines, SMTP_REPLY_LINES_MAX);
	assert_line(r, SMTP_REPLY_LINES_MAX - 1, "y");

	/* One more continuation line: error before the 65th line. */
	memcpy(in + n, "250-x\r\n250 y\r\n", 14);
	smtp_reply_init(r);
	assert_int_equal(feed_all(r, in, n + 14, &used), SMTP_REPLY_ERROR);

	/* Endless "250-" lines, fed in small pieces: the parser stops. */
	smtp_reply_init(r);
	for (i = 0; i < 10000; i++) {
		enum smtp_reply_status st =
			smtp_reply_feed(r, S("250-\r\n"), &used);
		if (st == SMTP_REPLY_ERROR)
			break;
		assert_int_equal(st, SMTP_REPLY_MORE);
	}
	assert_int_equal(i, SMTP_REPLY_LINES_MAX - 1);
	/* The error is sticky. */
	assert_int_equal(smtp_reply_feed(r, S("250 ok\r\n"), &used),
			 SMTP_REPLY_ERROR);
	assert_int_equal(used, 0);
	free(in);
	free(r);
}

static void
test_too_long_line(void **state)
{
	char *in = malloc(SMTP_REPLY_MAX + 100);
	struct smtp_reply *r = new_reply();
	size_t used, i;

	(void)state;
	assert_non_null(in);
	/* A line of exactly SMTP_REPLY_LINE_MAX bytes, CRLF included. */
	memcpy(in, "250 ", 4);
	memset(in + 4, 'a', SMTP_REPLY_LINE_MAX - 6);
	memcpy(in + SMTP_REPLY_LINE_MAX - 2, "\r\n", 2);
	assert_int_equal(feed_all(r, in, SMTP_REPLY_LINE_MAX, &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(r->text_len[0], SMTP_REPLY_LINE_MAX - 6);

	/* One byte more. */
	memcpy(in, "250 ", 4);
	memset(in + 4, 'a', SMTP_REPLY_LINE_MAX - 5);
	memcpy(in + SMTP_REPLY_LINE_MAX - 1, "\r\n", 2);
	smtp_reply_init(r);
	assert_int_equal(feed_all(r, in, SMTP_REPLY_LINE_MAX + 1, &used),
			 SMTP_REPLY_ERROR);

	/* A huge line with no end at all, fed in pieces. */
	memset(in, 'a', SMTP_REPLY_MAX + 100);
	memcpy(in, "250-", 4);
	smtp_reply_init(r);
	assert_int_equal(feed_all(r, in, 500, &used), SMTP_REPLY_MORE);
	assert_int_equal(feed_all(r, in + 500, 500, &used), SMTP_REPLY_MORE);
	assert_int_equal(feed_all(r, in + 1000, 500, &used), SMTP_REPLY_ERROR);
	assert_true(r->len <= SMTP_REPLY_LINE_MAX);

	/* The same at the second line. */
	smtp_reply_init(r);
	assert_int_equal(feed_all(r, S("250-a\r\n"), &used), SMTP_REPLY_MORE);
	for (i = 0; i < 3; i++)
		if (feed_all(r, in, 500, &used) == SMTP_REPLY_ERROR)
			break;
	assert_int_equal(i, 2); /* 1000 bytes fit, the third 500 do not */
	free(in);
	free(r);
}

static void
test_too_long_reply(void **state)
{
	char line[SMTP_REPLY_LINE_MAX];
	struct smtp_reply *r = new_reply();
	enum smtp_reply_status st = SMTP_REPLY_MORE;
	size_t used, i;

	(void)state;
	/* Lines of 900 bytes: the tenth passes SMTP_REPLY_MAX. */
	memset(line, 'b', 900);
	memcpy(line, "250-", 4);
	memcpy(line + 898, "\r\n", 2);
	for (i = 0; i < 20 && st == SMTP_REPLY_MORE; i++) {
		st = smtp_reply_feed(r, line, 900, &used);
	}
	assert_int_equal(st, SMTP_REPLY_ERROR);
	assert_int_equal(i, SMTP_REPLY_MAX / 900 + 1);
	assert_true(r->len <= SMTP_REPLY_MAX);
	free(r);
}

static void
test_reply_max_exact(void **state)
{
	/* A reply of exactly SMTP_REPLY_MAX bytes is fine. */
	char *in = malloc(SMTP_REPLY_MAX);
	struct smtp_reply *r = new_reply();
	size_t n = 0, used, l;

	(void)state;
	assert_non_null(in);
	while (SMTP_REPLY_MAX - n > 2 * 800) {
		memset(in + n, 'c', 800);
		memcpy(in + n, "250-", 4);
		memcpy(in + n + 798, "\r\n", 2);
		n += 800;
	}
	l = SMTP_REPLY_MAX - n;
	assert_true(l <= SMTP_REPLY_LINE_MAX);
	memset(in + n, 'd', l);
	memcpy(in + n, "250 ", 4);
	memcpy(in + n + l - 2, "\r\n", 2);
	assert_int_equal(feed_all(r, in, SMTP_REPLY_MAX, &used),
			 SMTP_REPLY_DONE);
	assert_int_equal(r->len, SMTP_REPLY_MAX);
	free(in);
	free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_code_only_line),
		cmocka_unit_test(test_multi_line),
		cmocka_unit_test(test_bare_lf_line_end),
		cmocka_unit_test(test_incomplete),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_has_ext),
		cmocka_unit_test(test_bad_codes),
		cmocka_unit_test(test_bad_separator),
		cmocka_unit_test(test_code_mismatch),
		cmocka_unit_test(test_bad_text_bytes),
		cmocka_unit_test(test_too_many_lines),
		cmocka_unit_test(test_too_long_line),
		cmocka_unit_test(test_too_long_reply),
		cmocka_unit_test(test_reply_max_exact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
