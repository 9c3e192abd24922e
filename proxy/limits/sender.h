/*
 * sender.h - may this login use this MAIL FROM address?  (listener
 * sender_check; anti-spoofing, like Postfix's reject_sender_login_mismatch)
 *
 * A user may send as their login when it is an address, and as every
 * address or @domain in the senders= list of their passwd-file entry.
 * Comparison ignores case in the whole address (mailbox providers treat
 * local parts case-insensitively, and a spoofer gains nothing from case).
 * The null sender <> is allowed: it cannot be used to pose as anyone.
 * Pure: no I/O.
 */
#ifndef MSAPROXY_SENDER_H
#define MSAPROXY_SENDER_H

#include <stdbool.h>
#include <stddef.h>

/* senders: "a@example.com,@example.org" or NULL; addr: the reverse-path
 * without <>, len bytes. */
bool sender_allowed(const char *login, const char *senders, const char *addr,
		    size_t len);

#endif
