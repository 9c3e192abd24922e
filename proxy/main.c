/*
 * msaproxy - TLS-terminating SMTP submission proxy.
 *
 * SYNOPSIS
 *	msaproxy [-t] -c FILE
 *	msaproxy hash-password [--scheme yescrypt|bcrypt|sha512-crypt]
 *
 * DESCRIPTION
 *	Listens for mail submission on the configured listeners (587-style
 *	STARTTLS and 465-style implicit TLS), authenticates users, and relays
 *	their mail to backend MTAs, telling them who the client is.
 *
 *	-c FILE	the configuration (YAML; see conf/msaproxy.yaml)
 *	-t	check the configuration, certificates and users file; exit
 *
 *	hash-password reads a password from standard input and prints a
 *	crypt(3) hash for the users file.
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
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/passwd_db.h"
#include "generation.h"
#include "log.h"
#include "server.h"
#include "tls.h"

static void
usage(void)
{
	fprintf(stderr,
		"usage: msaproxy [-t] -c FILE\n"
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

int
main(int argc, char **argv)
{
	const char *path = NULL;
	struct generation *gen;
	char err[1024];
	int check = 0, c;

	/* No core dumps: memory holds keys and cached-login HMACs. */
	prctl(PR_SET_DUMPABLE, 0);
	if (argc > 1 && strcmp(argv[1], "hash-password") == 0)
		return hash_password(argc - 1, argv + 1);
	while ((c = getopt(argc, argv, "c:th")) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		default:
			usage();
		}
	}
	if (path == NULL || optind != argc)
		usage();
	/* Everything -t checks is what a start needs before any thread. */
	gen = generation_load(path, 1, check ? 0 : GENERATION_PER_WORKER, err,
			      sizeof(err));
	if (gen == NULL) {
		fprintf(stderr, "msaproxy: %s\n", err);
		return 1;
	}
	log_set_level((enum log_level)gen->cfg->log_level);
	if (check) {
		printf("msaproxy: %s: configuration ok\n", path);
		generation_drop(gen);
		tls_global_free();
		return 0;
	}
	return server_run(path, gen);
}
