/*
 * test_sender.c - the sender/login check (sender.c): the login itself
 * when it is an address, the senders= list of addresses and @domains, case
 * folding, the null sender, and the near misses a spoofer would try
 * (subdomains, suffixes, prefixes, a login that looks like a wildcard).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "limits/sender.h"

/* addr as a NUL-terminated string; the check itself uses only len. */
static bool
allowed(const char *login, const char *senders, const char *addr)
{
	return sender_allowed(login, senders, addr, strlen(addr));
}

/* The same check with addr in a buffer of exactly its length, no NUL
 * after it, so that ASan catches a read past the end. */
static bool
allowed_exact(const char *login, const char *senders, const char *addr)
{
	size_t len = strlen(addr);
	char *copy = malloc(len > 0 ? len : 1);
	bool ok;

	assert_non_null(copy);
	memcpy(copy, addr, len);
	ok = sender_allowed(login, senders, copy, len);
	free(copy);
	return ok;
}

static void
test_login_is_address(void **state)
{
	(void)state;
	assert_true(allowed("carol@example.test", NULL, "carol@example.test"));
	assert_true(allowed("carol@example.test", NULL, "Carol@Example.TEST"));
	assert_true(allowed("CAROL@EXAMPLE.TEST", NULL, "carol@example.test"));
	assert_true(allowed_exact("carol@example.test", NULL,
				  "carol@example.test"));
	assert_false(allowed("carol@example.test", NULL, "dave@example.test"));
	assert_false(allowed("carol@example.test", NULL, "carol@example.org"));
	/* Near misses: a longer or shorter address is another address. */
	assert_false(
		allowed("carol@example.test", NULL, "carol@example.testx"));
	assert_false(allowed("carol@example.test", NULL, "carol@example.tes"));
	assert_false(
		allowed("carol@example.test", NULL, "xcarol@example.test"));
	assert_false(allowed("carol@example.test", NULL, "arol@example.test"));
	assert_false(allowed("carol@example.test", NULL,
			     "carol@example.test.evil.test"));
	assert_false(
		allowed("carol@example.test", NULL, "carol@sub.example.test"));
	assert_false(allowed("carol@example.test", NULL, "carol"));
	assert_false(allowed("carol@example.test", NULL, "@example.test"));
	assert_false(
		allowed_exact("carol@example.test", NULL, "carol@example.tes"));
	/* The list adds to the login, it does not replace it. */
	assert_true(allowed("carol@example.test", "c@example.org",
			    "carol@example.test"));
	assert_true(allowed("carol@example.test", "c@example.org",
			    "c@example.org"));
}

/* The null sender <> (len 0) poses as nobody: always allowed. */
static void
test_null_sender(void **state)
{
	(void)state;
	assert_true(sender_allowed("carol@example.test", NULL, "", 0));
	assert_true(sender_allowed("carol", NULL, "", 0));
	assert_true(sender_allowed("@example.test", NULL, "", 0));
	assert_true(sender_allowed("carol", "@example.test", "", 0));
	/* len decides, not the bytes behind it. */
	assert_true(sender_allowed("carol", NULL, "x@example.test", 0));
}

static void
test_senders_list(void **state)
{
	static const char *list =
		"news@example.org,@example.net,Sales@Example.COM";

	(void)state;
	assert_true(allowed("carol", list, "news@example.org"));
	assert_true(allowed("carol", list, "NEWS@EXAMPLE.ORG"));
	assert_true(allowed("carol", list, "sales@example.com"));
	assert_true(allowed("carol", list, "anyone@example.net"));
	assert_true(allowed("carol", list, "Anyone@EXAMPLE.net"));
	assert_true(allowed("carol", list, "a.b+tag@example.net"));
	assert_true(allowed_exact("carol", list, "x@example.net"));
	assert_true(allowed_exact("carol", list, "sales@example.com"));
	assert_false(allowed("carol", list, "news@example.net.evil"));
	assert_false(allowed("carol", list, "other@example.org"));
	assert_false(allowed("carol", list, "news@example.orgx"));
	assert_false(allowed("carol", list, "xnews@example.org"));
	assert_false(allowed("carol", list, "sales@example.co"));
	assert_false(allowed("carol", list, "carol"));
	assert_false(allowed_exact("carol", list, "x@example.ne"));
	/* A single entry, first and last. */
	assert_true(allowed("carol", "@example.net", "x@example.net"));
	assert_true(allowed("carol", "a@example.org", "a@example.org"));
	assert_false(allowed("carol", "a@example.org", "b@example.org"));
	/* An empty list allows nothing but the login. */
	assert_false(allowed("carol", "", "carol@example.test"));
	assert_true(allowed("carol@example.test", "", "carol@example.test"));
}

/* @domain is that domain exactly: not a subdomain, not a suffix. */
static void
test_domain_wildcard(void **state)
{
	(void)state;
	assert_true(allowed("u", "@example.test", "a@example.test"));
	assert_false(allowed("u", "@example.test", "a@sub.example.test"));
	assert_false(allowed("u", "@example.test", "a@badexample.test"));
	assert_false(allowed("u", "@example.test", "a@example.test.evil"));
	assert_false(allowed("u", "@example.test", "a@example.testx"));
	assert_false(allowed("u", "@example.test", "a@example.tes"));
	/* A local part is required. */
	assert_false(allowed("u", "@example.test", "@example.test"));
	assert_false(allowed("u", "@example.test", "example.test"));
	/* The domain is what follows the last '@'. */
	assert_true(allowed("u", "@example.test", "\"a@b\"@example.test"));
	assert_false(allowed("u", "@example.test", "a@example.test@evil"));
	assert_false(allowed("u", "@example.test", "a@evil@example.tes"));
	/* Subdomains are listed on their own. */
	assert_true(allowed("u", "@example.test,@sub.example.test",
			    "a@sub.example.test"));
}

/* A login that is not an address allows only its senders= list. */
static void
test_login_not_address(void **state)
{
	(void)state;
	assert_false(allowed("carol", NULL, "carol"));
	assert_false(allowed("carol", NULL, "carol@example.test"));
	assert_false(allowed("carol", NULL, "carol@localhost"));
	assert_false(allowed("", NULL, "carol@example.test"));
	assert_true(
		allowed("carol", "carol@example.test", "carol@example.test"));
}

/* A login starting with '@' is a strange login, not a domain wildcard. */
static void
test_login_at_domain(void **state)
{
	(void)state;
	assert_false(allowed("@example.test", NULL, "anyone@example.test"));
	assert_false(allowed("@example.test", NULL, "@example.test"));
	assert_false(allowed("@example.test", NULL, "x@example.test"));
	assert_true(
		allowed("@example.test", "x@example.test", "x@example.test"));
}

/* Odd lists: empty entries, a trailing comma. */
static void
test_list_odd_forms(void **state)
{
	(void)state;
	assert_true(allowed("u", "a@example.test,,b@example.test",
			    "b@example.test"));
	assert_true(allowed("u", "a@example.test,", "a@example.test"));
	assert_false(allowed("u", ",", "a@example.test"));
	assert_false(allowed("u", "a@example.test", "a@example.test,"));
	assert_false(allowed("u", "a@example.test,b@example.test",
			     "a@example.test,b@example.test"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_login_is_address),
		cmocka_unit_test(test_null_sender),
		cmocka_unit_test(test_senders_list),
		cmocka_unit_test(test_domain_wildcard),
		cmocka_unit_test(test_login_not_address),
		cmocka_unit_test(test_login_at_domain),
		cmocka_unit_test(test_list_odd_forms),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
