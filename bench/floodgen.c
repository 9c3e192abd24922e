/*
 * floodgen.c - a flood from one network at a fixed rate, for bench/run.
 *
 * Two kinds, both at --rate per second (uniform arrivals, started in
 * batches at most 1 ms apart), both from the --source addresses:
 *
 * connect (default): full TCP connections, each closed the moment its
 *   handshake completes: with a FIN (--close fin, default), or with an RST
 *   (--close rst, SO_LINGER 0: no TIME_WAIT on either side).  What a
 *   blocked network does to a server that only refuses it at accept():
 *   each costs the server a handshake, an accept and a close.  A
 *   connection that neither completes nor fails within --timeout (its
 *   SYNs dropped by XDP or nftables) is closed and counted as a timeout.
 * --syn: raw TCP SYNs (IPv4, a raw socket, IP header written here) from
 *   the first --source, the source port stepping by one per packet
 *   (1024-65535), sent with sendmmsg().  No reply is read: the kernel of
 *   the source answers the server's SYN-ACKs with RSTs when the source
 *   address is its own.  hping3 does the same but costs a timer signal and
 *   a pcap read per packet at a fixed interval, and has no rate bound in
 *   --flood mode; this keeps a fixed rate for a few us of CPU per packet.
 *
 * At the end it prints one JSON object on stdout.
 *
 * Security stance: a bench tool.  Sends only to what bench/target.c
 * allows (loopback, or the documentation ranges from inside a network
 * namespace of the bench's own).  Bounded: --duration (at most 1 h),
 * --count, --max-inflight sockets at once; SIGINT/SIGTERM end it early.
 * --syn needs CAP_NET_RAW.
 *
 * usage: floodgen --host ADDR --port P --rate R -d SECONDS [--syn]
 *                 [--source ADDR]... [-n COUNT] [--close fin|rst]
 *                 [--timeout MS] [--max-inflight N]
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "target.h"

#define MAX_SOURCES    64
#define MAX_DURATION_S 3600.0
#define MAX_EVENTS     256
#define CATCH_UP_LIMIT 1000 /* arrivals started per loop turn, at most */
#define SWEEP_INTERVAL 0.01
#define SYN_BATCH      64 /* packets per sendmmsg() */

struct slot {
	int fd; /* -1: free */
	double start;
};

struct counts {
	long started, established, refused, reset, timeouts, no_port, errors;
	long skipped, unfinished;
};

static struct {
	const char *host;
	int port;
	double rate;
	double duration;
	long count;
	double timeout;
	long max_inflight;
	bool syn;
	bool close_rst;
	int nsources;
	struct sockaddr_storage sources[MAX_SOURCES];
	socklen_t source_len[MAX_SOURCES];
} opt = {.timeout = 1.0, .max_inflight = 2000};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void
die(const char *msg)
{
	fprintf(stderr, "floodgen: %s\n", msg);
	exit(2);
}

static void
usage(void)
{
	fputs("usage: floodgen --host ADDR --port P --rate R -d SECONDS "
	      "[--syn]\n"
	      "                [--source ADDR]... [-n COUNT] [--close "
	      "fin|rst]\n"
	      "                [--timeout MS] [--max-inflight N]\n",
	      stderr);
	exit(2);
}

static double
number(const char *name, const char *s, double min, double max)
{
	char *end, msg[200];
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		snprintf(msg, sizeof(msg), "%s %s: want a number in %g..%g",
			 name, s, min, max);
		die(msg);
	}
	return v;
}

static void
add_source(const char *s)
{
	struct sockaddr_storage *ss = &opt.sources[opt.nsources];
	char err[200], msg[300];

	if (opt.nsources == MAX_SOURCES)
		die("too many --source addresses");
	/* A source is bound, not sent to; it only has to be an address. */
	if (!target_parse_addr(s, 0, ss, &opt.source_len[opt.nsources], err,
			       sizeof(err))) {
		snprintf(msg, sizeof(msg), "--source %s: %s", s, err);
		die(msg);
	}
	opt.nsources++;
}

static void
parse(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"host", required_argument, NULL, 'h'},
		{"port", required_argument, NULL, 'p'},
		{"rate", required_argument, NULL, 'r'},
		{"duration", required_argument, NULL, 'd'},
		{"count", required_argument, NULL, 'n'},
		{"timeout", required_argument, NULL, 't'},
		{"max-inflight", required_argument, NULL, 'm'},
		{"source", required_argument, NULL, 's'},
		{"syn", no_argument, NULL, 'S'},
		{"close", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "d:n:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = (int)number("--port", optarg, 1, 65535);
			break;
		case 'r':
			opt.rate = number("--rate", optarg, 1, 1e7);
			break;
		case 'd':
			opt.duration = number("--duration", optarg, 0.001,
					      MAX_DURATION_S);
			break;
		case 'n':
			opt.count = (long)number("--count", optarg, 1, 1e12);
			break;
		case 't':
			opt.timeout =
				number("--timeout", optarg, 1, 600000) / 1000;
			break;
		case 'm':
			opt.max_inflight =
				(long)number("--max-inflight", optarg, 1, 1e6);
			break;
		case 's':
			add_source(optarg);
			break;
		case 'S':
			opt.syn = true;
			break;
		case 'c':
			if (strcmp(optarg, "fin") != 0 &&
			    strcmp(optarg, "rst") != 0)
				die("--close: fin or rst");
			opt.close_rst = strcmp(optarg, "rst") == 0;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || opt.host == NULL || opt.port == 0 ||
	    opt.rate == 0 || opt.duration == 0)
		usage();
	if (opt.syn &&
	    (opt.nsources == 0 || opt.sources[0].ss_family != AF_INET))
		die("--syn needs an IPv4 --source (the SYNs' source address)");
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* ------------------------------------------------------------------ */
/* --syn: raw SYNs                                                     */
/* ------------------------------------------------------------------ */

struct syn_packet {
	struct iphdr ip;
	struct tcphdr tcp;
	uint8_t mss[4]; /* one option, as a real client sends */
};

static uint16_t
checksum(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)(p[len - 1] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/* The TCP checksum over the IPv4 pseudo-header and the segment. */
static void
syn_fill(struct syn_packet *pk, uint16_t sport, uint32_t seq)
{
	uint32_t s = ntohl(pk->ip.saddr), d = ntohl(pk->ip.daddr);
	uint32_t pseudo = (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) +
			  IPPROTO_TCP + sizeof(pk->tcp) + sizeof(pk->mss);

	pk->tcp.source = htons(sport);
	pk->tcp.seq = htonl(seq);
	pk->tcp.check = 0;
	pk->tcp.check =
		checksum(pseudo, &pk->tcp, sizeof(pk->tcp) + sizeof(pk->mss));
}

static void
syn_flood(const struct sockaddr_storage *target, socklen_t tlen)
{
	struct syn_packet pk[SYN_BATCH];
	struct mmsghdr msgs[SYN_BATCH];
	struct iovec iov[SYN_BATCH];
	const struct sockaddr_in *dst = (const struct sockaddr_in *)target;
	const struct sockaddr_in *src =
		(const struct sockaddr_in *)&opt.sources[0];
	long done = 0, sent = 0, errors = 0, skipped = 0, due;
	uint32_t sport = 0, seq = 0x5eed;
	double t0, t, wall;
	int fd;

	if (target->ss_family != AF_INET)
		die("--syn: IPv4 targets only");
	fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (fd < 0)
		die("--syn: raw socket (needs CAP_NET_RAW)");
	memset(pk, 0, sizeof(pk));
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < SYN_BATCH; i++) {
		pk[i].ip.version = 4;
		pk[i].ip.ihl = 5;
		pk[i].ip.ttl = 64;
		pk[i].ip.protocol = IPPROTO_TCP;
		pk[i].ip.tot_len = htons(sizeof(pk[i]));
		pk[i].ip.saddr = src->sin_addr.s_addr;
		pk[i].ip.daddr = dst->sin_addr.s_addr;
		pk[i].tcp.dest = dst->sin_port;
		pk[i].tcp.doff = (sizeof(pk[i].tcp) + sizeof(pk[i].mss)) / 4;
		pk[i].tcp.syn = 1;
		pk[i].tcp.window = htons(64240);
		memcpy(pk[i].mss, "\x02\x04\x05\xb4", 4); /* MSS 1460 */
		iov[i].iov_base = &pk[i];
		iov[i].iov_len = sizeof(pk[i]);
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = (void *)target;
		msgs[i].msg_hdr.msg_namelen = tlen;
	}
	t0 = now();
	while (!stop) {
		struct timespec tick = {0, 1000000};

		t = now();
		if (t - t0 >= opt.duration || (opt.count && done >= opt.count))
			break;
		due = (long)((t - t0) * opt.rate) + 1;
		if (opt.count && due > opt.count)
			due = opt.count;
		/* Far behind (stopped, starved): those packets are skipped,
		 * not sent in one burst. */
		if (due - done > CATCH_UP_LIMIT) {
			skipped += due - done - CATCH_UP_LIMIT;
			done = due - CATCH_UP_LIMIT;
		}
		while (done < due && !stop) {
			int n = (int)(due - done < SYN_BATCH ? due - done
							     : SYN_BATCH);
			int k;

			for (int i = 0; i < n; i++)
				syn_fill(&pk[i],
					 (uint16_t)(1024 + sport++ % 64512),
					 seq += 0x9e3779b9);
			k = sendmmsg(fd, msgs, (unsigned)n, 0);
			if (k <= 0) { /* ENOBUFS and the like: counted */
				errors += n;
				done += n;
				break;
			}
			sent += k;
			done += k;
		}
		nanosleep(&tick, NULL);
	}
	wall = now() - t0;
	printf("{\"mode\": \"syn\", \"sent\": %ld, \"send_errors\": %ld, "
	       "\"skipped\": %ld, \"wall_s\": %.3f, \"sent_per_s\": %.1f, "
	       "\"cpu_s\": %.3f, \"interrupted\": %s, \"params\": "
	       "{\"host\": \"%s\", \"port\": %d, \"rate\": %.1f}}\n",
	       sent, errors, skipped, wall, wall > 0 ? (double)sent / wall : 0,
	       cpu_seconds(), stop ? "true" : "false", opt.host, opt.port,
	       opt.rate);
	close(fd);
}

/* ------------------------------------------------------------------ */
/* connect flood                                                       */
/* ------------------------------------------------------------------ */

/* Close: with an RST if SO_LINGER {1, 0} was set, else with a FIN. */
static void
finish(int ep, struct slot *s)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
}

/* Start one connection in a free slot; false if it failed at once. */
static bool
start_one(int ep, const struct sockaddr_storage *target, socklen_t tlen,
	  struct slot *s, uint32_t idx, struct counts *n, double t)
{
	static const struct linger rst = {.l_onoff = 1, .l_linger = 0};
	static int next_source;
	struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = idx};
	int fd, one = 1;

	fd = socket(target->ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		n->errors++;
		return false;
	}
	if (opt.close_rst)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	if (opt.nsources > 0) {
		int i = next_source++ % opt.nsources;

		/* The port is picked at connect(), per 4-tuple. */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
			   sizeof(one));
		if (bind(fd, (struct sockaddr *)&opt.sources[i],
			 opt.source_len[i]) != 0) {
			n->errors++;
			close(fd);
			return false;
		}
	}
	n->started++;
	if (connect(fd, (const struct sockaddr *)target, tlen) == 0) {
		n->established++;
		close(fd);
		return true;
	}
	if (errno != EINPROGRESS) {
		if (errno == EADDRNOTAVAIL)
			n->no_port++;
		else if (errno == ECONNREFUSED)
			n->refused++;
		else
			n->errors++;
		close(fd);
		return false;
	}
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		n->errors++;
		close(fd);
		return false;
	}
	s->fd = fd;
	s->start = t;
	return true;
}

static void
completed(int ep, struct slot *s, struct counts *n)
{
	int err = 0;
	socklen_t len = sizeof(err);

	getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err == 0)
		n->established++;
	else if (err == ECONNREFUSED)
		n->refused++;
	else if (err == ECONNRESET)
		n->reset++;
	else
		n->errors++;
	finish(ep, s);
}

static void
connect_report(const struct counts *n, double wall)
{
	printf("{\"mode\": \"connect\", \"started\": %ld, \"established\": "
	       "%ld, \"refused\": %ld, \"reset\": %ld, \"timeouts\": %ld, "
	       "\"no_port\": %ld, \"errors\": %ld, \"skipped\": %ld, "
	       "\"unfinished\": %ld, \"wall_s\": %.3f, \"started_per_s\": "
	       "%.1f, \"established_per_s\": %.1f, \"cpu_s\": %.3f, "
	       "\"interrupted\": %s, \"params\": {\"host\": \"%s\", "
	       "\"port\": %d, \"rate\": %.1f, \"sources\": %d, \"close\": "
	       "\"%s\", \"timeout_ms\": %.0f, \"max_inflight\": %ld}}\n",
	       n->started, n->established, n->refused, n->reset, n->timeouts,
	       n->no_port, n->errors, n->skipped, n->unfinished, wall,
	       wall > 0 ? (double)n->started / wall : 0,
	       wall > 0 ? (double)n->established / wall : 0, cpu_seconds(),
	       stop ? "true" : "false", opt.host, opt.port, opt.rate,
	       opt.nsources, opt.close_rst ? "rst" : "fin", opt.timeout * 1000,
	       opt.max_inflight);
}

static void
connect_flood(const struct sockaddr_storage *target, socklen_t tlen)
{
	struct epoll_event evs[MAX_EVENTS];
	struct counts n = {0};
	struct slot *slots;
	uint32_t *free_list;
	long nfree;
	double t0, end, due, last_sweep;
	int ep;

	slots = calloc((size_t)opt.max_inflight, sizeof(*slots));
	free_list = calloc((size_t)opt.max_inflight, sizeof(*free_list));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (slots == NULL || free_list == NULL || ep < 0)
		die("out of memory or epoll");
	for (long i = 0; i < opt.max_inflight; i++) {
		slots[i].fd = -1;
		free_list[i] = (uint32_t)(opt.max_inflight - 1 - i);
	}
	nfree = opt.max_inflight;

	t0 = now();
	end = t0 + opt.duration;
	due = t0;
	last_sweep = t0;
	while (!stop) {
		double t = now();
		int timeout_ms, k;

		if (t >= end ||
		    (opt.count && n.started + n.skipped >= opt.count))
			break;
		for (k = 0; due <= t && k < CATCH_UP_LIMIT; k++) {
			due += 1.0 / opt.rate;
			if (opt.count && n.started + n.skipped >= opt.count)
				break;
			if (nfree == 0) {
				n.skipped++;
				continue;
			}
			uint32_t idx = free_list[--nfree];
			if (!start_one(ep, target, tlen, &slots[idx], idx, &n,
				       t) ||
			    slots[idx].fd < 0)
				free_list[nfree++] = idx;
		}
		/* Far behind (stopped, starved): those arrivals are skipped. */
		for (; due <= t && k == CATCH_UP_LIMIT; due += 1.0 / opt.rate)
			n.skipped++;
		/* Rounded up: arrivals start in batches, at most 1 ms apart,
		 * rather than the loop spinning. */
		timeout_ms = (int)((due - t) * 1000) + 1;
		if (timeout_ms > 10)
			timeout_ms = 10;
		k = epoll_wait(ep, evs, MAX_EVENTS, timeout_ms);
		for (int i = 0; i < k; i++) {
			uint32_t idx = evs[i].data.u32;

			completed(ep, &slots[idx], &n);
			free_list[nfree++] = idx;
		}
		t = now();
		if (t - last_sweep >= SWEEP_INTERVAL) {
			last_sweep = t;
			for (long i = 0; i < opt.max_inflight; i++) {
				if (slots[i].fd < 0 ||
				    t - slots[i].start < opt.timeout)
					continue;
				n.timeouts++;
				finish(ep, &slots[i]);
				free_list[nfree++] = (uint32_t)i;
			}
		}
	}
	for (long i = 0; i < opt.max_inflight; i++) {
		if (slots[i].fd >= 0) {
			n.unfinished++;
			finish(ep, &slots[i]);
		}
	}
	connect_report(&n, now() - t0);
	close(ep);
	free(slots);
	free(free_list);
}

int
main(int argc, char **argv)
{
	struct sockaddr_storage target;
	socklen_t tlen;
	char err[200], msg[300];

	parse(argc, argv);
	if (!target_parse(opt.host, opt.port, &target, &tlen, err,
			  sizeof(err))) {
		snprintf(msg, sizeof(msg), "--host %s: %s", opt.host, err);
		die(msg);
	}
	raise_nofile();
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (opt.syn)
		syn_flood(&target, tlen);
	else
		connect_flood(&target, tlen);
	return 0;
}
