/*
 * preflight.c - what a start will open, checked before it (read
 * preflight.h).
 *
 * What the start opens, and who checks it here or elsewhere:
 *
 *   control.socket     preflight_control_socket(): fits a unix
 *                      address, is a socket or nothing; its directory
 *                      exists, is a directory and is writable by this
 *                      process (the start binds it before dropping
 *                      privileges, as the user -t runs as under the
 *                      unit's ExecStartPre)
 *   blocklist.files    bans_check(): each one reads and parses
 *   blocklist.xdp      bans_check(): with xdp.required, each interface
 *                      exists and pin_dir is a directory or can be made
 *                      in one (without required, a failure is logged at
 *                      start and the list is enforced at accept())
 *   metrics.tls        metrics_http_check_tls(): the certificate and
 *                      key load and match (read at start only)
 *   users file, certificates, keys, backends' CA files
 *                      generation.c, at every load (-t, start, reload)
 *   listeners, metrics.listen
 *                      addresses, not paths: whether another process
 *                      holds one is only known by binding it
 *
 * There is no pid file and no log file (log.output is stderr or syslog;
 * a syslog socket that is missing is retried, never fatal).
 *
 * Config keys: control.socket, blocklist.files, blocklist.xdp,
 * metrics.tls.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bans/bans.h"
#include "config/config.h"
#include "ops/metrics_http.h"
#include "ops/preflight.h"

/* The directory part of path ("." for none), in dir. */
static void
dir_of(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(dir, len, ".");
	else if (slash == path)
		snprintf(dir, len, "/");
	else
		snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

int
preflight_control_socket(const struct config *cfg, char *err, size_t errlen)
{
	const char *path = cfg->control_socket;
	struct sockaddr_un sun;
	char dir[sizeof(sun.sun_path)];
	struct stat st;

	if (path == NULL)
		return 0;
	if (strlen(path) >= sizeof(sun.sun_path))
		return config_fail(cfg, "control.socket", "control", err,
				   errlen,
				   "%s: path too long for a unix socket (at "
				   "most %zu bytes)",
				   path, sizeof(sun.sun_path) - 1);
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return config_fail(cfg, "control.socket", "control", err,
				   errlen, "%s exists and is not a socket",
				   path);
	dir_of(path, dir, sizeof(dir));
	if (stat(dir, &st) != 0)
		return config_fail(cfg, "control.socket", "control", err,
				   errlen, "directory %s: %s (create it first)",
				   dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return config_fail(cfg, "control.socket", "control", err,
				   errlen, "%s is not a directory", dir);
	if (access(dir, W_OK | X_OK) != 0)
		return config_fail(cfg, "control.socket", "control", err,
				   errlen,
				   "cannot create the socket in directory %s: "
				   "%s",
				   dir, strerror(errno));
	return 0;
}

int
preflight_check(const struct config *cfg, char *err, size_t errlen)
{
	if (preflight_control_socket(cfg, err, errlen) != 0 ||
	    bans_check(cfg, err, errlen) != 0 ||
	    metrics_http_check_tls(cfg, err, errlen) != 0)
		return -1;
	return 0;
}
