/*
 * blocklist_msg.c - libbpf's own messages, captured while the blocklist is
 * opened or attached and appended to the error the caller reports
 * (blocklist_fail()): libbpf explains a refused program or map better than
 * an errno does.  Nothing is logged here.
 *
 * Config keys: none.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "bans/blocklist_internal.h"

#define LIBBPF_MSG 256

/* libbpf print capture (open and attach only; see blocklist.h): its first
 * warning, which names the cause ("couldn't reuse pinned map", "program
 * load failed"), and its last, which says where it gave up. */
static char first_msg[LIBBPF_MSG], last_msg[LIBBPF_MSG];

void
blocklist_msg_clear(void)
{
	first_msg[0] = last_msg[0] = '\0';
}

static int
capture_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	static const char prefix[] = "libbpf: ";
	char line[LIBBPF_MSG];
	const char *text = line;
	size_t n;

	if (level != LIBBPF_WARN)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' '))
		line[--n] = '\0';
	if (strncmp(text, prefix, sizeof(prefix) - 1) == 0)
		text += sizeof(prefix) - 1;
	if (*text == '\0')
		return 0;
	snprintf(first_msg[0] == '\0' ? first_msg : last_msg, LIBBPF_MSG, "%s",
		 text);
	return 0;
}

libbpf_print_fn_t
blocklist_capture_begin(void)
{
	blocklist_msg_clear();
	return libbpf_set_print(capture_print);
}

void
blocklist_capture_end(libbpf_print_fn_t old)
{
	libbpf_set_print(old);
}

/* "what: strerror (libbpf: first warning; last warning)" into err. */
int
blocklist_fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
	char what[ERR_SCRATCH];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (e < 0)
		e = -e;
	if (last_msg[0] != '\0')
		snprintf(err, errlen, "%s: %s (libbpf: %s; %s)", what,
			 strerror(e), first_msg, last_msg);
	else if (first_msg[0] != '\0')
		snprintf(err, errlen, "%s: %s (libbpf: %s)", what, strerror(e),
			 first_msg);
	else
		snprintf(err, errlen, "%s: %s", what, strerror(e));
	return -1;
}
