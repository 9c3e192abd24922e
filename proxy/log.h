/*
 * log.h - one line per event, key=value, to stderr.
 *
 * Every line is "ts=... level=... msg=... key=value ...", written with one
 * write(2) so lines from several threads never interleave.  Values that may
 * hold client bytes go through log_quote() first.
 */
#ifndef MSAPROXY_LOG_H
#define MSAPROXY_LOG_H

#include <stddef.h>

enum log_level {
	LOG_ERROR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

void log_set_level(enum log_level level);
int log_enabled(enum log_level level);
int log_level_parse(const char *name, enum log_level *out);

/* fmt continues the line after "msg=<event>": " key=value key=value". */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Quote a value for a log line: printable ASCII without spaces passes,
 * anything else is quoted with C escapes; cut to fit dst. */
const char *log_quote(char *dst, size_t dstlen, const char *src, size_t srclen);

#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...)  log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_debug(ev, ...)                                                     \
	do {                                                                   \
		if (log_enabled(LOG_DEBUG))                                    \
			log_msg(LOG_DEBUG, ev, __VA_ARGS__);                   \
	} while (0)

#endif
