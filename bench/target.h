/*
 * target.h - which addresses the bench tools may send to.
 *
 * Loopback always.  The documentation ranges 198.51.100.0/24 (RFC 5737)
 * and 2001:db8::/32 (RFC 3849) only from inside a network namespace other
 * than PID 1's (or, where that cannot be read, the parent process's): the
 * namespaces bench/run builds for the flood scenario, joined by veth to
 * nothing but each other.  Nothing else, ever.
 */
#ifndef BENCH_TARGET_H
#define BENCH_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Parse numeric HOST ("localhost" = 127.0.0.1) and PORT into *ss; false
 * with the reason in err when it is not an address. */
bool target_parse_addr(const char *host, int port, struct sockaddr_storage *ss,
		       socklen_t *len, char *err, size_t errlen);

/* target_parse_addr(), then target_allowed(). */
bool target_parse(const char *host, int port, struct sockaddr_storage *ss,
		  socklen_t *len, char *err, size_t errlen);

/* True if *sa may be sent to from here (the rule above). */
bool target_allowed(const struct sockaddr *sa, char *err, size_t errlen);

#endif
