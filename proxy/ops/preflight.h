/*
 * preflight.h - what a start will open, checked before it starts.
 *
 * `msaproxy -t` and the start itself run it (main.c, after the audit),
 * so that a check that passes means the start will not fail on a path:
 * the control socket's directory, the blocklist files, the XDP
 * interfaces when XDP is required.  Files a reload re-reads (users file,
 * certificates, blocklist files) are checked at each load as well.
 */
#ifndef MSAPROXY_PREFLIGHT_H
#define MSAPROXY_PREFLIGHT_H

#include <stddef.h>

struct config;

/* 0, or -1 with "FILE:LINE: KEY: why" in err. */
int preflight_check(const struct config *cfg, char *err, size_t errlen);
/* Could control.socket be bound (none set: yes): the path fits a unix
 * address, is a socket or nothing, and its directory exists, is a
 * directory and is writable by this process.  Also what control_listen()
 * checks first, and what a reload that changes control.socket warns
 * about for the next start. */
int preflight_control_socket(const struct config *cfg, char *err,
			     size_t errlen);

#endif
