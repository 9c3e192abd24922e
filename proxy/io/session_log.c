/*
 * session_log.c - the lines about a session: each starts with
 * "session=ID client=ADDR user=LOGIN", so any of the three finds every
 * line of a session; the login is the client's bytes and is quoted when
 * it is anything but plain printable text.  Passwords never get here.
 *
 * Config keys: log.level (through log.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "io/session.h"
#include "lib/log.h"

const char *
session_log_user(char *buf, size_t len, const char *user)
{
	if (user[0] == '\0')
		return "-";
	return log_quote(buf, len, user, strlen(user));
}

void
session_log(const struct session *s, enum log_level level, const char *event,
	    const char *fmt, ...)
{
	char u[LOG_USER_MAX], rest[1024];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(rest, sizeof(rest), fmt, ap);
	va_end(ap);
	log_msg(level, event, " session=%llx client=%s user=%s%s",
		(unsigned long long)s->id, s->peer_addr,
		session_log_user(u, sizeof(u), smtp_user(&s->smtp)), rest);
}

/* Every message that does not reach the backend's verdict says why. */
void
session_log_refused(struct session *s, const char *why)
{
	session_log(s, LOG_INFO, "message-refused", " reason=%s size=%llu", why,
		    (unsigned long long)s->relay.ds.size);
}
