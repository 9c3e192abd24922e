/*
 * config_value.c - the value forms of the configuration: one string in,
 * one typed value (or why not) out.
 *
 *   durations   "250ms" "30s" "5m" "1h" "2d"; a unit is required
 *   sizes       "1000" "512KB" "50MB" "1GiB"; K, M, G are powers of 1024,
 *               any case
 *   rates       "100/1h", "100/1h burst 20", "1GB/1h burst 100MB", "off"
 *   addresses   "127.0.0.1:587", "[::1]:587", "*:587" (all of IPv4+IPv6);
 *               backends also "unix:/path" (a local stream socket)
 *   host names  "mail.example.com", with wildcard "*.example.com"
 *   class names letters, digits, '_', '.', '-'
 *
 * Security stance: the text is the administrator's, but it is still
 * checked whole: no leading or trailing junk, no signs, no overflow (a
 * number that does not fit is refused, never wrapped), and addresses are
 * numeric only, so the configuration never depends on DNS at startup.
 *
 * Pure: no I/O, no allocation, no logging.  Each parser returns NULL or
 * the "why" of a "FILE:LINE: KEY: why" message, and config_yaml.c adds the
 * rest.  config_parse_duration() (config.h) is the public 0/-1 face of
 * the duration parser, for the control socket's ban TTLs.  Host names
 * follow RFC 1123 2.1 (labels of letters, digits and '-').
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/un.h>

#include "config/config_value.h"

/* ---- numbers --------------------------------------------------------- */

/* Leading decimal digits of s.  0, -1 if none, -2 on overflow. */
int
config_value_digits(const char *s, const char **end, uint64_t *out)
{
	uint64_t n = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (n > (UINT64_MAX - d) / 10)
			return -2;
		n = n * 10 + d;
	}
	*end = p;
	*out = n;
	return 0;
}

/* Multiply with overflow check. */
static int
mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	if (b != 0 && a > UINT64_MAX / b)
		return -1;
	*out = a * b;
	return 0;
}

/* ---- durations and sizes --------------------------------------------- */

/* A number with a unit suffix, e.g. "30s" or "50MB". */
struct unit {
	const char *name;
	uint64_t mult;
};

struct unit_kind {
	const struct unit *units;
	size_t nunits;
	bool fold_case;	      /* "MB" = "mb" */
	const char *expected; /* the why for anything else */
	const char *too_large;
	const char *required; /* the why for a bare number, or NULL: allowed */
};

static const struct unit duration_units[] = {
	{"ms", 1}, {"s", SECOND}, {"m", MINUTE}, {"h", HOUR}, {"d", DAY},
};

static const struct unit_kind durations = {
	duration_units,
	sizeof(duration_units) / sizeof(*duration_units),
	false,
	"expected a duration like 30s, 5m, 1h",
	"duration is too large",
	"a unit is required, e.g. 30s, 5m, 1h",
};

/* Unit suffixes, matched without regard to case: K, KB and KiB all mean
 * 1024 bytes (nobody sizes mail in powers of 1000). */
static const struct unit size_units[] = {
	{"", 1},      {"b", 1},	   {"k", KIB},	 {"kb", KIB},
	{"kib", KIB}, {"m", MIB},  {"mb", MIB},	 {"mib", MIB},
	{"g", GIB},   {"gb", GIB}, {"gib", GIB},
};

static const struct unit_kind sizes = {
	size_units,
	sizeof(size_units) / sizeof(*size_units),
	true,
	"expected a size like 512KB, 50MB, 1GB",
	"size is too large",
	NULL,
};

/* NULL when s is a number with one of kind's units, else why not. */
static const char *
unit_why(const struct unit_kind *kind, const char *s, uint64_t *out)
{
	const char *unit;
	uint64_t n;
	int r;

	r = config_value_digits(s, &unit, &n);
	if (r == -2)
		return kind->too_large;
	if (r < 0)
		return kind->expected;
	if (*unit == '\0' && kind->required != NULL)
		return kind->required;
	for (size_t i = 0; i < kind->nunits; i++) {
		const char *name = kind->units[i].name;
		if ((kind->fold_case ? strcasecmp(unit, name)
				     : strcmp(unit, name)) != 0)
			continue;
		if (mul_u64(n, kind->units[i].mult, out) < 0)
			return kind->too_large;
		return NULL;
	}
	return kind->expected;
}

const char *
config_value_duration(const char *s, uint64_t *ms)
{
	return unit_why(&durations, s, ms);
}

const char *
config_value_size(const char *s, uint64_t *bytes)
{
	return unit_why(&sizes, s, bytes);
}

int
config_parse_duration(const char *s, uint64_t *ms)
{
	uint64_t v;

	if (s == NULL || config_value_duration(s, &v) != NULL)
		return -1;
	*ms = v;
	return 0;
}

/* ---- rates ----------------------------------------------------------- */

/* A count: a plain number, or a size when it counts bytes. */
static const char *
count_why(const char *s, bool bytes, uint64_t *n)
{
	const char *end;
	int r;

	if (bytes)
		return config_value_size(s, n);
	r = config_value_digits(s, &end, n);
	if (r == -2)
		return "number is too large";
	if (r != 0 || *end != '\0')
		return "expected a whole number";
	return NULL;
}

/*
 * "COUNT/PERIOD" or "COUNT/PERIOD burst N": COUNT units per PERIOD, up to N
 * at once (default COUNT).  "off" (or "0") is no limit.
 */
const char *
config_value_rate(const char *s, bool bytes, struct config_rate *r)
{
	static const char *expected_msgs =
		"expected a rate like 100/1h or 100/1h burst 20, or off";
	static const char *expected_bytes =
		"expected a rate like 1GB/1h or 1GB/1h burst 100MB, or off";
	const char *expected = bytes ? expected_bytes : expected_msgs;
	char count[64], period[64], burst[64] = "";
	const char *why;
	int n = 0;

	memset(r, 0, sizeof(*r));
	if (strcmp(s, "off") == 0 || strcmp(s, "0") == 0)
		return NULL;
	if (strlen(s) >= sizeof(count) ||
	    sscanf(s, "%63[^/ ]/%63[^ ] burst %63[^ ]%n", count, period, burst,
		   &n) != 3 ||
	    s[n] != '\0') {
		burst[0] = '\0';
		n = 0;
		if (sscanf(s, "%63[^/ ]/%63[^ ]%n", count, period, &n) != 2 ||
		    s[n] != '\0')
			return expected;
	}
	if ((why = count_why(count, bytes, &r->count)) != NULL)
		return why;
	if (r->count == 0)
		return "the count must be greater than 0 (or the rate off)";
	if ((why = config_value_duration(period, &r->period_ms)) != NULL)
		return why;
	if (r->period_ms == 0)
		return "the period must be greater than 0";
	r->burst = r->count;
	if (burst[0] != '\0') {
		if ((why = count_why(burst, bytes, &r->burst)) != NULL)
			return why;
		if (r->burst == 0)
			return "the burst must be greater than 0";
	}
	return NULL;
}

/* ---- addresses ------------------------------------------------------- */

/* "1.2.3.4:25", "[::1]:25" or "*:25".  "*" is stored as the IPv6 wildcard
 * "::": the listener binds it with IPV6_V6ONLY off, which accepts IPv4
 * clients too (as ::ffff:a.b.c.d).  Host names are refused: the address
 * must not depend on DNS at startup. */
const char *
config_value_addr(const char *s, struct config_addr *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
	char host[sizeof(out->text)];
	const char *port, *end;
	size_t len = strlen(s), hlen;
	uint64_t n;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return "expected an address like 127.0.0.1:587, [::1]:587 or "
		       "*:587";
	if (len >= sizeof(out->text))
		return "address is too long";
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL)
			return "missing ']' after the IPv6 address";
		if (close[1] != ':')
			return "missing :port after the address";
		hlen = (size_t)(close - s - 1);
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		port = close + 2;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return "invalid IPv6 address";
		sin6->sin6_family = AF_INET6;
		out->len = sizeof(*sin6);
	} else {
		const char *colon = strrchr(s, ':');
		if (colon == NULL)
			return "missing :port after the address";
		hlen = (size_t)(colon - s);
		memcpy(host, s, hlen);
		host[hlen] = '\0';
		port = colon + 1;
		if (hlen == 0)
			return "missing address before :port (use *:port for "
			       "all addresses)";
		if (memchr(host, ':', hlen) != NULL)
			return "IPv6 addresses go in brackets, e.g. [::1]:587";
		if (strcmp(host, "*") == 0) {
			sin6->sin6_family = AF_INET6;
			sin6->sin6_addr = in6addr_any;
			out->len = sizeof(*sin6);
		} else if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
			sin->sin_family = AF_INET;
			out->len = sizeof(*sin);
		} else {
			return "expected an IP address, not a host name";
		}
	}
	if (config_value_digits(port, &end, &n) != 0 || *end != '\0')
		return "expected a port number after ':'";
	if (n < 1 || n > 65535)
		return "port must be between 1 and 65535";
	if (out->ss.ss_family == AF_INET)
		sin->sin_port = htons((uint16_t)n);
	else
		sin6->sin6_port = htons((uint16_t)n);
	memcpy(out->text, s, len + 1);
	return NULL;
}

/* "unix:/run/postfix/smtpd.sock": a backend on a local stream socket.  The
 * path must be absolute (the proxy may chdir) and fit in sun_path. */
const char *
config_value_unix_addr(const char *s, struct config_addr *out)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
	const char *path = s + 5;
	size_t plen = strlen(path);

	memset(out, 0, sizeof(*out));
	if (strncmp(s, "unix:", 5) != 0)
		return "expected unix:/path/to/socket";
	if (plen == 0 || path[0] != '/')
		return "expected an absolute path after unix:";
	if (plen >= sizeof(sun->sun_path) || strlen(s) >= sizeof(out->text))
		return "socket path is too long (at most 107 bytes)";
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, plen + 1);
	out->len =
		(socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
	memcpy(out->text, s, strlen(s) + 1);
	return NULL;
}

bool
config_value_addr_is_wildcard(const struct config_addr *a)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

	if (a->ss.ss_family == AF_INET)
		return sin->sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
	return false;
}

bool
config_value_addr_equal(const struct config_addr *a,
			const struct config_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* ---- names ----------------------------------------------------------- */

/* Host name: dot-separated labels of letters, digits and '-', a label
 * neither starting nor ending with '-'.  With wildcard, "*.label..." too. */
bool
config_value_hostname(const char *s, bool wildcard)
{
	size_t label = 0, len = strlen(s);

	if (wildcard && strncmp(s, "*.", 2) == 0)
		s += 2, len -= 2;
	if (len == 0 || len > 253)
		return false;
	for (const char *p = s;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-')
				return false;
			if (*p == '\0')
				return true;
			label = 0;
		} else if ((*p >= 'a' && *p <= 'z') ||
			   (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9') ||
			   (*p == '-' && label > 0)) {
			label++;
		} else {
			return false;
		}
	}
}

/* A limits.classes name, as the passwd file's class= accepts it. */
bool
config_value_class_name(const char *s)
{
	if (*s == '\0' || strlen(s) > 64)
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("_.-", *s) == NULL)
			return false;
	return true;
}

/* ---- formatting, for messages ---------------------------------------- */

/* "1KB", "4GB", "1000": the largest unit that divides n. */
void
config_value_format_size(char *buf, size_t len, uint64_t n)
{
	if (n >= GIB && n % GIB == 0)
		snprintf(buf, len, "%" PRIu64 "GB", n / GIB);
	else if (n >= MIB && n % MIB == 0)
		snprintf(buf, len, "%" PRIu64 "MB", n / MIB);
	else if (n >= KIB && n % KIB == 0)
		snprintf(buf, len, "%" PRIu64 "KB", n / KIB);
	else
		snprintf(buf, len, "%" PRIu64, n);
}

/* "250ms", "30s", "1h": the largest unit that divides ms. */
void
config_value_format_duration(char *buf, size_t len, uint64_t ms)
{
	size_t i = sizeof(duration_units) / sizeof(*duration_units);

	while (--i > 0 && (ms == 0 || ms % duration_units[i].mult != 0))
		;
	snprintf(buf, len, "%" PRIu64 "%s", ms / duration_units[i].mult,
		 duration_units[i].name);
}

bool
config_value_account(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 32 || s[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '-' || (c == '$' && i == len - 1))
			continue;
		return false;
	}
	return true;
}
