/*
 * loadgen.c - SMTP submission load generator for benchmarking msaproxy.
 *
 * Drives many SMTP submission sessions against one address:
 * connect, greeting, EHLO, STARTTLS (or implicit TLS, or none), EHLO again,
 * AUTH PLAIN, N messages (MAIL, RCPT x R, DATA, body, ".") and QUIT.  At
 * the end it prints exactly one JSON object on stdout: throughput, latency
 * percentiles (session, TLS handshake, DATA-end round trip), failures by
 * cause, the client's own CPU time, and the parameters.  See README.md.
 * This file runs the sessions; loadgen_setup.c parses the command line and
 * builds the message, loadgen_stats.c keeps histograms and prints.
 *
 * Modes: closed loop (-c sessions in flight, -n total or -d seconds), open
 * loop (--rate sessions/s, Poisson or uniform arrivals, capped by
 * --max-inflight, bounded by -d or -n), and idle (--idle N authenticated
 * sessions held for --hold seconds, so a script can read the server's RSS).
 *
 * Security stance: a benchmark client.  It refuses any target outside
 * the loopback range (127.0.0.0/8, ::1), except the documentation ranges
 * 198.51.100.0/24 and 2001:db8::/32 when it runs inside a network
 * namespace other than PID 1's (bench/run's flood scenario; target.c).
 * It does not verify certificates (bench certificates are self-signed).
 * Passwords from --users are only ever sent to the target.  Every loop
 * is bounded: sessions by -n or -d, each session by --timeout of
 * inactivity, idle sessions by --hold, the work done for one connection
 * per wakeup by STEP_LIMIT.
 *
 * Design: one edge-triggered epoll loop per thread (-T), non-blocking
 * sockets, OpenSSL directly on the socket (SSL_set_fd).  The message is
 * built once, already dot-stuffed and terminated, and shared read-only by
 * every session, which streams it from an offset: per byte, the client
 * does one write() or one SSL_write() and nothing else.  Command output
 * goes through a fixed 2 KB buffer per session; replies through 4 KB.
 * Latencies go to log-linear histograms (1/64 relative precision).
 *
 * RFCs: 5321 (SMTP), 6409 (submission), 3207 (STARTTLS), 8314 (implicit
 * TLS), 4954 and 4616 (AUTH PLAIN), 2920 (PIPELINING).
 */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "loadgen.h"

#define WBUF_SIZE   2048
#define RBUF_SIZE   4096
#define PLAIN_CHUNK (256 * 1024)
#define STEP_LIMIT  4096	      /* steps per connection per wakeup */
#define ARRIVAL_MAX 100000	      /* arrivals started per loop turn */
#define SCAN_NS	    (100 * 1000000LL) /* timeout scan period */
#define NS	    1000000000LL

/* The cause charged for a wrong reply code, by the phase it came in. */
static const enum cause code_cause[PH_MAX] = {
	[PH_CONNECT] = CA_CONNECT,   [PH_TLS] = CA_TLS,
	[PH_GREETING] = CA_GREETING, [PH_EHLO] = CA_EHLO,
	[PH_STARTTLS] = CA_STARTTLS, [PH_AUTH] = CA_AUTH,
	[PH_MAIL] = CA_MAIL,	     [PH_RCPT] = CA_RCPT,
	[PH_DATA] = CA_DATA,	     [PH_BODY] = CA_DATA,
	[PH_DOT] = CA_DATA,	     [PH_HOLD] = CA_UNEXPECTED,
	[PH_QUIT] = CA_QUIT,
};

/* ---------------------------------------------------------------------
 * Sessions and threads
 */

enum state {
	ST_FREE,
	ST_CONNECTING,
	ST_HANDSHAKE,
	ST_GREETING,
	ST_EHLO,
	ST_STARTTLS,
	ST_AUTH,
	ST_TXN, /* MAIL, RCPTs, DATA; pipelined or one at a time */
	ST_BODY,
	ST_DOT,
	ST_PAUSE, /* --think: between a message's 250 and the next MAIL */
	ST_HOLD,
	ST_QUIT
};

enum step { STEP_BLOCKED, STEP_PROGRESS, STEP_GONE };

enum { IO_AGAIN = -1, IO_ERR = -2 };

struct conn {
	enum state state;
	enum state after_hs; /* state entered when the handshake is done */
	int fd;
	SSL *ssl;
	bool tls_on;
	bool held;		/* --idle: reached ST_HOLD */
	bool queued;		/* on the run queue */
	bool rdrained;		/* the socket had no more input last time */
	struct conn *rq_next;	/* run queue */
	struct conn *free_next; /* free list */
	int64_t t_start, t_hs, t_dot, deadline;
	int64_t resume_at;	/* ST_PAUSE: when the next transaction starts */
	long msgs;		/* messages accepted in this session */
	long k_sent, k_replied; /* transaction commands: MAIL, RCPTs, DATA */
	size_t boff;		/* body bytes sent */
	size_t woff, wlen;
	size_t rlen;
	char wbuf[WBUF_SIZE];
	char rbuf[RBUF_SIZE];
};

struct thread {
	int id;
	pthread_t tid;
	int epfd;
	struct conn *conns;
	long nconns;
	struct conn *free;
	struct conn *runq;
	long active;
	long cap; /* in flight (closed, rate) or setting up (idle) */
	long idle_target, idle_started, idle_setup;
	bool idle_quit_sent;
	bool arrivals_done;
	int64_t next_arrival;
	long paused;	     /* sessions in ST_PAUSE */
	int64_t next_resume; /* the earliest resume_at among them */
	double rate;
	uint64_t rng;
	SSL_SESSION *resume;
	struct stats st;
};

static SSL_CTX *ssl_ctx;
static struct sockaddr_storage target;
static socklen_t target_len;
static atomic_ulong user_next;
static atomic_long sessions_started;
static atomic_long idle_done, idle_ok;
static _Atomic int64_t hold_end; /* 0 until every idle session is up */
static atomic_int stop_flag;
static int64_t t_begin, t_stop; /* t_stop: end of -d, or INT64_MAX */
static int64_t timeout_ns;
static int64_t think_ns;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void
die(const char *msg)
{
	fprintf(stderr, "loadgen: %s\n", msg);
	exit(2);
}

/* ---------------------------------------------------------------------
 * Socket and TLS I/O: n > 0 bytes, 0 end of stream, IO_AGAIN, IO_ERR.
 */

static ssize_t
ssl_result(struct conn *c, int n)
{
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return IO_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		ERR_clear_error();
		return IO_ERR;
	}
}

static ssize_t
io_read(struct conn *c, char *buf, size_t len)
{
	ssize_t n;

	if (c->tls_on) {
		int r = SSL_read(c->ssl, buf, (int)len);

		return r > 0 ? r : ssl_result(c, r);
	}
	do
		n = read(c->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	return errno == EAGAIN ? IO_AGAIN : IO_ERR;
}

static ssize_t
io_write(struct conn *c, const char *buf, size_t len)
{
	ssize_t n;

	if (c->tls_on) {
		int r = SSL_write(c->ssl, buf, (int)len);

		if (r > 0)
			return r;
		n = ssl_result(c, r);
		return n == 0 ? IO_ERR : n;
	}
	do
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	return errno == EAGAIN ? IO_AGAIN : IO_ERR;
}

/*
 * One complete reply at the front of buf: 1 and its code, 0 if more bytes
 * are needed, -1 if malformed.  Multi-line replies are "DDD-text" lines
 * ending with one "DDD text" (or bare "DDD") line.
 */
static int
reply_parse(const char *buf, size_t len, size_t *used, int *code)
{
	size_t pos = 0;

	while (pos < len) {
		const char *line = buf + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t llen;

		if (nl == NULL)
			return 0;
		llen = (size_t)(nl - line) + 1;
		if (llen < 4 || line[0] < '1' || line[0] > '5' ||
		    line[1] < '0' || line[1] > '9' || line[2] < '0' ||
		    line[2] > '9')
			return -1;
		pos += llen;
		if (line[3] != '-') {
			*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
				(line[2] - '0');
			*used = pos;
			return 1;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------------
 * Session life
 */

static enum phase
conn_phase(const struct conn *c)
{
	switch (c->state) {
	case ST_CONNECTING:
		return PH_CONNECT;
	case ST_HANDSHAKE:
		return PH_TLS;
	case ST_GREETING:
		return PH_GREETING;
	case ST_EHLO:
		return PH_EHLO;
	case ST_STARTTLS:
		return PH_STARTTLS;
	case ST_AUTH:
		return PH_AUTH;
	case ST_TXN:
		if (c->k_replied == 0)
			return PH_MAIL;
		return c->k_replied <= opt.rcpts ? PH_RCPT : PH_DATA;
	case ST_BODY:
		return PH_BODY;
	case ST_DOT:
		return PH_DOT;
	case ST_PAUSE: /* a reply now is as unexpected as when holding */
	case ST_HOLD:
		return PH_HOLD;
	case ST_QUIT:
	case ST_FREE:
		break;
	}
	return PH_QUIT;
}

/* An --idle session finished setting up, either way; the last one of all
 * threads announces it and starts the hold clock. */
static void
idle_settled(bool ok)
{
	long done;

	if (ok)
		atomic_fetch_add(&idle_ok, 1);
	done = atomic_fetch_add(&idle_done, 1) + 1;
	if (done != opt.idle)
		return;
	atomic_store(&hold_end, now_ns() + (int64_t)(opt.hold * 1e9));
	if (atomic_load(&idle_ok) == opt.idle)
		fprintf(stderr, "idle: %ld established\n", opt.idle);
	else
		fprintf(stderr, "idle: %ld established, %ld failed\n",
			atomic_load(&idle_ok),
			opt.idle - atomic_load(&idle_ok));
	fflush(stderr);
}

static void
conn_close(struct thread *t, struct conn *c, bool clean)
{
	if (c->ssl != NULL) {
		if (clean && c->tls_on)
			SSL_shutdown(c->ssl); /* close_notify, best effort */
		else /* keep the session's ticket usable for --resume */
			SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN |
							 SSL_RECEIVED_SHUTDOWN);
		SSL_free(c->ssl);
		ERR_clear_error();
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->state == ST_PAUSE)
		t->paused--;
	if (opt.idle > 0) {
		if (!c->held) {
			t->idle_setup--;
			idle_settled(false);
		}
	}
	c->state = ST_FREE;
	c->free_next = t->free;
	t->free = c;
	t->active--;
}

static void
conn_fail(struct thread *t, struct conn *c, enum cause cause, int code)
{
	enum phase ph = conn_phase(c);

	t->st.failed++;
	t->st.cause[cause]++;
	if (code >= 100 && code < 1000)
		t->st.codes[ph][code]++;
	else
		t->st.detail[cause][ph]++;
	conn_close(t, c, false);
}

static void
conn_fail_code(struct thread *t, struct conn *c, int code)
{
	conn_fail(t, c, code_cause[conn_phase(c)], code);
}

static void
wbuf_put(struct conn *c, const char *s, size_t len)
{
	if (c->wlen + len > WBUF_SIZE)
		abort(); /* commands are bounded well below WBUF_SIZE */
	memcpy(c->wbuf + c->wlen, s, len);
	c->wlen += len;
}

static void
wbuf_puts(struct conn *c, const char *s)
{
	wbuf_put(c, s, strlen(s));
}

static void
send_ehlo(struct conn *c)
{
	wbuf_puts(c, "EHLO ");
	wbuf_puts(c, opt.ehlo);
	wbuf_puts(c, "\r\n");
	c->state = ST_EHLO;
}

static void
txn_start(struct conn *c)
{
	c->k_sent = 0;
	c->k_replied = 0;
	c->boff = 0;
	c->state = ST_TXN;
}

static void
send_quit(struct conn *c)
{
	wbuf_puts(c, "QUIT\r\n");
	c->state = ST_QUIT;
}

static void
after_auth(struct thread *t, struct conn *c)
{
	if (opt.idle > 0) {
		c->state = ST_HOLD;
		c->held = true;
		t->idle_setup--;
		idle_settled(true);
	} else if (opt.messages > 0) {
		txn_start(c);
	} else {
		send_quit(c);
	}
}

static void
after_ehlo(struct thread *t, struct conn *c)
{
	size_t u;

	if (opt.no_auth) {
		after_auth(t, c);
		return;
	}
	u = atomic_fetch_add(&user_next, 1) % nusers;
	wbuf_put(c, auth_lines[u], auth_lens[u]);
	c->state = ST_AUTH;
}

/* Queue the transaction commands the pipelining depth allows. */
static void
txn_emit(struct conn *c)
{
	long last = opt.rcpts + 1; /* index of DATA */
	long depth = opt.pipelining ? last + 1 : 1;
	char line[64];
	int n;

	while (c->k_sent <= last && c->k_sent - c->k_replied < depth) {
		if (c->k_sent == 0)
			n = snprintf(line, sizeof(line),
				     "MAIL FROM:<loadgen@example.test>\r\n");
		else if (c->k_sent < last)
			n = snprintf(line, sizeof(line),
				     "RCPT TO:<rcpt%ld@example.test>\r\n",
				     c->k_sent - 1);
		else
			n = snprintf(line, sizeof(line), "DATA\r\n");
		if (c->wlen + (size_t)n > WBUF_SIZE)
			return;
		wbuf_put(c, line, (size_t)n);
		c->k_sent++;
	}
}

static void
handshake_start(struct thread *t, struct conn *c, enum state next)
{
	c->ssl = SSL_new(ssl_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		c->state = ST_HANDSHAKE;
		conn_fail(t, c, CA_TLS, 0);
		return;
	}
	SSL_set_app_data(c->ssl, t);
	SSL_set_connect_state(c->ssl);
	if (opt.sni != NULL)
		SSL_set_tlsext_host_name(c->ssl, opt.sni);
	if (opt.resume && t->resume != NULL) {
		/* A copy: OpenSSL marks a TLS 1.3 session used once it
		 * resumed, and a server may send no fresh ticket. */
		SSL_SESSION *copy = SSL_SESSION_dup(t->resume);

		if (copy != NULL) {
			SSL_set_session(c->ssl, copy);
			SSL_SESSION_free(copy);
		}
	}
	c->t_hs = now_ns();
	c->after_hs = next;
	c->state = ST_HANDSHAKE;
}

/* The reply to whatever the session is waiting for. */
static void
on_reply(struct thread *t, struct conn *c, int code)
{
	int64_t now;

	switch (c->state) {
	case ST_GREETING:
		if (code != 220)
			break;
		send_ehlo(c);
		return;
	case ST_EHLO:
		if (code != 250)
			break;
		if (opt.tls == TLS_STARTTLS && !c->tls_on) {
			wbuf_puts(c, "STARTTLS\r\n");
			c->state = ST_STARTTLS;
		} else {
			after_ehlo(t, c);
		}
		return;
	case ST_STARTTLS:
		if (code != 220)
			break;
		if (c->rlen != 0) { /* plaintext after 220: injection */
			conn_fail(t, c, CA_PROTOCOL, 0);
			return;
		}
		handshake_start(t, c, ST_EHLO);
		return;
	case ST_AUTH:
		if (code != 235)
			break;
		after_auth(t, c);
		return;
	case ST_TXN:
		if (c->k_replied >= c->k_sent) {
			conn_fail(t, c, CA_PROTOCOL, 0);
			return;
		}
		if (c->k_replied == opt.rcpts + 1) {
			if (code != 354)
				break;
			c->state = ST_BODY;
			return;
		}
		if (code / 100 != 2)
			break;
		c->k_replied++;
		return;
	case ST_DOT:
		if (code != 250)
			break;
		now = now_ns();
		stats_latency(&t->st.data, now - c->t_dot);
		t->st.messages++;
		t->st.bytes += msg_size;
		if (++c->msgs >= opt.messages) {
			send_quit(c);
		} else if (think_ns > 0) {
			c->state = ST_PAUSE;
			c->resume_at = now + think_ns;
			if (t->paused++ == 0 || c->resume_at < t->next_resume)
				t->next_resume = c->resume_at;
		} else {
			txn_start(c);
		}
		return;
	case ST_QUIT:
		if (code != 221)
			break;
		now = now_ns();
		stats_latency(&t->st.session, now - c->t_start);
		t->st.ok++;
		conn_close(t, c, true);
		return;
	default:
		break;
	}
	conn_fail_code(t, c, code);
}

/* The connect's outcome, from the epoll event that reported it (events
 * of a closed session never reach a reused slot: see refill()). */
static enum step
step_connect(struct thread *t, struct conn *c, uint32_t events)
{
	if (events & (EPOLLERR | EPOLLHUP)) {
		conn_fail(t, c, CA_CONNECT, 0);
		return STEP_GONE;
	}
	if (!(events & EPOLLOUT))
		return STEP_BLOCKED; /* still connecting */
	if (opt.tls == TLS_IMPLICIT)
		handshake_start(t, c, ST_GREETING);
	else
		c->state = ST_GREETING;
	return c->state == ST_FREE ? STEP_GONE : STEP_PROGRESS;
}

static enum step
step_handshake(struct thread *t, struct conn *c)
{
	int r = SSL_do_handshake(c->ssl);

	if (r != 1) {
		if (ssl_result(c, r) == IO_AGAIN)
			return STEP_BLOCKED;
		conn_fail(t, c, CA_TLS, 0);
		return STEP_GONE;
	}
	c->tls_on = true;
	c->rdrained = false; /* read-ahead may hold records already */
	t->st.handshakes++;
	if (SSL_session_reused(c->ssl))
		t->st.resumed++;
	stats_latency(&t->st.handshake, now_ns() - c->t_hs);
	if (c->after_hs == ST_EHLO)
		send_ehlo(c);
	else
		c->state = c->after_hs;
	return STEP_PROGRESS;
}

/* Send a piece of the shared message; the last byte starts the DATA-end
 * round trip. */
static ssize_t
body_send(struct conn *c)
{
	size_t chunk = c->tls_on ? opt.tls_write : PLAIN_CHUNK;
	size_t left = msg_wire_len - c->boff;
	ssize_t n =
		io_write(c, msg_wire + c->boff, left < chunk ? left : chunk);

	if (n > 0) {
		c->boff += (size_t)n;
		if (c->boff == msg_wire_len) {
			c->t_dot = now_ns();
			c->state = ST_DOT;
		}
	}
	return n;
}

/*
 * One round of output then input; STEP_BLOCKED when both would block.
 * A plain read that came back short means the socket is empty: the next
 * read waits for the next event, saving a read() per reply (edge-triggered
 * epoll reports every arrival).  TLS reads go on until WANT_READ, since
 * OpenSSL's read-ahead buffer hides what is left in the socket.
 */
static enum step
conn_step(struct thread *t, struct conn *c, uint32_t events)
{
	bool progress = false;
	size_t used, room;
	ssize_t n;
	int code, r;

	if (c->state == ST_CONNECTING)
		return step_connect(t, c, events);
	if (c->state == ST_HANDSHAKE)
		return step_handshake(t, c);

	if (c->state == ST_TXN)
		txn_emit(c);
	if (c->woff < c->wlen) {
		n = io_write(c, c->wbuf + c->woff, c->wlen - c->woff);
		if (n == IO_ERR) {
			conn_fail(t, c, CA_IO, 0);
			return STEP_GONE;
		}
		if (n > 0) {
			progress = true;
			c->woff += (size_t)n;
			if (c->woff == c->wlen)
				c->woff = c->wlen = 0;
		}
	}
	if (c->wlen == 0 && c->state == ST_BODY) {
		n = body_send(c);
		if (n == IO_ERR) {
			conn_fail(t, c, CA_IO, 0);
			return STEP_GONE;
		}
		if (n > 0)
			progress = true;
	}

	r = reply_parse(c->rbuf, c->rlen, &used, &code);
	if (r < 0) {
		conn_fail(t, c, CA_PROTOCOL, 0);
		return STEP_GONE;
	}
	if (r > 0) {
		c->rlen -= used;
		memmove(c->rbuf, c->rbuf + used, c->rlen);
		on_reply(t, c, code);
		return c->state == ST_FREE ? STEP_GONE : STEP_PROGRESS;
	}
	if (c->rlen == RBUF_SIZE) {
		conn_fail(t, c, CA_PROTOCOL, 0); /* reply longer than 4 KB */
		return STEP_GONE;
	}
	if (c->rdrained)
		return progress ? STEP_PROGRESS : STEP_BLOCKED;
	room = RBUF_SIZE - c->rlen;
	n = io_read(c, c->rbuf + c->rlen, room);
	if (n > 0) {
		c->rlen += (size_t)n;
		if (!c->tls_on && (size_t)n < room)
			c->rdrained = true;
		return STEP_PROGRESS;
	}
	if (n == 0 || n == IO_ERR) {
		conn_fail(t, c, n == 0 ? CA_CLOSED : CA_IO, 0);
		return STEP_GONE;
	}
	c->rdrained = true;
	return progress ? STEP_PROGRESS : STEP_BLOCKED;
}

/* Run a session until it would block; events: what epoll reported, or 0
 * when the session comes back from the run queue. */
static void
conn_run(struct thread *t, struct conn *c, uint32_t events)
{
	bool progress = false;

	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->rdrained = false;
	for (int i = 0; i < STEP_LIMIT; i++) {
		switch (conn_step(t, c, events)) {
		case STEP_GONE:
			return;
		case STEP_BLOCKED:
			if (progress && c->state != ST_HOLD &&
			    c->state != ST_PAUSE)
				c->deadline = now_ns() + timeout_ns;
			return;
		case STEP_PROGRESS:
			progress = true;
			break;
		}
	}
	/* Still busy: let the others run, come back without an event. */
	c->deadline = now_ns() + timeout_ns;
	if (!c->queued) {
		c->queued = true;
		c->rq_next = t->runq;
		t->runq = c;
	}
}

static void
runq_drain(struct thread *t)
{
	struct conn *c = t->runq;

	t->runq = NULL;
	while (c != NULL) {
		struct conn *next = c->rq_next;

		c->queued = false;
		if (c->state != ST_FREE)
			conn_run(t, c, 0);
		c = next;
	}
}

static void
session_start(struct thread *t, int64_t t0)
{
	struct conn *c = t->free;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP |
					   EPOLLET};
	int one = 1;

	if (c == NULL)
		abort(); /* callers check t->active against the slots */
	t->free = c->free_next;
	t->active++;
	if (opt.idle > 0) {
		t->idle_started++;
		t->idle_setup++;
	}
	c->state = ST_CONNECTING;
	c->ssl = NULL;
	c->tls_on = false;
	c->held = false;
	c->rdrained = false;
	c->t_start = t0;
	c->deadline = now_ns() + timeout_ns;
	c->msgs = 0;
	c->k_sent = c->k_replied = 0;
	c->boff = c->woff = c->wlen = c->rlen = 0;
	c->fd = socket(target.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_fail(t, c, CA_CONNECT, 0);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&target, target_len) != 0 &&
	    errno != EINPROGRESS) {
		conn_fail(t, c, CA_CONNECT, 0);
		return;
	}
	ev.data.ptr = c;
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
		conn_fail(t, c, CA_CONNECT, 0);
}

static void
timeouts_scan(struct thread *t, int64_t now)
{
	for (long i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (c->state != ST_FREE && c->state != ST_HOLD &&
		    c->state != ST_PAUSE && now > c->deadline)
			conn_fail(t, c, CA_TIMEOUT, 0);
	}
}

/* ---------------------------------------------------------------------
 * Thread loop: start sessions as the mode allows, run events, expire.
 */

static uint64_t
rng_next(struct thread *t)
{
	uint64_t x = t->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return t->rng = x;
}

static int64_t
arrival_gap(struct thread *t)
{
	double mean = 1e9 / t->rate;
	double u;

	if (opt.arrivals == ARR_UNIFORM)
		return (int64_t)mean;
	u = (double)(rng_next(t) >> 11) / 9007199254740992.0; /* [0,1) */
	return (int64_t)(-log1p(-u) * mean);
}

static bool
may_start(int64_t now)
{
	if (atomic_load(&stop_flag) || now >= t_stop)
		return false;
	return opt.sessions == 0 ||
	       atomic_fetch_add(&sessions_started, 1) < opt.sessions;
}

/* Start what the mode allows.  Called only between event batches, so a
 * slot freed during a batch is not reused while events for its old socket
 * may still be pending in that batch. */
static void
refill(struct thread *t, int64_t now)
{
	if (opt.idle > 0) {
		while (t->idle_started < t->idle_target &&
		       t->idle_setup < t->cap && !atomic_load(&stop_flag))
			session_start(t, now_ns());
		return;
	}
	if (opt.rate > 0) {
		for (int i = 0; i < ARRIVAL_MAX && !t->arrivals_done &&
				t->next_arrival <= now;
		     i++) {
			if (!may_start(t->next_arrival)) {
				t->arrivals_done = true;
				break;
			}
			if (t->active < t->cap)
				session_start(t, t->next_arrival);
			else
				t->st.skipped++;
			t->next_arrival += arrival_gap(t);
		}
		return;
	}
	while (t->active < t->cap && !t->arrivals_done) {
		if (!may_start(now)) {
			t->arrivals_done = true;
			break;
		}
		session_start(t, now_ns());
	}
}

/* --think: start the next transaction of the sessions whose pause is
 * over.  A scan of the slots, so meant for a few slow sessions (a latency
 * probe), not for thousands. */
static void
pauses_end(struct thread *t, int64_t now)
{
	if (t->paused == 0 || now < t->next_resume)
		return;
	t->next_resume = INT64_MAX;
	for (long i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (c->state != ST_PAUSE)
			continue;
		if (c->resume_at > now) {
			if (c->resume_at < t->next_resume)
				t->next_resume = c->resume_at;
			continue;
		}
		t->paused--;
		txn_start(c);
		c->deadline = now + timeout_ns;
		conn_run(t, c, 0);
	}
}

static void
idle_release(struct thread *t, int64_t now)
{
	int64_t end = atomic_load(&hold_end);

	if (t->idle_quit_sent || end == 0 || now < end)
		return;
	t->idle_quit_sent = true;
	for (long i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (c->state != ST_HOLD)
			continue;
		send_quit(c);
		c->deadline = now + timeout_ns;
		conn_run(t, c, 0);
	}
}

static bool
thread_finished(const struct thread *t, int64_t now)
{
	if (t->active > 0)
		return false;
	if (atomic_load(&stop_flag))
		return true;
	if (opt.idle > 0)
		return t->idle_started >= t->idle_target;
	if (opt.rate > 0 && !t->arrivals_done)
		return now >= t_stop;
	return t->arrivals_done;
}

static int
wait_ms(const struct thread *t, int64_t now)
{
	int64_t wait = SCAN_NS, end;

	if (t->runq != NULL)
		return 0;
	if (opt.rate > 0 && !t->arrivals_done && t->next_arrival - now < wait)
		wait = t->next_arrival - now;
	if (t->paused > 0 && t->next_resume - now < wait)
		wait = t->next_resume - now;
	if (t_stop > now && t_stop - now < wait)
		wait = t_stop - now;
	end = atomic_load(&hold_end);
	if (opt.idle > 0 && end != 0 && !t->idle_quit_sent && end - now < wait)
		wait = end - now;
	if (wait <= 0)
		return 0;
	return (int)((wait + 999999) / 1000000);
}

static void
thread_stop(struct thread *t)
{
	for (long i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (c->state != ST_FREE) {
			c->held = true; /* no idle accounting on the way out */
			conn_close(t, c, false);
		}
	}
}

static void *
thread_main(void *arg)
{
	struct thread *t = arg;
	struct epoll_event ev[256];
	int64_t now = now_ns(), next_scan = now + SCAN_NS;

	for (;;) {
		int n;

		now = now_ns();
		if (atomic_load(&stop_flag)) {
			thread_stop(t);
			break;
		}
		refill(t, now);
		if (thread_finished(t, now))
			break;
		n = epoll_wait(t->epfd, ev, 256, wait_ms(t, now));
		for (int i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;

			if (c->state != ST_FREE)
				conn_run(t, c, ev[i].events);
		}
		runq_drain(t);
		now = now_ns();
		pauses_end(t, now);
		if (opt.idle > 0)
			idle_release(t, now);
		if (now >= next_scan) {
			timeouts_scan(t, now);
			next_scan = now + SCAN_NS;
		}
	}
	return NULL;
}

/* ---------------------------------------------------------------------
 * Setup and main
 */

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct thread *t = SSL_get_app_data(ssl);

	if (!SSL_SESSION_is_resumable(sess))
		return 0;
	if (t->resume != NULL)
		SSL_SESSION_free(t->resume);
	t->resume = sess; /* keep the reference */
	return 1;
}

static void
tls_setup(void)
{
	ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (ssl_ctx == NULL)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ssl_ctx, opt.tls_max);
	SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_options(ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
					     SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ssl_ctx, 1); /* one read() per burst */
	if (opt.resume) {
		SSL_CTX_set_session_cache_mode(
			ssl_ctx, SSL_SESS_CACHE_CLIENT |
					 SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ssl_ctx, new_session_cb);
	} else {
		SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_TICKET);
	}
}

static void
nofile_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
on_signal(int sig)
{
	(void)sig;
	atomic_store(&stop_flag, 1);
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Spread total over n threads: thread i gets its share. */
static long
share(long total, int n, int i)
{
	return total / n + (i < total % n ? 1 : 0);
}

int
main(int argc, char **argv)
{
	struct thread *threads;
	struct stats *total;
	struct sigaction sa;
	double cpu0, wall;
	int rc;

	setup_options(argc, argv);
	setup_target(&target, &target_len);
	nofile_raise();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (!opt.no_auth)
		setup_users(opt.users_file);
	if (opt.messages > 0 && opt.idle == 0)
		setup_message();
	if (opt.tls != TLS_NONE)
		tls_setup();
	if (opt.threads > opt.concurrency && opt.rate == 0 && opt.idle == 0)
		opt.threads = (int)opt.concurrency;
	if (opt.idle > 0 && opt.threads > opt.idle)
		opt.threads = (int)opt.idle;
	timeout_ns = (int64_t)(opt.timeout * 1e9);
	think_ns = (int64_t)(opt.think * 1e9);

	threads = calloc((size_t)opt.threads, sizeof(*threads));
	total = calloc(1, sizeof(*total));
	if (threads == NULL || total == NULL)
		die("out of memory");
	cpu0 = cpu_seconds();
	t_begin = now_ns();
	t_stop = opt.duration > 0 ? t_begin + (int64_t)(opt.duration * 1e9)
				  : INT64_MAX;
	for (int i = 0; i < opt.threads; i++) {
		struct thread *t = &threads[i];

		t->id = i;
		t->rng = 0x2545f4914f6cdd1dull * (uint64_t)(i + 1) ^
			 (uint64_t)t_begin;
		if (opt.idle > 0) {
			t->idle_target = share(opt.idle, opt.threads, i);
			t->cap = share(opt.concurrency, opt.threads, i);
			if (t->cap < 1)
				t->cap = 1;
			t->nconns = t->idle_target;
		} else if (opt.rate > 0) {
			t->cap = share(opt.max_inflight, opt.threads, i);
			if (t->cap < 1)
				t->cap = 1;
			t->nconns = t->cap;
			t->rate = opt.rate / opt.threads;
			t->next_arrival =
				t_begin + (int64_t)(1e9 / opt.rate) * i;
		} else {
			t->cap = share(opt.concurrency, opt.threads, i);
			t->nconns = t->cap;
		}
		t->conns = calloc((size_t)t->nconns, sizeof(struct conn));
		t->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (t->conns == NULL || t->epfd < 0)
			die("out of memory or descriptors");
		for (long k = t->nconns - 1; k >= 0; k--) {
			t->conns[k].fd = -1;
			t->conns[k].free_next = t->free;
			t->free = &t->conns[k];
		}
		if (pthread_create(&t->tid, NULL, thread_main, t) != 0)
			die("cannot start a thread");
	}
	for (int i = 0; i < opt.threads; i++) {
		pthread_join(threads[i].tid, NULL);
		stats_merge(total, &threads[i].st);
		if (threads[i].resume != NULL)
			SSL_SESSION_free(threads[i].resume);
		close(threads[i].epfd);
		free(threads[i].conns);
	}
	wall = (double)(now_ns() - t_begin) / 1e9;
	stats_report(total, wall, cpu_seconds() - cpu0, atomic_load(&idle_ok),
		     atomic_load(&stop_flag));
	rc = total->failed == 0 && total->ok > 0 ? 0 : 1;
	SSL_CTX_free(ssl_ctx);
	free(threads);
	free(total);
	return rc;
}
