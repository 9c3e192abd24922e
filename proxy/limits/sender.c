/*
 * sender.c - the sender/login check.  Read sender.h first.
 */
#include <string.h>
#include <strings.h>

#include "limits/sender.h"

/* One allowed entry (address or @domain, n bytes) against addr. */
static bool
entry_matches(const char *e, size_t n, const char *addr, size_t len)
{
	const char *at;

	if (n > 0 && e[0] == '@') {
		at = memrchr(addr, '@', len);
		return at != NULL && at > addr &&
		       (size_t)(addr + len - at) == n &&
		       strncasecmp(at, e, n) == 0;
	}
	return n == len && strncasecmp(e, addr, n) == 0;
}

bool
sender_allowed(const char *login, const char *senders, const char *addr,
	       size_t len)
{
	const char *p = senders;

	if (len == 0)
		return true; /* <> */
	if (login[0] != '@' && strchr(login, '@') != NULL &&
	    entry_matches(login, strlen(login), addr, len))
		return true;
	while (p != NULL && *p != '\0') {
		size_t n = strcspn(p, ",");

		if (entry_matches(p, n, addr, len))
			return true;
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}
