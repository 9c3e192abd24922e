/*
 * control.c - the control socket: accept, read one request, answer.
 *
 * Commands (the table commands[]; msaproxyctl(8) has a subsection each):
 *	status, stats, sessions, reload, drain [--fast],
 *	user limits LOGIN, user reset LOGIN,
 *	ban PREFIX [--ttl DURATION], unban PREFIX, list,
 *	backends, backend enable|disable NAME, cluster, overview (JSON
 *	only: what the status page shows, GET /status.json).
 * A request with the wrong words for its command is answered "error:
 * usage: ...", which msaproxyctl exits 2 for (its usage code).
 *
 * Config keys: control.socket, control.mode.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"
#include "ops/control.h"
#include "ops/preflight.h"
#include "lib/log.h"
#include "ops/server.h"

#define REQUEST_MAX  1024
#define ARGS_MAX     8
#define IO_TIMEOUT_S 2

typedef int (*control_fn)(struct server *srv, int argc, char **argv, FILE *body,
			  bool json, char *err, size_t errlen);

static int
cmd_status(struct server *srv, int argc, char **argv, FILE *body, bool json,
	   char *err, size_t errlen)
{
	(void)argc, (void)argv, (void)err, (void)errlen;
	server_status(srv, body, json);
	return 0;
}

/* Always JSON: the status page's data, the very bytes of /status.json. */
static int
cmd_overview(struct server *srv, int argc, char **argv, FILE *body, bool json,
	     char *err, size_t errlen)
{
	(void)argv, (void)json;
	if (argc != 1) {
		snprintf(err, errlen, "usage: overview");
		return -1;
	}
	server_overview(srv, body);
	return 0;
}

static int
cmd_stats(struct server *srv, int argc, char **argv, FILE *body, bool json,
	  char *err, size_t errlen)
{
	(void)argc, (void)argv, (void)err, (void)errlen;
	server_stats(srv, body, json);
	return 0;
}

static int
cmd_cluster(struct server *srv, int argc, char **argv, FILE *body, bool json,
	    char *err, size_t errlen)
{
	(void)argc, (void)argv, (void)err, (void)errlen;
	server_cluster(srv, body, json);
	return 0;
}

static int
cmd_sessions(struct server *srv, int argc, char **argv, FILE *body, bool json,
	     char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	FILE *list = open_memstream(&text, &len);
	int r;

	(void)argc, (void)argv;
	if (list == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* A partial list is no answer (an error's body is for findings). */
	r = server_sessions(srv, list, json);
	fclose(list);
	if (r == 0 && text != NULL)
		fwrite(text, 1, len, body);
	free(text);
	if (r != 0)
		snprintf(err, errlen, "a worker did not answer in time");
	return r != 0 ? -1 : 0;
}

static int
cmd_reload(struct server *srv, int argc, char **argv, FILE *body, bool json,
	   char *err, size_t errlen)
{
	(void)argc, (void)argv, (void)json;
	return server_reload(srv, body, err, errlen);
}

static int
cmd_drain(struct server *srv, int argc, char **argv, FILE *body, bool json,
	  char *err, size_t errlen)
{
	(void)body, (void)json;
	if (argc == 2 && strcmp(argv[1], "--fast") == 0) {
		server_drain(srv, true);
		return 0;
	}
	if (argc != 1) {
		snprintf(err, errlen, "usage: drain [--fast]");
		return -1;
	}
	server_drain(srv, false);
	return 0;
}

static int
cmd_user(struct server *srv, int argc, char **argv, FILE *body, bool json,
	 char *err, size_t errlen)
{
	if (argc == 3 && strcmp(argv[1], "reset") == 0)
		return server_user_reset(srv, argv[2], err, errlen);
	if (argc != 3 || strcmp(argv[1], "limits") != 0) {
		snprintf(err, errlen,
			 "usage: user limits LOGIN | user reset LOGIN");
		return -1;
	}
	return server_user_limits(srv, argv[2], body, json, err, errlen);
}

static int
parse_prefix(const char *text, struct ipnet *net, char *err, size_t errlen)
{
	const char *why = ipnet_parse(text, net);

	if (why != NULL)
		snprintf(err, errlen, "%.64s: %s", text, why);
	return why != NULL ? -1 : 0;
}

/* ban PREFIX [--ttl DURATION] */
static int
cmd_ban(struct server *srv, int argc, char **argv, FILE *body, bool json,
	char *err, size_t errlen)
{
	struct ipnet net;
	uint64_t ttl = 0;

	(void)body, (void)json;
	if ((argc != 2 && argc != 4) ||
	    (argc == 4 && strcmp(argv[2], "--ttl") != 0)) {
		snprintf(err, errlen, "usage: ban PREFIX [--ttl DURATION]");
		return -1;
	}
	if (parse_prefix(argv[1], &net, err, errlen) != 0)
		return -1;
	if (argc == 4 && config_parse_duration(argv[3], &ttl) != 0) {
		snprintf(err, errlen,
			 "--ttl: expected a duration such as 30s, 10m, 1h, 7d");
		return -1;
	}
	if (argc == 4 && ttl == 0) {
		snprintf(err, errlen,
			 "--ttl: must be above zero (without --ttl the ban "
			 "lasts until unbanned)");
		return -1;
	}
	return server_ban(srv, &net, ttl, err, errlen);
}

static int
cmd_unban(struct server *srv, int argc, char **argv, FILE *body, bool json,
	  char *err, size_t errlen)
{
	struct ipnet net;

	(void)body, (void)json;
	if (argc != 2) {
		snprintf(err, errlen, "usage: unban PREFIX");
		return -1;
	}
	if (parse_prefix(argv[1], &net, err, errlen) != 0)
		return -1;
	return server_unban(srv, &net, err, errlen);
}

static int
cmd_list(struct server *srv, int argc, char **argv, FILE *body, bool json,
	 char *err, size_t errlen)
{
	(void)argc, (void)argv, (void)err, (void)errlen;
	server_bans(srv, body, json);
	return 0;
}

static int
cmd_backends(struct server *srv, int argc, char **argv, FILE *body, bool json,
	     char *err, size_t errlen)
{
	(void)argc, (void)argv, (void)err, (void)errlen;
	server_backends(srv, body, json);
	return 0;
}

/* backend enable|disable NAME */
static int
cmd_backend(struct server *srv, int argc, char **argv, FILE *body, bool json,
	    char *err, size_t errlen)
{
	(void)json;
	if (argc != 3 || (strcmp(argv[1], "enable") != 0 &&
			  strcmp(argv[1], "disable") != 0)) {
		snprintf(err, errlen, "usage: backend enable|disable NAME");
		return -1;
	}
	return server_backend_set(srv, argv[2], argv[1][0] == 'e', body, err,
				  errlen);
}

static const struct {
	const char *name;
	control_fn fn;
} commands[] = {
	{"status", cmd_status},	    {"stats", cmd_stats},
	{"sessions", cmd_sessions}, {"reload", cmd_reload},
	{"drain", cmd_drain},	    {"user", cmd_user},
	{"ban", cmd_ban},	    {"unban", cmd_unban},
	{"list", cmd_list},	    {"backends", cmd_backends},
	{"backend", cmd_backend},   {"cluster", cmd_cluster},
	{"overview", cmd_overview},
};

/* Run one request line (NUL-terminated, no newline) into out: the first
 * line "ok" or "error: ...". */
static void
control_exec(struct server *srv, char *line, FILE *out)
{
	char *argv[ARGS_MAX + 1], *save = NULL, *word, *text = NULL;
	char err[1024] = "";
	size_t len = 0;
	bool json = false;
	int argc = 0, r = -1;
	FILE *body;

	for (word = strtok_r(line, " \t", &save); word != NULL;
	     word = strtok_r(NULL, " \t", &save)) {
		if (argc == ARGS_MAX) {
			fprintf(out, "error: too many words\n");
			return;
		}
		argv[argc++] = word;
	}
	if (argc > 0 && strcmp(argv[0], "json") == 0) {
		json = true;
		memmove(argv, argv + 1, (size_t)--argc * sizeof(*argv));
	}
	if (argc == 0) {
		fprintf(out, "error: empty request\n");
		return;
	}
	body = open_memstream(&text, &len);
	if (body == NULL) {
		fprintf(out, "error: out of memory\n");
		return;
	}
	snprintf(err, sizeof(err),
		 "unknown command \"%.64s\" (try status, stats, sessions, "
		 "reload, drain, user limits|reset LOGIN, ban, unban, list, "
		 "backends, backend enable|disable NAME, cluster, overview)",
		 argv[0]);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[0], commands[i].name) == 0) {
			err[0] = '\0';
			r = commands[i].fn(srv, argc, argv, body, json, err,
					   sizeof(err));
			break;
		}
	}
	fclose(body);
	/* After an error, the body holds the further findings (reload). */
	if (r == 0)
		fprintf(out, "ok\n%s", text ? text : "");
	else
		fprintf(out, "error: %s\n%s", err[0] ? err : "failed",
			text ? text : "");
	free(text);
}

int
control_listen(const struct config *cfg, char *err, size_t errlen)
{
	const char *path = cfg->control_socket;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (preflight_control_socket(cfg, err, errlen) != 0)
		return -1;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0)
		unlink(path); /* a socket left by a previous run */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    chmod(path, cfg->control_mode) != 0 || listen(fd, 16) != 0) {
		config_fail(cfg, "control.socket", "control", err, errlen,
			    "cannot listen on %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Read one line: the request.  false on timeout, EOF or overflow. */
static bool
read_request(int fd, char *buf, size_t len)
{
	size_t used = 0;

	while (used < len - 1) {
		ssize_t n = read(fd, buf + used, len - 1 - used);
		char *nl;

		if (n <= 0)
			return false;
		used += (size_t)n;
		buf[used] = '\0';
		if ((nl = memchr(buf, '\n', used)) != NULL) {
			*nl = '\0';
			if (nl > buf && nl[-1] == '\r')
				nl[-1] = '\0';
			return true;
		}
	}
	return false;
}

void
control_serve(int lfd, struct server *srv)
{
	struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
	char req[REQUEST_MAX], quoted[REQUEST_MAX * 4 + 3];
	char *text = NULL;
	size_t len = 0, off = 0;
	FILE *out;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (!read_request(fd, req, sizeof(req))) {
		log_warn("control-request-bad",
			 " detail=\"no request line within %ds or over %d "
			 "bytes\"",
			 IO_TIMEOUT_S, REQUEST_MAX - 1);
		close(fd);
		return;
	}
	log_info("control-request", " request=%s",
		 log_quote(quoted, sizeof(quoted), req, strlen(req)));
	out = open_memstream(&text, &len);
	if (out == NULL) {
		close(fd);
		return;
	}
	control_exec(srv, req, out);
	fclose(out);
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(text);
	close(fd);
}
