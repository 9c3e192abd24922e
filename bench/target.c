/*
 * target.c - the bench tools' one rule for where traffic may go.
 *
 * Security stance: a benchmark must never load a host it does not own.
 * Loopback (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) is always allowed.
 * The documentation ranges 198.51.100.0/24 and 2001:db8::/32 are allowed
 * only when this process's network namespace is not PID 1's (compared by
 * the /proc/PID/ns/net inode), or, where PID 1's cannot be read, not its
 * parent's: there they can only reach veth peers in namespaces the bench
 * made (bench/run's flood scenario runs the tools with `ip netns exec`).
 * If no namespace can be read, the answer is no.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "target.h"

static bool
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
			&((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

static bool
is_documentation(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		return (ntohl(sin->sin_addr.s_addr) >> 8) == 0xc63364;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *a =
			((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

		return a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d &&
		       a[3] == 0xb8;
	}
	return false;
}

static bool
same_netns(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
	       sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

/* In a network namespace other than the machine's?  PID 1's namespace is
 * the machine's (or the container's); where it cannot be read (a sandbox
 * hides it even from root), the parent's stands in for it: `ip netns
 * exec` runs us in a namespace other than its caller's. */
static bool
in_private_netns(void)
{
	char parent[64];
	struct stat st;

	if (stat("/proc/1/ns/net", &st) == 0)
		return !same_netns("/proc/self/ns/net", "/proc/1/ns/net");
	snprintf(parent, sizeof(parent), "/proc/%d/ns/net", (int)getppid());
	if (stat(parent, &st) != 0)
		return false;
	return !same_netns("/proc/self/ns/net", parent);
}

bool
target_allowed(const struct sockaddr *sa, char *err, size_t errlen)
{
	if (is_loopback(sa))
		return true;
	if (!is_documentation(sa)) {
		snprintf(err, errlen,
			 "refused: only loopback (127.0.0.0/8, ::1), or "
			 "198.51.100.0/24 and 2001:db8::/32 inside a network "
			 "namespace, may be targeted");
		return false;
	}
	if (!in_private_netns()) {
		snprintf(
			err, errlen,
			"refused: documentation addresses only from inside a "
			"network namespace of the bench's own (ip netns exec)");
		return false;
	}
	return true;
}

bool
target_parse_addr(const char *host, int port, struct sockaddr_storage *ss,
		  socklen_t *len, char *err, size_t errlen)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
	} else {
		snprintf(err, errlen,
			 "want a numeric address (127.0.0.1, ::1)");
		return false;
	}
	return true;
}

bool
target_parse(const char *host, int port, struct sockaddr_storage *ss,
	     socklen_t *len, char *err, size_t errlen)
{
	return target_parse_addr(host, port, ss, len, err, errlen) &&
	       target_allowed((struct sockaddr *)ss, err, errlen);
}
