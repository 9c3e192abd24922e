/*
 * test_policy.c - the limit decisions of proxy/limits/policy.c as verdicts:
 * listener allow/deny, connection rate and concurrency, the AUTH failure
 * delay and the network ban, message/recipient/byte limits and the quota
 * with their exact replies, give-back of undelivered units, the sender
 * check and the memory cap.  Real rate tables, a frozen clock, no session.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/un.h>

#include "auth/passwd_db.h"
#include "bans/bans.h"
#include "lib/log.h"
#include "limits/caps.h"
#include "limits/policy.h"
#include "smtp/smtp.h"
#include "test_sockaddr.h"

#define T0   1000000 /* ms: any start time */
#define HOST "mx.example.test"

static struct config cfg;
static struct config_listener listener;
static struct ratelimit *limits;
static struct caps caps;

static void
reset_config(void)
{
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.hostname, sizeof(cfg.hostname), "%s", HOST);
	cfg.auth_failure_delay_ms = 1000;
	cfg.user_limits.messages = (struct config_rate){3, 3600000, 3};
	cfg.user_limits.recipients = (struct config_rate){2, 60000, 2};
	cfg.user_limits.bytes = (struct config_rate){1000, 1000, 1000};
	cfg.max_users = 1000;
	cfg.login_failures = (struct config_rate){2, 60000, 2};
	cfg.login_max_delay_ms = 5000;
	cfg.ip_prefix_v4 = 24;
	cfg.ip_prefix_v6 = 64;
	cfg.ip_connections = (struct config_rate){5, 1000, 5};
	cfg.ip_concurrency = 3;
	cfg.ip_auth_failures = (struct config_rate){3, 60000, 3};
	cfg.ip_ban_time_ms = 10000;
	cfg.ip_max_entries = 1000;
	cfg.blocklist_auto_ban = true;
	cfg.blocklist_ban_floods = true;
	memset(&listener, 0, sizeof(listener));
	listener.mode = LISTENER_STARTTLS;
}

static int
setup(void **state)
{
	char err[256];

	(void)state;
	reset_config();
	caps_init(&caps);
	limits = ratelimit_new(&cfg, err, sizeof(err));
	return limits == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	ratelimit_free(limits);
	return 0;
}

/* What a session would hand policy for a client at time now. */
static struct policy_ctx
ctx(const union sockaddr_ip *peer, const char *login, uint64_t now)
{
	return (struct policy_ctx){
		.cfg = &cfg,
		.listener = &listener,
		.limits = limits,
		.caps = &caps,
		.peer = peer,
		.login = login,
		.now_ms = now,
	};
}

/* A client from ip, accepted and logged in as user. */
static void
login(struct policy_state *st, const char *ip, const char *user,
      const struct passwd_user_info *info)
{
	union sockaddr_ip peer = v4(ip, 40000);
	struct policy_ctx c = ctx(&peer, user, T0);
	struct policy_verdict v;

	memset(st, 0, sizeof(*st));
	assert_true(policy_admit(&c, st, &v));
	assert_int_equal(policy_auth_done(&c, st, true, &v), 0);
	assert_int_equal(v.banned_ms, 0);
	policy_authed(&c, st, info);
	assert_non_null(st->user_limits);
}

static void
end(struct policy_state *st, const struct smtp *m)
{
	struct policy_ctx c = ctx(NULL, "", T0);

	policy_session_end(&c, st, m);
}

/* A MAIL or RCPT for m->fwd_line ("MAIL FROM:<addr>" or "RCPT TO:<addr>"). */
static void
command(struct smtp *m, enum smtp_fwd fwd, char *line)
{
	m->fwd = fwd;
	m->fwd_line = line;
	m->path_off = (size_t)(strchr(line, '<') - line) + 1;
	m->path_len = (size_t)(strchr(line, '>') - line) - m->path_off;
}

/* What the user could take now, per kind. */
static void
peek(const struct policy_state *st, uint64_t now,
     uint64_t avail[LIMIT_USER_KINDS])
{
	ratelimit_user_peek(limits, &st->user_key, st->user_limits, now, avail);
}

/* ---------------------------------------------------------------------
 * Connect
 */

/* bans.c logs what it does: errors only, here. */
static void
quiet_logs(void)
{
	struct log_options o = {.level = LOG_ERROR};
	char err[64];

	assert_int_equal(log_configure(&o, err, sizeof(err)), 0);
}

static void
test_listener_allow_deny(void **state)
{
	union sockaddr_ip in = v4("198.51.100.7", 1);
	union sockaddr_ip denied = v4("198.51.100.66", 1);
	union sockaddr_ip outside = v4("203.0.113.5", 1);
	union sockaddr_ip unix_peer;
	struct ipnet allow, deny;
	struct policy_state st;
	struct policy_verdict v;
	struct policy_ctx c;

	(void)state;
	assert_null(ipnet_parse("198.51.100.0/24", &allow));
	assert_null(ipnet_parse("198.51.100.66/32", &deny));
	listener.allow = (struct config_nets){&allow, 1};
	listener.deny = (struct config_nets){&deny, 1};

	memset(&st, 0, sizeof(st));
	c = ctx(&in, "", T0);
	assert_true(policy_admit(&c, &st, &v));
	assert_int_equal(v.refused, POLICY_OK);
	assert_true(st.ip_tracked);
	end(&st, &(struct smtp){0});
	assert_false(st.ip_tracked);

	/* deny wins over allow; outside allow is refused too. */
	for (int i = 0; i < 2; i++) {
		memset(&st, 0, sizeof(st));
		c = ctx(i == 0 ? &denied : &outside, "", T0);
		assert_false(policy_admit(&c, &st, &v));
		assert_int_equal(v.refused, POLICY_CONNECTION);
		assert_string_equal(v.reason, "listener-denied");
		assert_int_equal(v.retry_ms, 0);
		assert_string_equal(v.reply,
				    "554 5.7.1 " HOST " Access denied");
		assert_int_equal(v.blocklist_ms, 0);
		assert_false(st.ip_tracked);
	}

	/* Not IP (a UNIX socket): nothing to match, nothing tracked. */
	memset(&unix_peer, 0, sizeof(unix_peer));
	unix_peer.sa.sa_family = AF_UNIX;
	memset(&st, 0, sizeof(st));
	c = ctx(&unix_peer, "", T0);
	assert_true(policy_admit(&c, &st, &v));
	assert_false(st.ip_tracked);
	assert_int_equal(ratelimit_ip_entries(limits), 1);
}

static void
test_connection_concurrency_and_rate(void **state)
{
	union sockaddr_ip peer = v4("192.0.2.1", 1),
			  peer2 = v4("192.0.2.77", 1);
	struct policy_state st[4];
	struct policy_verdict v;
	struct policy_ctx c = ctx(&peer, "", T0);
	struct smtp m = {0};
	char err[256], net[IPNET_TEXT_MAX];
	struct bans *bans;

	(void)state;
	memset(st, 0, sizeof(st));
	for (int i = 0; i < 3; i++)
		assert_true(policy_admit(&c, &st[i], &v));
	/* Concurrency counts the network (/24), not the address. */
	c.peer = &peer2;
	assert_false(policy_admit(&c, &st[3], &v));
	assert_int_equal(v.refused, POLICY_CONNECTION);
	assert_string_equal(v.reason, "ip-concurrency");
	assert_int_equal(v.retry_ms, 1000);
	assert_string_equal(v.reply,
			    "421 4.7.0 " HOST " Too many connections from "
			    "your network, try again in 1 seconds");
	assert_int_equal(v.blocklist_ms, 0);
	assert_false(st[3].ip_tracked);
	for (int i = 0; i < 3; i++)
		end(&st[i], &m);

	/* 5 per second: 3 used, 2 left, then 200 ms to wait. */
	for (int i = 0; i < 2; i++) {
		assert_true(policy_admit(&c, &st[0], &v));
		end(&st[0], &m);
	}
	assert_false(policy_admit(&c, &st[0], &v));
	assert_string_equal(v.reason, "ip-connection-rate");
	assert_int_equal(v.retry_ms, 200);
	assert_string_equal(v.reply,
			    "421 4.7.0 " HOST " Too many connections from "
			    "your network, try again in 1 seconds");
	assert_int_equal(v.blocklist_ms, 0); /* no blocklist in ctx */

	/* blocklist.ban_floods: the network goes on the blocklist for the
	 * retry time, at least a second. */
	quiet_logs();
	bans = bans_open(&cfg, err, sizeof(err));
	assert_non_null(bans);
	c.bans = bans;
	c.now_ms = T0 + 100;
	assert_false(policy_admit(&c, &st[0], &v));
	assert_string_equal(v.reason, "ip-connection-rate");
	assert_int_equal(v.retry_ms, 100);
	assert_int_equal(v.blocklist_ms, 1000);
	assert_string_equal(ipnet_format(&v.net, net, sizeof(net)),
			    "192.0.2.0/24");
	assert_int_equal(v.banned_ms, 0);
	cfg.blocklist_ban_floods = false;
	bans_reload(bans, &cfg, err, sizeof(err));
	assert_false(policy_admit(&c, &st[0], &v));
	assert_int_equal(v.blocklist_ms, 0);
	bans_close(bans);

	c.now_ms = T0 + 200;
	assert_true(policy_admit(&c, &st[0], &v));
	end(&st[0], &m);
	assert_int_equal(ratelimit_stats(limits)->ip_refused[RATELIMIT_RATE],
			 3);
}

/* ---------------------------------------------------------------------
 * AUTH
 */

static void
test_auth_failure_delay_and_ban(void **state)
{
	union sockaddr_ip peer = v4("192.0.2.1", 1);
	struct policy_ctx c = ctx(&peer, "victim", T0);
	struct policy_state st, st2;
	struct policy_verdict v;
	char err[256], net[IPNET_TEXT_MAX];
	struct bans *bans;

	(void)state;
	quiet_logs();
	bans = bans_open(&cfg, err, sizeof(err));
	assert_non_null(bans);
	c.bans = bans;
	memset(&st, 0, sizeof(st));
	assert_true(policy_admit(&c, &st, &v));
	/* Within the login's allowance (2): auth.failure_delay. */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(policy_auth_done(&c, &st, false, &v), 1000);
		assert_int_equal(v.refused, POLICY_OK);
		assert_int_equal(v.banned_ms, 0);
		assert_int_equal(v.blocklist_ms, 0);
	}
	assert_false(st.banned);
	/* The network's third failure earns it limits.ip.ban_time, on the
	 * blocklist too (blocklist.auto_ban). */
	assert_int_equal(policy_auth_done(&c, &st, false, &v), 1000);
	assert_true(st.banned);
	assert_int_equal(v.refused, POLICY_OK);
	assert_int_equal(v.banned_ms, 10000);
	assert_int_equal(v.blocklist_ms, 10000);
	assert_string_equal(ipnet_format(&v.net, net, sizeof(net)),
			    "192.0.2.0/24");
	/* Over the login's allowance the delay doubles: 2 s, 4 s, ... */
	assert_int_equal(policy_auth_done(&c, &st, false, &v), 2000);
	assert_int_equal(v.banned_ms, 0);
	/* ... also for the right password. */
	assert_int_equal(policy_auth_done(&c, &st, true, &v), 4000);

	/* A new connection from the network while the ban runs. */
	memset(&st2, 0, sizeof(st2));
	c.now_ms = T0 + 1500;
	assert_false(policy_admit(&c, &st2, &v));
	assert_int_equal(v.refused, POLICY_CONNECTION);
	assert_string_equal(v.reason, "banned");
	assert_int_equal(v.retry_ms, 8500);
	assert_string_equal(v.reply,
			    "421 4.7.0 " HOST " Too many failed logins from "
			    "your network, try again in 9 seconds");
	assert_int_equal(v.blocklist_ms, 0);
	end(&st, &(struct smtp){0});

	/* Without blocklist.auto_ban the ban stays in the rate table. */
	cfg.blocklist_auto_ban = false;
	bans_reload(bans, &cfg, err, sizeof(err));
	peer = v4("192.0.3.1", 1);
	c.login = "other";
	memset(&st, 0, sizeof(st));
	assert_true(policy_admit(&c, &st, &v));
	for (int i = 0; i < 3; i++)
		policy_auth_done(&c, &st, false, &v);
	assert_int_equal(v.banned_ms, 10000);
	assert_int_equal(v.blocklist_ms, 0);
	end(&st, &(struct smtp){0});
	bans_close(bans);
}

static void
test_auth_allowlisted(void **state)
{
	union sockaddr_ip peer = v4("192.0.2.1", 1);
	struct policy_ctx c = ctx(&peer, "victim", T0);
	struct policy_state st;
	struct policy_verdict v;
	struct ipnet allow;

	(void)state;
	/* limits.ip.allow: never tracked, never banned, no login score. */
	assert_null(ipnet_parse("192.0.2.0/24", &allow));
	cfg.ip_allow = (struct config_nets){&allow, 1};
	memset(&st, 0, sizeof(st));
	assert_true(policy_admit(&c, &st, &v));
	assert_false(st.ip_tracked);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(policy_auth_done(&c, &st, false, &v), 1000);
		assert_int_equal(v.banned_ms, 0);
	}
	assert_int_equal(policy_auth_done(&c, &st, true, &v), 0);
	assert_false(st.banned);
	cfg.ip_allow = (struct config_nets){NULL, 0};
}

/* ---------------------------------------------------------------------
 * Transactions
 */

/* The backend took the message: what smtp.c records. */
static void
delivered(struct smtp *m)
{
	m->messages++;
	m->in_mail = false;
	m->rcpts = 0;
	m->fwd = SMTP_FWD_NONE;
}

static void
test_message_and_recipient_limits(void **state)
{
	char mail[] = "MAIL FROM:<alice@example.com>\r\n";
	char rcpt[] = "RCPT TO:<bob@example.org>\r\n";
	struct policy_state st;
	struct policy_verdict v;
	struct policy_ctx c = ctx(NULL, "alice@example.com", T0);
	struct smtp m = {0};

	(void)state;
	login(&st, "192.0.2.1", "alice@example.com", NULL);
	for (int i = 0; i < 3; i++) {
		command(&m, SMTP_FWD_MAIL, mail);
		assert_true(policy_forward(&c, &st, &m, &v));
		assert_int_equal(v.refused, POLICY_OK);
		m.in_mail = true;
		delivered(&m);
		policy_settle(&c, &st, &m);
	}
	command(&m, SMTP_FWD_MAIL, mail);
	assert_false(policy_forward(&c, &st, &m, &v));
	assert_int_equal(v.refused, POLICY_RATE);
	assert_string_equal(v.reason, "messages");
	assert_int_equal(v.retry_ms, 1200000);
	assert_string_equal(v.reply,
			    "451 4.7.1 Message rate limit reached (3 per 1h), "
			    "try again in 1200 seconds");

	/* Recipients: 2 per minute. */
	c.now_ms = T0 + 1200000;
	assert_true(policy_forward(&c, &st, &m, &v));
	m.in_mail = true;
	m.fwd = SMTP_FWD_NONE;
	for (int i = 0; i < 2; i++) {
		command(&m, SMTP_FWD_RCPT, rcpt);
		assert_true(policy_forward(&c, &st, &m, &v));
		m.rcpts++;
		m.fwd = SMTP_FWD_NONE;
	}
	command(&m, SMTP_FWD_RCPT, rcpt);
	c.now_ms += 10000;
	assert_false(policy_forward(&c, &st, &m, &v));
	assert_int_equal(v.refused, POLICY_RATE);
	assert_string_equal(v.reason, "recipients");
	assert_int_equal(v.retry_ms, 20000);
	assert_string_equal(v.reply,
			    "451 4.7.1 Recipient rate limit reached (2 per "
			    "1m), try again in 20 seconds");

	/* Other commands and a client before AUTH are not policy's. */
	m.fwd = SMTP_FWD_DATA;
	assert_true(policy_forward(&c, &st, &m, &v));
	end(&st, &m);
	memset(&st, 0, sizeof(st));
	command(&m, SMTP_FWD_MAIL, mail);
	assert_true(policy_forward(&c, &st, &m, &v));
	assert_false(policy_holding(&st));
}

static void
test_quota(void **state)
{
	char mail[] = "MAIL FROM:<q@example.com>\r\n";
	struct policy_state st;
	struct policy_verdict v;
	struct policy_ctx c = ctx(NULL, "q@example.com", T0);
	struct smtp m = {0};

	(void)state;
	cfg.user_limits.messages = (struct config_rate){100, 1000, 100};
	cfg.user_limits.messages_quota = (struct config_rate){2, 86400000, 2};
	login(&st, "192.0.2.1", "q@example.com", NULL);
	for (int i = 0; i < 2; i++) {
		command(&m, SMTP_FWD_MAIL, mail);
		assert_true(policy_forward(&c, &st, &m, &v));
		m.in_mail = true;
		delivered(&m);
	}
	command(&m, SMTP_FWD_MAIL, mail);
	c.now_ms = T0 + 3600000;
	assert_false(policy_forward(&c, &st, &m, &v));
	assert_string_equal(v.reason, "messages_quota");
	assert_int_equal(v.retry_ms, 86400000 - 3600000);
	assert_string_equal(v.reply,
			    "451 4.7.1 Message quota reached (2 per 1d), try "
			    "again in 82800 seconds");
	end(&st, &m);
}

static void
test_bytes_limit(void **state)
{
	struct policy_state st;
	struct policy_verdict v;
	struct policy_ctx c = ctx(NULL, "dave", T0);
	char reply[300];

	(void)state;
	login(&st, "192.0.2.1", "dave", NULL);
	assert_true(policy_take_bytes(&c, &st, 0, &v));
	assert_true(policy_take_bytes(&c, &st, 600, &v));
	assert_int_equal(st.held[LIMIT_BYTES], 600);
	assert_false(policy_take_bytes(&c, &st, 600, &v));
	assert_int_equal(v.refused, POLICY_BYTES);
	assert_string_equal(v.reason, "bytes");
	assert_int_equal(v.retry_ms, 200);
	assert_int_equal(st.held[LIMIT_BYTES], 600);
	/* The reply waits for the end of the message. */
	assert_string_equal(policy_bytes_reply(&st, reply, sizeof(reply)),
			    "451 4.7.1 Message data rate limit reached (1000 "
			    "bytes per 1s), try again in 1 seconds");
	assert_string_equal(v.reply, reply);

	/* More than the burst can never pass: logged as 0. */
	c.now_ms = T0 + 5000;
	assert_false(policy_take_bytes(&c, &st, 5000, &v));
	assert_int_equal(v.retry_ms, 0);
	assert_string_equal(policy_bytes_reply(&st, reply, sizeof(reply)),
			    "451 4.7.1 Message data rate limit reached (1000 "
			    "bytes per 1s): this message is larger than the "
			    "limit allows");
	end(&st, &(struct smtp){0});
}

static void
test_settle_gives_back(void **state)
{
	char mail[] = "MAIL FROM:<erin@example.com>\r\n";
	char rcpt[] = "RCPT TO:<x@example.org>\r\n";
	uint64_t avail[LIMIT_USER_KINDS];
	struct policy_state st;
	struct policy_verdict v;
	struct policy_ctx c = ctx(NULL, "erin@example.com", T0);
	struct smtp m = {0};

	(void)state;
	login(&st, "192.0.2.1", "erin@example.com", NULL);
	command(&m, SMTP_FWD_MAIL, mail);
	assert_true(policy_forward(&c, &st, &m, &v));
	/* The MAIL is at the backend: nothing to settle yet. */
	policy_settle(&c, &st, &m);
	assert_int_equal(st.held[LIMIT_MESSAGES], 1);
	m.in_mail = true;
	/* The backend takes the first recipient ... */
	command(&m, SMTP_FWD_RCPT, rcpt);
	assert_true(policy_forward(&c, &st, &m, &v));
	policy_settle(&c, &st, &m); /* at the backend: kept */
	assert_int_equal(st.held[LIMIT_RECIPIENTS], 1);
	m.rcpts = 1;
	m.fwd = SMTP_FWD_NONE;
	policy_settle(&c, &st, &m);
	assert_int_equal(st.held[LIMIT_RECIPIENTS], 1);
	/* ... and refuses the second: that one is given back at once. */
	command(&m, SMTP_FWD_RCPT, rcpt);
	assert_true(policy_forward(&c, &st, &m, &v));
	policy_settle(&c, &st, &m);
	assert_int_equal(st.held[LIMIT_RECIPIENTS], 2);
	m.fwd = SMTP_FWD_NONE;
	policy_settle(&c, &st, &m);
	assert_int_equal(st.held[LIMIT_RECIPIENTS], 1);
	peek(&st, T0, avail);
	assert_int_equal(avail[LIMIT_RECIPIENTS], 1);
	assert_int_equal(avail[LIMIT_MESSAGES], 2);
	assert_true(policy_take_bytes(&c, &st, 400, &v));

	/* RSET (or DATA refused): the transaction ends undelivered and
	 * gives everything back. */
	m.in_mail = false;
	m.rcpts = 0;
	policy_settle(&c, &st, &m);
	assert_false(policy_holding(&st));
	peek(&st, T0, avail);
	assert_int_equal(avail[LIMIT_MESSAGES], 3);
	assert_int_equal(avail[LIMIT_RECIPIENTS], 2);
	assert_int_equal(avail[LIMIT_BYTES], 1000);

	/* A delivered message keeps its units, also when the session ends
	 * before the next MAIL. */
	command(&m, SMTP_FWD_MAIL, mail);
	assert_true(policy_forward(&c, &st, &m, &v));
	m.in_mail = true;
	command(&m, SMTP_FWD_RCPT, rcpt);
	assert_true(policy_forward(&c, &st, &m, &v));
	m.rcpts = 1;
	delivered(&m);
	end(&st, &m);
	assert_false(policy_holding(&st));
	assert_false(st.ip_tracked);
	peek(&st, T0, avail);
	assert_int_equal(avail[LIMIT_MESSAGES], 2);
	assert_int_equal(avail[LIMIT_RECIPIENTS], 1);

	/* A session that ends mid-transaction gives back. */
	login(&st, "192.0.2.1", "erin@example.com", NULL);
	command(&m, SMTP_FWD_MAIL, mail);
	assert_true(policy_forward(&c, &st, &m, &v));
	m.in_mail = true;
	end(&st, &m);
	peek(&st, T0, avail);
	assert_int_equal(avail[LIMIT_MESSAGES], 2);
}

static void
test_sender_check(void **state)
{
	char own[] = "MAIL FROM:<Carol@Example.com>\r\n";
	char listed[] = "MAIL FROM:<sales@example.com>\r\n";
	char domain[] = "MAIL FROM:<news@carol.example>\r\n";
	char null[] = "MAIL FROM:<>\r\n";
	char foreign[] = "MAIL FROM:<boss@example.com>\r\n";
	char *ok[] = {own, listed, domain, null};
	const struct passwd_user_info info = {
		.senders = "sales@example.com,@carol.example"};
	struct policy_state st;
	struct policy_verdict v;
	struct policy_ctx c = ctx(NULL, "carol@example.com", T0);
	struct smtp m = {0};

	(void)state;
	cfg.user_limits.messages = (struct config_rate){100, 1000, 100};
	listener.sender_check = true;
	login(&st, "192.0.2.1", "carol@example.com", &info);
	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
		command(&m, SMTP_FWD_MAIL, ok[i]);
		assert_true(policy_forward(&c, &st, &m, &v));
	}
	command(&m, SMTP_FWD_MAIL, foreign);
	assert_false(policy_forward(&c, &st, &m, &v));
	assert_int_equal(v.refused, POLICY_SENDER);
	assert_string_equal(v.reply, "553 5.7.1 Sender address not owned by "
				     "the authenticated user");
	/* Refused before anything was taken. */
	assert_int_equal(st.held[LIMIT_MESSAGES], 1);
	/* Without sender_check on the listener, anything goes. */
	listener.sender_check = false;
	assert_true(policy_forward(&c, &st, &m, &v));
	end(&st, &m);
}

static void
test_memory_cap(void **state)
{
	char mail[] = "MAIL FROM:<alice@example.com>\r\n";
	char rcpt[] = "RCPT TO:<bob@example.org>\r\n";
	struct policy_state st;
	struct policy_verdict v;
	struct policy_ctx c = ctx(NULL, "alice@example.com", T0);
	struct smtp m = {0};

	(void)state;
	login(&st, "192.0.2.1", "alice@example.com", NULL);
	command(&m, SMTP_FWD_MAIL, mail);
	assert_true(policy_forward(&c, &st, &m, &v));
	m.in_mail = true;
	atomic_store(&caps.memory_over, true);
	/* The transaction under way finishes ... */
	command(&m, SMTP_FWD_RCPT, rcpt);
	assert_true(policy_forward(&c, &st, &m, &v));
	m.rcpts = 1;
	delivered(&m);
	/* ... a new one is refused, without taking a unit. */
	command(&m, SMTP_FWD_MAIL, mail);
	assert_false(policy_forward(&c, &st, &m, &v));
	assert_int_equal(v.refused, POLICY_MEMORY);
	assert_string_equal(v.reason, "max-memory");
	assert_int_equal(v.retry_ms, 0);
	assert_string_equal(
		v.reply,
		"451 4.3.1 Insufficient system resources, try again later");
	assert_false(policy_holding(&st));
	/* Counting it is the session's. */
	assert_int_equal(atomic_load(&caps.refused_mail), 0);
	atomic_store(&caps.memory_over, false);
	assert_true(policy_forward(&c, &st, &m, &v));
	end(&st, &m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_listener_allow_deny, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_connection_concurrency_and_rate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_failure_delay_and_ban,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_allowlisted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_message_and_recipient_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bytes_limit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_settle_gives_back, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sender_check, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_memory_cap, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
