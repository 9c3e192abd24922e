/*
 * metrics_http.h - the Prometheus endpoint: a minimal HTTP/1.x responder
 * on the main thread's poll loop (server.c), for exactly one request,
 * GET /metrics.
 *
 * Bounded in every way a client could push: at most METRICS_HTTP_CONNS
 * connections at once (more get 503 and are closed), a request of at most
 * METRICS_HTTP_REQUEST_MAX bytes (431 past it), METRICS_HTTP_TIMEOUT_MS
 * to send it (408) and as long again to take the answer, one request per
 * connection (Connection: close).  Every socket is non-blocking, so a slow
 * or silent client never holds the main thread, let alone a worker.
 * Anything but GET /metrics (a query string is ignored) gets 404, 405
 * (with Allow: GET) or 400, and a log line.
 *
 * With metrics_http_set_status() (and metrics.status on, checked at each
 * request) it also serves GET /status, the status page (status_page.c),
 * and GET /status.json, its data (server_overview.c), with headers that
 * keep the page to itself (Content-Security-Policy: nothing but its own
 * inline code and status.json, no framing, no caching).
 *
 * With metrics.admin on too, POST /status/action (ban, unban, backend
 * enable/disable) from loopback peers only (any peer with metrics.tls),
 * with HTTP basic auth against the users file (or metrics.admin_users)
 * and a CSRF token: HMAC-SHA256 of the login under a key
 * drawn at start, handed out by GET /status.json?admin to that login.
 *
 * Config keys: metrics.listen, metrics.tls.
 */
#ifndef MSAPROXY_METRICS_HTTP_H
#define MSAPROXY_METRICS_HTTP_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

#define METRICS_HTTP_CONNS	 8
#define METRICS_HTTP_REQUEST_MAX 8192
#define METRICS_HTTP_TIMEOUT_MS	 5000
/* What metrics_http_pollfds() may fill: the listener and each client. */
#define METRICS_HTTP_POLLFDS (1 + METRICS_HTTP_CONNS)

struct metrics_http;

/* The body of a 200 answer, malloc'd (NULL: out of memory, 500). */
typedef char *metrics_body_fn(void *arg, size_t *len);

/* The status page's JSON, whether it is on now, and a call at every turn
 * of the poll loop (its history's sampling), all with arg. */
struct metrics_http_status {
	metrics_body_fn *json;
	bool (*enabled)(void *arg);
	void (*tick)(void *arg);
	/* The admin actions (metrics.admin): whether they are on now, a
	 * login against the users file (1: good), and one action (0: done;
	 * -1 with why in err). */
	bool (*admin_on)(void *arg);
	int (*login)(void *arg, const char *user, const char *pass);
	int (*action)(void *arg, const char *user, const char *op,
		      const char *target, const char *ttl, char *err,
		      size_t errlen);
	void *arg;
};

enum metrics_http_route {
	METRICS_ROUTE_METRICS,
	METRICS_ROUTE_STATUS,	   /* /status: the page */
	METRICS_ROUTE_STATUS_JSON, /* /status.json */
	METRICS_ROUTE_ACTION,	   /* POST /status/action (metrics.admin) */
};

/* metrics.tls (none: 0): the certificate and key load and match, as the
 * start will need them; -1 with "FILE:LINE: metrics.tls.KEY: why". */
struct config;
int metrics_http_check_tls(const struct config *cfg, char *err, size_t errlen);

/* Pure, for tests: is this peer loopback (the admin actions' condition
 * when the endpoint has no TLS)? */
struct sockaddr_storage;
bool metrics_http_local_peer(const struct sockaddr_storage *ss);

/* Pure, for tests: the value of form field name in an
 * application/x-www-form-urlencoded body, decoded into out (NUL-ended);
 * false when absent, too long or badly encoded. */
bool metrics_http_form_field(const char *body, size_t len, const char *name,
			     char *out, size_t outlen);

/* Bind cfg->metrics_listen; NULL with "FILE:LINE: metrics.listen ADDR:
 * why" in err. */
struct metrics_http *metrics_http_open(const struct config *cfg,
				       metrics_body_fn *body, void *arg,
				       char *err, size_t errlen);
void metrics_http_close(struct metrics_http *h);
/* Serve /status and /status.json too (st is copied). */
void metrics_http_set_status(struct metrics_http *h,
			     const struct metrics_http_status *st);

/* The sockets to poll, into pfd (room for METRICS_HTTP_POLLFDS): returns
 * how many; lowers *timeout_ms to the earliest deadline. */
size_t metrics_http_pollfds(struct metrics_http *h, struct pollfd *pfd,
			    int *timeout_ms);
/* After poll(): serve what is ready (pfd and n as filled above) and end
 * the connections past their deadline. */
void metrics_http_serve(struct metrics_http *h, const struct pollfd *pfd,
			size_t n);

/*
 * Pure, for tests: the status for the request bytes so far (len of them,
 * in a buffer of max): 0 when the header is not complete yet, 200 for
 * GET /metrics, else 400, 404, 405 or 431 (max bytes and no end).
 */
int metrics_http_parse(const char *req, size_t len, size_t max);
/* The same for every path served (/metrics, /status, /status.json):
 * *route says which when 200. */
int metrics_http_parse_route(const char *req, size_t len, size_t max,
			     enum metrics_http_route *route);

#endif
