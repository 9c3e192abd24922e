/*
 * msaproxy - TLS-terminating SMTP submission proxy.
 *
 * SYNOPSIS
 *	msaproxy [-t] [--strict] -c FILE
 *	msaproxy -T -c FILE
 *	msaproxy hash-password [--scheme yescrypt|bcrypt|sha512-crypt]
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
 *	crypt(3) hash for the users file.
 *
 * SIGNALS
 *	SIGTERM, SIGINT: stop; sessions end with 421.
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

#include "audit.h"
#include "auth/auth_pool.h"
#include "auth/passwd_db.h"
#include "config.h"
#include "ratelimit.h"
#include "log.h"
#include "tls.h"
#include "worker.h"

static void
usage(void)
{
	fprintf(stderr,
		"usage: msaproxy [-t] [--strict] -c FILE\n"
		"       msaproxy -T -c FILE\n"
		"       msaproxy hash-password [--scheme yescrypt|bcrypt|"
		"sha512-crypt]\n");
	exit(2);
}

/* Read one line from stdin without echo when it is a terminal: 0, or -1
 * when empty, -2 when longer than len - 1 bytes (never cut silently: a
 * cut password would hash fine and then never match). */
static int
read_password(char *buf, size_t len)
{
	struct termios old, quiet;
	int tty = isatty(STDIN_FILENO);
	int too_long = 0, c;
	size_t n;

	/* No stdio buffer: it would keep a copy of the password. */
	setvbuf(stdin, NULL, _IONBF, 0);
	if (tty) {
		fprintf(stderr, "Password: ");
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
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

static int
hash_password(int argc, char **argv)
{
	const char *scheme = NULL;
	char pass[256], err[256];
	char *hash;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--scheme") == 0 && i + 1 < argc)
			scheme = argv[++i];
		else
			usage();
	}
	switch (read_password(pass, sizeof(pass))) {
	case 0:
		break;
	case -2:
		OPENSSL_cleanse(pass, sizeof(pass));
		fprintf(stderr,
			"msaproxy: password too long (at most %zu "
			"bytes)\n",
			sizeof(pass) - 1);
		return 1;
	default:
		fprintf(stderr, "msaproxy: empty password\n");
		return 1;
	}
	hash = passwd_hash(pass, scheme, err, sizeof(err));
	OPENSSL_cleanse(pass, sizeof(pass));
	if (hash == NULL) {
		fprintf(stderr, "msaproxy: %s\n", err);
		return 1;
	}
	printf("%s\n", hash);
	free(hash);
	return 0;
}

static unsigned
worker_count(const struct config *cfg)
{
	long n;

	if (cfg->workers > 0)
		return cfg->workers;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static bool
class_exists(const char *name, void *cfg)
{
	return config_class_find(cfg, name) != NULL;
}

/* -t: findings on stderr, as the config errors are. */
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

/* Everything -t checks, and what a start needs before any thread. */
static int
prepare(const char *path, bool check, bool strict, struct config **cfgp,
	struct passwd_db **dbp)
{
	struct tls_server *probe;
	struct log_options lo;
	char err[1024];

	if (config_load(path, cfgp, err, sizeof(err)) != 0) {
		fprintf(stderr, "msaproxy: %s\n", err);
		return -1;
	}
	lo = (struct log_options){
		.level = (enum log_level)(*cfgp)->log_level,
		.format = (enum log_format)(*cfgp)->log_format,
		/* -t prints; it never writes to syslog. */
		.output = check ? LOG_OUTPUT_STDERR
				: (enum log_output)(*cfgp)->log_output,
		.facility = (*cfgp)->log_facility,
		.syslog_socket = (*cfgp)->log_syslog_socket,
	};
	if (log_configure(&lo, err, sizeof(err)) != 0) {
		fprintf(stderr, "msaproxy: log.syslog_socket: %s\n", err);
		return -1;
	}
	if (audit(*cfgp, check, strict) != 0)
		return -1;
	*dbp = passwd_db_load((*cfgp)->passwd_file, err, sizeof(err));
	if (*dbp == NULL) {
		fprintf(stderr, "msaproxy: auth.passwd_file: %s\n", err);
		return -1;
	}
	if (passwd_db_check_classes(*dbp, class_exists, *cfgp, err,
				    sizeof(err)) != 0) {
		fprintf(stderr, "msaproxy: auth.passwd_file: %s\n", err);
		return -1;
	}
	probe = tls_server_new(*cfgp, err, sizeof(err));
	if (probe == NULL) {
		fprintf(stderr, "msaproxy: tls: %s\n", err);
		return -1;
	}
	tls_server_free(probe);
	return 0;
}

static int
run(struct config *cfg, struct passwd_db *db)
{
	unsigned n = worker_count(cfg), started = 0;
	struct worker **workers = calloc(n, sizeof(*workers));
	struct worker_shared shared = {.users = db};
	struct auth_pool *pool;
	sigset_t sigs;
	char err[1024];
	int sig, status = 1;

	/* Threads inherit this mask; only this thread takes signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (workers == NULL || tls_global_init(cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "msaproxy: %s\n",
			workers ? err : "out of memory");
		free(workers);
		return 1;
	}
	pool = auth_pool_start(cfg->auth_threads, db, cfg->auth_cache_ttl_ms,
			       cfg->auth_cache_size, err, sizeof(err));
	if (pool == NULL) {
		fprintf(stderr, "msaproxy: auth: %s\n", err);
		free(workers);
		return 1;
	}
	shared.auth = pool;
	shared.limits = ratelimit_new(cfg, err, sizeof(err));
	if (shared.limits == NULL) {
		fprintf(stderr, "msaproxy: %s\n", err);
		auth_pool_stop(pool);
		free(workers);
		return 1;
	}
	for (unsigned i = 0; i < n; i++) {
		workers[i] = worker_new(i, cfg, &shared, err, sizeof(err));
		if (workers[i] == NULL ||
		    worker_start(workers[i], err, sizeof(err)) != 0) {
			fprintf(stderr, "msaproxy: %s\n", err);
			goto stop;
		}
		started++;
	}
	log_info("ready", " workers=%u listeners=%zu backends=%zu users=%zu", n,
		 cfg->nlisteners, cfg->nbackends, passwd_db_count(db));
	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_warn("reload-unsupported",
				 " detail=\"restart to apply changes\"");
			continue;
		}
		log_info("stopping", " signal=%s", strsignal(sig));
		break;
	}
	status = 0;
stop:
	for (unsigned i = 0; i < started; i++)
		worker_stop(workers[i]);
	for (unsigned i = 0; i < started; i++)
		worker_join(workers[i]);
	for (unsigned i = 0; i < n; i++)
		worker_free(workers[i]);
	auth_pool_stop(pool);
	ratelimit_free(shared.limits);
	free(workers);
	if (status == 0)
		log_info("stopped", "%s", "");
	return status;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"strict", no_argument, NULL, 'S'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	struct config *cfg = NULL;
	struct passwd_db *db = NULL;
	bool check = false, strict = false;
	int c, status;

	/* No core dumps: memory holds keys and cached-login HMACs. */
	prctl(PR_SET_DUMPABLE, 0);
	if (argc > 1 && strcmp(argv[1], "hash-password") == 0)
		return hash_password(argc - 1, argv + 1);
	while ((c = getopt_long(argc, argv, "c:tTh", longopts, NULL)) != -1) {
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
		default:
			usage();
		}
	}
	if (path == NULL || optind != argc)
		usage();
	if (prepare(path, check, strict, &cfg, &db) != 0) {
		status = 1;
	} else if (check) {
		if (audit_warnings > 0)
			printf("msaproxy: %s: configuration ok, %u warning%s\n",
			       path, audit_warnings,
			       audit_warnings == 1 ? "" : "s");
		else
			printf("msaproxy: %s: configuration ok\n", path);
		status = 0;
	} else {
		status = run(cfg, db);
	}
	passwd_db_free(db);
	config_free(cfg);
	return status;
}
