/*
 * test_config.c - config_load() and its unit parsers.
 *
 * Each test writes a config file into a fresh temporary directory, loads it
 * and checks either the values or the exact "file:line: key: why" error.
 * The example conf/msaproxy.yaml is loaded too (from $MSAPROXY_SRCDIR, or
 * the current directory), and must agree with the built-in defaults.
 */
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "config/config.h"
#include "config/config_value.h"
#include "lib/ipnet.h"
#include "lib/log.h"

#define MINUTE_MS (UINT64_C(60) * 1000)
#define HOUR_MS	  (60 * MINUTE_MS)
#define MIB_B	  (UINT64_C(1024) * 1024)
#define GIB_B	  (1024 * MIB_B)

static char tmpdir[128];  /* realpath of the mkdtemp directory */
static char cfgpath[160]; /* tmpdir/msaproxy.yaml */
static char err[1024];

/* The smallest valid file, in parts so that tests can swap one part out.
 * The comments give each line's number in MINIMAL. */
#define TLS_PART                                                               \
	"tls:\n"	      /* 1 */                                          \
	"  certificates:\n"   /* 2 */                                          \
	"    - cert: c.crt\n" /* 3 */                                          \
	"      key: c.key\n"  /* 4 */
#define LISTENERS_PART                                                         \
	"listeners:\n"			/* 5 */                                \
	"  - address: 127.0.0.1:2587\n" /* 6 */                                \
	"    mode: starttls\n"		/* 7 */
#define AUTH_PART                                                              \
	"auth:\n"		 /* 8 */                                       \
	"  passwd_file: users\n" /* 9 */
#define BACKENDS_PART                                                          \
	"backends:\n"			  /* 10 */                             \
	"  servers:\n"			  /* 11 */                             \
	"    - address: 127.0.0.1:2525\n" /* 12 */
#define MINIMAL TLS_PART LISTENERS_PART AUTH_PART BACKENDS_PART

static int
setup(void **state)
{
	char tmpl[] = "/tmp/test_config.XXXXXX";
	char *dir;
	int n;

	(void)state;
	if (mkdtemp(tmpl) == NULL || (dir = realpath(tmpl, NULL)) == NULL)
		return -1;
	n = snprintf(tmpdir, sizeof(tmpdir), "%s", dir);
	free(dir);
	if (n < 0 || (size_t)n >= sizeof(tmpdir))
		return -1;
	n = snprintf(cfgpath, sizeof(cfgpath), "%s/msaproxy.yaml", tmpdir);
	return n < 0 || (size_t)n >= sizeof(cfgpath) ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(cfgpath);
	return rmdir(tmpdir);
}

static void
write_config(const char *text)
{
	FILE *fp = fopen(cfgpath, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static struct config *
load_ok(const char *text)
{
	struct config *cfg = NULL;

	write_config(text);
	err[0] = '\0';
	if (config_load(cfgpath, &cfg, err, sizeof(err)) != 0)
		fail_msg("unexpected error: %s", err);
	assert_non_null(cfg);
	return cfg;
}

/* The file must be refused with exactly "cfgpath:line: key: why". */
static void
expect_error(const char *text, int line, const char *key, const char *why)
{
	struct config *cfg = (struct config *)1;
	char want[1024];
	int n;

	write_config(text);
	n = snprintf(want, sizeof(want), "%s:%d: %s: %s", cfgpath, line, key,
		     why);
	assert_true(n > 0 && (size_t)n < sizeof(want));
	assert_int_equal(config_load(cfgpath, &cfg, err, sizeof(err)), -1);
	assert_null(cfg);
	assert_string_equal(err, want);
}

static unsigned
port_of(const struct config_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static void
assert_in_tmpdir(const char *path, const char *name)
{
	char want[256];
	int n;

	n = snprintf(want, sizeof(want), "%s/%s", tmpdir, name);
	assert_true(n > 0 && (size_t)n < sizeof(want));
	assert_string_equal(path, want);
}

/* ---- values ---------------------------------------------------------- */

static void
test_defaults(void **state)
{
	struct config *cfg = load_ok(MINIMAL);
	char host[256] = "";

	(void)state;
	gethostname(host, sizeof(host) - 1);
	assert_string_equal(cfg->hostname, host[0] ? host : "localhost");
	assert_string_equal(cfg->path, cfgpath);
	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_int_equal(cfg->log_format, LOG_FORMAT_KV);
	assert_int_equal(cfg->log_output, LOG_OUTPUT_STDERR);
	assert_int_equal(cfg->log_facility, 2);
	assert_string_equal(cfg->log_syslog_socket, "/dev/log");

	assert_int_equal(cfg->ncerts, 1);
	assert_in_tmpdir(cfg->certs[0].cert_file, "c.crt");
	assert_in_tmpdir(cfg->certs[0].key_file, "c.key");
	assert_int_equal(cfg->certs[0].nnames, 0);
	assert_null(cfg->certs[0].names);
	assert_int_equal(cfg->certs[0].line, 3);
	assert_int_equal(cfg->tls_min_version, TLS1_2_VERSION);
	assert_string_equal(cfg->tls_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256:"
					      "ECDHE-RSA-AES128-GCM-SHA256:"
					      "ECDHE-ECDSA-AES256-GCM-SHA384:"
					      "ECDHE-RSA-AES256-GCM-SHA384:"
					      "ECDHE-ECDSA-CHACHA20-POLY1305:"
					      "ECDHE-RSA-CHACHA20-POLY1305");
	assert_string_equal(cfg->tls_ciphersuites,
			    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
			    "TLS_CHACHA20_POLY1305_SHA256");
	assert_string_equal(cfg->tls_groups, "X25519:P-256");
	assert_true(cfg->tls_tickets);
	assert_int_equal(cfg->tls13_tickets, 1);
	assert_int_equal(cfg->ticket_key_lifetime_ms, 12 * 3600 * 1000);
	assert_int_equal(cfg->handshake_timeout_ms, 10 * 1000);

	assert_int_equal(cfg->nlisteners, 1);
	assert_string_equal(cfg->listeners[0].addr.text, "127.0.0.1:2587");
	assert_int_equal(cfg->listeners[0].addr.ss.ss_family, AF_INET);
	assert_int_equal(port_of(&cfg->listeners[0].addr), 2587);
	assert_int_equal(cfg->listeners[0].mode, LISTENER_STARTTLS);
	assert_int_equal(cfg->listeners[0].line, 6);

	assert_in_tmpdir(cfg->passwd_file, "users");
	assert_int_equal(cfg->auth_mechs, AUTH_MECH_PLAIN | AUTH_MECH_LOGIN);
	assert_int_equal(cfg->auth_threads, 2);
	assert_int_equal(cfg->auth_failure_delay_ms, 1000);
	assert_int_equal(cfg->auth_cache_ttl_ms, 3600 * 1000);
	assert_int_equal(cfg->auth_cache_size, 10000);

	assert_int_equal(cfg->max_line, 1000);
	assert_int_equal(cfg->max_auth_line, 12288);
	assert_int_equal(cfg->max_message_size, 50 * 1024 * 1024);
	assert_int_equal(cfg->max_recipients, 100);
	assert_int_equal(cfg->max_errors, 10);
	assert_int_equal(cfg->max_sessions, 10000);
	assert_int_equal(cfg->max_memory, 0);
	assert_int_equal(cfg->command_timeout_ms, 5 * 60 * 1000);
	assert_int_equal(cfg->data_timeout_ms, 10 * 60 * 1000);
	assert_int_equal(cfg->bare_newlines, BARE_NEWLINE_REJECT);

	assert_int_equal(cfg->nbackends, 1);
	assert_string_equal(cfg->backends[0].addr.text, "127.0.0.1:2525");
	assert_int_equal(port_of(&cfg->backends[0].addr), 2525);
	assert_int_equal(cfg->backends[0].weight, 1);
	assert_int_equal(cfg->backends[0].identity, IDENTITY_XCLIENT);
	assert_int_equal(cfg->backends[0].line, 12);
	assert_int_equal(cfg->backend_connect_timeout_ms, 10 * 1000);
	assert_int_equal(cfg->backend_reply_timeout_ms, 5 * 60 * 1000);
	assert_int_equal(cfg->backend_data_timeout_ms, 10 * 60 * 1000);
	assert_int_equal(cfg->backends[0].max_conns, 0);
	assert_int_equal(cfg->balance, BALANCE_ROUND_ROBIN);
	assert_int_equal(cfg->backend_down_time_ms, 30 * 1000);
	assert_int_equal(cfg->health_interval_ms, 0);
	assert_int_equal(cfg->health_timeout_ms, 5 * 1000);
	assert_int_equal(cfg->health_rise, 2);
	assert_int_equal(cfg->health_fall, 3);
	config_free(cfg);
}

/* Every key set to something other than its default. */
static void
test_all_keys(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok("hostname: mx1.example.org\n"
		      "workers: 4\n"
		      "log:\n"
		      "  level: debug\n"
		      "tls:\n"
		      "  certificates:\n"
		      "    - cert: /etc/ssl/a.crt\n"
		      "      key: keys/a.key\n"
		      "      names: [mail.example.org, '*.example.net']\n"
		      "    - cert: b.crt\n"
		      "      key: b.key\n"
		      "  min_version: TLSv1.3\n"
		      "  ciphers: ECDHE-RSA-AES128-GCM-SHA256\n"
		      "  ciphersuites: TLS_AES_256_GCM_SHA384\n"
		      "  groups: P-384\n"
		      "  session_tickets: off\n"
		      "  tls13_tickets: 0\n"
		      "  ticket_key_lifetime: 1d\n"
		      "  handshake_timeout: 2500ms\n"
		      "listeners:\n"
		      "  - address: '*:587'\n"
		      "    mode: starttls\n"
		      "  - address: '[::1]:465'\n"
		      "    mode: implicit\n"
		      "auth:\n"
		      "  passwd_file: /etc/msaproxy/users\n"
		      "  mechanisms: [login]\n"
		      "  threads: 8\n"
		      "  failure_delay: 0s\n"
		      "  cache_ttl: 0s\n"
		      "  cache_size: 10000000\n"
		      "limits:\n"
		      "  max_line: 2048\n"
		      "  max_auth_line: 4096\n"
		      "  max_message_size: 1GiB\n"
		      "  max_recipients: 5\n"
		      "  max_errors: 3\n"
		      "  max_sessions: 50\n"
		      "  max_memory: 512M\n"
		      "  command_timeout: 1m\n"
		      "  data_timeout: 2h\n"
		      "  bare_newlines: normalize\n"
		      "backends:\n"
		      "  connect_timeout: 3s\n"
		      "  reply_timeout: 4m\n"
		      "  data_timeout: 20m\n"
		      "  servers:\n"
		      "    - address: 10.0.0.1:25\n"
		      "      weight: 1000\n"
		      "      identity: none\n"
		      "    - address: '[2001:db8::1]:25'\n");

	assert_string_equal(cfg->hostname, "mx1.example.org");
	assert_int_equal(cfg->workers, 4);
	assert_int_equal(cfg->log_level, LOG_DEBUG);
	assert_int_equal(cfg->ncerts, 2);
	assert_string_equal(cfg->certs[0].cert_file, "/etc/ssl/a.crt");
	assert_in_tmpdir(cfg->certs[0].key_file, "keys/a.key");
	assert_int_equal(cfg->certs[0].nnames, 2);
	assert_string_equal(cfg->certs[0].names[0], "mail.example.org");
	assert_string_equal(cfg->certs[0].names[1], "*.example.net");
	assert_in_tmpdir(cfg->certs[1].cert_file, "b.crt");
	assert_int_equal(cfg->certs[1].nnames, 0);
	assert_int_equal(cfg->certs[1].line, 10);
	assert_int_equal(cfg->tls_min_version, TLS1_3_VERSION);
	assert_string_equal(cfg->tls_ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
	assert_string_equal(cfg->tls_ciphersuites, "TLS_AES_256_GCM_SHA384");
	assert_string_equal(cfg->tls_groups, "P-384");
	assert_false(cfg->tls_tickets);
	assert_int_equal(cfg->tls13_tickets, 0);
	assert_int_equal(cfg->ticket_key_lifetime_ms, 24 * 3600 * 1000);
	assert_int_equal(cfg->handshake_timeout_ms, 2500);

	assert_int_equal(cfg->nlisteners, 2);
	assert_int_equal(cfg->listeners[0].addr.ss.ss_family, AF_INET6);
	assert_int_equal(port_of(&cfg->listeners[0].addr), 587);
	assert_int_equal(cfg->listeners[1].mode, LISTENER_IMPLICIT);
	assert_int_equal(cfg->listeners[1].line, 23);

	assert_string_equal(cfg->passwd_file, "/etc/msaproxy/users");
	assert_int_equal(cfg->auth_mechs, AUTH_MECH_LOGIN);
	assert_int_equal(cfg->auth_threads, 8);
	assert_int_equal(cfg->auth_failure_delay_ms, 0);
	assert_int_equal(cfg->auth_cache_ttl_ms, 0);
	assert_int_equal(cfg->auth_cache_size, 10000000);

	assert_int_equal(cfg->max_line, 2048);
	assert_int_equal(cfg->max_auth_line, 4096);
	assert_int_equal(cfg->max_message_size, 1024 * 1024 * 1024);
	assert_int_equal(cfg->max_recipients, 5);
	assert_int_equal(cfg->max_errors, 3);
	assert_int_equal(cfg->max_sessions, 50);
	assert_int_equal(cfg->max_memory, 512 * MIB_B);
	assert_int_equal(cfg->command_timeout_ms, 60 * 1000);
	assert_int_equal(cfg->data_timeout_ms, 2 * 3600 * 1000);
	assert_int_equal(cfg->bare_newlines, BARE_NEWLINE_NORMALIZE);

	assert_int_equal(cfg->backend_connect_timeout_ms, 3000);
	assert_int_equal(cfg->backend_reply_timeout_ms, 4 * 60 * 1000);
	assert_int_equal(cfg->backend_data_timeout_ms, 20 * 60 * 1000);
	assert_int_equal(cfg->nbackends, 2);
	assert_int_equal(cfg->backends[0].weight, 1000);
	assert_int_equal(cfg->backends[0].identity, IDENTITY_NONE);
	assert_int_equal(cfg->backends[1].weight, 1);
	assert_int_equal(cfg->backends[1].identity, IDENTITY_XCLIENT);
	assert_int_equal(cfg->backends[1].addr.ss.ss_family, AF_INET6);
	config_free(cfg);
}

/* Booleans, empty sections, comments and quoting. */
static void
test_scalar_forms(void **state)
{
	static const char *const yes[] = {"true", "yes", "on", "True", "YES"};
	static const char *const no[] = {"false", "no", "off", "False", "OFF"};
	struct config *cfg;
	char text[2048];

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(*yes); i++) {
		snprintf(text, sizeof(text),
			 "log:\n" TLS_PART "  session_tickets: %s\n"
			 "  tls13_tickets: 10\n" LISTENERS_PART AUTH_PART
				 BACKENDS_PART,
			 no[i]);
		cfg = load_ok(text);
		assert_false(cfg->tls_tickets);
		assert_int_equal(cfg->tls13_tickets, 10);
		config_free(cfg);
		snprintf(text, sizeof(text),
			 TLS_PART
			 "  session_tickets: %s\n" LISTENERS_PART AUTH_PART
				 BACKENDS_PART,
			 yes[i]);
		cfg = load_ok(text);
		assert_true(cfg->tls_tickets);
		config_free(cfg);
	}

	/* Quoted values, flow style, comments, empty sections ("log:" in the
	 * loop above too). */
	cfg = load_ok(
		"# comment\n"
		"limits: # nothing set\n"
		"log: {level: \"warn\"}\n"
		"tls: {certificates: [{cert: 'x y.crt', key: k}]}\n"
		"listeners: [{address: \"127.0.0.1:25\", mode: implicit}]\n"
		"auth: {passwd_file: p, mechanisms: [Plain]}\n"
		"backends: {servers: [{address: '127.0.0.1:26'}]}\n");
	assert_int_equal(cfg->log_level, LOG_WARN);
	assert_in_tmpdir(cfg->certs[0].cert_file, "x y.crt");
	assert_int_equal(cfg->listeners[0].mode, LISTENER_IMPLICIT);
	assert_int_equal(cfg->auth_mechs, AUTH_MECH_PLAIN);
	assert_int_equal(cfg->max_line, 1000);
	config_free(cfg);
}

/* The shipped example loads, and says what the defaults are. */
static void
test_example_config(void **state)
{
	const char *srcdir = getenv("MSAPROXY_SRCDIR");
	struct config *ex = NULL, *def;
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s/conf/msaproxy.yaml",
		 srcdir != NULL ? srcdir : ".");
	if (config_load(path, &ex, err, sizeof(err)) != 0)
		fail_msg("%s", err);

	assert_string_equal(ex->hostname, "mail.example.test");
	assert_int_equal(ex->ncerts, 1);
	assert_non_null(strstr(ex->certs[0].cert_file, "/conf/demo/ecdsa.crt"));
	assert_non_null(strstr(ex->certs[0].key_file, "/conf/demo/ecdsa.key"));
	assert_int_equal(ex->certs[0].cert_file[0], '/');
	assert_int_equal(ex->certs[0].nnames, 1);
	assert_string_equal(ex->certs[0].names[0], "mail.example.test");
	assert_non_null(strstr(ex->passwd_file, "/conf/demo/users"));
	assert_int_equal(ex->nlisteners, 2);
	assert_string_equal(ex->listeners[0].addr.text, "127.0.0.1:2587");
	assert_int_equal(ex->listeners[0].mode, LISTENER_STARTTLS);
	assert_string_equal(ex->listeners[1].addr.text, "127.0.0.1:2465");
	assert_int_equal(ex->listeners[1].mode, LISTENER_IMPLICIT);
	assert_int_equal(ex->nbackends, 1);
	assert_string_equal(ex->backends[0].addr.text, "127.0.0.1:2525");
	assert_int_equal(ex->backends[0].identity, IDENTITY_XCLIENT);
	assert_string_equal(ex->metrics_listen.text, "127.0.0.1:9587");

	/* Everything else the example sets is the default it documents. */
	def = load_ok(MINIMAL);
	assert_int_equal(ex->workers, def->workers);
	assert_int_equal(ex->log_level, def->log_level);
	assert_int_equal(ex->log_format, def->log_format);
	assert_int_equal(ex->log_output, def->log_output);
	assert_int_equal(ex->log_facility, def->log_facility);
	assert_string_equal(ex->log_syslog_socket, def->log_syslog_socket);
	assert_int_equal(ex->tls_min_version, def->tls_min_version);
	assert_string_equal(ex->tls_ciphers, def->tls_ciphers);
	assert_string_equal(ex->tls_ciphersuites, def->tls_ciphersuites);
	assert_string_equal(ex->tls_groups, def->tls_groups);
	assert_int_equal(ex->tls_tickets, def->tls_tickets);
	assert_int_equal(ex->tls13_tickets, def->tls13_tickets);
	assert_int_equal(ex->ticket_key_lifetime_ms,
			 def->ticket_key_lifetime_ms);
	assert_int_equal(ex->handshake_timeout_ms, def->handshake_timeout_ms);
	assert_int_equal(ex->auth_mechs, def->auth_mechs);
	assert_int_equal(ex->auth_threads, def->auth_threads);
	assert_int_equal(ex->auth_failure_delay_ms, def->auth_failure_delay_ms);
	assert_int_equal(ex->auth_cache_ttl_ms, def->auth_cache_ttl_ms);
	assert_int_equal(ex->auth_cache_size, def->auth_cache_size);
	assert_int_equal(ex->max_line, def->max_line);
	assert_int_equal(ex->max_auth_line, def->max_auth_line);
	assert_int_equal(ex->max_message_size, def->max_message_size);
	assert_int_equal(ex->max_recipients, def->max_recipients);
	assert_int_equal(ex->max_errors, def->max_errors);
	assert_int_equal(ex->max_sessions, def->max_sessions);
	assert_int_equal(ex->max_memory, def->max_memory);
	assert_int_equal(ex->command_timeout_ms, def->command_timeout_ms);
	assert_int_equal(ex->data_timeout_ms, def->data_timeout_ms);
	assert_int_equal(ex->bare_newlines, def->bare_newlines);
	assert_int_equal(ex->backends[0].weight, def->backends[0].weight);
	assert_memory_equal(&ex->user_limits, &def->user_limits,
			    sizeof(ex->user_limits));
	assert_int_equal(ex->nclasses, def->nclasses);
	assert_int_equal(ex->nuser_classes, def->nuser_classes);
	assert_int_equal(ex->max_users, def->max_users);
	assert_memory_equal(&ex->login_failures, &def->login_failures,
			    sizeof(ex->login_failures));
	assert_int_equal(ex->login_max_delay_ms, def->login_max_delay_ms);
	assert_int_equal(ex->ip_prefix_v4, def->ip_prefix_v4);
	assert_int_equal(ex->ip_prefix_v6, def->ip_prefix_v6);
	assert_memory_equal(&ex->ip_connections, &def->ip_connections,
			    sizeof(ex->ip_connections));
	assert_int_equal(ex->ip_concurrency, def->ip_concurrency);
	assert_memory_equal(&ex->ip_auth_failures, &def->ip_auth_failures,
			    sizeof(ex->ip_auth_failures));
	assert_int_equal(ex->ip_ban_time_ms, def->ip_ban_time_ms);
	assert_int_equal(ex->ip_allow.n, def->ip_allow.n);
	assert_int_equal(ex->ip_max_entries, def->ip_max_entries);
	assert_int_equal(ex->listeners[0].allow.n, def->listeners[0].allow.n);
	assert_int_equal(ex->listeners[0].deny.n, def->listeners[0].deny.n);
	assert_int_equal(ex->listeners[0].sender_check,
			 def->listeners[0].sender_check);
	assert_int_equal(ex->backend_connect_timeout_ms,
			 def->backend_connect_timeout_ms);
	assert_int_equal(ex->backend_reply_timeout_ms,
			 def->backend_reply_timeout_ms);
	assert_int_equal(ex->backend_data_timeout_ms,
			 def->backend_data_timeout_ms);
	assert_int_equal(ex->backends[0].max_conns, def->backends[0].max_conns);
	assert_int_equal(ex->balance, def->balance);
	assert_int_equal(ex->backend_down_time_ms, def->backend_down_time_ms);
	assert_int_equal(ex->health_interval_ms, def->health_interval_ms);
	assert_int_equal(ex->health_timeout_ms, def->health_timeout_ms);
	assert_int_equal(ex->health_rise, def->health_rise);
	assert_int_equal(ex->health_fall, def->health_fall);
	config_free(def);
	config_free(ex);
}

/* ---- units ----------------------------------------------------------- */

static void
test_durations(void **state)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} good[] = {
		{"250ms", 250},	   {"30s", 30000},
		{"5m", 300000},	   {"1h", 3600000},
		{"2d", 172800000}, {"0s", 0},
		{"007s", 7000},	   {"18446744073709551615ms", UINT64_MAX},
	};
	static const char *const bad[] = {
		"",
		"30",
		"s",
		"5x",
		"5 s",
		"-5s",
		"+5s",
		"1.5h",
		"5S",
		"5sec",
		" 5s",
		"5s ",
		"5mss",
		"0x10s",
		"18446744073709551616ms",
		"18446744073709552s",
		"99999999999999999999d",
	};
	uint64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		ms = 12345;
		assert_int_equal(config_parse_duration(good[i].s, &ms), 0);
		assert_int_equal(ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		ms = 12345;
		if (config_parse_duration(bad[i], &ms) != -1)
			fail_msg("duration \"%s\" accepted", bad[i]);
		assert_int_equal(ms, 12345); /* untouched */
	}
}

static void
test_sizes(void **state)
{
	static const struct {
		const char *s;
		uint64_t bytes;
	} good[] = {
		{"1000", 1000},
		{"0", 0},
		{"512KB", 512 * 1024},
		{"50MB", 50 * 1024 * 1024},
		{"1GB", 1024 * 1024 * 1024},
		{"4GB", 4ull * 1024 * 1024 * 1024},
		{"1KiB", 1024},
		{"2MiB", 2 * 1024 * 1024},
		{"1GiB", 1024 * 1024 * 1024},
		{"1kb", 1024},
		{"3mb", 3 * 1024 * 1024},
		{"1gb", 1024 * 1024 * 1024},
		{"10K", 10 * 1024},
		{"10M", 10 * 1024 * 1024},
		{"17179869183GB", UINT64_MAX - (1024 * 1024 * 1024 - 1)},
		{"18446744073709551615", UINT64_MAX},
	};
	static const char *const bad[] = {
		"",
		"MB",
		"5TB",
		"1.5MB",
		"-1",
		"+1",
		"5 MB",
		"50MBs",
		"0x100",
		"17179869184GB", /* 2^64 */
		"18014398509481984KB",
		"18446744073709551616",
		"99999999999999999999MB",
	};
	uint64_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		n = 12345;
		assert_null(config_value_size(good[i].s, &n));
		assert_int_equal(n, good[i].bytes);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (config_value_size(bad[i], &n) == NULL)
			fail_msg("size \"%s\" accepted", bad[i]);
	}
}

static void
test_addresses(void **state)
{
	static const char *const bad[] = {
		"",
		"localhost:25",
		"mail.example.com:25",
		"127.0.0.1",
		"127.0.0.1:",
		"127.0.0.1:0",
		"127.0.0.1:65536",
		"127.0.0.1:99999999999999999999999",
		"127.0.0.1:-1",
		"127.0.0.1:x",
		"127.0.0.1:25 ",
		" 127.0.0.1:25",
		"1.2.3:25",
		"1.2.3.256:25",
		"::1:25",
		"::1",
		"[::1]",
		"[::1]25",
		"[::1:25",
		"[1.2.3.4]:25",
		"[fe80::1%eth0]:25",
		":25",
		"*",
		"*:0",
		"[*]:25",
		"[::1]:65536",
		"127.0.0.1:2525:1",
	};
	struct config_addr a;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;
	char longer[300];

	(void)state;
	assert_null(config_value_addr("127.0.0.1:2587", &a));
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	assert_int_equal(ntohs(sin->sin_port), 2587);
	assert_string_equal(a.text, "127.0.0.1:2587");

	assert_null(config_value_addr("0.0.0.0:65535", &a));
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(ntohs(sin->sin_port), 65535);

	assert_null(config_value_addr("[::1]:2587", &a));
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(ntohs(sin6->sin6_port), 2587);
	assert_string_equal(a.text, "[::1]:2587");

	assert_null(config_value_addr("[2001:db8::25]:1", &a));
	assert_int_equal(ntohs(sin6->sin6_port), 1);

	/* "*" is the IPv6 wildcard, bound dual-stack. */
	assert_null(config_value_addr("*:587", &a));
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	assert_int_equal(ntohs(sin6->sin6_port), 587);
	assert_string_equal(a.text, "*:587");

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (config_value_addr(bad[i], &a) == NULL)
			fail_msg("address \"%s\" accepted", bad[i]);
	}
	memset(longer, '1', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	assert_non_null(config_value_addr(longer, &a));
}

static void
test_rates(void **state)
{
	static const struct {
		const char *s;
		bool bytes;
		struct config_rate r;
	} good[] = {
		{"100/1h", false, {100, HOUR_MS, 100}},
		{"100/1h burst 20", false, {100, HOUR_MS, 20}},
		{"100/1h   burst  20", false, {100, HOUR_MS, 20}},
		{"5/10m burst 500", false, {5, 600000, 500}},
		{"1/1ms", false, {1, 1, 1}},
		{"off", false, {0, 0, 0}},
		{"0", false, {0, 0, 0}},
		{"1GB/1h burst 100MB", true, {GIB_B, HOUR_MS, 100 * MIB_B}},
		{"1gib/1d", true, {GIB_B, 24 * HOUR_MS, GIB_B}},
		{"512KB/30s", true, {512 * 1024, 30000, 512 * 1024}},
		{"1000/1h burst 2000", true, {1000, HOUR_MS, 2000}},
		{"off", true, {0, 0, 0}},
		{"0", true, {0, 0, 0}},
	};
	static const struct {
		const char *s;
		bool bytes;
	} bad[] = {
		{"", false},
		{"100", false},
		{"100/", false},
		{"/1h", false},
		{"/", false},
		{"x/1h", false},
		{"-1/1h", false},
		{"100/1x", false},
		{"100/1", false},
		{"100/0s", false},
		{"0/1h", false},
		{"100/1h burst 0", false},
		{"100/1h burst", false},
		{"100/1h bust 3", false},
		{"100/1h burst x", false},
		{"100/1h burst 20 more", false},
		{"100/1h burst 20 burst 30", false},
		{"100/1h more", false},
		{"100/1h ", false},
		{" 100/1h", false},
		{"100 /1h", false},
		{"100/ 1h", false},
		{"100/1h/2h", false},
		{"OFF", false},
		{"off ", false},
		{"00", false}, /* only "0" itself means off */
		{"1MB/1h", false},
		{"100/1h burst 1MB", false},
		{"99999999999999999999/1h", false},
		{"1GB", true},
		{"1XB/1h", true},
		{"1GB/1h burst 0", true},
		{"1GB/1h burst 1TB", true},
		{"0B/1h", true},
	};
	struct config_rate r;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
		memset(&r, 0xa5, sizeof(r));
		if (config_value_rate(good[i].s, good[i].bytes, &r) != NULL)
			fail_msg("rate \"%s\" refused", good[i].s);
		assert_int_equal(r.count, good[i].r.count);
		assert_int_equal(r.period_ms, good[i].r.period_ms);
		assert_int_equal(r.burst, good[i].r.burst);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (config_value_rate(bad[i].s, bad[i].bytes, &r) == NULL)
			fail_msg("rate \"%s\" accepted", bad[i].s);
	}
}

/* ---- limits: users, classes, networks -------------------------------- */

static void
assert_rate(const struct config_rate *r, uint64_t count, uint64_t period_ms,
	    uint64_t burst)
{
	assert_int_equal(r->count, count);
	assert_int_equal(r->period_ms, period_ms);
	assert_int_equal(r->burst, burst);
}

static void
assert_net(const struct ipnet *net, const char *text)
{
	char buf[IPNET_TEXT_MAX];

	assert_string_equal(ipnet_format(net, buf, sizeof(buf)), text);
}

/* With no limits keys at all: the defaults set_defaults() documents. */
static void
test_limits_defaults(void **state)
{
	struct config *cfg = load_ok(MINIMAL);

	(void)state;
	assert_rate(&cfg->user_limits.messages, 300, HOUR_MS, 300);
	assert_rate(&cfg->user_limits.recipients, 1000, HOUR_MS, 1000);
	assert_rate(&cfg->user_limits.bytes, GIB_B, HOUR_MS, GIB_B);
	assert_rate(&cfg->user_limits.messages_quota, 0, 0, 0);
	assert_int_equal(cfg->nclasses, 0);
	assert_null(cfg->classes);
	assert_int_equal(cfg->nuser_classes, 0);
	assert_null(cfg->user_classes);
	assert_int_equal(cfg->max_users, 100000);
	assert_rate(&cfg->login_failures, 5, 10 * MINUTE_MS, 5);
	assert_int_equal(cfg->login_max_delay_ms, 30 * 1000);
	assert_int_equal(cfg->ip_prefix_v4, 32);
	assert_int_equal(cfg->ip_prefix_v6, 64);
	assert_rate(&cfg->ip_connections, 120, MINUTE_MS, 120);
	assert_int_equal(cfg->ip_concurrency, 50);
	assert_rate(&cfg->ip_auth_failures, 10, 10 * MINUTE_MS, 10);
	assert_int_equal(cfg->ip_ban_time_ms, HOUR_MS);
	assert_int_equal(cfg->ip_allow.n, 0);
	assert_null(cfg->ip_allow.v);
	assert_int_equal(cfg->ip_max_entries, 100000);
	assert_int_equal(cfg->listeners[0].allow.n, 0);
	assert_int_equal(cfg->listeners[0].deny.n, 0);
	assert_false(cfg->listeners[0].sender_check);

	assert_null(config_class_find(cfg, "default"));
	assert_null(config_class_find(cfg, ""));
	assert_null(config_user_class(cfg, "carol@example.test"));
	config_free(cfg);

	/* Empty sections are the same as none. */
	cfg = load_ok(MINIMAL "limits:\n"
			      "  user:\n"
			      "  classes:\n"
			      "  users:\n"
			      "  login:\n"
			      "  ip:\n"
			      "    allow:\n");
	assert_rate(&cfg->user_limits.messages, 300, HOUR_MS, 300);
	assert_int_equal(cfg->nclasses, 0);
	assert_int_equal(cfg->nuser_classes, 0);
	assert_int_equal(cfg->ip_allow.n, 0);
	config_free(cfg);
	cfg = load_ok(MINIMAL "limits: {classes: {}, users: {}, "
			      "ip: {allow: []}}\n");
	assert_int_equal(cfg->nclasses, 0);
	assert_int_equal(cfg->nuser_classes, 0);
	assert_int_equal(cfg->ip_allow.n, 0);
	config_free(cfg);
}

static void
test_limits_user(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL "limits:\n"
			      "  user:\n"
			      "    messages: 100/1h burst 20\n"
			      "    recipients: 0\n"
			      "    bytes: 1GB/1h burst 100MB\n"
			      "    messages_quota: 500/1d\n"
			      "  max_users: 64\n");
	assert_rate(&cfg->user_limits.messages, 100, HOUR_MS, 20);
	assert_rate(&cfg->user_limits.recipients, 0, 0, 0);
	assert_rate(&cfg->user_limits.bytes, GIB_B, HOUR_MS, 100 * MIB_B);
	assert_rate(&cfg->user_limits.messages_quota, 500, 24 * HOUR_MS, 500);
	assert_int_equal(cfg->max_users, 64);
	config_free(cfg);

	/* A key left out keeps its default; "off" turns one off. */
	cfg = load_ok(MINIMAL "limits:\n"
			      "  user:\n"
			      "    messages: off\n"
			      "    bytes: off\n"
			      "  max_users: 100000000\n");
	assert_rate(&cfg->user_limits.messages, 0, 0, 0);
	assert_rate(&cfg->user_limits.recipients, 1000, HOUR_MS, 1000);
	assert_rate(&cfg->user_limits.bytes, 0, 0, 0);
	assert_int_equal(cfg->max_users, 100000000);
	config_free(cfg);

	/* The byte burst may equal the largest message; bytes off allows
	 * any max_message_size. */
	cfg = load_ok(MINIMAL "limits:\n"
			      "  max_message_size: 1MB\n"
			      "  user:\n"
			      "    bytes: 10GB/1d burst 1MB\n");
	assert_rate(&cfg->user_limits.bytes, 10 * GIB_B, 24 * HOUR_MS, MIB_B);
	config_free(cfg);
	cfg = load_ok(MINIMAL "limits:\n"
			      "  max_message_size: 4GB\n"
			      "  user: {bytes: off}\n");
	assert_int_equal(cfg->max_message_size, 4 * GIB_B);
	config_free(cfg);
}

/* limits.user.KEY: VALUE must be refused at its line with why. */
static void
expect_user_rate_error(const char *key, const char *value, const char *why)
{
	char text[2048], full[64];

	snprintf(text, sizeof(text),
		 MINIMAL "limits:\n"	 /* 13 */
			 "  user:\n"	 /* 14 */
			 "    %s: %s\n", /* 15 */
		 key, value);
	snprintf(full, sizeof(full), "limits.user.%s", key);
	expect_error(text, 15, full, why);
}

static void
test_blocklist_keys(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL "blocklist:\n"
			      "  files: [lists/drop.txt]\n"
			      "  allow: [198.51.100.7]\n"
			      "  ban_floods: true\n"
			      "  xdp:\n"
			      "    enabled: true\n"
			      "    interfaces: [eth0, veth-a.100]\n"
			      "    mode: generic\n"
			      "    scope: listeners\n");
	assert_int_equal(cfg->nblocklist_files, 1);
	assert_in_tmpdir(cfg->blocklist_files[0], "lists/drop.txt");
	assert_int_equal(cfg->blocklist_allow.n, 1);
	assert_true(cfg->blocklist_auto_ban && cfg->blocklist_ban_floods);
	assert_int_equal(cfg->nxdp_interfaces, 2);
	assert_string_equal(cfg->xdp_interfaces[1], "veth-a.100");
	assert_int_equal(cfg->xdp_mode, XDP_MODE_GENERIC);
	assert_int_equal(cfg->xdp_scope, XDP_SCOPE_LISTENERS);
	assert_string_equal(cfg->xdp_pin_dir, "/sys/fs/bpf/msaproxy");
	config_free(cfg);

	expect_error(MINIMAL "blocklist:\n  files: drop.txt\n", 14,
		     "blocklist.files", "expected a list of files");
	expect_error(MINIMAL "blocklist:\n  files: [\"\"]\n", 14,
		     "blocklist.files[0]", "must not be empty");
	expect_error(MINIMAL "blocklist:\n  max_entries: 0\n", 14,
		     "blocklist.max_entries",
		     "must be between 1 and 100000000");
	expect_error(MINIMAL "blocklist:\n  xdp:\n    interfaces: eth0\n", 15,
		     "blocklist.xdp.interfaces",
		     "expected a list such as [eth0]");
	static const char *const bad_names[] = {
		"eth/0", "eth 0", "eth:0", "..", "sixteen-chars-xx",
	};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(*bad_names); i++) {
		char text[512];

		snprintf(text, sizeof(text),
			 MINIMAL "blocklist:\n  xdp:\n    interfaces: "
				 "[\"%s\"]\n",
			 bad_names[i]);
		expect_error(text, 15, "blocklist.xdp.interfaces[0]",
			     "expected an interface name such as eth0");
	}
	expect_error(MINIMAL "blocklist:\n  xdp:\n    enabled: true\n", 15,
		     "blocklist.xdp.interfaces",
		     "at least one interface when xdp is enabled");
}

static void
test_control_and_shutdown(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL);
	assert_null(cfg->control_socket);
	assert_int_equal(cfg->control_mode, 0600);
	assert_int_equal(cfg->shutdown_timeout_ms, 30000);
	assert_int_equal(cfg->shutdown_fast_timeout_ms, 3000);
	config_free(cfg);
	cfg = load_ok(MINIMAL "control:\n"
			      "  socket: run/ctl.sock\n"
			      "  mode: \"0660\"\n"
			      "shutdown:\n"
			      "  timeout: 2m\n"
			      "  fast_timeout: 0s\n");
	assert_in_tmpdir(cfg->control_socket, "run/ctl.sock");
	assert_int_equal(cfg->control_mode, 0660);
	assert_int_equal(cfg->shutdown_timeout_ms, 120000);
	assert_int_equal(cfg->shutdown_fast_timeout_ms, 0);
	config_free(cfg);
	expect_error(MINIMAL "control:\n  mode: \"0400\"\n", 14, "control.mode",
		     "expected an octal mode from 0600 to 0777, such as 0660 "
		     "(the owner must read and write)");
	expect_error(MINIMAL "control:\n  mode: \"0999\"\n", 14, "control.mode",
		     "expected an octal mode from 0600 to 0777, such as 0660 "
		     "(the owner must read and write)");
}

/* The addresses the system's resolver gives name (stream, AI_ADDRCONFIG),
 * sorted as config_resolve.c sorts them: what the proxy must have made. */
static size_t
resolve_like_the_proxy(const char *name, struct sockaddr_storage *out,
		       size_t max)
{
	struct addrinfo hints, *res, *ai;
	size_t n = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	assert_int_equal(getaddrinfo(name, NULL, &hints, &res), 0);
	for (ai = res; ai != NULL && n < max; ai = ai->ai_next) {
		bool dup = false;
		struct sockaddr_storage ss;

		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		for (size_t k = 0; k < n; k++)
			dup = dup ||
			      (out[k].ss_family == ss.ss_family &&
			       (ss.ss_family == AF_INET
					? memcmp(&((struct sockaddr_in
							    *)&out[k])
							  ->sin_addr,
						 &((struct sockaddr_in *)&ss)
							  ->sin_addr,
						 4) == 0
					: memcmp(&((struct sockaddr_in6
							    *)&out[k])
							  ->sin6_addr,
						 &((struct sockaddr_in6 *)&ss)
							  ->sin6_addr,
						 16) == 0));
		if (!dup)
			out[n++] = ss;
	}
	freeaddrinfo(res);
	return n;
}

/* Issue 18 item 17: a backend by host name is one server per address
 * (localhost: no network needed), "HOST:PORT/IP"; a name that does not
 * resolve is refused with its line; the same name twice, or a name that
 * reaches a server listed by address, is refused too. */
static void
test_backend_host_names(void **state)
{
	struct sockaddr_storage want[8];
	struct config *cfg;
	size_t n;
	char text[512];

	(void)state;
	n = resolve_like_the_proxy("localhost", want, 8);
	assert_true(n >= 1);
	cfg = load_ok(TLS_PART LISTENERS_PART AUTH_PART
		      "backends:\n"
		      "  resolve_interval: 5s\n"
		      "  servers:\n"
		      "    - address: 192.0.2.1:25\n"
		      "    - address: localhost:2525\n"
		      "      weight: 7\n"
		      "      tls: starttls-verify\n");
	assert_int_equal(cfg->backend_resolve_interval_ms, 5000);
	assert_int_equal(cfg->nbackends, 1 + n);
	assert_true(config_backends_named(cfg));
	assert_null(cfg->backends[0].host);
	assert_string_equal(cfg->backends[0].addr.text, "192.0.2.1:25");
	for (size_t i = 0; i < n; i++) {
		const struct config_backend *b = &cfg->backends[1 + i];
		char ip[64];
		const void *a =
			b->addr.ss.ss_family == AF_INET
				? (const void *)&((const struct sockaddr_in *)&b
							  ->addr.ss)
					  ->sin_addr
				: (const void *)&((const struct sockaddr_in6
							   *)&b->addr.ss)
					  ->sin6_addr;

		assert_string_equal(b->host, "localhost");
		assert_int_equal(b->weight, 7);
		assert_int_equal(b->line, 14);
		assert_int_equal(b->name_ord, 1);
		assert_int_equal(port_of(&b->addr), 2525);
		/* Checked against the name written, not the address. */
		assert_string_equal(b->tls_name, "localhost");
		assert_non_null(
			inet_ntop(b->addr.ss.ss_family, a, ip, sizeof(ip)));
		snprintf(text, sizeof(text), "localhost:2525/%s", ip);
		assert_string_equal(b->addr.text, text);
	}
	/* Looked up again: the same. */
	assert_int_equal(config_resolve_compare(cfg, text, sizeof(text)),
			 CONFIG_RESOLVE_SAME);
	/* Another answer than the one it holds: changed, and said. */
	((struct sockaddr_in *)&cfg->backends[1].addr.ss)->sin_port = htons(1);
	assert_int_equal(config_resolve_compare(cfg, text, sizeof(text)),
			 CONFIG_RESOLVE_CHANGED);
	assert_memory_equal(text, "localhost:2525: ", 16);
	/* A name that stopped resolving: failed, and said. */
	free(cfg->backends[1].host);
	cfg->backends[1].host = strdup("nonexistent.invalid");
	assert_int_equal(config_resolve_compare(cfg, text, sizeof(text)),
			 CONFIG_RESOLVE_FAILED);
	assert_memory_equal(text, "nonexistent.invalid:2525: ", 26);
	config_free(cfg);

	cfg = load_ok(MINIMAL);
	assert_false(config_backends_named(cfg));
	assert_int_equal(cfg->backend_resolve_interval_ms, 60000);
	config_free(cfg);

	write_config(TLS_PART LISTENERS_PART AUTH_PART
		     "backends:\n"
		     "  servers:\n"
		     "    - address: 127.0.0.1:2525\n"
		     "    - address: nonexistent.invalid:25\n");
	assert_int_equal(config_load(cfgpath, &cfg, err, sizeof(err)), -1);
	snprintf(text, sizeof(text),
		 "%s:13: backends.servers[1].address: cannot resolve "
		 "nonexistent.invalid: ",
		 cfgpath);
	assert_memory_equal(err, text, strlen(text));
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "backends:\n"
		     "  servers:\n"
		     "    - address: localhost:2525\n"
		     "    - address: LOCALHOST:2525\n",
		     13, "backends.servers[1].address",
		     "same address as servers[0]; use weight instead");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "backends:\n"
		     "  servers:\n"
		     "    - address: 127.0.0.1:2525\n"
		     "    - address: localhost:2525\n",
		     13, "backends.servers[1].address",
		     "localhost:2525/127.0.0.1 is the address of servers[0] "
		     "too; use weight instead");
	expect_error(MINIMAL "  resolve_interval: 2d\n", 13,
		     "backends.resolve_interval", "must be between 0ms and 1d");
	/* Still no host names where the proxy binds. */
	expect_error(TLS_PART "listeners:\n"
			      "  - address: localhost:2587\n"
			      "    mode: starttls\n" AUTH_PART BACKENDS_PART,
		     6, "listeners[0].address",
		     "expected an IP address, not a host name");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "backends:\n"
		     "  servers:\n"
		     "    - address: 1.2.3:25\n",
		     12, "backends.servers[0].address",
		     "expected an IP address, not a host name");
}

/* worker_buffers (issue 18, item 18): defaults 512 and 64, other powers
 * of two taken, anything else refused with its line and a near value. */
static void
test_worker_buffers(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL);
	assert_int_equal(cfg->recv_buffers, 512);
	assert_int_equal(cfg->data_buffers, 64);
	config_free(cfg);
	cfg = load_ok(MINIMAL "worker_buffers:\n  receive: 16\n  data: 2\n");
	assert_int_equal(cfg->recv_buffers, 16);
	assert_int_equal(cfg->data_buffers, 2);
	config_free(cfg);
	expect_error(MINIMAL "worker_buffers:\n  receive: 100\n", 14,
		     "worker_buffers.receive",
		     "must be a power of two (e.g. 64 or 128), not 100");
	expect_error(MINIMAL "worker_buffers:\n  receive: 16\n  data: 3\n", 15,
		     "worker_buffers.data",
		     "must be a power of two (e.g. 2 or 4), not 3");
	expect_error(MINIMAL "worker_buffers:\n  receive: 4\n", 14,
		     "worker_buffers.receive", "must be between 8 and 32768");
	expect_error(MINIMAL "worker_buffers:\n  data: 65536\n", 14,
		     "worker_buffers.data", "must be between 1 and 32768");
	expect_error(MINIMAL "worker_buffers:\n  small: 8\n", 14,
		     "worker_buffers.small", "unknown key");
}

/* privileges: accounts resolved at load (nobody/nogroup exist on every
 * Debian host), root refused, group only with a user. */
static void
test_privileges(void **state)
{
	struct passwd *nobody = getpwnam("nobody");
	struct group *nogroup = getgrnam("nogroup");
	struct config *cfg;

	(void)state;
	assert_non_null(nobody);
	assert_non_null(nogroup);
	cfg = load_ok(MINIMAL);
	assert_null(cfg->run_user);
	assert_int_equal(cfg->seccomp, SECCOMP_OFF);
	config_free(cfg);
	cfg = load_ok(MINIMAL "privileges:\n  user: nobody\n");
	assert_string_equal(cfg->run_user, "nobody");
	assert_int_equal(cfg->run_uid, nobody->pw_uid);
	assert_int_equal(cfg->run_gid, nobody->pw_gid);
	config_free(cfg);
	cfg = load_ok(MINIMAL "privileges:\n"
			      "  user: nobody\n"
			      "  group: nogroup\n"
			      "  seccomp: kill\n");
	assert_int_equal(cfg->run_gid, nogroup->gr_gid);
	assert_int_equal(cfg->seccomp, SECCOMP_KILL);
	config_free(cfg);
	expect_error(MINIMAL "privileges:\n  user: no-such-user-x\n", 14,
		     "privileges.user",
		     "no user \"no-such-user-x\" on this host");
	expect_error(MINIMAL "privileges:\n  user: root\n", 14,
		     "privileges.user",
		     "\"root\" is root: name an unprivileged user");
	expect_error(MINIMAL "privileges:\n  user: \"a b\"\n", 14,
		     "privileges.user",
		     "expected a user name such as msaproxy");
	expect_error(MINIMAL "privileges:\n  user: nobody\n  group: root\n", 15,
		     "privileges.group",
		     "\"root\" is root's group: name another");
	expect_error(MINIMAL "privileges:\n  group: nogroup\n", 14,
		     "privileges.group", "needs privileges.user");
	expect_error(MINIMAL "privileges:\n  seccomp: on\n", 14,
		     "privileges.seccomp", "must be off, log or kill");
}

/* metrics.listen: off by default; an address (wildcard too), refused
 * when it is not one or is a listener's. */
static void
test_metrics_listen(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL);
	assert_int_equal(cfg->metrics_listen.len, 0);
	config_free(cfg);
	cfg = load_ok(MINIMAL "metrics:\n  listen: 127.0.0.1:9587\n");
	assert_string_equal(cfg->metrics_listen.text, "127.0.0.1:9587");
	assert_int_equal(cfg->metrics_listen.ss.ss_family, AF_INET);
	assert_int_equal(port_of(&cfg->metrics_listen), 9587);
	assert_int_equal(config_key_line(cfg, "metrics.listen"), 14);
	config_free(cfg);
	cfg = load_ok(MINIMAL "metrics:\n  listen: \"[::1]:9587\"\n");
	assert_int_equal(cfg->metrics_listen.ss.ss_family, AF_INET6);
	config_free(cfg);
	cfg = load_ok(MINIMAL "metrics:\n  listen: \"*:9587\"\n");
	assert_int_equal(port_of(&cfg->metrics_listen), 9587);
	config_free(cfg);
	cfg = load_ok(MINIMAL "metrics: {}\n");
	assert_int_equal(cfg->metrics_listen.len, 0);
	config_free(cfg);

	expect_error(MINIMAL "metrics:\n  listen: localhost:9587\n", 14,
		     "metrics.listen",
		     "expected an IP address, not a host name");
	expect_error(MINIMAL "metrics:\n  listen: 127.0.0.1\n", 14,
		     "metrics.listen", "missing :port after the address");
	expect_error(MINIMAL "metrics:\n  listen: 127.0.0.1:0\n", 14,
		     "metrics.listen", "port must be between 1 and 65535");
	expect_error(MINIMAL "metrics:\n  listen: 127.0.0.1:2587\n", 14,
		     "metrics.listen", "same address as listeners[0]");
	expect_error(MINIMAL "metrics:\n  port: 9587\n", 14, "metrics.port",
		     "unknown key");
	expect_error(MINIMAL "metrics:\n  listen: 127.0.0.1:9587\n"
			     "  listen: 127.0.0.1:9588\n",
		     15, "metrics.listen", "duplicate key (first at line 14)");
}

static void
test_err_limits_user(void **state)
{
	static const char *msgs =
		"expected a rate like 100/1h or 100/1h burst 20, or off";
	static const char *bytes =
		"expected a rate like 1GB/1h or 1GB/1h burst 100MB, or off";
	static const char *small =
		"burst 10MB is smaller than limits.max_message_size (50MB): "
		"such a message could never be sent";

	(void)state;
	expect_user_rate_error("messages", "100", msgs);
	expect_user_rate_error("messages", "100/", msgs);
	expect_user_rate_error("messages", "/1h", msgs);
	expect_user_rate_error("messages", "100/1h bust 3", msgs);
	expect_user_rate_error("messages", "100/1h burst", msgs);
	expect_user_rate_error("messages", "100/1h burst 20 extra", msgs);
	expect_user_rate_error("messages", "100/1h extra", msgs);
	expect_user_rate_error("messages", "x/1h", "expected a whole number");
	expect_user_rate_error("recipients", "1k/1h",
			       "expected a whole number");
	expect_user_rate_error("messages", "99999999999999999999/1h",
			       "number is too large");
	expect_user_rate_error("messages", "100/1x",
			       "expected a duration like 30s, 5m, 1h");
	expect_user_rate_error("messages", "100/60",
			       "a unit is required, e.g. 30s, 5m, 1h");
	expect_user_rate_error("messages", "100/0s",
			       "the period must be greater than 0");
	expect_user_rate_error(
		"messages", "0/1h",
		"the count must be greater than 0 (or the rate off)");
	expect_user_rate_error("recipients", "100/1h burst 0",
			       "the burst must be greater than 0");
	expect_user_rate_error("messages_quota", "500",
			       msgs); /* a quota is a rate too */
	expect_user_rate_error("bytes", "1GB", bytes);
	expect_user_rate_error("bytes", "1XB/1h",
			       "expected a size like 512KB, 50MB, 1GB");
	expect_user_rate_error("bytes", "1GB/1h burst 2XB",
			       "expected a size like 512KB, 50MB, 1GB");
	expect_user_rate_error("bytes", "1GB/1h burst 0",
			       "the burst must be greater than 0");
	expect_user_rate_error("messages", "[100/1h]",
			       "expected a single value, not a list");

	/* The byte burst must hold the largest message. */
	expect_user_rate_error("bytes", "1GB/1h burst 10MB", small);
	expect_user_rate_error("bytes", "10MB/1h", small); /* burst = count */

	/* Duplicate key: reported at the second one. */
	expect_error(MINIMAL "limits:\n"
			     "  user:\n"
			     "    bytes: 1GB/1h\n"
			     "    bytes: 2GB/1h\n",
		     16, "limits.user.bytes",
		     "duplicate key (first at line 15)");
	/* A larger max_message_size against the default 1GB burst: named
	 * as limits.user.bytes, at the line of max_message_size (there is
	 * no limits.user.bytes line). */
	expect_error(MINIMAL "limits:\n"
			     "  max_line: 1000\n"
			     "  max_message_size: 2GB\n",
		     15, "limits.user.bytes",
		     "burst 1GB is smaller than limits.max_message_size "
		     "(2GB): such a message could never be sent");
	expect_error(MINIMAL "limits:\n"
			     "  max_message_size: 2GB\n"
			     "  user:\n"
			     "    messages: 1/1h\n"
			     "    bytes: 1GB/1h\n",
		     17, "limits.user.bytes",
		     "burst 1GB is smaller than limits.max_message_size "
		     "(2GB): such a message could never be sent");
	expect_error(MINIMAL "limits:\n"
			     "  user:\n"
			     "    message: 1/1h\n",
		     15, "limits.user.message", "unknown key");
	expect_error(MINIMAL "limits:\n"
			     "  user: 100/1h\n",
		     14, "limits.user", "expected a mapping");
	expect_error(MINIMAL "limits:\n"
			     "  max_users: 63\n",
		     14, "limits.max_users",
		     "must be between 64 and 100000000");
}

/* Classes inherit what they leave out from limits.user, wherever in the
 * file limits.user is. */
static void
test_limits_classes(void **state)
{
	const struct config_class *bulk, *slow, *same, *none;
	struct config *cfg;
	char name[80], text[2048];

	(void)state;
	cfg = load_ok(MINIMAL "limits:\n"			    /* 13 */
			      "  classes:\n"			    /* 14 */
			      "    bulk:\n"			    /* 15 */
			      "      messages: 5000/1h\n"	    /* 16 */
			      "      bytes: 5GB/1h burst 100MB\n"   /* 17 */
			      "    slow: {messages: 10/1h}\n"	    /* 18 */
			      "    same:\n"			    /* 19 */
			      "    no-limit_1.x: {messages: off}\n" /* 20 */
			      "  user:\n"			    /* 21 */
			      "    messages: 50/1h\n"		    /* 22 */
			      "    recipients: 200/1h burst 10\n"   /* 23 */
			      "    messages_quota: 500/1d\n");	    /* 24 */
	assert_int_equal(cfg->nclasses, 4);
	bulk = config_class_find(cfg, "bulk");
	slow = config_class_find(cfg, "slow");
	same = config_class_find(cfg, "same");
	none = config_class_find(cfg, "no-limit_1.x");
	assert_ptr_equal(bulk, &cfg->classes[0]);
	assert_ptr_equal(slow, &cfg->classes[1]);
	assert_ptr_equal(same, &cfg->classes[2]);
	assert_ptr_equal(none, &cfg->classes[3]);
	assert_null(config_class_find(cfg, "BULK")); /* case matters */
	assert_null(config_class_find(cfg, "bul"));
	assert_null(config_class_find(cfg, "bulk "));
	assert_string_equal(bulk->name, "bulk");
	assert_int_equal(bulk->line, 15);
	assert_int_equal(slow->line, 18);
	assert_int_equal(same->line, 19);
	assert_int_equal(none->line, 20);

	assert_rate(&bulk->lim.messages, 5000, HOUR_MS, 5000);
	assert_rate(&bulk->lim.recipients, 200, HOUR_MS, 10);
	assert_rate(&bulk->lim.bytes, 5 * GIB_B, HOUR_MS, 100 * MIB_B);
	assert_rate(&bulk->lim.messages_quota, 500, 24 * HOUR_MS, 500);
	assert_rate(&slow->lim.messages, 10, HOUR_MS, 10);
	assert_rate(&slow->lim.bytes, GIB_B, HOUR_MS, GIB_B); /* default */
	assert_rate(&same->lim.messages, 50, HOUR_MS, 50);
	assert_rate(&same->lim.recipients, 200, HOUR_MS, 10);
	assert_rate(&same->lim.messages_quota, 500, 24 * HOUR_MS, 500);
	assert_rate(&none->lim.messages, 0, 0, 0); /* off, not inherited */
	assert_rate(&none->lim.recipients, 200, HOUR_MS, 10);
	/* limits.user itself is untouched by the classes. */
	assert_rate(&cfg->user_limits.messages, 50, HOUR_MS, 50);
	assert_rate(&cfg->user_limits.bytes, GIB_B, HOUR_MS, GIB_B);
	config_free(cfg);

	/* No limits.user: classes inherit the defaults. */
	cfg = load_ok(MINIMAL "limits:\n"
			      "  classes: {bulk: {recipients: 1/1m}}\n");
	assert_int_equal(cfg->nclasses, 1);
	assert_rate(&cfg->classes[0].lim.messages, 300, HOUR_MS, 300);
	assert_rate(&cfg->classes[0].lim.recipients, 1, MINUTE_MS, 1);
	assert_rate(&cfg->classes[0].lim.messages_quota, 0, 0, 0);
	config_free(cfg);

	/* A name of 64 characters is the longest. */
	memset(name, 'c', 64);
	name[64] = '\0';
	snprintf(text, sizeof(text),
		 MINIMAL "limits:\n"
			 "  classes: {%s: {}}\n",
		 name);
	cfg = load_ok(text);
	assert_non_null(config_class_find(cfg, name));
	config_free(cfg);
}

static void
test_err_limits_classes(void **state)
{
	static const char *bad_name =
		"a class name is letters, digits, '_', '.' or '-' (at most 64)";
	char name[80], text[2048], key[128];

	(void)state;
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    bad name: {}\n",
		     15, "limits.classes.bad name", bad_name);
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    ok: {}\n"
			     "    a/b: {}\n",
		     16, "limits.classes.a/b", bad_name);
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    '': {}\n",
		     15, "limits.classes.", bad_name);
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    \"a\\0b\": {}\n",
		     15, "limits.classes.a", bad_name);
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    [a, b]: {}\n",
		     15, "limits.classes.?", bad_name);
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    {a: b}: {}\n",
		     15, "limits.classes.?", bad_name);
	memset(name, 'c', 65);
	name[65] = '\0';
	snprintf(text, sizeof(text),
		 MINIMAL "limits:\n"
			 "  classes: {%s: {}}\n",
		 name);
	snprintf(key, sizeof(key), "limits.classes.%s", name);
	expect_error(text, 14, key, bad_name);

	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    bulk: {}\n"
			     "    slow: {}\n"
			     "    bulk: {messages: 1/1h}\n",
		     17, "limits.classes.bulk",
		     "duplicate class (first at line 15)");
	expect_error(MINIMAL "limits:\n"
			     "  classes: [bulk]\n",
		     14, "limits.classes",
		     "expected a mapping of class names to limits");
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    bulk: 100/1h\n",
		     15, "limits.classes.bulk", "expected a mapping");
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    bulk:\n"
			     "      message: 1/1h\n",
		     16, "limits.classes.bulk.message", "unknown key");
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    bulk: {messages: 100}\n",
		     15, "limits.classes.bulk.messages",
		     "expected a rate like 100/1h or 100/1h burst 20, or off");
	/* A class's own byte burst, at the class's line. */
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    ok: {bytes: 50MB/1h}\n"
			     "    bulk:\n"
			     "      messages: 1/1h\n"
			     "      bytes: 5GB/1h burst 1MB\n",
		     16, "limits.classes.bulk.bytes",
		     "burst 1MB is smaller than limits.max_message_size "
		     "(50MB): such a message could never be sent");
	/* ... also against a max_message_size set after the class. */
	expect_error(MINIMAL "limits:\n"
			     "  classes:\n"
			     "    bulk: {bytes: 100MB/1h}\n"
			     "  user: {bytes: 1GB/1h}\n"
			     "  max_message_size: 200MB\n",
		     15, "limits.classes.bulk.bytes",
		     "burst 100MB is smaller than limits.max_message_size "
		     "(200MB): such a message could never be sent");
}

static void
test_limits_users(void **state)
{
	const struct config_class *bulk, *slow;
	struct config *cfg;

	(void)state;
	/* Users before the classes they name. */
	cfg = load_ok(MINIMAL "limits:\n"			/* 13 */
			      "  users:\n"			/* 14 */
			      "    carol@example.test: bulk\n"	/* 15 */
			      "    dave: slow\n"		/* 16 */
			      "    alice: bulk\n"		/* 17 */
			      "    \"x y\": slow\n"		/* 18 */
			      "  classes:\n"			/* 19 */
			      "    bulk: {messages: 1000/1h}\n" /* 20 */
			      "    slow: {messages: 1/1h}\n");	/* 21 */
	bulk = config_class_find(cfg, "bulk");
	slow = config_class_find(cfg, "slow");
	assert_non_null(bulk);
	assert_non_null(slow);
	assert_int_equal(cfg->nuser_classes, 4);
	/* Sorted by login, each keeping its line. */
	assert_string_equal(cfg->user_classes[0].login, "alice");
	assert_int_equal(cfg->user_classes[0].line, 17);
	assert_string_equal(cfg->user_classes[0].class_name, "bulk");
	assert_ptr_equal(cfg->user_classes[0].cls, bulk);
	assert_string_equal(cfg->user_classes[1].login, "carol@example.test");
	assert_int_equal(cfg->user_classes[1].line, 15);
	assert_string_equal(cfg->user_classes[2].login, "dave");
	assert_string_equal(cfg->user_classes[3].login, "x y");

	assert_ptr_equal(config_user_class(cfg, "carol@example.test"), bulk);
	assert_ptr_equal(config_user_class(cfg, "alice"), bulk);
	assert_ptr_equal(config_user_class(cfg, "dave"), slow);
	assert_ptr_equal(config_user_class(cfg, "x y"), slow);
	assert_null(config_user_class(cfg, "Dave")); /* logins are exact */
	assert_null(config_user_class(cfg, "carol"));
	assert_null(config_user_class(cfg, "carol@example.tes"));
	assert_null(config_user_class(cfg, "zed"));
	assert_null(config_user_class(cfg, ""));
	config_free(cfg);
}

static void
test_err_limits_users(void **state)
{
	char login[300], text[2048], key[400];

	(void)state;
	expect_error(MINIMAL "limits:\n"
			     "  classes: {bulk: {}}\n"
			     "  users:\n"
			     "    alice: bulk\n"
			     "    carol: bulky\n",
		     17, "limits.users.carol",
		     "no class bulky in limits.classes");
	expect_error(MINIMAL "limits:\n"
			     "  users:\n"
			     "    carol: bulk\n",
		     15, "limits.users.carol",
		     "no class bulk in limits.classes");
	expect_error(MINIMAL "limits:\n"
			     "  classes: {bulk: {}}\n"
			     "  users:\n"
			     "    carol: BULK\n",
		     16, "limits.users.carol",
		     "no class BULK in limits.classes");
	expect_error(MINIMAL "limits:\n"
			     "  classes: {bulk: {}, slow: {}}\n"
			     "  users:\n"
			     "    carol: bulk\n"
			     "    dave: slow\n"
			     "    carol: slow\n",
		     18, "limits.users.carol", "login listed twice");
	expect_error(MINIMAL "limits:\n"
			     "  users: [carol]\n",
		     14, "limits.users",
		     "expected a mapping of logins to class names");
	expect_error(MINIMAL "limits:\n"
			     "  classes: {bulk: {}}\n"
			     "  users:\n"
			     "    carol: [bulk]\n",
		     16, "limits.users.carol",
		     "expected a single value, not a list");
	expect_error(MINIMAL "limits:\n"
			     "  users:\n"
			     "    '': bulk\n",
		     15, "limits.users.",
		     "expected a login name (1 to 255 bytes)");
	expect_error(MINIMAL "limits:\n"
			     "  users:\n"
			     "    [a]: bulk\n",
		     15, "limits.users.?",
		     "expected a login name (1 to 255 bytes)");
	expect_error(MINIMAL "limits:\n"
			     "  users:\n"
			     "    \"a\\0b\": bulk\n",
		     15, "limits.users.a",
		     "expected a login name (1 to 255 bytes)");
	memset(login, 'u', 256);
	login[256] = '\0';
	snprintf(text, sizeof(text),
		 MINIMAL "limits:\n"
			 "  users: {%s: bulk}\n",
		 login);
	snprintf(key, sizeof(key), "limits.users.%s", login);
	expect_error(text, 14, key, "expected a login name (1 to 255 bytes)");
}

static void
test_limits_ip_login(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL "limits:\n"
			      "  login:\n"
			      "    failures: 3/1m burst 1\n"
			      "    max_delay: 10m\n"
			      "  ip:\n"
			      "    prefix_v4: 24\n"
			      "    prefix_v6: 48\n"
			      "    connections: 10/1s burst 50\n"
			      "    concurrency: 0\n"
			      "    auth_failures: off\n"
			      "    ban_time: 365d\n"
			      "    allow: [192.0.2.0/24, '2001:db8::/32', "
			      "198.51.100.7, '::1', 0.0.0.0/0]\n"
			      "    max_entries: 64\n");
	assert_rate(&cfg->login_failures, 3, MINUTE_MS, 1);
	assert_int_equal(cfg->login_max_delay_ms, 10 * MINUTE_MS);
	assert_int_equal(cfg->ip_prefix_v4, 24);
	assert_int_equal(cfg->ip_prefix_v6, 48);
	assert_rate(&cfg->ip_connections, 10, 1000, 50);
	assert_int_equal(cfg->ip_concurrency, 0);
	assert_rate(&cfg->ip_auth_failures, 0, 0, 0);
	assert_int_equal(cfg->ip_ban_time_ms, 365 * 24 * HOUR_MS);
	assert_int_equal(cfg->ip_max_entries, 64);
	assert_int_equal(cfg->ip_allow.n, 5);
	assert_net(&cfg->ip_allow.v[0], "192.0.2.0/24");
	assert_net(&cfg->ip_allow.v[1], "2001:db8::/32");
	assert_net(&cfg->ip_allow.v[2], "198.51.100.7/32");
	assert_net(&cfg->ip_allow.v[3], "::1/128");
	assert_net(&cfg->ip_allow.v[4], "0.0.0.0/0");
	config_free(cfg);

	/* The other ends of the ranges. */
	cfg = load_ok(MINIMAL "limits:\n"
			      "  login: {failures: off, max_delay: 0s}\n"
			      "  ip:\n"
			      "    prefix_v4: 8\n"
			      "    prefix_v6: 128\n"
			      "    concurrency: 1000000\n"
			      "    ban_time: 1s\n"
			      "    max_entries: 100000000\n"
			      "    allow:\n"
			      "      - 10.0.0.0/8\n");
	assert_rate(&cfg->login_failures, 0, 0, 0);
	assert_int_equal(cfg->login_max_delay_ms, 0);
	assert_int_equal(cfg->ip_prefix_v4, 8);
	assert_int_equal(cfg->ip_prefix_v6, 128);
	assert_int_equal(cfg->ip_concurrency, 1000000);
	assert_int_equal(cfg->ip_ban_time_ms, 1000);
	assert_int_equal(cfg->ip_max_entries, 100000000);
	assert_int_equal(cfg->ip_allow.n, 1);
	assert_net(&cfg->ip_allow.v[0], "10.0.0.0/8");
	config_free(cfg);
	cfg = load_ok(MINIMAL "limits: {ip: {prefix_v6: 16}}\n");
	assert_int_equal(cfg->ip_prefix_v6, 16);
	config_free(cfg);
}

/* limits.SECTION.KEY: VALUE must be refused at its line with why. */
static void
expect_limit_error(const char *section, const char *key, const char *value,
		   const char *why)
{
	char text[2048], full[128];

	snprintf(text, sizeof(text),
		 MINIMAL "limits:\n"	 /* 13 */
			 "  %s:\n"	 /* 14 */
			 "    %s: %s\n", /* 15 */
		 section, key, value);
	snprintf(full, sizeof(full), "limits.%s.%s", section, key);
	expect_error(text, 15, full, why);
}

static void
test_err_limits_ip_login(void **state)
{
	static const char *msgs =
		"expected a rate like 100/1h or 100/1h burst 20, or off";

	(void)state;
	expect_limit_error("ip", "prefix_v4", "7", "must be between 8 and 32");
	expect_limit_error("ip", "prefix_v4", "33", "must be between 8 and 32");
	expect_limit_error("ip", "prefix_v4", "/24", "expected a whole number");
	expect_limit_error("ip", "prefix_v6", "15",
			   "must be between 16 and 128");
	expect_limit_error("ip", "prefix_v6", "129",
			   "must be between 16 and 128");
	expect_limit_error("ip", "connections", "120", msgs);
	expect_limit_error("ip", "connections", "0/1m",
			   "the count must be greater than 0 (or the rate "
			   "off)");
	expect_limit_error("ip", "concurrency", "1000001",
			   "must be between 0 and 1000000");
	expect_limit_error("ip", "auth_failures", "10/10m burst 0",
			   "the burst must be greater than 0");
	expect_limit_error("ip", "ban_time", "999ms",
			   "must be between 1s and 365d");
	expect_limit_error("ip", "ban_time", "366d",
			   "must be between 1s and 365d");
	expect_limit_error("ip", "ban_time", "3600",
			   "a unit is required, e.g. 30s, 5m, 1h");
	expect_limit_error("ip", "max_entries", "63",
			   "must be between 64 and 100000000");
	expect_limit_error("ip", "max_entries", "100000001",
			   "must be between 64 and 100000000");
	expect_limit_error("ip", "allow", "192.0.2.0/24",
			   "expected a list such as [192.0.2.0/24]");
	expect_limit_error("ip", "allow", "{a: b}",
			   "expected a list such as [192.0.2.0/24]");
	expect_limit_error("ip", "prefix", "24", "unknown key");
	expect_limit_error("login", "failures", "5", msgs);
	expect_limit_error("login", "failures", "5/10m bust 1", msgs);
	expect_limit_error("login", "max_delay", "11m",
			   "must be between 0ms and 10m");
	expect_limit_error("login", "max_delay", "1h",
			   "must be between 0ms and 10m");
	expect_limit_error("login", "delay", "1s", "unknown key");

	/* allow: each entry is checked by ipnet_parse(), at its own line. */
	expect_error(MINIMAL "limits:\n"
			     "  ip:\n"
			     "    allow: [192.0.2.1/24]\n",
		     15, "limits.ip.allow[0]",
		     "host bits set after the prefix length");
	expect_error(MINIMAL "limits:\n"
			     "  ip:\n"
			     "    allow:\n"
			     "      - 192.0.2.0/24\n"
			     "      - '2001:db8::1/32'\n",
		     17, "limits.ip.allow[1]",
		     "host bits set after the prefix length");
	expect_error(MINIMAL "limits:\n"
			     "  ip:\n"
			     "    allow:\n"
			     "      - 192.0.2.0/24\n"
			     "      - mail.example.test\n",
		     17, "limits.ip.allow[1]",
		     "expected an address or prefix, e.g. 192.0.2.0/24");
	expect_error(MINIMAL "limits:\n"
			     "  ip:\n"
			     "    allow: [10.0.0.0/33]\n",
		     15, "limits.ip.allow[0]",
		     "IPv4 prefix length is at most 32");
	expect_error(MINIMAL "limits:\n"
			     "  ip:\n"
			     "    allow: ['2001:db8::/129']\n",
		     15, "limits.ip.allow[0]",
		     "IPv6 prefix length is at most 128");
	expect_error(MINIMAL "limits:\n"
			     "  ip:\n"
			     "    allow: [10.0.0.0/]\n",
		     15, "limits.ip.allow[0]", "bad prefix length");
	expect_error(MINIMAL "limits:\n"
			     "  ip:\n"
			     "    allow: [[10.0.0.0/8]]\n",
		     15, "limits.ip.allow[0]",
		     "expected a single value, not a list");
	expect_error(MINIMAL "limits:\n"
			     "  ip:\n"
			     "    allow: ['']\n",
		     15, "limits.ip.allow[0]",
		     "expected an address or prefix, e.g. 192.0.2.0/24");
}

/* A listener's allow, deny and sender_check. */
static void
test_listener_lists(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(TLS_PART LISTENERS_PART
		      "    allow: [198.51.100.0/24, '2001:db8::/32']\n"
		      "    deny: [198.51.100.128/25]\n"
		      "    sender_check: true\n"
		      "  - address: 127.0.0.1:2465\n"
		      "    mode: implicit\n"
		      "    allow: []\n"
		      "    deny:\n"
		      "      - 203.0.113.9\n" AUTH_PART BACKENDS_PART);
	assert_int_equal(cfg->nlisteners, 2);
	assert_int_equal(cfg->listeners[0].allow.n, 2);
	assert_net(&cfg->listeners[0].allow.v[0], "198.51.100.0/24");
	assert_net(&cfg->listeners[0].allow.v[1], "2001:db8::/32");
	assert_int_equal(cfg->listeners[0].deny.n, 1);
	assert_net(&cfg->listeners[0].deny.v[0], "198.51.100.128/25");
	assert_true(cfg->listeners[0].sender_check);
	assert_int_equal(cfg->listeners[1].allow.n, 0);
	assert_int_equal(cfg->listeners[1].deny.n, 1);
	assert_net(&cfg->listeners[1].deny.v[0], "203.0.113.9/32");
	assert_false(cfg->listeners[1].sender_check);
	config_free(cfg);

	expect_error(TLS_PART LISTENERS_PART
		     "    allow: [198.51.100.1/24]\n" AUTH_PART BACKENDS_PART,
		     8, "listeners[0].allow[0]",
		     "host bits set after the prefix length");
	expect_error(
		TLS_PART LISTENERS_PART
		"    deny: [192.0.2.0/24, nowhere]\n" AUTH_PART BACKENDS_PART,
		8, "listeners[0].deny[1]",
		"expected an address or prefix, e.g. 192.0.2.0/24");
	expect_error(TLS_PART LISTENERS_PART
		     "    deny: 192.0.2.0/24\n" AUTH_PART BACKENDS_PART,
		     8, "listeners[0].deny",
		     "expected a list such as [192.0.2.0/24]");
	expect_error(TLS_PART LISTENERS_PART
		     "    sender_check: strict\n" AUTH_PART BACKENDS_PART,
		     8, "listeners[0].sender_check", "expected true or false");
	expect_error(TLS_PART LISTENERS_PART
		     "    allow: []\n"
		     "    allow: [192.0.2.0/24]\n" AUTH_PART BACKENDS_PART,
		     9, "listeners[0].allow",
		     "duplicate key (first at line 8)");
}

/* ---- errors ---------------------------------------------------------- */

static void
test_err_unknown_key(void **state)
{
	(void)state;
	expect_error(MINIMAL "limits:\n"	    /* 13 */
			     "  max_recipent: 5\n", /* 14 */
		     14, "limits.max_recipent", "unknown key");
	expect_error(MINIMAL "listener:\n", 13, "listener", "unknown key");
	expect_error(TLS_PART
		     "    - cert: a\n"
		     "      key: b\n"
		     "      name: [x.example]\n" LISTENERS_PART AUTH_PART
			     BACKENDS_PART,
		     7, "tls.certificates[1].name", "unknown key");
}

static void
test_err_bad_mode(void **state)
{
	(void)state;
	expect_error(TLS_PART "listeners:\n"
			      "  - address: 127.0.0.1:2587\n"
			      "    mode: smtps\n" AUTH_PART BACKENDS_PART,
		     7, "listeners[0].mode", "must be starttls or implicit");
	expect_error(TLS_PART LISTENERS_PART
		     "  - address: 127.0.0.1:2465\n"
		     "    mode: SMTPS\n" AUTH_PART BACKENDS_PART,
		     9, "listeners[1].mode", "must be starttls or implicit");
	expect_error(TLS_PART
		     "listeners:\n"
		     "  - address: 127.0.0.1:2587\n" AUTH_PART BACKENDS_PART,
		     6, "listeners[0].mode", "required key is missing");
}

static void
test_err_bad_duration(void **state)
{
	(void)state;
	expect_error(MINIMAL "limits:\n"
			     "  command_timeout: 30\n",
		     14, "limits.command_timeout",
		     "a unit is required, e.g. 30s, 5m, 1h");
	expect_error(TLS_PART "  handshake_timeout: 10 seconds\n" LISTENERS_PART
			     AUTH_PART BACKENDS_PART,
		     5, "tls.handshake_timeout",
		     "expected a duration like 30s, 5m, 1h");
	expect_error(MINIMAL "limits:\n"
			     "  data_timeout: 0s\n",
		     14, "limits.data_timeout", "must be greater than 0");
	expect_error(TLS_PART
		     "  ticket_key_lifetime: 500ms\n" LISTENERS_PART AUTH_PART
			     BACKENDS_PART,
		     5, "tls.ticket_key_lifetime", "must be at least 1s");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  failure_delay: 2m\n" BACKENDS_PART,
		     10, "auth.failure_delay", "must be between 0ms and 1m");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  cache_ttl: 25h\n" BACKENDS_PART,
		     10, "auth.cache_ttl", "must be between 0ms and 1d");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  cache_ttl: 3600\n" BACKENDS_PART,
		     10, "auth.cache_ttl",
		     "a unit is required, e.g. 30s, 5m, 1h");
	expect_error(MINIMAL "limits:\n"
			     "  data_timeout: 99999999999999999999d\n",
		     14, "limits.data_timeout", "duration is too large");
}

static void
test_err_duplicate_key(void **state)
{
	(void)state;
	expect_error(MINIMAL "limits:\n"
			     "  max_line: 1000\n"
			     "  max_line: 2000\n",
		     15, "limits.max_line", "duplicate key (first at line 14)");
	expect_error(MINIMAL "auth:\n"
			     "  passwd_file: other\n",
		     13, "auth", "duplicate key (first at line 8)");
}

static void
test_err_yaml_syntax(void **state)
{
	(void)state;
	expect_error(MINIMAL "limits:\n"
			     "  max_line: 1000: 2\n",
		     14, "syntax",
		     "mapping values are not allowed in this context");
	expect_error(TLS_PART "listeners: [\n"
			      "  {address: 127.0.0.1:2587, mode: starttls}\n"
			      "auth:\n",
		     7, "syntax",
		     "did not find expected ',' or ']' (while parsing a flow "
		     "sequence started at line 5)");
	expect_error(MINIMAL "hostname: \"unterminated\n", 14, "syntax",
		     "found unexpected end of stream (while scanning a quoted "
		     "scalar started at line 13)");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "\tthreads: 4\n" BACKENDS_PART,
		     10, "syntax", "tab character; indent with spaces");
	/* Invalid UTF-8: the reader error still gets its line. */
	expect_error(MINIMAL "\n"
			     "hostname: \xff\n",
		     14, "syntax", "invalid leading UTF-8 octet");
}

/* auth.backend and the keys of each back end (docs/AUTH.md). */
static void
test_auth_backends(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL);
	assert_int_equal(cfg->auth_backend, AUTH_BACKEND_PASSWD);
	assert_int_equal(cfg->auth_dovecot_connections, 2);
	assert_int_equal(cfg->auth_dovecot_timeout_ms, 5000);
	assert_int_equal(cfg->auth_http_connections, 32);
	config_free(cfg);

	cfg = load_ok(TLS_PART LISTENERS_PART
		      "auth:\n"
		      "  backend: dovecot\n"
		      "  dovecot:\n"
		      "    socket: unix:/run/dovecot/auth-client\n"
		      "    connections: 4\n"
		      "    timeout: 3s\n" BACKENDS_PART);
	assert_int_equal(cfg->auth_backend, AUTH_BACKEND_DOVECOT);
	assert_null(cfg->passwd_file);
	assert_string_equal(cfg->auth_dovecot_socket.text,
			    "unix:/run/dovecot/auth-client");
	assert_int_equal(cfg->auth_dovecot_socket.ss.ss_family, AF_UNIX);
	assert_int_equal(cfg->auth_dovecot_connections, 4);
	assert_int_equal(cfg->auth_dovecot_timeout_ms, 3000);
	config_free(cfg);

	cfg = load_ok(TLS_PART LISTENERS_PART
		      "auth:\n"
		      "  backend: dovecot\n"
		      "  dovecot: {socket: \"[::1]:12345\"}\n" BACKENDS_PART);
	assert_int_equal(cfg->auth_dovecot_socket.ss.ss_family, AF_INET6);
	config_free(cfg);

	/* The token mechanisms with back ends that check tokens. */
	cfg = load_ok(TLS_PART LISTENERS_PART
		      "auth:\n"
		      "  backend: dovecot\n"
		      "  mechanisms: [PLAIN, OAUTHBEARER, xoauth2]\n"
		      "  dovecot: {socket: \"[::1]:12345\"}\n" BACKENDS_PART);
	assert_int_equal(cfg->auth_mechs, AUTH_MECH_PLAIN | AUTH_MECH_OAUTH);
	config_free(cfg);
	cfg = load_ok(
		TLS_PART LISTENERS_PART
		"auth:\n"
		"  backend: http\n"
		"  mechanisms: [XOAUTH2]\n"
		"  http: {url: \"http://127.0.0.1:9000/\"}\n" BACKENDS_PART);
	assert_int_equal(cfg->auth_mechs, AUTH_MECH_XOAUTH2);
	config_free(cfg);

	cfg = load_ok(
		TLS_PART LISTENERS_PART
		"auth:\n"
		"  backend: http\n"
		"  http: {url: "
		"\"http://127.0.0.1:9000/mail/auth?x=1\"}\n" BACKENDS_PART);
	assert_int_equal(cfg->auth_backend, AUTH_BACKEND_HTTP);
	assert_string_equal(cfg->auth_http_host, "127.0.0.1:9000");
	assert_string_equal(cfg->auth_http_path, "/mail/auth?x=1");
	config_free(cfg);
	cfg = load_ok(TLS_PART LISTENERS_PART
		      "auth:\n"
		      "  backend: http\n"
		      "  http: {url: \"http://[::1]\"}\n" BACKENDS_PART);
	assert_string_equal(cfg->auth_http_host, "[::1]");
	assert_string_equal(cfg->auth_http_path, "/");
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&cfg->auth_http_addr.ss)
				       ->sin6_port),
			 80);
	config_free(cfg);

	/* What each back end needs, at the auth key's line. */
	expect_error(
		TLS_PART LISTENERS_PART "auth:\n"
					"  backend: dovecot\n" BACKENDS_PART,
		8, "auth.dovecot.socket", "required with auth.backend dovecot");
	expect_error(TLS_PART LISTENERS_PART "auth:\n"
					     "  backend: http\n" BACKENDS_PART,
		     8, "auth.http.url", "required with auth.backend http");
	expect_error(TLS_PART LISTENERS_PART "auth:\n"
					     "  backend: ldap\n" BACKENDS_PART,
		     9, "auth.backend", "must be passwd, dovecot or http");
	expect_error(TLS_PART LISTENERS_PART
		     "auth:\n"
		     "  backend: dovecot\n"
		     "  dovecot: {socket: \"*:12345\"}\n" BACKENDS_PART,
		     10, "auth.dovecot.socket",
		     "a wildcard address cannot be connected to (expected "
		     "unix:/path or host:port)");
	expect_error(TLS_PART LISTENERS_PART
		     "auth:\n"
		     "  backend: dovecot\n"
		     "  dovecot: {socket: "
		     "\"dovecot.example:12345\"}\n" BACKENDS_PART,
		     10, "auth.dovecot.socket",
		     "expected an IP address, not a host name (expected "
		     "unix:/path or host:port)");
	expect_error(
		TLS_PART LISTENERS_PART
		"auth:\n"
		"  backend: http\n"
		"  http: {url: \"https://127.0.0.1/auth\"}\n" BACKENDS_PART,
		10, "auth.http.url",
		"expected http://IP[:port]/path (https is not supported)");
	expect_error(
		TLS_PART LISTENERS_PART
		"auth:\n"
		"  backend: http\n"
		"  http: {url: \"http://auth.example/auth\"}\n" BACKENDS_PART,
		10, "auth.http.url",
		"expected an IP address, not a host name (expected "
		"http://IP[:port]/path)");
	expect_error(TLS_PART LISTENERS_PART
		     "auth:\n"
		     "  backend: http\n"
		     "  http: {url: \"http://127.0.0.1/a b\"}\n" BACKENDS_PART,
		     10, "auth.http.url",
		     "spaces and control bytes are not allowed in the URL");
}

static void
test_err_missing(void **state)
{
	(void)state;
	expect_error(TLS_PART AUTH_PART BACKENDS_PART, 1, "listeners",
		     "required key is missing");
	/* The line of the top-level mapping, after leading comments. */
	expect_error("# msaproxy\n\n" TLS_PART AUTH_PART BACKENDS_PART, 3,
		     "listeners", "required key is missing");
	expect_error(LISTENERS_PART AUTH_PART BACKENDS_PART, 1,
		     "tls.certificates", "required key is missing");
	expect_error("tls:\n"
		     "  min_version: TLSv1.3\n" LISTENERS_PART AUTH_PART
			     BACKENDS_PART,
		     1, "tls.certificates", "required key is missing");
	expect_error(TLS_PART LISTENERS_PART BACKENDS_PART, 1,
		     "auth.passwd_file", "required key is missing");
	expect_error(TLS_PART LISTENERS_PART "auth:\n"
					     "  threads: 4\n" BACKENDS_PART,
		     8, "auth.passwd_file", "required key is missing");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART, 1, "backends.servers",
		     "required key is missing");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART "backends:\n"
						       "  servers: []\n",
		     11, "backends.servers", "must list at least one server");
	expect_error(TLS_PART "listeners:\n" AUTH_PART BACKENDS_PART, 5,
		     "listeners", "must list at least one listener");
	expect_error(
		"tls:\n"
		"  certificates:\n"
		"    - cert: c.crt\n" LISTENERS_PART AUTH_PART BACKENDS_PART,
		3, "tls.certificates[0].key", "required key is missing");
	expect_error("", 1, "file", "empty; expected a mapping of settings");
	expect_error("# only a comment\n", 1, "file",
		     "empty; expected a mapping of settings");
}

static void
test_err_not_a_mapping(void **state)
{
	(void)state;
	expect_error(TLS_PART "listeners:\n"
			      "  - 127.0.0.1:2587\n" AUTH_PART BACKENDS_PART,
		     6, "listeners[0]", "expected a mapping");
	expect_error(TLS_PART "listeners:\n"
			      "  address: 127.0.0.1:2587\n"
			      "  mode: starttls\n" AUTH_PART BACKENDS_PART,
		     6, "listeners", "expected a list");
	expect_error(MINIMAL "limits: 5\n", 13, "limits", "expected a mapping");
	expect_error(MINIMAL "workers: [1]\n", 13, "workers",
		     "expected a single value, not a list");
	expect_error("- a\n- b\n", 1, "file",
		     "expected a mapping of settings at the top level");
	expect_error(MINIMAL "[a]: 1\n", 13, "file",
		     "a key must be a plain word");
	expect_error(MINIMAL "---\n"
			     "workers: 1\n",
		     13, "file", "more than one YAML document");
}

static void
test_err_mechanisms(void **state)
{
	(void)state;
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  mechanisms: [PLAIN, CRAM-MD5]\n" BACKENDS_PART,
		     10, "auth.mechanisms[1]",
		     "CRAM-MD5 is not supported: it needs plaintext passwords "
		     "on the server; use PLAIN or LOGIN");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  mechanisms:\n"
		     "    - login\n"
		     "    - XOAUTH3\n" BACKENDS_PART,
		     12, "auth.mechanisms[1]",
		     "unknown mechanism XOAUTH3; expected PLAIN, LOGIN, "
		     "OAUTHBEARER or XOAUTH2");
	/* The passwd file checks passwords, not tokens. */
	expect_error(
		TLS_PART LISTENERS_PART AUTH_PART
		"  mechanisms:\n"
		"    - login\n"
		"    - XOAUTH2\n" BACKENDS_PART,
		12, "auth.mechanisms[1]",
		"XOAUTH2 needs a back end that checks tokens (auth.backend "
		"dovecot or http); the passwd file holds passwords only");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  mechanisms: [oauthbearer]\n" BACKENDS_PART,
		     10, "auth.mechanisms[0]",
		     "oauthbearer needs a back end that checks tokens "
		     "(auth.backend dovecot or http); the passwd file holds "
		     "passwords only");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  mechanisms: [PLAIN, plain]\n" BACKENDS_PART,
		     10, "auth.mechanisms[1]", "plain is listed twice");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  mechanisms: []\n" BACKENDS_PART,
		     10, "auth.mechanisms", "must list at least one mechanism");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  mechanisms: PLAIN\n" BACKENDS_PART,
		     10, "auth.mechanisms",
		     "expected a list such as [PLAIN, LOGIN]");
}

/* backends: balance, health checks, per-server limits. */
static void
test_backends_pool(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(TLS_PART LISTENERS_PART AUTH_PART
		      "backends:\n"
		      "  balance: hash-login\n"
		      "  down_time: 1m\n"
		      "  health_check:\n"
		      "    interval: 2s\n"
		      "    timeout: 500ms\n"
		      "    rise: 1\n"
		      "    fall: 5\n"
		      "  servers:\n"
		      "    - address: 127.0.0.1:2525\n"
		      "      max_conns: 7\n"
		      "      identity: proxy-v2\n"
		      "      tls: starttls-verify\n"
		      "      ca_file: ca.pem\n"
		      "      name: mx1.example.org\n"
		      "    - address: 127.0.0.1:2526\n"
		      "      tls: starttls\n");
	assert_int_equal(cfg->balance, BALANCE_HASH_LOGIN);
	assert_int_equal(cfg->backend_down_time_ms, 60 * 1000);
	assert_int_equal(cfg->health_interval_ms, 2000);
	assert_int_equal(cfg->health_timeout_ms, 500);
	assert_int_equal(cfg->health_rise, 1);
	assert_int_equal(cfg->health_fall, 5);
	assert_int_equal(cfg->backends[0].max_conns, 7);
	assert_int_equal(cfg->backends[1].max_conns, 0);
	assert_int_equal(cfg->backends[0].identity, IDENTITY_PROXY_V2);
	assert_int_equal(cfg->backends[0].tls, BACKEND_TLS_STARTTLS_VERIFY);
	assert_in_tmpdir(cfg->backends[0].ca_file, "ca.pem");
	assert_string_equal(cfg->backends[0].tls_name, "mx1.example.org");
	assert_int_equal(cfg->backends[1].tls, BACKEND_TLS_STARTTLS);
	assert_null(cfg->backends[1].ca_file);
	assert_null(cfg->backends[1].tls_name);
	config_free(cfg);

	cfg = load_ok(MINIMAL "  balance: least-connections\n"
			      "  health_check: {interval: 0s}\n");
	assert_int_equal(cfg->balance, BALANCE_LEAST_CONN);
	assert_int_equal(cfg->health_interval_ms, 0);
	config_free(cfg);
}

/* unix:/path backends: AF_UNIX with the path in sun_path, the text as
 * written, compared by path. */
static void
test_backends_unix(void **state)
{
	struct config *cfg;
	const struct sockaddr_un *sun;
	char path[120], text[1024];

	(void)state;
	cfg = load_ok(TLS_PART LISTENERS_PART AUTH_PART
		      "backends:\n"
		      "  servers:\n"
		      "    - address: unix:/run/postfix/smtpd.sock\n"
		      "      identity: proxy-v2\n"
		      "    - address: 127.0.0.1:2525\n"
		      "    - address: unix:/run/other.sock\n"
		      "      tls: starttls-verify\n"
		      "      name: mx.example.org\n");
	sun = (const struct sockaddr_un *)&cfg->backends[0].addr.ss;
	assert_int_equal(sun->sun_family, AF_UNIX);
	assert_string_equal(sun->sun_path, "/run/postfix/smtpd.sock");
	assert_int_equal(cfg->backends[0].addr.len,
			 offsetof(struct sockaddr_un, sun_path) + 24);
	assert_string_equal(cfg->backends[0].addr.text,
			    "unix:/run/postfix/smtpd.sock");
	assert_int_equal(cfg->backends[0].identity, IDENTITY_PROXY_V2);
	assert_int_equal(cfg->backends[1].addr.ss.ss_family, AF_INET);
	assert_int_equal(cfg->backends[2].addr.ss.ss_family, AF_UNIX);
	assert_string_equal(cfg->backends[2].tls_name, "mx.example.org");
	config_free(cfg);

	/* The longest path that fits sun_path (107 bytes and its NUL). */
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	snprintf(text, sizeof(text),
		 TLS_PART LISTENERS_PART AUTH_PART "backends:\n"
						   "  servers:\n"
						   "    - address: unix:%s\n",
		 path);
	cfg = load_ok(text);
	assert_int_equal(
		strlen(((const struct sockaddr_un *)&cfg->backends[0].addr.ss)
			       ->sun_path),
		107);
	config_free(cfg);
	path[107] = 'a';
	path[108] = '\0';
	snprintf(text, sizeof(text),
		 TLS_PART LISTENERS_PART AUTH_PART "backends:\n"
						   "  servers:\n"
						   "    - address: unix:%s\n",
		 path);
	expect_error(text, 12, "backends.servers[0].address",
		     "socket path is too long (at most 107 bytes)");

#define UNIX_BACKEND(addr)                                                     \
	TLS_PART LISTENERS_PART AUTH_PART "backends:\n"                        \
					  "  servers:\n"                       \
					  "    - address: " addr "\n"
	expect_error(UNIX_BACKEND("'unix:'"), 12, "backends.servers[0].address",
		     "expected an absolute path after unix:");
	expect_error(UNIX_BACKEND("unix:run/smtpd.sock"), 12,
		     "backends.servers[0].address",
		     "expected an absolute path after unix:");
	expect_error(UNIX_BACKEND("unix:/run/a.sock\n"
				  "    - address: unix:/run/a.sock"),
		     13, "backends.servers[1].address",
		     "same address as servers[0]; use weight instead");
	expect_error(UNIX_BACKEND("unix:/run/a.sock\n"
				  "      tls: starttls-verify"),
		     12, "backends.servers[0].name",
		     "required with tls: starttls-verify on a unix: address");
	/* Listeners stay IP only. */
	expect_error(TLS_PART "listeners:\n"
			      "  - address: unix:/run/msa.sock\n"
			      "    mode: starttls\n" AUTH_PART BACKENDS_PART,
		     6, "listeners[0].address",
		     "expected an IP address, not "
		     "a host name");
#undef UNIX_BACKEND
}

static void
test_err_backends_pool(void **state)
{
	char text[8192];
	size_t n;

	(void)state;
	expect_error(MINIMAL "  balance: random\n", 13, "backends.balance",
		     "must be round-robin, least-connections or hash-login");
	expect_error(MINIMAL "  down_time: 0s\n", 13, "backends.down_time",
		     "must be between 1s and 1d");
	expect_error(MINIMAL "  health_check:\n"
			     "    interval: 500ms\n",
		     14, "backends.health_check.interval",
		     "must be 0s (off) or at least 1s");
	expect_error(MINIMAL "  health_check:\n"
			     "    interval: 2h\n",
		     14, "backends.health_check.interval",
		     "must be between 0ms and 1h");
	expect_error(MINIMAL "  health_check:\n"
			     "    timeout: 10ms\n",
		     14, "backends.health_check.timeout",
		     "must be between 100ms and 10m");
	expect_error(MINIMAL "  health_check:\n"
			     "    rise: 0\n",
		     14, "backends.health_check.rise",
		     "must be between 1 and 100");
	expect_error(MINIMAL "  health_check:\n"
			     "    fall: 101\n",
		     14, "backends.health_check.fall",
		     "must be between 1 and 100");
	expect_error(MINIMAL "  health_check:\n"
			     "    tries: 3\n",
		     14, "backends.health_check.tries", "unknown key");
	expect_error(MINIMAL "      max_conns: -1\n", 13,
		     "backends.servers[0].max_conns",
		     "expected a whole number");
	expect_error(MINIMAL "      max_conns: 1000001\n", 13,
		     "backends.servers[0].max_conns",
		     "must be between 0 and 1000000");
	expect_error(MINIMAL "      tls: yes\n", 13, "backends.servers[0].tls",
		     "must be none, starttls or starttls-verify");
	expect_error(MINIMAL "      tls: starttls\n"
			     "      ca_file: ca.pem\n",
		     12, "backends.servers[0].ca_file",
		     "only used with tls: starttls-verify");
	expect_error(MINIMAL "      name: mx.example.org\n", 12,
		     "backends.servers[0].name",
		     "only used with tls: starttls-verify");
	expect_error(MINIMAL "      tls: starttls-verify\n"
			     "      name: 'not a name'\n",
		     14, "backends.servers[0].name",
		     "expected a host name such as mx1.example.com");
	expect_error(MINIMAL "      ca_file: ''\n", 13,
		     "backends.servers[0].ca_file", "must not be empty");

	/* 65 servers: one more than the failover mask holds. */
	n = (size_t)snprintf(text, sizeof(text), "%s",
			     TLS_PART LISTENERS_PART AUTH_PART "backends:\n"
							       "  servers:\n");
	for (int i = 0; i < 65; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "    - address: 127.0.0.1:%d\n",
				      3000 + i);
	expect_error(text, 12 + 64, "backends.servers", "at most 64 servers");
}

/* limits.max_memory: off, or a size the proxy could ever fit in. */
static void
test_max_memory(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL "limits:\n  max_memory: off\n");
	assert_int_equal(cfg->max_memory, 0);
	config_free(cfg);
	cfg = load_ok(MINIMAL "limits:\n  max_memory: 16MB\n");
	assert_int_equal(cfg->max_memory, 16 * MIB_B);
	config_free(cfg);
	cfg = load_ok(MINIMAL "limits:\n  max_memory: 1024GB\n");
	assert_int_equal(cfg->max_memory, 1024 * GIB_B);
	config_free(cfg);
	expect_error(MINIMAL "limits:\n  max_memory: 15M\n", 14,
		     "limits.max_memory",
		     "must be off or between 16MB and 1024GB");
	expect_error(MINIMAL "limits:\n  max_memory: 1025G\n", 14,
		     "limits.max_memory",
		     "must be off or between 16MB and 1024GB");
	expect_error(MINIMAL "limits:\n  max_memory: 0\n", 14,
		     "limits.max_memory",
		     "must be off or between 16MB and 1024GB");
	expect_error(MINIMAL "limits:\n  max_memory: lots\n", 14,
		     "limits.max_memory",
		     "expected a size like 512KB, 50MB, 1GB, or off");
	expect_error(MINIMAL "limits:\n  max_memory: [1GB]\n", 14,
		     "limits.max_memory",
		     "expected a single value, not a list");
	expect_error(MINIMAL "limits:\n  max_sessions: 0\n", 14,
		     "limits.max_sessions", "must be between 1 and 1000000");
}

static void
test_err_ranges(void **state)
{
	(void)state;
	expect_error(MINIMAL "      weight: 0\n", 13,
		     "backends.servers[0].weight",
		     "must be between 1 and 1000");
	expect_error(MINIMAL "      weight: 1001\n", 13,
		     "backends.servers[0].weight",
		     "must be between 1 and 1000");
	expect_error(MINIMAL "limits:\n"
			     "  max_line: 2000\n"
			     "  max_auth_line: 1500\n",
		     15, "limits.max_auth_line",
		     "must be at least limits.max_line (2000)");
	expect_error(MINIMAL "limits:\n"
			     "  max_line: 20000\n",
		     14, "limits.max_line",
		     "must not exceed limits.max_auth_line (12288)");
	expect_error(MINIMAL "limits:\n"
			     "  max_line: 511\n",
		     14, "limits.max_line", "must be between 512 and 65536");
	expect_error(MINIMAL "limits:\n"
			     "  max_auth_line: 999\n",
		     14, "limits.max_auth_line",
		     "must be between 1000 and 65536");
	expect_error(MINIMAL "limits:\n"
			     "  max_message_size: 5GB\n",
		     14, "limits.max_message_size",
		     "must be between 1KB and 4GB");
	expect_error(MINIMAL "limits:\n"
			     "  max_message_size: 1000\n",
		     14, "limits.max_message_size",
		     "must be between 1KB and 4GB");
	expect_error(MINIMAL "limits:\n"
			     "  max_message_size: 50 MB\n",
		     14, "limits.max_message_size",
		     "expected a size like 512KB, 50MB, 1GB");
	expect_error(MINIMAL "limits:\n"
			     "  max_message_size: 99999999999999999999GB\n",
		     14, "limits.max_message_size", "size is too large");
	expect_error(MINIMAL "limits:\n"
			     "  max_recipients: 100001\n",
		     14, "limits.max_recipients",
		     "must be between 1 and 100000");
	expect_error(MINIMAL "limits:\n"
			     "  max_errors: 0\n",
		     14, "limits.max_errors", "must be between 1 and 1000");
	expect_error(MINIMAL "workers: 257\n", 13, "workers",
		     "must be between 0 and 256");
	expect_error(MINIMAL "workers: -1\n", 13, "workers",
		     "expected a whole number");
	expect_error(MINIMAL "workers: 0x10\n", 13, "workers",
		     "expected a whole number");
	expect_error(MINIMAL "workers: 99999999999999999999\n", 13, "workers",
		     "number is too large");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  threads: 65\n" BACKENDS_PART,
		     10, "auth.threads", "must be between 1 and 64");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  cache_size: 0\n" BACKENDS_PART,
		     10, "auth.cache_size", "must be between 1 and 10000000");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  cache_size: 10000001\n" BACKENDS_PART,
		     10, "auth.cache_size", "must be between 1 and 10000000");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "  cache_size: 10k\n" BACKENDS_PART,
		     10, "auth.cache_size", "expected a whole number");
	expect_error(
		TLS_PART
		"  tls13_tickets: 11\n" LISTENERS_PART AUTH_PART BACKENDS_PART,
		5, "tls.tls13_tickets", "must be between 0 and 10");
}

/* The cache keys at the ends of their ranges. */
static void
test_auth_cache_limits(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(TLS_PART LISTENERS_PART AUTH_PART
		      "  cache_ttl: 1d\n"
		      "  cache_size: 1\n" BACKENDS_PART);
	assert_int_equal(cfg->auth_cache_ttl_ms, 24 * 3600 * 1000);
	assert_int_equal(cfg->auth_cache_size, 1);
	config_free(cfg);
	cfg = load_ok(TLS_PART LISTENERS_PART AUTH_PART
		      "  cache_ttl: 250ms\n" BACKENDS_PART);
	assert_int_equal(cfg->auth_cache_ttl_ms, 250);
	assert_int_equal(cfg->auth_cache_size, 10000);
	config_free(cfg);
}

static void
test_err_values(void **state)
{
	(void)state;
	expect_error(MINIMAL "log:\n"
			     "  level: verbose\n",
		     14, "log.level", "must be error, warn, info or debug");
	expect_error(MINIMAL "hostname: mail example\n", 13, "hostname",
		     "expected a host name such as mail.example.com");
	expect_error(MINIMAL "hostname: -mail.example\n", 13, "hostname",
		     "expected a host name such as mail.example.com");
	expect_error(TLS_PART
		     "  session_tickets: maybe\n" LISTENERS_PART AUTH_PART
			     BACKENDS_PART,
		     5, "tls.session_tickets", "expected true or false");
	expect_error(TLS_PART
		     "  min_version: TLSv1.1\n" LISTENERS_PART AUTH_PART
			     BACKENDS_PART,
		     5, "tls.min_version", "must be TLSv1.2 or TLSv1.3");
	expect_error(
		TLS_PART "  ciphers: NOT-A-CIPHER\n" LISTENERS_PART AUTH_PART
			BACKENDS_PART,
		5, "tls.ciphers", "no cipher in the list is known to OpenSSL");
	expect_error(TLS_PART
		     "  ciphersuites: TLS_NOPE\n" LISTENERS_PART AUTH_PART
			     BACKENDS_PART,
		     5, "tls.ciphersuites",
		     "no suite in the list is known to OpenSSL");
	expect_error(TLS_PART
		     "  groups: X25519:P-999\n" LISTENERS_PART AUTH_PART
			     BACKENDS_PART,
		     5, "tls.groups",
		     "unknown group (known: X25519, P-256, P-384, ...)");
	expect_error(TLS_PART
		     "      names: [mail.example.org, 'a b']\n" LISTENERS_PART
			     AUTH_PART BACKENDS_PART,
		     5, "tls.certificates[0].names[1]",
		     "expected a host name or *.domain");
	expect_error(TLS_PART "      cert: again.crt\n" LISTENERS_PART AUTH_PART
			     BACKENDS_PART,
		     5, "tls.certificates[0].cert",
		     "duplicate key (first at line 3)");
	expect_error(TLS_PART LISTENERS_PART
		     "auth:\n"
		     "  passwd_file: ''\n" BACKENDS_PART,
		     9, "auth.passwd_file", "must not be empty");
	expect_error(MINIMAL "limits:\n"
			     "  bare_newlines: strip\n",
		     14, "limits.bare_newlines", "must be reject or normalize");
	expect_error(MINIMAL "      identity: proxy\n", 13,
		     "backends.servers[0].identity",
		     "must be xclient, proxy-v2 or none");
}

static void
test_err_addresses(void **state)
{
	(void)state;
	expect_error(TLS_PART "listeners:\n"
			      "  - address: localhost:2587\n"
			      "    mode: starttls\n" AUTH_PART BACKENDS_PART,
		     6, "listeners[0].address",
		     "expected an IP address, not a host name");
	expect_error(TLS_PART "listeners:\n"
			      "  - address: 127.0.0.1\n"
			      "    mode: starttls\n" AUTH_PART BACKENDS_PART,
		     6, "listeners[0].address",
		     "missing :port after the address");
	expect_error(TLS_PART "listeners:\n"
			      "  - address: 127.0.0.1:0\n"
			      "    mode: starttls\n" AUTH_PART BACKENDS_PART,
		     6, "listeners[0].address",
		     "port must be between 1 and 65535");
	expect_error(TLS_PART "listeners:\n"
			      "  - address: ::1:587\n"
			      "    mode: starttls\n" AUTH_PART BACKENDS_PART,
		     6, "listeners[0].address",
		     "IPv6 addresses go in brackets, e.g. [::1]:587");
	expect_error(TLS_PART LISTENERS_PART
		     "  - address: 127.0.0.1:2587\n"
		     "    mode: implicit\n" AUTH_PART BACKENDS_PART,
		     8, "listeners[1].address", "same address as listeners[0]");
	expect_error(TLS_PART LISTENERS_PART AUTH_PART
		     "backends:\n"
		     "  servers:\n"
		     "    - address: '*:25'\n",
		     12, "backends.servers[0].address",
		     "must be a specific address, not a wildcard");
	expect_error(MINIMAL "    - address: 127.0.0.1:2525\n", 13,
		     "backends.servers[1].address",
		     "same address as servers[0]; use weight instead");
}

static void
test_err_file(void **state)
{
	struct config *cfg = NULL;
	char small[24], want[1024];

	(void)state;
	/* No such file. */
	assert_int_equal(config_load("/nonexistent/msaproxy.yaml", &cfg, err,
				     sizeof(err)),
			 -1);
	assert_null(cfg);
	assert_string_equal(err, "/nonexistent/msaproxy.yaml:1: file: cannot "
				 "open: No such file or directory");

	/* A short buffer is cut, still terminated. */
	write_config(MINIMAL "workers: 1000\n");
	memset(small, 'x', sizeof(small));
	assert_int_equal(config_load(cfgpath, &cfg, small, sizeof(small)), -1);
	snprintf(want, sizeof(want), "%s", cfgpath);
	want[sizeof(small) - 1] = '\0';
	assert_string_equal(small, want);
	assert_int_equal(config_load(cfgpath, &cfg, NULL, 0), -1);

	config_free(NULL);
}

/* log: every key, and the old spelling of the level alone still works. */
static void
test_log_keys(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL "log:\n"
			      "  level: warn\n"
			      "  format: json\n"
			      "  output: syslog\n"
			      "  facility: local3\n"
			      "  syslog_socket: run/log.sock\n");
	assert_int_equal(cfg->log_level, LOG_WARN);
	assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
	assert_int_equal(cfg->log_output, LOG_OUTPUT_SYSLOG);
	assert_int_equal(cfg->log_facility, 19);
	assert_in_tmpdir(cfg->log_syslog_socket, "run/log.sock");
	config_free(cfg);

	cfg = load_ok(MINIMAL "log: {level: debug, facility: mail}\n");
	assert_int_equal(cfg->log_level, LOG_DEBUG);
	assert_int_equal(cfg->log_format, LOG_FORMAT_KV);
	assert_int_equal(cfg->log_facility, 2);
	config_free(cfg);

	expect_error(MINIMAL "log:\n"
			     "  format: text\n",
		     14, "log.format", "must be kv or json");
	expect_error(MINIMAL "log:\n"
			     "  output: file\n",
		     14, "log.output", "must be stderr or syslog");
	expect_error(MINIMAL "log:\n"
			     "  facility: kern\n",
		     14, "log.facility",
		     "must be mail, daemon, user, auth, authpriv or "
		     "local0..local7");
	expect_error(MINIMAL "log:\n"
			     "  syslog_socket: \"\"\n",
		     14, "log.syslog_socket", "must not be empty");
}

/* config_key_line(): where each key was written, for the audit. */
static void
test_key_lines(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL "limits:\n"
			      "  ip:\n"
			      "    auth_failures: off\n");
	assert_int_equal(config_key_line(cfg, "tls"), 1);
	assert_int_equal(config_key_line(cfg, "tls.certificates"), 2);
	assert_int_equal(config_key_line(cfg, "tls.certificates[0].key"), 4);
	assert_int_equal(config_key_line(cfg, "listeners[0].address"), 6);
	assert_int_equal(config_key_line(cfg, "auth.passwd_file"), 9);
	assert_int_equal(config_key_line(cfg, "limits.ip.auth_failures"), 15);
	assert_int_equal(config_key_line(cfg, "tls.ciphers"), 0);
	assert_int_equal(config_key_line(cfg, "nonsense"), 0);
	config_free(cfg);
}

/* listeners[].proxy_protocol: on with its trusted prefixes, the timeout
 * defaulting to 3 s; an empty or bad list, or no mapping, refused. */
static void
test_proxy_protocol(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = load_ok(MINIMAL);
	assert_false(cfg->listeners[0].proxy_protocol);
	assert_int_equal(cfg->listeners[0].proxy_trusted.n, 0);
	config_free(cfg);
	cfg = load_ok(TLS_PART LISTENERS_PART
		      "    proxy_protocol:\n"
		      "      trusted: [10.0.0.0/8, 127.0.0.1/32]\n" AUTH_PART
			      BACKENDS_PART);
	assert_true(cfg->listeners[0].proxy_protocol);
	assert_int_equal(cfg->listeners[0].proxy_trusted.n, 2);
	assert_int_equal(cfg->listeners[0].proxy_timeout_ms, 3000);
	config_free(cfg);
	cfg = load_ok(TLS_PART LISTENERS_PART
		      "    proxy_protocol: {trusted: [\"::1\"], "
		      "timeout: 500ms}\n" AUTH_PART BACKENDS_PART);
	assert_int_equal(cfg->listeners[0].proxy_timeout_ms, 500);
	config_free(cfg);
	expect_error(TLS_PART LISTENERS_PART
		     "    proxy_protocol:\n"
		     "      trusted: []\n" AUTH_PART BACKENDS_PART,
		     9, "listeners[0].proxy_protocol.trusted",
		     "must list at least one prefix: the balancers allowed "
		     "to send a PROXY header");
	expect_error(TLS_PART LISTENERS_PART
		     "    proxy_protocol:\n"
		     "      timeout: 3s\n" AUTH_PART BACKENDS_PART,
		     9, "listeners[0].proxy_protocol.trusted",
		     "must list at least one prefix: the balancers allowed "
		     "to send a PROXY header");
	expect_error(TLS_PART LISTENERS_PART
		     "    proxy_protocol:\n"
		     "      trusted: [10.0.0.1/8]\n" AUTH_PART BACKENDS_PART,
		     9, "listeners[0].proxy_protocol.trusted[0]",
		     "host bits set after the prefix length");
	expect_error(TLS_PART LISTENERS_PART
		     "    proxy_protocol: yes\n" AUTH_PART BACKENDS_PART,
		     8, "listeners[0].proxy_protocol",
		     "expected a mapping such as {trusted: [10.0.0.0/8]}");
	expect_error(TLS_PART LISTENERS_PART
		     "    proxy_protocol:\n"
		     "      trusted: [10.0.0.0/8]\n"
		     "      timeout: 2m\n" AUTH_PART BACKENDS_PART,
		     10, "listeners[0].proxy_protocol.timeout",
		     "must be between 100ms and 1m");
	expect_error(TLS_PART LISTENERS_PART
		     "    proxy_protocol:\n"
		     "      trusted: [10.0.0.0/8]\n"
		     "      send: true\n" AUTH_PART BACKENDS_PART,
		     10, "listeners[0].proxy_protocol.send", "unknown key");
}

/* Nesting and node count are bounded as libyaml's events arrive (a deep
 * file cost libyaml the square of its depth); the bounds hold exactly. */
static void
test_yaml_bounds(void **state)
{
	size_t big = 1024 * 1024, n;
	char *text = malloc(big + 64);
	struct config *cfg = NULL;

	(void)state;
	assert_non_null(text);
	/* 64 levels: only the schema refuses it (a list is not a mapping). */
	n = (size_t)snprintf(text, big, "x: ");
	memset(text + n, '[', 63);
	memset(text + n + 63, ']', 63);
	strcpy(text + n + 126, "\n");
	expect_error(text, 1, "x", "unknown key");
	/* 65: refused at once, at its line. */
	memset(text, '[', big - 1);
	text[big - 1] = '\0';
	expect_error(text, 1, "file",
		     "lists and mappings nested more than 64 deep; a "
		     "configuration needs 6");
	/* 100,000 nodes pass the count (the root mapping, its key, the list
	 * and 99,997 items) and 100,001 do not. */
	n = (size_t)snprintf(text, big, "x: [");
	for (int i = 0; i < 99997; i++)
		n += (size_t)snprintf(text + n, big - n, "%s1", i ? "," : "");
	strcpy(text + n, "]\n");
	expect_error(text, 1, "x", "unknown key");
	strcpy(text + n, ",1,1]\n");
	expect_error(text, 1, "file",
		     "more than 100000 values (YAML nodes); a configuration "
		     "needs a few hundred");
	/* 1 MiB exactly is read; one byte more is not. */
	memset(text, '#', big);
	text[big] = '\0';
	write_config(text);
	assert_int_equal(config_load(cfgpath, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "file: empty"));
	text[big] = '\n';
	text[big + 1] = '\0';
	expect_error(text, 1, "file",
		     "larger than 1 MiB (1048576 bytes); a configuration needs "
		     "a few KiB");
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_cache_limits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_scalar_forms, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_example_config, setup,
						teardown),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_rates),
		cmocka_unit_test_setup_teardown(test_limits_defaults, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_limits_user, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_limits_user, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_limits_classes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_limits_classes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_limits_users, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_limits_users, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_limits_ip_login, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_limits_ip_login, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_listener_lists, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_unknown_key, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_bad_mode, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_bad_duration, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_duplicate_key, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_yaml_syntax, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_missing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_auth_backends, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_not_a_mapping, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_mechanisms, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_backends_pool, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_backends_unix, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_backends_pool, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_max_memory, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_ranges, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_values, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_addresses, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_err_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blocklist_keys, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_backend_host_names, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_worker_buffers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_privileges, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_control_and_shutdown,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_listen, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_log_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_proxy_protocol, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_key_lines, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_yaml_bounds, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
