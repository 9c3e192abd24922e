/*
 * loadgen.h - what the three files of the load generator share.
 *
 * loadgen.c runs the sessions (event loops, SMTP and TLS client state
 * machine); loadgen_setup.c turns the command line into struct options,
 * the users file into AUTH lines and --size into the message; loadgen_stats.c
 * keeps latency histograms and prints the JSON report.  See README.md.
 */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define MAX_THREADS 64

enum tls_mode { TLS_STARTTLS, TLS_IMPLICIT, TLS_NONE };
enum arrivals { ARR_POISSON, ARR_UNIFORM };

struct options {
	const char *host;
	int port;
	enum tls_mode tls;
	int tls_max; /* TLS1_2_VERSION or TLS1_3_VERSION */
	const char *sni;
	const char *users_file;
	bool no_auth;
	bool pipelining;
	bool resume;
	long messages;
	long rcpts;
	size_t size;
	int threads;
	long concurrency;
	long sessions; /* 0: no limit */
	double duration;
	double rate; /* 0: closed loop */
	enum arrivals arrivals;
	long max_inflight;
	long idle;
	double hold;
	double timeout;
	double think;	  /* pause between messages of a session, seconds */
	size_t tls_write; /* bytes per SSL_write of the message (16 KiB) */
	const char *ehlo;
};

/* Where a session was when it failed. */
enum phase {
	PH_CONNECT,
	PH_TLS,
	PH_GREETING,
	PH_EHLO,
	PH_STARTTLS,
	PH_AUTH,
	PH_MAIL,
	PH_RCPT,
	PH_DATA,
	PH_BODY,
	PH_DOT,
	PH_HOLD,
	PH_QUIT,
	PH_MAX
};

/* Why it failed: a wrong reply code is charged to its phase's cause. */
enum cause {
	CA_CONNECT,
	CA_GREETING,
	CA_TLS,
	CA_EHLO,
	CA_STARTTLS,
	CA_AUTH,
	CA_MAIL,
	CA_RCPT,
	CA_DATA,
	CA_QUIT,
	CA_UNEXPECTED,
	CA_TIMEOUT,
	CA_CLOSED,
	CA_IO,
	CA_PROTOCOL,
	CA_MAX
};

/* Log-linear latency histogram in ns: 64 sub-buckets per power of two. */
#define HIST_N (128 + 58 * 64)

struct hist {
	uint64_t n, sum, max;
	uint64_t b[HIST_N];
};

/* One thread's counts; merged into one at the end. */
struct stats {
	uint64_t ok, failed, messages, bytes, handshakes, resumed, skipped;
	uint64_t cause[CA_MAX];
	uint64_t detail[CA_MAX][PH_MAX]; /* failures without a reply code */
	uint32_t codes[PH_MAX][1000];	 /* failures by phase and code */
	struct hist session, handshake, data;
};

/* loadgen_setup.c */
extern struct options opt;
extern char *msg_wire;	    /* the message as sent, ending ".\r\n" */
extern size_t msg_wire_len; /* its length */
extern size_t msg_size;	    /* the message as received, unstuffed */
extern char **auth_lines;   /* "AUTH PLAIN ...\r\n", one per user */
extern size_t *auth_lens;
extern size_t nusers;

void setup_options(int, char **);
void setup_users(const char *);
void setup_message(void);
void setup_target(struct sockaddr_storage *, socklen_t *);

/* loadgen_stats.c */
void stats_latency(struct hist *, int64_t);
void stats_merge(struct stats *, const struct stats *);
void stats_report(const struct stats *, double, double, long, bool);

#endif
