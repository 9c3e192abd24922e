/*
 * log.c - key=value or JSON log lines, on stderr or a syslog socket.
 *
 * Read log.h first.  Every line starts as key=value text (the form callers
 * write); JSON is made from it by log_kv_to_json(), which understands
 * exactly what log_quote() produces.
 *
 * Syslog: msaproxy writes the datagram itself rather than through
 * syslog(3), for two reasons.  syslog(3) always talks to /dev/log, so it
 * cannot be pointed at another socket (log.syslog_socket: chroots, tests);
 * and it blocks when the daemon falls behind, which a worker thread must
 * never do.  The format is the one glibc's syslog(3) sends:
 * "<PRI>Mmm dd hh:mm:ss msaproxy[PID]: line".  The socket keeps one file
 * descriptor number for the life of the process: a reconnect dup2()s the
 * new connection onto it, so a thread sending at that moment can never
 * write to a descriptor that was closed and reused for a client.
 *
 * Config keys (through log_configure()): log.level, log.format,
 * log.output, log.facility, log.syslog_socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

#define LINE_MAX_KV   2048 /* a key=value line, cut beyond */
#define LINE_MAX_JSON 8192 /* its JSON form: escapes grow it */
#define SYSLOG_HEAD   64   /* "<PRI>Mmm dd hh:mm:ss msaproxy[PID]: " */

/* Syslog severities (RFC 5424) by enum log_level. */
static const int severities[] = {
	[LOG_ERROR] = 3,
	[LOG_WARN] = 4,
	[LOG_INFO] = 6,
	[LOG_DEBUG] = 7,
};

static const char *const level_names[] = {
	[LOG_ERROR] = "error",
	[LOG_WARN] = "warn",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

static const struct {
	const char *name;
	int code;
} facilities[] = {
	{"user", 1},	  {"mail", 2},	  {"daemon", 3},  {"auth", 4},
	{"authpriv", 10}, {"local0", 16}, {"local1", 17}, {"local2", 18},
	{"local3", 19},	  {"local4", 20}, {"local5", 21}, {"local6", 22},
	{"local7", 23},
};

static _Atomic int log_level = LOG_INFO;
static _Atomic int log_format = LOG_FORMAT_KV;
static _Atomic int log_output = LOG_OUTPUT_STDERR;
static _Atomic int log_facility = 2; /* mail */

/* The syslog socket: sys_fd never changes once made (see above). */
static pthread_mutex_t sys_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int sys_fd = -1;
static _Atomic bool sys_connected;
static _Atomic long sys_retry_at; /* CLOCK_MONOTONIC s of the next try */
static _Atomic unsigned long sys_dropped;
static char sys_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

int
log_enabled(enum log_level level)
{
	return (int)level <=
	       atomic_load_explicit(&log_level, memory_order_relaxed);
}

int
log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(*level_names);
	     i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int
log_facility_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(facilities) / sizeof(*facilities); i++)
		if (strcmp(name, facilities[i].name) == 0)
			return facilities[i].code;
	return -1;
}

/* ---- syslog socket ----------------------------------------------------- */

static long
mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec;
}

/* Connect a fresh socket to sys_path and put it at sys_fd.  Under sys_mu. */
static void
syslog_connect_locked(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	atomic_store(&sys_retry_at, mono_seconds() + 1);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	memcpy(sun.sun_path, sys_path, sizeof(sun.sun_path));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		close(fd);
		atomic_store(&sys_connected, false);
		return;
	}
	if (atomic_load(&sys_fd) < 0) {
		atomic_store(&sys_fd, fd);
	} else {
		dup2(fd, atomic_load(&sys_fd)); /* atomic swap of the file */
		close(fd);
	}
	atomic_store(&sys_connected, true);
}

enum sent {
	SENT,
	DROPPED,     /* the socket is full: counted in sys_dropped */
	UNREACHABLE, /* the caller falls back to stderr */
};

/* One datagram, without blocking. */
static enum sent
syslog_send(const char *msg, size_t len)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = atomic_load(&sys_fd);

		if (fd >= 0 && atomic_load(&sys_connected)) {
			if (send(fd, msg, len, MSG_NOSIGNAL) >= 0)
				return SENT;
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == ENOBUFS) {
				atomic_fetch_add(&sys_dropped, 1);
				return DROPPED;
			}
			atomic_store(&sys_connected, false);
		}
		/* Daemon restarted or not up yet: at most one try a second. */
		if (mono_seconds() < atomic_load(&sys_retry_at))
			return UNREACHABLE;
		pthread_mutex_lock(&sys_mu);
		if (!atomic_load(&sys_connected))
			syslog_connect_locked();
		pthread_mutex_unlock(&sys_mu);
	}
	return UNREACHABLE;
}

/* "<PRI>Mmm dd hh:mm:ss msaproxy[PID]: " into head; its length. */
static size_t
syslog_head(char *head, size_t len, enum log_level level)
{
	time_t now = time(NULL);
	struct tm tm;
	char stamp[32];
	int n;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
	n = snprintf(head, len, "<%d>%s msaproxy[%ld]: ",
		     atomic_load(&log_facility) * 8 + severities[level], stamp,
		     (long)getpid());
	return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

int
log_configure(const struct log_options *o, char *err, size_t errlen)
{
	const char *path =
		o->syslog_socket ? o->syslog_socket : LOG_SYSLOG_SOCKET;

	if (strlen(path) >= sizeof(sys_path)) {
		snprintf(err, errlen, "%s: socket path too long", path);
		return -1;
	}
	tzset(); /* localtime_r() in syslog_head() does not */
	atomic_store(&log_level, o->level);
	atomic_store(&log_format, o->format);
	atomic_store(&log_facility, o->facility);
	if (o->output == LOG_OUTPUT_SYSLOG) {
		pthread_mutex_lock(&sys_mu);
		snprintf(sys_path, sizeof(sys_path), "%s", path);
		syslog_connect_locked();
		pthread_mutex_unlock(&sys_mu);
	}
	atomic_store(&log_output, o->output);
	return 0;
}

/* ---- JSON ---------------------------------------------------------------- */

/* Keys whose values name something: strings even when they look like a
 * number (a login "1234", a session id "10" in hex). */
static const char *const string_keys[] = {
	"session", "user", "sender", "login", "helo", "name", "class", "id",
};

struct jbuf {
	char *p;
	size_t len, cap; /* cap excludes the room kept for the ending */
	bool full;
};

static void
jput(struct jbuf *j, const char *s, size_t n)
{
	if (j->full || j->len + n > j->cap) {
		j->full = true;
		return;
	}
	memcpy(j->p + j->len, s, n);
	j->len += n;
}

static void
jputc(struct jbuf *j, char c)
{
	jput(j, &c, 1);
}

/* One byte of a JSON string.  Bytes outside printable ASCII are written as
 * \u00XX, one per byte: always valid JSON, and log_quote() has already
 * escaped every such byte of client data anyway. */
static void
jstr_byte(struct jbuf *j, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

	if (c == '"' || c == '\\') {
		char two[2] = {'\\', (char)c};
		jput(j, two, 2);
	} else if (c >= 0x20 && c < 0x7f) {
		jputc(j, (char)c);
	} else {
		jput(j, esc, sizeof(esc));
	}
}

static int
log_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A log_quote()d value at *pp (on its opening quote), as a JSON string;
 * advances *pp past the closing quote (or to end if there is none). */
static void
jstr_quoted(struct jbuf *j, const char **pp, const char *end)
{
	const char *p = *pp + 1;

	jputc(j, '"');
	while (p < end && *p != '"') {
		int hi, lo;

		if (*p != '\\' || p + 1 >= end) {
			jstr_byte(j, (unsigned char)*p++);
			continue;
		}
		switch (p[1]) {
		case 'x':
			if (p + 3 < end && (hi = log_hexval(p[2])) >= 0 &&
			    (lo = log_hexval(p[3])) >= 0) {
				jstr_byte(j, (unsigned char)(hi << 4 | lo));
				p += 4;
				continue;
			}
			break;
		case 'n':
			jstr_byte(j, '\n');
			p += 2;
			continue;
		case 'r':
			jstr_byte(j, '\r');
			p += 2;
			continue;
		case 't':
			jstr_byte(j, '\t');
			p += 2;
			continue;
		default:
			jstr_byte(j, (unsigned char)p[1]);
			p += 2;
			continue;
		}
		jstr_byte(j, (unsigned char)*p++);
	}
	jputc(j, '"');
	*pp = p < end ? p + 1 : end;
}

/* A plain decimal integer that fits JSON numbers exactly (< 2^53). */
static bool
is_number(const char *s, size_t n)
{
	size_t i = s[0] == '-' ? 1 : 0;

	if (n <= i || n - i > 15 || (s[i] == '0' && n - i > 1))
		return false;
	for (; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool
is_string_key(const char *k, size_t n)
{
	for (size_t i = 0; i < sizeof(string_keys) / sizeof(*string_keys); i++)
		if (strlen(string_keys[i]) == n &&
		    memcmp(string_keys[i], k, n) == 0)
			return true;
	return false;
}

size_t
log_kv_to_json(char *dst, size_t dstlen, const char *kv, size_t len)
{
	static const char cut[] = ",\"truncated\":true}";
	struct jbuf j = {.p = dst, .cap = dstlen - sizeof(cut)};
	const char *p = kv, *end = kv + len;
	bool first = true;

	jputc(&j, '{');
	while (p < end) {
		const char *k, *v;
		size_t klen, mark = j.len;

		while (p < end && *p == ' ')
			p++;
		if (p == end)
			break;
		k = p;
		while (p < end && *p != '=' && *p != ' ')
			p++;
		klen = (size_t)(p - k);
		if (!first)
			jputc(&j, ',');
		jputc(&j, '"');
		for (size_t i = 0; i < klen; i++)
			jstr_byte(&j, (unsigned char)k[i]);
		jput(&j, "\":", 2);
		if (p == end || *p == ' ') {
			jput(&j, "true", 4); /* a bare word: a flag */
		} else if (p + 1 < end && p[1] == '"') {
			p++;
			jstr_quoted(&j, &p, end);
		} else {
			v = ++p;
			while (p < end && *p != ' ')
				p++;
			if (is_number(v, (size_t)(p - v)) &&
			    !is_string_key(k, klen)) {
				jput(&j, v, (size_t)(p - v));
			} else {
				jputc(&j, '"');
				for (const char *q = v; q < p; q++)
					jstr_byte(&j, (unsigned char)*q);
				jputc(&j, '"');
			}
		}
		if (j.full) {
			/* Drop the field that did not fit, say so. */
			j.len = mark;
			memcpy(dst + j.len, first ? cut + 1 : cut,
			       first ? sizeof(cut) - 2 : sizeof(cut) - 1);
			return j.len +
			       (first ? sizeof(cut) - 2 : sizeof(cut) - 1);
		}
		first = false;
	}
	j.cap += sizeof(cut); /* the room kept is ours now */
	jputc(&j, '}');
	return j.len;
}

/* ---- lines -----------------------------------------------------------------
 */

static void
write_stderr(const char *line, size_t n)
{
	/* One write per line; a short write to stderr is not worth a loop. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

/* kv is the whole key=value line without newline; body starts after its
 * "ts=... " field (syslog stamps lines itself).  False if syslog dropped
 * the line. */
static bool
emit(enum log_level level, const char *kv, size_t n, size_t body)
{
	char out[SYSLOG_HEAD + LINE_MAX_JSON + 1];
	bool json = atomic_load_explicit(&log_format, memory_order_relaxed) ==
		    LOG_FORMAT_JSON;
	bool sys = atomic_load_explicit(&log_output, memory_order_relaxed) ==
		   LOG_OUTPUT_SYSLOG;
	size_t head = 0, len;
	enum sent r;

	if (sys)
		head = syslog_head(out, SYSLOG_HEAD, level);
	if (sys && head > 0) {
		if (json)
			len = log_kv_to_json(out + head, LINE_MAX_JSON,
					     kv + body, n - body);
		else
			memcpy(out + head, kv + body, len = n - body);
		r = syslog_send(out, head + len);
		if (r != UNREACHABLE)
			return r == SENT;
	}
	/* stderr: the daemon is unreachable, or stderr was asked for. */
	if (json)
		len = log_kv_to_json(out, LINE_MAX_JSON, kv, n);
	else
		memcpy(out, kv, len = n);
	out[len++] = '\n';
	write_stderr(out, len);
	return true;
}

static void
report_dropped(void)
{
	unsigned long lost = atomic_exchange(&sys_dropped, 0);

	if (lost > 0)
		log_msg(LOG_WARN, "log-dropped",
			" lines=%lu detail=\"syslog socket full\"", lost);
}

void
log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	char line[LINE_MAX_KV];
	struct timespec ts;
	struct tm tm;
	size_t n, body;
	va_list ap;
	int r;

	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ ",
		     ts.tv_nsec / 1000000);
	if (r > 0)
		n += (size_t)r;
	body = n;
	r = snprintf(line + n, sizeof(line) - n, "level=%s msg=%s",
		     level_names[level], event);
	if (r > 0)
		n += (size_t)r;
	if (n < sizeof(line) - 1) {
		va_start(ap, fmt);
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
		if (r > 0)
			n += (size_t)r;
	}
	if (n > sizeof(line) - 1)
		n = sizeof(line) - 1;
	/* Only after a line went through: the report cannot pile up. */
	if (emit(level, line, n, body) &&
	    atomic_load_explicit(&sys_dropped, memory_order_relaxed) > 0)
		report_dropped();
}

const char *
log_quote(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;
	int plain = srclen > 0;

	for (i = 0; i < srclen && plain; i++)
		plain = src[i] > 0x20 && src[i] < 0x7f && src[i] != '"' &&
			src[i] != '\\' && src[i] != '=';
	if (plain) {
		if (srclen >= dstlen)
			srclen = dstlen - 1;
		memcpy(dst, src, srclen);
		dst[srclen] = '\0';
		return dst;
	}
	dst[o++] = '"';
	for (i = 0; i < srclen && o + 6 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '"' || c == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o++] = '"';
	dst[o] = '\0';
	return dst;
}
