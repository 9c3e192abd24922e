/*
 * test_cluster_reply.c - Redis's replies to the cluster's calls, taken
 * into a request (proxy/cluster/cluster.c, cluster_take_reply): the shapes
 * the scripts return are taken, anything else (an error, a wrong type, a
 * wrong count, a kind out of range) is refused whole, so that the
 * connection is dropped.  The replies are real RESP parsed by hiredis.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <hiredis/hiredis.h>

#include "cluster/cluster.h"

/* The reply that RESP text resp parses to. */
static redisReply *
parse(const char *resp)
{
	redisReader *r = redisReaderCreate();
	void *reply = NULL;

	assert_non_null(r);
	assert_int_equal(redisReaderFeed(r, resp, strlen(resp)), REDIS_OK);
	assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
	assert_non_null(reply);
	redisReaderFree(r);
	return reply;
}

static bool
take(enum cluster_op op, const char *resp, struct cluster_request *req)
{
	redisReply *r = parse(resp);
	bool ok;

	memset(req, 0, sizeof(*req));
	req->op = op;
	ok = cluster_take_reply(req, r);
	freeReplyObject(r);
	return ok;
}

static void
test_take(void **state)
{
	struct cluster_request req;

	(void)state;
	assert_true(take(CLUSTER_TAKE, "*2\r\n:4\r\n:0\r\n", &req));
	assert_int_equal(req.refused, LIMIT_USER_KINDS);
	assert_true(take(CLUSTER_TAKE, "*2\r\n:0\r\n:37000\r\n", &req));
	assert_int_equal(req.refused, LIMIT_MESSAGES);
	assert_int_equal(req.retry_ms, 37000);
	assert_true(take(CLUSTER_TAKE, "*2\r\n:3\r\n:-1\r\n", &req));
	assert_int_equal(req.retry_ms, UINT64_MAX); /* never */
	/* Refused whole: */
	assert_false(
		take(CLUSTER_TAKE, "-NOSCRIPT No matching script\r\n", &req));
	assert_false(take(CLUSTER_TAKE, "*1\r\n:4\r\n", &req));
	assert_false(take(CLUSTER_TAKE, "*3\r\n:4\r\n:0\r\n:0\r\n", &req));
	assert_false(take(CLUSTER_TAKE, "*2\r\n:5\r\n:0\r\n", &req));
	assert_false(take(CLUSTER_TAKE, "*2\r\n:-1\r\n:0\r\n", &req));
	assert_false(take(CLUSTER_TAKE, "*2\r\n$1\r\n4\r\n:0\r\n", &req));
	assert_false(take(CLUSTER_TAKE, "*2\r\n:0\r\n$2\r\n37\r\n", &req));
	assert_false(take(CLUSTER_TAKE, ":4\r\n", &req));
	assert_false(take(CLUSTER_TAKE, "$-1\r\n", &req));
}

static void
test_peek_login_ban(void **state)
{
	struct cluster_request req;

	(void)state;
	assert_true(
		take(CLUSTER_PEEK, "*4\r\n:3\r\n:-1\r\n:0\r\n:12\r\n", &req));
	assert_int_equal(req.avail[LIMIT_MESSAGES], 3);
	assert_int_equal(req.avail[LIMIT_RECIPIENTS], UINT64_MAX);
	assert_int_equal(req.avail[LIMIT_QUOTA], 12);
	assert_false(take(CLUSTER_PEEK, "*3\r\n:3\r\n:3\r\n:3\r\n", &req));
	assert_false(
		take(CLUSTER_PEEK, "*4\r\n:3\r\n$-1\r\n:0\r\n:1\r\n", &req));

	assert_true(take(CLUSTER_LOGIN, "*2\r\n:2000\r\n:3600000\r\n", &req));
	assert_int_equal(req.delay_ms, 2000);
	assert_int_equal(req.banned_ms, 3600000);
	assert_false(take(CLUSTER_LOGIN, "*1\r\n:2000\r\n", &req));
	assert_false(take(CLUSTER_LOGIN, "*2\r\n:0\r\n+OK\r\n", &req));
	assert_false(take(CLUSTER_LOGIN, "-OOM command not allowed\r\n", &req));

	assert_true(take(CLUSTER_BAN, ":3600000\r\n", &req));
	assert_false(take(CLUSTER_BAN, "+OK\r\n", &req));
	assert_true(take(CLUSTER_CHARGE_MANY, ":2\r\n", &req));
	assert_false(take(CLUSTER_CHARGE_MANY, "*0\r\n", &req));
	assert_true(take(CLUSTER_PING, "+PONG\r\n", &req));
	assert_false(take(CLUSTER_PING, "-READONLY replica\r\n", &req));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_take),
		cmocka_unit_test(test_peek_login_ban),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
