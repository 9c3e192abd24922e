/*
 * metrics_http.c - GET /metrics over HTTP/1.x, non-blocking, on the main
 * thread (see metrics_http.h).
 *
 * Why not a library (libmicrohttpd): one URL, one method, no keep-alive,
 * no TLS; what a library adds is a thread that would read the server's
 * state beside the main thread (generations and the backend list change
 * there at every reload), a much larger parser facing the network, and a
 * dependency.  Here the answer is made on the thread that owns that state,
 * from counters the workers publish (counters.h), so a scrape costs the
 * workers nothing.  docs/OPERATIONS.md has the longer story.
 *
 * A connection: read the request until the blank line that ends its
 * header (METRICS_HTTP_REQUEST_MAX at most, METRICS_HTTP_TIMEOUT_MS),
 * answer, shut down our side, then read and drop what the client still
 * sends for a moment before closing (a lingering close: closing with
 * unread bytes would reset the connection and could lose the answer).
 *
 * Security stance: the request is untrusted: only its request line is
 * parsed (method, path, version) and the header lines are checked for
 * shape; nothing of it is echoed back, and it is logged through
 * log_quote().  The endpoint itself has no access control: bind it to
 * loopback or a management network (docs/OPERATIONS.md).
 *
 * Config keys: metrics.listen.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "ops/metrics.h"
#include "ops/metrics_http.h"
#include "ops/status_page.h"
#include "lib/timer.h"

#define LINGER_MS	 1000
#define ACCEPTS_PER_CALL 16
#define PEER_MAX	 (INET6_ADDRSTRLEN + 8)

enum conn_state {
	CONN_FREE,
	CONN_READ,   /* waiting for the whole request header */
	CONN_WRITE,  /* sending the answer */
	CONN_LINGER, /* answered; dropping what still comes */
};

struct http_conn {
	enum conn_state state;
	int fd;
	uint64_t deadline;
	char peer[PEER_MAX];
	size_t used;
	enum metrics_http_route route;
	char *resp;
	size_t resp_len, resp_off;
	char req[METRICS_HTTP_REQUEST_MAX];
};

struct metrics_http {
	int fd;
	metrics_body_fn *body;
	void *arg;
	struct metrics_http_status status; /* .json NULL: no status page */
	struct http_conn conns[METRICS_HTTP_CONNS];
};

/* ---------------------------------------------------------------------
 * The request (pure)
 */

static bool
is_upper_token(const char *s, size_t len)
{
	if (len == 0 || len > 16)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			return false;
	return true;
}

/* Header lines after the request line: "Name: value", no folding. */
static bool
headers_ok(const char *p, const char *end)
{
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *colon;
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len > 0) {
			colon = memchr(p, ':', len);
			if (colon == NULL || colon == p || p[0] == ' ' ||
			    p[0] == '\t')
				return false;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return true;
}

static const struct {
	const char *path;
	size_t len;
	enum metrics_http_route route;
} routes[] = {
	{"/metrics", 8, METRICS_ROUTE_METRICS},
	{"/status", 7, METRICS_ROUTE_STATUS},
	{"/status.json", 12, METRICS_ROUTE_STATUS_JSON},
};

int
metrics_http_parse(const char *req, size_t len, size_t max)
{
	enum metrics_http_route route;
	int status = metrics_http_parse_route(req, len, max, &route);

	return status == 200 && route != METRICS_ROUTE_METRICS ? 404 : status;
}

int
metrics_http_parse_route(const char *req, size_t len, size_t max,
			 enum metrics_http_route *route)
{
	size_t r;
	const char *end = NULL, *line_end, *sp1, *sp2, *target, *q;
	size_t hlen, llen, tlen;

	for (size_t i = 0; i + 1 < len && end == NULL; i++) {
		if (req[i] == '\n' && req[i + 1] == '\n')
			end = req + i + 1;
		else if (i + 3 < len && memcmp(req + i, "\r\n\r\n", 4) == 0)
			end = req + i + 2;
	}
	if (end == NULL)
		return len >= max ? 431 : 0;
	hlen = (size_t)(end - req);
	if (memchr(req, '\0', hlen) != NULL)
		return 400;
	line_end = memchr(req, '\n', hlen);
	llen = (size_t)(line_end - req);
	if (llen > 0 && req[llen - 1] == '\r')
		llen--;
	/* METHOD SP request-target SP HTTP-version (RFC 9112 3) */
	sp1 = memchr(req, ' ', llen);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', llen - (size_t)(sp1 + 1 - req)) : NULL;
	if (sp1 == NULL || sp2 == NULL ||
	    memchr(sp2 + 1, ' ', llen - (size_t)(sp2 + 1 - req)) != NULL ||
	    !is_upper_token(req, (size_t)(sp1 - req)))
		return 400;
	if ((size_t)(req + llen - (sp2 + 1)) != 8 ||
	    (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 &&
	     memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
		return 400;
	target = sp1 + 1;
	tlen = (size_t)(sp2 - target);
	if (tlen == 0 || target[0] != '/')
		return 400;
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)target[i] <= 0x20 ||
		    (unsigned char)target[i] >= 0x7f)
			return 400;
	if (!headers_ok(line_end + 1, end))
		return 400;
	q = memchr(target, '?', tlen);
	if (q != NULL)
		tlen = (size_t)(q - target);
	for (r = 0; r < sizeof(routes) / sizeof(routes[0]); r++)
		if (tlen == routes[r].len &&
		    memcmp(target, routes[r].path, tlen) == 0)
			break;
	if (r == sizeof(routes) / sizeof(routes[0]))
		return 404;
	*route = routes[r].route;
	if (sp1 - req != 3 || memcmp(req, "GET", 3) != 0)
		return 405;
	return 200;
}

/* ---------------------------------------------------------------------
 * Answers
 */

static const char *
status_text(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

/* What the status page and its JSON are sent with: the page may run its
 * own inline code and fetch status.json from here, nothing else; no
 * framing, no sniffing, no caching. */
#define STATUS_HEADERS                                                         \
	"Content-Security-Policy: default-src 'none'; "                        \
	"script-src 'unsafe-inline'; style-src 'unsafe-inline'; "              \
	"connect-src 'self'; img-src data:; base-uri 'none'; "                 \
	"form-action 'none'; frame-ancestors 'none'\r\n"                       \
	"X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n"         \
	"Referrer-Policy: no-referrer\r\nCache-Control: no-store\r\n"

/* Status line, headers and body in one buffer (NULL: out of memory). */
static char *
answer_with(int status, const char *type, const char *extra, const char *body,
	    size_t blen, size_t *len)
{
	char head[768];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n%s%s\r\n",
			 status, status_text(status), type, blen,
			 status == 405 ? "Allow: GET\r\n" : "", extra);
	char *out;

	if (n < 0 || (size_t)n >= sizeof(head))
		return NULL;
	out = malloc((size_t)n + blen);
	if (out == NULL)
		return NULL;
	memcpy(out, head, (size_t)n);
	memcpy(out + n, body, blen);
	*len = (size_t)n + blen;
	return out;
}

static char *
answer(int status, const char *type, const char *body, size_t blen, size_t *len)
{
	return answer_with(status, type, "", body, blen, len);
}

/* A short error answer, text/plain: its reason phrase. */
static char *
error_answer(int status, size_t *len)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%s\n", status_text(status));

	return answer(status, "text/plain; charset=utf-8", body, (size_t)n,
		      len);
}

/* One non-blocking try, for answers given on the way out (503, 408). */
static void
send_once(int fd, int status)
{
	size_t len;
	char *text = error_answer(status, &len);

	if (text != NULL)
		(void)send(fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(text);
}

/* ---------------------------------------------------------------------
 * Connections
 */

static void
conn_close(struct http_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->resp);
	c->resp = NULL;
	c->fd = -1;
	c->state = CONN_FREE;
}

static void
log_bad(const struct http_conn *c, int status, const char *detail)
{
	const char *nl = memchr(c->req, '\n', c->used);
	size_t llen = nl ? (size_t)(nl - c->req) : c->used;
	char q[4 * 120 + 3];

	if (llen > 0 && c->req[llen - 1] == '\r')
		llen--;
	log_warn("metrics-request-bad",
		 " client=%s status=%d request=%s detail=\"%s\"", c->peer,
		 status,
		 log_quote(q, sizeof(q), c->req, llen > 120 ? 120 : llen),
		 detail);
}

/* The request is complete (or refused): queue the answer. */
static void
respond(struct metrics_http *h, struct http_conn *c, int status)
{
	char *body = NULL;
	size_t blen = 0;
	bool status_on =
		h->status.json != NULL &&
		(h->status.enabled == NULL || h->status.enabled(h->status.arg));

	if (status == 200 && c->route != METRICS_ROUTE_METRICS && !status_on)
		status = 404;
	if (status == 200 && c->route == METRICS_ROUTE_METRICS) {
		body = h->body(h->arg, &blen);
		if (body == NULL)
			status = 500;
	} else if (status == 200 && c->route == METRICS_ROUTE_STATUS_JSON) {
		body = h->status.json(h->status.arg, &blen);
		if (body == NULL)
			status = 500;
	}
	if (status == 200 && c->route == METRICS_ROUTE_STATUS) {
		c->resp = answer_with(200, "text/html; charset=utf-8",
				      STATUS_HEADERS, status_page_html,
				      status_page_html_len, &c->resp_len);
		log_debug("status-page", " client=%s", c->peer);
	} else if (status == 200 && c->route == METRICS_ROUTE_STATUS_JSON) {
		c->resp = answer_with(200, "application/json", STATUS_HEADERS,
				      body, blen, &c->resp_len);
		log_debug("status-json", " client=%s bytes=%zu", c->peer, blen);
	} else if (status == 200) {
		c->resp = answer(200, METRICS_CONTENT_TYPE, body, blen,
				 &c->resp_len);
		log_debug("metrics-scrape", " client=%s bytes=%zu", c->peer,
			  blen);
	} else {
		c->resp = error_answer(status, &c->resp_len);
		log_bad(c, status,
			status == 404	? "only /metrics, /status and "
					  "/status.json are served"
			: status == 405 ? "only GET is allowed"
			: status == 431 ? "request header too large"
			: status == 500 ? "out of memory"
					: "malformed request");
	}
	free(body);
	if (c->resp == NULL) {
		conn_close(c);
		return;
	}
	c->resp_off = 0;
	c->state = CONN_WRITE;
	c->deadline = timer_now_ms() + METRICS_HTTP_TIMEOUT_MS;
}

static void
on_read(struct metrics_http *h, struct http_conn *c)
{
	ssize_t n = recv(c->fd, c->req + c->used, sizeof(c->req) - c->used,
			 MSG_DONTWAIT);
	int status;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* A port check (connect, close) is no error worth a warning. */
		if (c->used > 0)
			log_bad(c, 400, "closed before a complete request");
		conn_close(c);
		return;
	}
	c->used += (size_t)n;
	status = metrics_http_parse_route(c->req, c->used, sizeof(c->req),
					  &c->route);
	if (status != 0)
		respond(h, c, status);
}

static void
on_write(struct http_conn *c)
{
	while (c->resp_off < c->resp_len) {
		ssize_t n = send(c->fd, c->resp + c->resp_off,
				 c->resp_len - c->resp_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->resp_off += (size_t)n;
	}
	free(c->resp);
	c->resp = NULL;
	shutdown(c->fd, SHUT_WR);
	c->state = CONN_LINGER;
	c->deadline = timer_now_ms() + LINGER_MS;
}

static void
on_linger(struct http_conn *c)
{
	char sink[4096];
	ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		conn_close(c);
}

static void
expire(struct http_conn *c, uint64_t now)
{
	if (c->state == CONN_FREE || now < c->deadline)
		return;
	if (c->state == CONN_READ) {
		log_bad(c, 408, "no complete request in time");
		send_once(c->fd, 408);
	} else if (c->state == CONN_WRITE) {
		log_warn("metrics-send-timeout",
			 " client=%s sent=%zu bytes=%zu detail=\"the answer "
			 "was not taken in time\"",
			 c->peer, c->resp_off, c->resp_len);
	}
	conn_close(c);
}

static void
peer_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
	} else if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
	}
	snprintf(out, len, "%s:%u", host, port);
}

static void
metrics_http_accept(struct metrics_http *h)
{
	for (int k = 0; k < ACCEPTS_PER_CALL; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct http_conn *c = NULL;
		char peer[PEER_MAX];
		int fd = accept4(h->fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		peer_text(&ss, peer, sizeof(peer));
		for (int i = 0; i < METRICS_HTTP_CONNS && c == NULL; i++)
			if (h->conns[i].state == CONN_FREE)
				c = &h->conns[i];
		if (c == NULL) {
			log_warn("metrics-busy",
				 " client=%s status=503 detail=\"%d "
				 "connections already open\"",
				 peer, METRICS_HTTP_CONNS);
			send_once(fd, 503);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = CONN_READ;
		c->used = 0;
		c->deadline = timer_now_ms() + METRICS_HTTP_TIMEOUT_MS;
		memcpy(c->peer, peer, sizeof(peer));
	}
}

/* ---------------------------------------------------------------------
 * Entry points
 */

struct metrics_http *
metrics_http_open(const struct config *cfg, metrics_body_fn *body, void *arg,
		  char *err, size_t errlen)
{
	const struct config_addr *a = &cfg->metrics_listen;
	struct metrics_http *h = calloc(1, sizeof(*h));
	int one = 1, zero = 0, e;

	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->body = body;
	h->arg = arg;
	for (int i = 0; i < METRICS_HTTP_CONNS; i++)
		h->conns[i].fd = -1;
	h->fd = socket(a->ss.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0 ||
	    setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    (a->ss.ss_family == AF_INET6 &&
	     setsockopt(h->fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
			sizeof(zero))) ||
	    bind(h->fd, (const struct sockaddr *)&a->ss, a->len) != 0 ||
	    listen(h->fd, 16) != 0) {
		e = errno;
		snprintf(err, errlen, "%s:%d: metrics.listen %s: %s",
			 cfg->path ? cfg->path : "config",
			 config_key_line(cfg, "metrics.listen"), a->text,
			 strerror(e));
		metrics_http_close(h);
		return NULL;
	}
	return h;
}

void
metrics_http_set_status(struct metrics_http *h,
			const struct metrics_http_status *st)
{
	h->status = *st;
}

void
metrics_http_close(struct metrics_http *h)
{
	if (h == NULL)
		return;
	for (int i = 0; i < METRICS_HTTP_CONNS; i++)
		conn_close(&h->conns[i]);
	if (h->fd >= 0)
		close(h->fd);
	free(h);
}

size_t
metrics_http_pollfds(struct metrics_http *h, struct pollfd *pfd,
		     int *timeout_ms)
{
	uint64_t now = timer_now_ms();
	size_t n = 0;

	pfd[n++] = (struct pollfd){.fd = h->fd, .events = POLLIN};
	for (int i = 0; i < METRICS_HTTP_CONNS; i++) {
		const struct http_conn *c = &h->conns[i];
		uint64_t wait;

		if (c->state == CONN_FREE)
			continue;
		pfd[n++] = (struct pollfd){
			.fd = c->fd,
			.events = c->state == CONN_WRITE ? POLLOUT : POLLIN,
		};
		wait = c->deadline > now ? c->deadline - now : 0;
		if (*timeout_ms < 0 || wait < (uint64_t)*timeout_ms)
			*timeout_ms = (int)wait;
	}
	return n;
}

void
metrics_http_serve(struct metrics_http *h, const struct pollfd *pfd, size_t n)
{
	uint64_t now;

	if (h->status.tick != NULL)
		h->status.tick(h->status.arg);
	for (size_t k = 1; k < n; k++) {
		struct http_conn *c = NULL;

		if (pfd[k].revents == 0)
			continue;
		for (int i = 0; i < METRICS_HTTP_CONNS && c == NULL; i++)
			if (h->conns[i].state != CONN_FREE &&
			    h->conns[i].fd == pfd[k].fd)
				c = &h->conns[i];
		if (c == NULL)
			continue;
		if (c->state == CONN_READ)
			on_read(h, c);
		else if (c->state == CONN_WRITE)
			on_write(c);
		else if (c->state == CONN_LINGER)
			on_linger(c);
	}
	/* A fresh answer is tried at once: most fit the socket buffer. */
	for (int i = 0; i < METRICS_HTTP_CONNS; i++)
		if (h->conns[i].state == CONN_WRITE &&
		    h->conns[i].resp_off == 0)
			on_write(&h->conns[i]);
	if (n > 0 && (pfd[0].revents & POLLIN))
		metrics_http_accept(h);
	now = timer_now_ms();
	for (int i = 0; i < METRICS_HTTP_CONNS; i++)
		expire(&h->conns[i], now);
}
