/*
 * msaproxy - TLS-terminating SMTP submission proxy.
 *
 * SYNOPSIS
 *	msaproxy [-t] [--strict] -c FILE
 *	msaproxy -T -c FILE
 *	msaproxy hash-password [--scheme yescrypt|bcrypt|sha512-crypt]
 *		[--cost N | --rounds N] [--check-strength | --allow-weak]
 *	msaproxy --help | --version
 *
 * DESCRIPTION
 *	Listens for mail submission on the configured listeners (587-style
 *	STARTTLS and 465-style implicit TLS), authenticates users, and relays
 *	their mail to backend MTAs, telling them who the client is.
 *
 *	-c FILE	the configuration (YAML; see conf/msaproxy.yaml)
 *	-t	check the configuration, certificates and users file, print
 *		the audit's warnings about unsafe choices (audit.c); exit 0
 *		unless something is wrong
 *	--strict  warnings are fatal: -t exits 1, a start is refused
 *	-T	-t --strict
 *
 *	hash-password reads a password from standard input and prints a
 *	crypt(3) hash for the users file.  On a terminal it asks twice
 *	(without echo) and refuses two different answers.  --cost (or its
 *	synonym --rounds) sets the scheme's work factor: yescrypt 1..11
 *	(default 5), bcrypt 4..31 (default 12), sha512-crypt rounds
 *	1000..999999999 (default 5000).  A password typed on a terminal is
 *	checked by libpwquality against the system's policy
 *	(/etc/security/pwquality.conf: length, classes, the cracklib
 *	dictionary) and a weak one refused with the reason; --allow-weak
 *	skips the check, --check-strength makes it for piped input too.
 *
 * SIGNALS
 *	SIGHUP: reload the configuration, users file and certificates.
 *	SIGTERM: drain (stop accepting, finish transactions, 421) and exit;
 *	SIGINT: the same with a shorter deadline; a second one: at once.
 *
 * SECURITY
 *	Runs every socket on worker threads that never block; password
 *	hashes are checked on a separate pool.  Passwords never reach a log.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <pwquality.h>

#include "cluster/cluster.h"
#include "config/audit.h"
#include "auth/passwd_db.h"
#include "config/generation.h"
#include "lib/log.h"
#include "lib/version.h"
#include "ops/preflight.h"
#include "ops/server.h"
#include "io/tls.h"

/*
 * jemalloc, the allocator msaproxy links (other allocators ignore this):
 *
 * - freed blocks up to 128 KiB stay in the freeing thread's cache.  Session
 *   buffers are allocated when they fill and freed when they drain, several
 *   times per session (s->wire 64 KiB per reply, a backend's output 128 KiB
 *   per command); above the default 32 KiB each of those went through the
 *   arena (bench: docs/PERFORMANCE.md).
 * - pages left dirty by frees go back to the system after about a second
 *   (the default is 10), by one purging thread.  server.c starts that
 *   thread after the privilege drop: "background_thread:true" here would
 *   start it at the first malloc(), with root's capabilities.
 */
const char *malloc_conf =
	"tcache_max:131072,dirty_decay_ms:1000,max_background_threads:1";

/* --help: stdout and 0; a usage error: stderr and 2. */
static void
usage(int status)
{
	fprintf(status == 0 ? stdout : stderr,
		"usage: msaproxy [-t] [--strict] -c FILE\n"
		"       msaproxy -T -c FILE\n"
		"       msaproxy hash-password [--scheme yescrypt|bcrypt|"
		"sha512-crypt]\n"
		"                              [--cost N | --rounds N]\n"
		"                              [--check-strength | "
		"--allow-weak]\n"
		"       msaproxy --help | --version\n"
		"\n"
		"  -c FILE     the configuration (msaproxy.yaml(5))\n"
		"  -t          check it (and the files it names) and exit\n"
		"  --strict    the audit's warnings are fatal (-T: -t "
		"--strict)\n"
		"  hash-password  read a password, print a hash for the users "
		"file\n"
		"  --version   print the version and exit\n");
	exit(status);
}

static void
version(void)
{
	printf("msaproxy %s\n", MSAPROXY_VERSION);
	exit(0);
}

/* Read one line from stdin without echo when it is a terminal, after
 * prompt (terminal only): 0, or -1 when empty, -2 when longer than len - 1
 * bytes (never cut silently: a cut password would hash fine and then never
 * match). */
static int
read_password(char *buf, size_t len, int tty, const char *prompt)
{
	struct termios old, quiet;
	int too_long = 0, c;
	size_t n;

	/* No stdio buffer: it would keep a copy of the password. */
	setvbuf(stdin, NULL, _IONBF, 0);
	if (tty) {
		/* Echo off before the prompt: what is typed after it is
		 * neither shown nor flushed. */
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		fprintf(stderr, "%s", prompt);
	}
	if (fgets(buf, (int)len, stdin) == NULL)
		buf[0] = '\0';
	if (strchr(buf, '\n') == NULL && (c = getc(stdin)) != EOF && c != '\n')
		too_long = 1;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	if (too_long)
		return -2;
	return n > 0 ? 0 : -1;
}

/* The password, asked twice on a terminal: 0, or 1 with the reason
 * printed. */
static int
ask_password(char *pass, size_t len)
{
	int tty = isatty(STDIN_FILENO);
	char again[256];
	int st = read_password(pass, len, tty, "Password: ");

	if (st == 0 && tty) {
		st = read_password(again, sizeof(again), tty,
				   "Retype password: ");
		if (st == 0 && strcmp(pass, again) != 0)
			st = -3;
		OPENSSL_cleanse(again, sizeof(again));
	}
	if (st == 0)
		return 0;
	OPENSSL_cleanse(pass, len);
	if (st == -2)
		fprintf(stderr,
			"msaproxy: password too long (at most %zu bytes)\n",
			len - 1);
	else if (st == -3)
		fprintf(stderr, "msaproxy: the passwords do not match\n");
	else
		fprintf(stderr, "msaproxy: empty password\n");
	return 1;
}

/* libpwquality's verdict on pass under the system's policy: 0 strong
 * enough, or -1 with why. */
static int
weak_password(const char *pass, char *why, size_t len)
{
	pwquality_settings_t *pwq = pwquality_default_settings();
	void *aux = NULL;
	int score;

	if (pwq == NULL) {
		snprintf(why, len, "out of memory");
		return -1;
	}
	/* The system's policy when there is one; the defaults otherwise. */
	(void)pwquality_read_config(pwq, NULL, NULL);
	score = pwquality_check(pwq, pass, NULL, NULL, &aux);
	if (score < 0)
		pwquality_strerror(why, len, score, aux);
	pwquality_free_settings(pwq);
	return score < 0 ? -1 : 0;
}

/* --cost N: a positive whole number, or exit 2. */
static unsigned long
parse_cost(const char *opt, const char *text)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(text, &end, 10);
	if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 ||
	    v == 0) {
		fprintf(stderr,
			"msaproxy: hash-password: %s: expected a whole number "
			"above 0, not \"%s\"\n",
			opt, text);
		exit(2);
	}
	return v;
}

static int
hash_password(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"scheme", required_argument, NULL, 's'},
		{"cost", required_argument, NULL, 'c'},
		{"rounds", required_argument, NULL, 'r'},
		{"check-strength", no_argument, NULL, 'k'},
		{"allow-weak", no_argument, NULL, 'w'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *scheme = NULL;
	char pass[256], err[256];
	unsigned long cost = 0;
	/* A person typing a password gets the check; a pipe (provisioning
	 * from another system) only when asked. */
	int check = isatty(STDIN_FILENO), allow_weak = 0;
	char *hash;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			scheme = optarg;
			break;
		case 'c':
		case 'r':
			cost = parse_cost(c == 'c' ? "--cost" : "--rounds",
					  optarg);
			break;
		case 'k':
			check = 1;
			break;
		case 'w':
			allow_weak = 1;
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	if (optind != argc)
		usage(2);
	/* A bad scheme or cost is said before the password is asked. */
	if (passwd_hash_check(scheme, cost, err, sizeof(err)) != 0) {
		fprintf(stderr, "msaproxy: hash-password: %s\n", err);
		return 2;
	}
	if (ask_password(pass, sizeof(pass)) != 0)
		return 1;
	if (check && !allow_weak &&
	    weak_password(pass, err, sizeof(err)) != 0) {
		OPENSSL_cleanse(pass, sizeof(pass));
		fprintf(stderr,
			"msaproxy: hash-password: a weak password: %s "
			"(--allow-weak hashes it anyway)\n",
			err);
		return 1;
	}
	hash = passwd_hash_cost(pass, scheme, cost, err, sizeof(err));
	OPENSSL_cleanse(pass, sizeof(pass));
	if (hash == NULL) {
		fprintf(stderr, "msaproxy: %s\n", err);
		return 1;
	}
	printf("%s\n", hash);
	free(hash);
	return 0;
}

static void
audit_print(void *ctx, enum audit_level level, const char *text)
{
	(void)ctx;
	fprintf(stderr, "msaproxy: %s: %s\n",
		level == AUDIT_ERROR ? "error" : "warning", text);
}

/* A start: warnings are logged, errors printed (nothing starts). */
static void
audit_log(void *ctx, enum audit_level level, const char *text)
{
	char q[1200];

	(void)ctx;
	if (level == AUDIT_ERROR)
		audit_print(ctx, level, text);
	else
		log_warn("config-warning", " detail=%s",
			 log_quote(q, sizeof(q), text, strlen(text)));
}

static unsigned audit_warnings; /* for -t's last line */

/* The audit (audit.c): -1 on errors, or on warnings when strict. */
static int
audit(const struct config *cfg, bool check, bool strict)
{
	struct audit_result r = audit_config(
		cfg, time(NULL), check ? audit_print : audit_log, NULL);

	if (r.errors > 0) {
		fprintf(stderr, "msaproxy: %s: %u error%s in the audit\n",
			cfg->path, r.errors, r.errors == 1 ? "" : "s");
		return -1;
	}
	audit_warnings = r.warnings;
	if (r.warnings > 0 && strict) {
		fprintf(stderr,
			"msaproxy: %s: %u warning%s, fatal with --strict\n",
			cfg->path, r.warnings, r.warnings == 1 ? "" : "s");
		return -1;
	}
	return 0;
}

/* Logging as the config says (-t: always to stderr). */
static int
setup_log(const struct config *cfg, bool check)
{
	struct log_options lo = {
		.level = (enum log_level)cfg->log_level,
		.format = (enum log_format)cfg->log_format,
		.output = check ? LOG_OUTPUT_STDERR
				: (enum log_output)cfg->log_output,
		.facility = cfg->log_facility,
		.syslog_socket = cfg->log_syslog_socket,
	};
	char err[512];

	if (log_configure(&lo, err, sizeof(err)) != 0) {
		fprintf(stderr, "msaproxy: log.syslog_socket: %s\n", err);
		return -1;
	}
	return 0;
}

struct vet_args {
	bool check, strict;
};

/* Before the users file and keys are read: logging, the audit, then the
 * paths the start will open (preflight.h). */
static int
vet(const struct config *cfg, void *arg, char *err, size_t errlen)
{
	const struct vet_args *v = arg;

	err[0] = '\0';
	if (setup_log(cfg, v->check) != 0 || audit(cfg, v->check, v->strict))
		return -1;
	/* cluster.password_file, cluster.tls_ca: readable and sound; then
	 * every path the start will open. */
	if (cluster_check(cfg, err, errlen) != 0)
		return -1;
	return preflight_check(cfg, err, errlen);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"strict", no_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	struct generation *gen;
	struct vet_args va;
	bool check = false, strict = false;
	char err[1024];
	int c;

	/* No core dumps: memory holds keys and cached-login HMACs. */
	prctl(PR_SET_DUMPABLE, 0);
	if (argc > 1 && strcmp(argv[1], "hash-password") == 0)
		return hash_password(argc - 1, argv + 1);
	while ((c = getopt_long(argc, argv, "c:tThV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'T':
			check = strict = true;
			break;
		case 'S':
			strict = true;
			break;
		case 'h':
			usage(0);
			break;
		case 'V':
			version();
			break;
		default:
			usage(2);
		}
	}
	if (path == NULL || optind != argc)
		usage(2);
	/* Everything -t checks is what a start needs before any thread. */
	va = (struct vet_args){.check = check, .strict = strict};
	gen = generation_load(path, 1, check ? 0 : GENERATION_PER_WORKER, vet,
			      &va, err, sizeof(err));
	if (gen == NULL) {
		if (err[0] != '\0') /* the audit has said it already */
			fprintf(stderr, "msaproxy: %s\n", err);
		tls_global_free();
		return 1;
	}
	if (check) {
		if (audit_warnings > 0)
			printf("msaproxy: %s: configuration ok, %u warning%s\n",
			       path, audit_warnings,
			       audit_warnings == 1 ? "" : "s");
		else
			printf("msaproxy: %s: configuration ok\n", path);
		generation_drop(gen);
		tls_global_free();
		return 0;
	}
	return server_run(path, gen);
}
