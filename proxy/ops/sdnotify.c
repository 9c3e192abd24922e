/*
 * sdnotify.c - the sd_notify(3) protocol without libsystemd: a datagram
 * of "KEY=VALUE\n" lines to the AF_UNIX socket named by $NOTIFY_SOCKET
 * ("@name": the abstract namespace, first byte NUL).
 *
 * Why not libsystemd: the protocol is this file (a socket, a sendto());
 * linking libsystemd would add a library (and its own dependencies: lz4,
 * zstd, gcrypt...) to every process that reads client bytes, for a
 * feature only the main thread uses.  systemd documents the protocol as
 * stable (sd_notify(3), "NOTES").
 *
 * What the proxy says (server.c, server_reload.c): READY=1 once every
 * listener is bound and the workers run; RELOADING=1 with MONOTONIC_USEC=
 * before a reload and READY=1 after it (whether it took or not: the proxy
 * runs either way, STATUS= says which); STOPPING=1 when a drain starts;
 * STATUS= lines with each; WATCHDOG=1 from the main loop when the unit
 * sets WatchdogSec=.
 *
 * Security stance: the socket path comes from the environment systemd
 * set; it is only sent to, never read from.  A message that cannot be sent
 * is dropped (systemd may be gone, or this is not a notify unit).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ops/sdnotify.h"

static struct {
	int fd; /* -1: not under a notify unit */
	struct sockaddr_un sun;
	socklen_t len;
	uint64_t watchdog_ms; /* interval (half of WATCHDOG_USEC); 0: off */
	uint64_t watchdog_next_ms;
} sdn = {.fd = -1};

/* WATCHDOG_USEC, if it is meant for this process (WATCHDOG_PID). */
static uint64_t
watchdog_interval_ms(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	unsigned long long v;
	char *end;

	if (usec == NULL)
		return 0;
	if (pid != NULL && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	errno = 0;
	v = strtoull(usec, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0)
		return 0;
	/* Half the limit, as sd_watchdog_enabled(3) advises; at least 1ms. */
	return v / 2000 > 0 ? v / 2000 : 1;
}

int
sdnotify_open(char *err, size_t errlen)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n;

	sdn.watchdog_ms = watchdog_interval_ms();
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	if (path == NULL || path[0] == '\0') {
		sdn.watchdog_ms = 0; /* nowhere to send it */
		return 0;
	}
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') ||
	    n >= sizeof(sdn.sun.sun_path)) {
		snprintf(err, errlen,
			 "NOTIFY_SOCKET: not a socket path or @name: %.200s",
			 path);
		return -1;
	}
	memset(&sdn.sun, 0, sizeof(sdn.sun));
	sdn.sun.sun_family = AF_UNIX;
	memcpy(sdn.sun.sun_path, path, n);
	if (path[0] == '@')
		sdn.sun.sun_path[0] = '\0'; /* abstract: no trailing NUL */
	sdn.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
			      (path[0] == '/'));
	sdn.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sdn.fd < 0) {
		snprintf(err, errlen, "NOTIFY_SOCKET: socket: %s",
			 strerror(errno));
		return -1;
	}
	unsetenv("NOTIFY_SOCKET");
	sdn.watchdog_next_ms = 0; /* the first at the first loop */
	return 0;
}

void
sdnotify(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	if (sdn.fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1; /* a long STATUS= is cut, not lost */
	(void)sendto(sdn.fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT,
		     (const struct sockaddr *)&sdn.sun, sdn.len);
}

void
sdnotify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sdnotify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading",
		 (unsigned long long)ts.tv_sec * 1000000ULL +
			 (unsigned long long)ts.tv_nsec / 1000ULL);
}

void
sdnotify_watchdog(uint64_t now_ms, int *timeout_ms)
{
	if (sdn.fd < 0 || sdn.watchdog_ms == 0)
		return;
	if (now_ms >= sdn.watchdog_next_ms) {
		sdnotify("WATCHDOG=1");
		sdn.watchdog_next_ms = now_ms + sdn.watchdog_ms;
	}
	if (timeout_ms != NULL &&
	    (*timeout_ms < 0 ||
	     (uint64_t)*timeout_ms > sdn.watchdog_next_ms - now_ms))
		*timeout_ms = (int)(sdn.watchdog_next_ms - now_ms);
}

void
sdnotify_close(void)
{
	if (sdn.fd >= 0)
		close(sdn.fd);
	sdn.fd = -1;
}
