/*
 * log.h - one line per event, key=value or JSON, to stderr or syslog.
 *
 * Callers always write key=value: log_msg(level, "event", " k=v k=v").
 * Values that may hold client bytes go through log_quote() first, so the
 * line can be parsed back; that is what makes the JSON form possible: with
 * log.format json the finished key=value line is converted, field by
 * field, to one JSON object (log_kv_to_json()).
 *
 * Outputs: stderr, one write(2) per line, so lines from several threads
 * never interleave; or a syslog socket (log.output syslog, default
 * /dev/log), one datagram per line in the RFC 3164 form syslog(3) uses,
 * sent without blocking (a full socket drops the line and the next one
 * that goes through reports how many were dropped).
 */
#ifndef MSAPROXY_LOG_H
#define MSAPROXY_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOG_ERROR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

enum log_format {
	LOG_FORMAT_KV,	 /* ts=... level=... msg=... key=value */
	LOG_FORMAT_JSON, /* {"ts":"...","level":"...","msg":"...",...} */
};

enum log_output {
	LOG_OUTPUT_STDERR,
	LOG_OUTPUT_SYSLOG,
};

#define LOG_SYSLOG_SOCKET "/dev/log"

struct log_options {
	enum log_level level;
	enum log_format format;
	enum log_output output;
	int facility;		   /* syslog facility code, e.g. 2 = mail */
	const char *syslog_socket; /* NULL: LOG_SYSLOG_SOCKET */
};

/* Switch level, format and output for every thread.  A syslog socket that
 * cannot be reached is not an error (the daemon may start later): lines go
 * to stderr until it can.  Returns 0, or -1 with err set (out of memory). */
int log_configure(const struct log_options *o, char *err, size_t errlen);
int log_enabled(enum log_level level);
int log_level_parse(const char *name, enum log_level *out);
/* "mail" -> 2 and so on (RFC 5424 facility codes); -1 if unknown. */
int log_facility_parse(const char *name);

/* fmt continues the line after "msg=<event>": " key=value key=value". */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Quote a value for a log line: printable ASCII without spaces passes,
 * anything else is quoted with C escapes; cut to fit dst. */
const char *log_quote(char *dst, size_t dstlen, const char *src, size_t srclen);

/* Convert one key=value line (no newline) to a JSON object (no newline):
 * values log_quote() quoted are unquoted and escaped for JSON, bare
 * decimal integers become numbers except for the keys that name things
 * (session, user, sender, ...).  Always valid JSON: a line that does not
 * fit dst is cut at a field and ends with "truncated":true.  Returns the
 * length written (dstlen must be at least 64). */
size_t log_kv_to_json(char *dst, size_t dstlen, const char *kv, size_t len);

#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...)  log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_debug(ev, ...)                                                     \
	do {                                                                   \
		if (log_enabled(LOG_DEBUG))                                    \
			log_msg(LOG_DEBUG, ev, __VA_ARGS__);                   \
	} while (0)

#endif
