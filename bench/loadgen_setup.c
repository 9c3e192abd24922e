/*
 * loadgen_setup.c - loadgen's command line, users file and message.
 *
 * setup_options() fills struct options and refuses bad or contradictory
 * values (exit 2 with a message); setup_target() refuses any address
 * outside loopback (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) except the
 * documentation ranges inside a network namespace (target.c); setup_users()
 * turns "user:password" lines into ready-made AUTH PLAIN lines (RFC 4616)
 * and clears its copies of the passwords; setup_message() builds the one
 * message every session sends: headers, ~76-byte lines, every 40th
 * starting with a dot and stuffed (RFC 5321 4.5.2), exactly --size bytes
 * before stuffing, then the ".\r\n" terminator.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "loadgen.h"
#include "target.h"

struct options opt = {
	.host = "127.0.0.1",
	.tls = TLS_STARTTLS,
	.tls_max = TLS1_3_VERSION,
	.messages = 1,
	.rcpts = 1,
	.size = 2048,
	.threads = 1,
	.concurrency = 10,
	.max_inflight = 1000,
	.timeout = 30,
	.ehlo = "loadgen.example.test",
	.tls_write = 16 * 1024, /* one record per SSL_write */
};
char *msg_wire;
size_t msg_wire_len;
size_t msg_size;
char **auth_lines;
size_t *auth_lens;
size_t nusers;

static void
die(const char *msg)
{
	fprintf(stderr, "loadgen: %s\n", msg);
	exit(2);
}

/* Sizes: bytes, or K/KB/KiB, M/MB/MiB, G/GB/GiB (powers of 1024). */
static bool
parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;
	unsigned long long mul = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		return false;
	if (*end == 'k' || *end == 'K')
		mul = 1ull << 10;
	else if (*end == 'm' || *end == 'M')
		mul = 1ull << 20;
	else if (*end == 'g' || *end == 'G')
		mul = 1ull << 30;
	if (mul != 1) {
		end++;
		if (strcasecmp(end, "b") == 0 || strcasecmp(end, "ib") == 0)
			end += strlen(end);
	} else if (strcasecmp(end, "b") == 0) {
		end++;
	}
	if (*end != '\0' || v > (1ull << 40) / mul)
		return false;
	*out = (size_t)(v * mul);
	return true;
}

/* Durations: seconds, or with a unit: 500ms, 10s, 2m, 1h. */
static bool
parse_duration(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || !(v >= 0) || v > 1e7)
		return false;
	if (strcmp(end, "ms") == 0)
		v /= 1000;
	else if (strcmp(end, "m") == 0)
		v *= 60;
	else if (strcmp(end, "h") == 0)
		v *= 3600;
	else if (*end != '\0' && strcmp(end, "s") != 0)
		return false;
	*out = v;
	return true;
}

static long
parse_long(const char *s, const char *name, long min, long max)
{
	char *end;
	long v;
	char msg[160];

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		snprintf(msg, sizeof(msg), "%s: want an integer in %ld..%ld",
			 name, min, max);
		die(msg);
	}
	return v;
}

/* "AUTH PLAIN base64(\0user\0password)\r\n" for each users-file line. */
void
setup_users(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024], msg[1200];
	size_t cap = 0;

	if (f == NULL) {
		snprintf(msg, sizeof(msg), "%s: %s", path, strerror(errno));
		die(msg);
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned char raw[600];
		char *colon, *lf;
		size_t ulen, plen, rawlen, b64len;

		lf = line + strcspn(line, "\r\n");
		*lf = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		colon = strchr(line, ':');
		if (colon == NULL)
			die("--users: want user:password lines");
		ulen = (size_t)(colon - line);
		plen = strlen(colon + 1);
		if (ulen == 0 || ulen > 255 || plen > 255)
			die("--users: user and password must be 1..255 bytes");
		raw[0] = '\0';
		memcpy(raw + 1, line, ulen);
		raw[1 + ulen] = '\0';
		memcpy(raw + 2 + ulen, colon + 1, plen);
		rawlen = 2 + ulen + plen;
		if (nusers == cap) {
			cap = cap ? cap * 2 : 16;
			auth_lines = realloc(auth_lines, cap * sizeof(char *));
			auth_lens = realloc(auth_lens, cap * sizeof(size_t));
			if (auth_lines == NULL || auth_lens == NULL)
				die("out of memory");
		}
		b64len = 4 * ((rawlen + 2) / 3);
		auth_lines[nusers] = malloc(b64len + 16);
		if (auth_lines[nusers] == NULL)
			die("out of memory");
		memcpy(auth_lines[nusers], "AUTH PLAIN ", 11);
		EVP_EncodeBlock((unsigned char *)auth_lines[nusers] + 11, raw,
				(int)rawlen);
		memcpy(auth_lines[nusers] + 11 + b64len, "\r\n", 3);
		auth_lens[nusers] = 11 + b64len + 2;
		nusers++;
		OPENSSL_cleanse(raw, sizeof(raw));
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	if (nusers == 0)
		die("--users: no user:password lines");
}

static size_t
put(char *dst, const char *s)
{
	size_t n = strlen(s);

	memcpy(dst, s, n);
	return n;
}

/*
 * The message, built once: headers, then ~76-byte lines of words, every
 * 40th starting with "." (sent as ".." per RFC 5321 4.5.2), exactly
 * opt.size bytes before stuffing (at least the headers and one CRLF),
 * followed by the ".\r\n" terminator.
 */
void
setup_message(void)
{
	static const char *const words[] = {
		"the",	   "quarterly", "report",   "is",	"attached",
		"please",  "review",	"before",   "Monday's", "meeting",
		"and",	   "send",	"comments", "to",	"whole",
		"team,",   "thanks!",	"budget",   "numbers",	"look",
		"fine",	   "except",	"travel",   "line",	"items;",
		"we",	   "should",	"discuss",  "them",	"next",
		"week",	   "(see",	"notes).",  "Regards,", "schedule",
		"updated", "draft",	"v2",	    "final",	"agenda",
	};
	char hdr[512], date[64];
	time_t now = time(NULL);
	struct tm tm;
	size_t hlen, rem, max, pos, lines = 0;
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	hlen = (size_t)snprintf(
		hdr, sizeof(hdr),
		"From: Load Generator <loadgen@example.test>\r\n"
		"To: <rcpt0@example.test>\r\n"
		"Subject: msaproxy loadgen test message\r\n"
		"Date: %s\r\n"
		"Message-ID: <loadgen.%lld.%d@example.test>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"\r\n",
		date, (long long)now, (int)getpid());
	if (opt.size < hlen + 2)
		opt.size = hlen + 2;
	msg_size = opt.size;
	max = opt.size + opt.size / 76 / 40 + 16;
	msg_wire = malloc(max);
	if (msg_wire == NULL)
		die("out of memory for the message");
	memcpy(msg_wire, hdr, hlen);
	pos = hlen;
	rem = opt.size - hlen;
	while (rem > 0) {
		/* A full line, or the rest (2..78 bytes) as the last one. */
		size_t llen = rem >= 79 ? 76 : rem;
		size_t text = llen - 2, w = 0;

		if (++lines % 40 == 0 && text > 0) {
			msg_wire[pos++] = '.';
			msg_wire[pos++] = '.';
			w = 1;
		}
		while (w < text) {
			const char *word;
			size_t wl;

			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			word = words[rng % (sizeof(words) / sizeof(words[0]))];
			wl = strlen(word);
			if (w > 0 && w < text) {
				msg_wire[pos++] = ' ';
				w++;
			}
			for (size_t i = 0; i < wl && w < text; i++, w++)
				msg_wire[pos++] = word[i];
		}
		msg_wire[pos++] = '\r';
		msg_wire[pos++] = '\n';
		rem -= llen;
	}
	pos += put(msg_wire + pos, ".\r\n");
	msg_wire_len = pos;
}

/* Loopback, or a documentation address from inside a namespace of the
 * bench's own: the rule of target.c. */
void
setup_target(struct sockaddr_storage *target, socklen_t *target_len)
{
	char err[200], msg[400];

	if (target_parse(opt.host, opt.port, target, target_len, err,
			 sizeof(err)))
		return;
	snprintf(msg, sizeof(msg), "--host %s: %s", opt.host, err);
	die(msg);
}

static void
usage(FILE *f)
{
	fputs("usage: loadgen --port P [options]\n"
	      "  --host ADDR          target address (127.0.0.1)\n"
	      "  --port P             target port (required)\n"
	      "  --tls MODE           starttls | implicit | none (starttls)\n"
	      "  --tls-max V          1.2 | 1.3: highest TLS version (1.3)\n"
	      "  --sni NAME           send SNI NAME\n"
	      "  --resume             resume the thread's last TLS session\n"
	      "  --users FILE         user:password lines, used round robin\n"
	      "  --no-auth            no AUTH\n"
	      "  --messages N         messages per session (1)\n"
	      "  --rcpts R            recipients per message (1)\n"
	      "  --size S             message size: 2KB, 1MB, 20MB (2KB)\n"
	      "  --tls-write S        bytes per SSL_write of the message: "
	      "16KB\n"
	      "                       (one record each, the default) up to "
	      "1MB\n"
	      "                       (records back to back, as mail clients\n"
	      "                       write a big message)\n"
	      "  --pipelining         MAIL+RCPTs+DATA in one write\n"
	      "  --ehlo NAME          EHLO argument\n"
	      "  -T, --threads N      event loops (1)\n"
	      "  -c, --concurrency N  sessions in flight, closed loop (10)\n"
	      "  -n, --sessions N     total sessions\n"
	      "  -d, --duration D     start sessions for D (10s, 2m)\n"
	      "  --rate R             open loop: R sessions/s\n"
	      "  --arrivals KIND      poisson | uniform (poisson)\n"
	      "  --max-inflight N     open-loop in-flight cap (1000)\n"
	      "  --idle N             hold N authenticated sessions\n"
	      "  --hold D             how long to hold them (0)\n"
	      "  --timeout D          per-session inactivity timeout (30s)\n"
	      "  --think D            pause between a message's 250 and the "
	      "next MAIL (0)\n",
	      f);
}

void
setup_options(int argc, char **argv)
{
	enum {
		OPT_HOST = 256,
		OPT_PORT,
		OPT_TLS,
		OPT_TLS_MAX,
		OPT_SNI,
		OPT_RESUME,
		OPT_USERS,
		OPT_NO_AUTH,
		OPT_MESSAGES,
		OPT_RCPTS,
		OPT_SIZE,
		OPT_PIPELINING,
		OPT_EHLO,
		OPT_RATE,
		OPT_ARRIVALS,
		OPT_MAX_INFLIGHT,
		OPT_IDLE,
		OPT_HOLD,
		OPT_TIMEOUT,
		OPT_THINK,
		OPT_TLS_WRITE,
	};
	static const struct option lopts[] = {
		{"host", required_argument, NULL, OPT_HOST},
		{"port", required_argument, NULL, OPT_PORT},
		{"tls", required_argument, NULL, OPT_TLS},
		{"tls-max", required_argument, NULL, OPT_TLS_MAX},
		{"sni", required_argument, NULL, OPT_SNI},
		{"resume", no_argument, NULL, OPT_RESUME},
		{"users", required_argument, NULL, OPT_USERS},
		{"no-auth", no_argument, NULL, OPT_NO_AUTH},
		{"messages", required_argument, NULL, OPT_MESSAGES},
		{"rcpts", required_argument, NULL, OPT_RCPTS},
		{"size", required_argument, NULL, OPT_SIZE},
		{"pipelining", no_argument, NULL, OPT_PIPELINING},
		{"ehlo", required_argument, NULL, OPT_EHLO},
		{"threads", required_argument, NULL, 'T'},
		{"concurrency", required_argument, NULL, 'c'},
		{"sessions", required_argument, NULL, 'n'},
		{"duration", required_argument, NULL, 'd'},
		{"rate", required_argument, NULL, OPT_RATE},
		{"arrivals", required_argument, NULL, OPT_ARRIVALS},
		{"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
		{"idle", required_argument, NULL, OPT_IDLE},
		{"hold", required_argument, NULL, OPT_HOLD},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"think", required_argument, NULL, OPT_THINK},
		{"tls-write", required_argument, NULL, OPT_TLS_WRITE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	char *end;

	while ((ch = getopt_long(argc, argv, "T:c:n:d:h", lopts, NULL)) != -1) {
		switch (ch) {
		case OPT_HOST:
			opt.host = optarg;
			break;
		case OPT_PORT:
			opt.port = (int)parse_long(optarg, "--port", 1, 65535);
			break;
		case OPT_TLS:
			if (strcmp(optarg, "starttls") == 0)
				opt.tls = TLS_STARTTLS;
			else if (strcmp(optarg, "implicit") == 0)
				opt.tls = TLS_IMPLICIT;
			else if (strcmp(optarg, "none") == 0)
				opt.tls = TLS_NONE;
			else
				die("--tls: want starttls, implicit or none");
			break;
		case OPT_TLS_MAX:
			if (strcmp(optarg, "1.2") == 0)
				opt.tls_max = TLS1_2_VERSION;
			else if (strcmp(optarg, "1.3") == 0)
				opt.tls_max = TLS1_3_VERSION;
			else
				die("--tls-max: want 1.2 or 1.3");
			break;
		case OPT_SNI:
			opt.sni = optarg;
			break;
		case OPT_RESUME:
			opt.resume = true;
			break;
		case OPT_USERS:
			opt.users_file = optarg;
			break;
		case OPT_NO_AUTH:
			opt.no_auth = true;
			break;
		case OPT_MESSAGES:
			opt.messages =
				parse_long(optarg, "--messages", 0, 1000000);
			break;
		case OPT_RCPTS:
			opt.rcpts = parse_long(optarg, "--rcpts", 1, 100000);
			break;
		case OPT_SIZE:
			if (!parse_size(optarg, &opt.size) ||
			    opt.size > (size_t)1 << 30)
				die("--size: want bytes or 2KB/1MB/20MB, at "
				    "most 1GB");
			break;
		case OPT_PIPELINING:
			opt.pipelining = true;
			break;
		case OPT_TLS_WRITE:
			if (!parse_size(optarg, &opt.tls_write) ||
			    opt.tls_write < 1024 || opt.tls_write > (1u << 20))
				die("--tls-write: want 1KB..1MB");
			break;
		case OPT_EHLO:
			if (strlen(optarg) > 255 || strpbrk(optarg, "\r\n"))
				die("--ehlo: want a name of at most 255 bytes");
			opt.ehlo = optarg;
			break;
		case 'T':
			opt.threads = (int)parse_long(optarg, "--threads", 1,
						      MAX_THREADS);
			break;
		case 'c':
			opt.concurrency =
				parse_long(optarg, "--concurrency", 1, 1000000);
			break;
		case 'n':
			opt.sessions = parse_long(optarg, "--sessions", 1,
						  1000000000L);
			break;
		case 'd':
			if (!parse_duration(optarg, &opt.duration) ||
			    opt.duration <= 0)
				die("--duration: want seconds (10, 10s, 2m)");
			break;
		case OPT_RATE:
			errno = 0;
			opt.rate = strtod(optarg, &end);
			if (errno != 0 || *end != '\0' || !(opt.rate > 0) ||
			    opt.rate > 1e7)
				die("--rate: want sessions per second > 0");
			break;
		case OPT_ARRIVALS:
			if (strcmp(optarg, "poisson") == 0)
				opt.arrivals = ARR_POISSON;
			else if (strcmp(optarg, "uniform") == 0)
				opt.arrivals = ARR_UNIFORM;
			else
				die("--arrivals: want poisson or uniform");
			break;
		case OPT_MAX_INFLIGHT:
			opt.max_inflight = parse_long(optarg, "--max-inflight",
						      1, 1000000);
			break;
		case OPT_IDLE:
			opt.idle = parse_long(optarg, "--idle", 1, 1000000);
			break;
		case OPT_HOLD:
			if (!parse_duration(optarg, &opt.hold))
				die("--hold: want seconds (30, 30s, 2m)");
			break;
		case OPT_TIMEOUT:
			if (!parse_duration(optarg, &opt.timeout) ||
			    opt.timeout < 0.001)
				die("--timeout: want seconds > 0 (30, 500ms)");
			break;
		case OPT_THINK:
			if (!parse_duration(optarg, &opt.think) ||
			    opt.think > 60)
				die("--think: want seconds, at most 60 (20ms)");
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc)
		die("unexpected argument (see --help)");
	if (opt.port == 0)
		die("--port is required");
	if (!opt.no_auth && opt.users_file == NULL)
		die("want --users FILE or --no-auth");
	if (opt.no_auth && opt.users_file != NULL)
		die("--users and --no-auth exclude each other");
	if (opt.idle > 0 && opt.rate > 0)
		die("--idle and --rate exclude each other");
	if (opt.hold > 0 && opt.idle == 0)
		die("--hold needs --idle");
	if (opt.rate > 0 && opt.duration == 0 && opt.sessions == 0)
		die("--rate needs -d or -n to bound it");
	if (opt.resume && opt.tls == TLS_NONE)
		die("--resume needs TLS");
	if (opt.idle == 0 && opt.duration == 0 && opt.sessions == 0)
		opt.sessions = opt.concurrency;
}
