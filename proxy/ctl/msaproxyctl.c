/*
 * msaproxyctl - talk to a running msaproxy over its control socket.
 *
 * SYNOPSIS
 *	msaproxyctl [-s SOCKET] [-j] COMMAND [ARG...]
 *	msaproxyctl --help | --version
 *
 * DESCRIPTION
 *	Sends one request (the command and its arguments as one line) to the
 *	control socket named by control.socket in the proxy's config (default
 *	/run/msaproxy/control.sock), prints the answer and exits 0 (a reload
 *	applied with warnings too: "warning: ..." lines on stdout), or prints
 *	the proxy's error, and the further findings after it, on stderr and
 *	exits 1 (2: usage, also when the proxy answers "error: usage: ...";
 *	3: cannot reach the proxy, with a hint on how to name the socket).
 *	-j asks for JSON.
 *
 * COMMANDS (the proxy's, see proxy/ops/control.c and msaproxyctl(8))
 *	status, stats, sessions, reload, drain [--fast], user limits LOGIN,
 *	user reset LOGIN, ban PREFIX [--ttl DURATION], unban PREFIX, list,
 *	backends, backend enable|disable NAME, cluster, overview.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/version.h"

#define DEFAULT_SOCKET "/run/msaproxy/control.sock"
#define REQUEST_MAX    1024
#define TIMEOUT_S      30

static void
usage_to(FILE *out)
{
	fprintf(out,
		"usage: msaproxyctl [-s|--socket SOCKET] [-j|--json] COMMAND "
		"[ARG...]\n"
		"       msaproxyctl --help | --version\n"
		"commands: status, stats, sessions, reload, drain [--fast],\n"
		"          user limits LOGIN, user reset LOGIN,\n"
		"          ban PREFIX [--ttl DURATION], unban PREFIX, list,\n"
		"          backends,\n"
		"          backend enable|disable NAME, cluster,\n"
		"          overview (JSON: what the status page shows)\n");
}

static void
usage(void)
{
	usage_to(stderr);
	exit(2);
}

/* --help, -h: the usage on stdout, and 0 (asked for, not a mistake). */
static void
help(void)
{
	usage_to(stdout);
	printf("\n  -s, --socket SOCKET  the control socket (default %s)\n"
	       "  -j, --json           answers as JSON\n"
	       "  --version            print the version and exit\n"
	       "See msaproxyctl(8).\n",
	       DEFAULT_SOCKET);
	exit(0);
}

/* Why the socket could not be reached, and how to name the right one:
 * msaproxyctl does not read the proxy's config, so the path comes from -s
 * or the default, and the proxy has one only if control.socket is set. */
static void
unreachable(const char *path, int err, bool given)
{
	fprintf(stderr, "msaproxyctl: %s: %s\n", path, strerror(err));
	if (err != ENOENT && err != ECONNREFUSED)
		return;
	fprintf(stderr,
		"msaproxyctl: is msaproxy running with a control socket %s?\n"
		"msaproxyctl: the proxy opens one only when its config sets "
		"control.socket (for example control: {socket: %s});\n"
		"msaproxyctl: give msaproxyctl that path with -s SOCKET "
		"(--socket SOCKET)%s\n",
		given ? "there" : "at the default path", DEFAULT_SOCKET,
		given ? "" : " when it is not the default");
}

static int
connect_to(const char *path, bool given)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = TIMEOUT_S};
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "msaproxyctl: %s: path too long\n", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		int e = errno;

		unreachable(path, e, given);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Join the words into one request line; -1 if it would not fit or a word
 * holds a byte the line format cannot carry. */
static int
build_request(char *buf, size_t len, int json, int argc, char **argv)
{
	size_t used = 0;

	if (json)
		used = (size_t)snprintf(buf, len, "json ");
	for (int i = 0; i < argc; i++) {
		if (strpbrk(argv[i], " \t\r\n") != NULL || argv[i][0] == '\0')
			return -1;
		int n = snprintf(buf + used, len - used, "%s%s", argv[i],
				 i + 1 < argc ? " " : "\n");
		if (n < 0 || (size_t)n >= len - used)
			return -1;
		used += (size_t)n;
	}
	return (int)used;
}

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_SOCKET;
	char req[REQUEST_MAX], *resp = NULL, *line, *nl, *save = NULL;
	bool given = false;
	size_t len = 0, cap = 0;
	int json = 0, c, fd, n;

	static const struct option longopts[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};

	while ((c = getopt_long(argc, argv, "+s:jhV", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			given = true;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			help();
			break;
		case 'V':
			printf("msaproxyctl %s\n", MSAPROXY_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	n = build_request(req, sizeof(req), json, argc - optind, argv + optind);
	if (n < 0) {
		fprintf(stderr,
			"msaproxyctl: request too long or empty word\n");
		return 2;
	}
	if ((fd = connect_to(path, given)) < 0)
		return 3;
	if (write(fd, req, (size_t)n) != n) {
		fprintf(stderr, "msaproxyctl: %s: %s\n", path, strerror(errno));
		return 3;
	}
	for (;;) {
		ssize_t r;

		if (len + 4096 + 1 > cap) {
			char *p = realloc(resp, cap = (cap + 4096) * 2);
			if (p == NULL) {
				fprintf(stderr, "msaproxyctl: out of memory\n");
				return 3;
			}
			resp = p;
		}
		r = read(fd, resp + len, cap - len - 1);
		if (r < 0) {
			fprintf(stderr, "msaproxyctl: %s: %s\n", path,
				strerror(errno));
			return 3;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (resp == NULL || len == 0) {
		fprintf(stderr, "msaproxyctl: %s: no answer\n", path);
		return 3;
	}
	resp[len] = '\0';
	nl = strchr(resp, '\n');
	if (strncmp(resp, "ok\n", 3) == 0) {
		fputs(nl + 1, stdout);
		free(resp);
		return 0;
	}
	/* A request the proxy could not read as a command is a usage error,
	 * as one msaproxyctl refuses itself. */
	c = strncmp(resp, "error: usage: ", 14) == 0 ? 2 : 1;
	/* The error, then any further findings ("error: ...", "warning:
	 * ..."), each on its own line. */
	for (line = strtok_r(resp, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		fprintf(stderr, "msaproxyctl: %s\n", line);
	free(resp);
	return c;
}
