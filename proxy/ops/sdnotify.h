/*
 * sdnotify.h - tell systemd where the proxy is (sd_notify(3)'s protocol,
 * written out: one datagram per message to $NOTIFY_SOCKET).
 *
 * Main thread only.  Without NOTIFY_SOCKET (not under systemd, or
 * Type= other than notify) every call does nothing.
 */
#ifndef MSAPROXY_OPS_SDNOTIFY_H
#define MSAPROXY_OPS_SDNOTIFY_H

#include <stddef.h>
#include <stdint.h>

/* Read NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID, open the datagram
 * socket (before privileges are dropped), and unset the three so nothing
 * started later inherits them.  0, or -1 with err set (a NOTIFY_SOCKET
 * that is no socket address: a broken unit, said at start). */
int sdnotify_open(char *err, size_t errlen);
/* One message, "KEY=VALUE" lines ("READY=1\nSTATUS=..."); printf-style. */
void sdnotify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1 with MONOTONIC_USEC= (systemd 253 wants both). */
void sdnotify_reloading(void);
/* WATCHDOG=1 when half of WATCHDOG_USEC has passed since the last one;
 * *timeout_ms (a poll() timeout) is lowered so the next is not late. */
void sdnotify_watchdog(uint64_t now_ms, int *timeout_ms);
void sdnotify_close(void);

#endif
