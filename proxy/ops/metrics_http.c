/*
 * metrics_http.c - GET /metrics over HTTP/1.x, non-blocking, on the main
 * thread (see metrics_http.h).
 *
 * Why not a library (libmicrohttpd): a few URLs, two methods, no
 * keep-alive, TLS through OpenSSL as the listeners have it; what a library
 * adds is a thread that would read the server's
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
 * log_quote().  The read-only endpoint has no access control: bind it to
 * loopback or a management network (docs/OPERATIONS.md).  The admin
 * actions (metrics.admin, off by default) are refused to any peer but
 * loopback unless the endpoint speaks TLS (metrics.tls), before anything
 * else; then they need a login of the users file or of
 * metrics.admin_users (Authorization: Basic, the password wiped after the
 * check) and,
 * for a POST, the login's CSRF token (compared in constant time) and no
 * foreign Origin.  Their form is at most ACTION_BODY_MAX bytes, read only
 * within its Content-Length and the request buffer.
 *
 * With metrics.tls every connection is TLS (1.2 and up, the certificate
 * and key read at start): the handshake runs non-blocking in the same
 * poll loop and under the same time limit; a client that speaks plain
 * HTTP to it gets no answer (msg=metrics-tls-failed), and the 503 and
 * 408 given on the way out are not sent in clear into a TLS stream.
 *
 * Config keys: metrics.listen, metrics.tls.cert, metrics.tls.key,
 * metrics.status, metrics.admin (through the callbacks of
 * metrics_http_set_status()).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "lib/json.h"
#include "lib/log.h"
#include "ops/metrics.h"
#include "ops/metrics_http.h"
#include "ops/status_page.h"
#include "lib/timer.h"

#define LINGER_MS	 1000
#define ACCEPTS_PER_CALL 16
#define PEER_MAX	 (INET6_ADDRSTRLEN + 8)
#define ACTION_BODY_MAX	 1024 /* an admin action's form */
#define FIELD_MAX	 256
#define TOKEN_HEX	 64 /* HMAC-SHA256, hex */

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
	bool local; /* a loopback peer: may use the admin actions */
	SSL *ssl;   /* metrics.tls: the connection's TLS, else NULL */
	short want; /* TLS waits for this poll event (0: the state's) */
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
	unsigned char csrf_key[32];	   /* drawn at open */
	SSL_CTX *tls;			   /* metrics.tls, or NULL: plain */
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
	{"/status/action", 14, METRICS_ROUTE_ACTION},
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
	if (*route == METRICS_ROUTE_ACTION)
		return sp1 - req == 4 && memcmp(req, "POST", 4) == 0 ? 200
								     : 405;
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
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
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
			 status == 405 && strstr(extra, "Allow:") == NULL
				 ? "Allow: GET\r\n"
				 : "",
			 extra);
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
 * The admin actions (pure helpers first)
 */

bool
metrics_http_local_peer(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;

		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		const uint8_t *b = a->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && b[12] == 127;
	}
	return false;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool
metrics_http_form_field(const char *body, size_t len, const char *name,
			char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *p = body, *end = body + len;

	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *fend = amp ? amp : end;
		size_t o = 0;

		if ((size_t)(fend - p) > nlen && memcmp(p, name, nlen) == 0 &&
		    p[nlen] == '=') {
			for (const char *v = p + nlen + 1; v < fend; v++) {
				int c = (unsigned char)*v, hi, lo;

				if (c == '+')
					c = ' ';
				else if (c == '%') {
					if (fend - v < 3 ||
					    (hi = hexval(v[1])) < 0 ||
					    (lo = hexval(v[2])) < 0)
						return false;
					c = hi * 16 + lo;
					v += 2;
				}
				if (c == 0 || c < 0x20 || c == 0x7f ||
				    o + 1 >= outlen)
					return false;
				out[o++] = (char)c;
			}
			out[o] = '\0';
			return true;
		}
		p = fend + 1;
	}
	return false;
}

/* The end of the request header (the blank line's end), 0 if none. */
static size_t
header_len(const char *req, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (req[i] == '\n' && req[i + 1] == '\n')
			return i + 2;
		if (i + 3 < len && memcmp(req + i, "\r\n\r\n", 4) == 0)
			return i + 4;
	}
	return 0;
}

/* A header's value (name without its colon, any case), trimmed; NULL if
 * absent. */
static const char *
header_value(const char *req, size_t hlen, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *p = memchr(req, '\n', hlen), *end = req + hlen;

	while (p != NULL && ++p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;

		if ((size_t)(le - p) > nlen &&
		    strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			const char *v = p + nlen + 1;

			while (v < le && (*v == ' ' || *v == '\t'))
				v++;
			while (le > v && (le[-1] == '\r' || le[-1] == ' ' ||
					  le[-1] == '\t'))
				le--;
			*vlen = (size_t)(le - v);
			return v;
		}
		p = nl;
	}
	return NULL;
}

/* The CSRF token of user: hex HMAC-SHA256 under the process's key. */
static void
csrf_token(const struct metrics_http *h, const char *user,
	   char out[TOKEN_HEX + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	if (HMAC(EVP_sha256(), h->csrf_key, sizeof(h->csrf_key),
		 (const unsigned char *)user, strlen(user), md, &mdlen) == NULL)
		mdlen = 0;
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", i < mdlen ? md[i] : 0);
}

/* Basic credentials checked against the users file: the login into user,
 * or false. */
static bool
basic_login(struct metrics_http *h, const struct http_conn *c, size_t hlen,
	    char *user, size_t userlen)
{
	size_t vlen = 0, n;
	const char *v = header_value(c->req, hlen, "authorization", &vlen);
	unsigned char dec[384];
	char *colon;
	int len;
	bool ok;

	if (v == NULL || vlen < 7 || strncasecmp(v, "Basic ", 6) != 0)
		return false;
	v += 6;
	vlen -= 6;
	if (vlen == 0 || vlen % 4 != 0 || vlen / 4 * 3 >= sizeof(dec))
		return false;
	len = EVP_DecodeBlock(dec, (const unsigned char *)v, (int)vlen);
	if (len < 0)
		return false;
	n = (size_t)len;
	for (size_t k = vlen; k > 0 && v[k - 1] == '=' && n > 0; k--)
		n--; /* the padding decodes to zeros */
	dec[n] = '\0';
	if (memchr(dec, '\0', n) != NULL)
		return false;
	colon = strchr((char *)dec, ':');
	if (colon == NULL || colon == (char *)dec ||
	    (size_t)(colon - (char *)dec) >= userlen)
		return false;
	*colon = '\0';
	ok = h->status.login(h->status.arg, (char *)dec, colon + 1) == 1;
	if (ok)
		memcpy(user, dec, (size_t)(colon - (char *)dec) + 1);
	OPENSSL_cleanse(dec, sizeof(dec));
	return ok;
}

/* A browser's Origin, when it sends one, must be this endpoint. */
static bool
origin_ok(const struct http_conn *c, size_t hlen)
{
	size_t olen = 0, hl = 0;
	const char *o = header_value(c->req, hlen, "origin", &olen);
	const char *host = header_value(c->req, hlen, "host", &hl);

	const char *scheme = c->ssl != NULL ? "https://" : "http://";
	size_t sl = strlen(scheme);

	if (o == NULL)
		return true;
	return host != NULL && olen == sl + hl && memcmp(o, scheme, sl) == 0 &&
	       memcmp(o + sl, host, hl) == 0;
}

/* ---------------------------------------------------------------------
 * Connections
 */

static void
conn_close(struct http_conn *c)
{
	SSL_free(c->ssl);
	c->ssl = NULL;
	c->want = 0;
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

/* Does the request ask for the admin view (GET /status.json?admin)? */
static bool
wants_admin(const struct http_conn *c)
{
	const char *sp = memchr(c->req, ' ', c->used);
	const char *end =
		sp ? memchr(sp + 1, ' ', c->used - (size_t)(sp + 1 - c->req))
		   : NULL;
	const char *q = sp && end ? memchr(sp, '?', (size_t)(end - sp)) : NULL;

	return q != NULL && (size_t)(end - q) >= 6 &&
	       memcmp(q + 1, "admin", 5) == 0;
}

/* An answer with a small JSON body: {"ok":true} or {"error":"why"}. */
static char *
json_answer(int status, const char *extra, const char *error, size_t *len)
{
	char *text = NULL, *out;
	size_t tlen = 0;
	FILE *f = open_memstream(&text, &tlen);

	if (f == NULL)
		return NULL;
	if (error == NULL)
		fputs("{\"ok\":true}\n", f);
	else {
		fputs("{\"error\":", f);
		json_str(f, error);
		fputs("}\n", f);
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	out = answer_with(status, "application/json", extra, text, tlen, len);
	free(text);
	return out;
}

#define AUTH_CHALLENGE                                                         \
	STATUS_HEADERS                                                         \
	"WWW-Authenticate: Basic realm=\"msaproxy status\", "                  \
	"charset=\"UTF-8\"\r\n"

/* GET /status.json?admin and POST /status/action: loopback, a login of
 * the users file, and for an action its CSRF token and a same-origin
 * Origin.  Fills c->resp; false when the request is not an admin one
 * after all (metrics.admin off: the plain answer). */
static bool
respond_admin(struct metrics_http *h, struct http_conn *c)
{
	size_t hlen = header_len(c->req, c->used), clen = 0, vlen;
	char user[128], quoted[4 * 128 + 3], tok[TOKEN_HEX + 1];
	char csrf[FIELD_MAX], op[FIELD_MAX], target[FIELD_MAX], ttl[FIELD_MAX];
	char err[256] = "";
	const char *body = c->req + hlen, *v;
	bool admin_on =
		h->status.admin_on != NULL && h->status.admin_on(h->status.arg);

	if (!admin_on && c->route != METRICS_ROUTE_ACTION)
		return false;
	if (!admin_on) {
		c->resp =
			json_answer(404, STATUS_HEADERS,
				    "the admin actions are off (metrics.admin)",
				    &c->resp_len);
		log_bad(c, 404, "metrics.admin is off");
		return true;
	}
	if (!c->local && c->ssl == NULL) {
		c->resp = json_answer(403, STATUS_HEADERS,
				      "admin actions over TLS (metrics.tls) "
				      "or from loopback only",
				      &c->resp_len);
		log_bad(c, 403, "admin from a non-loopback peer without TLS");
		return true;
	}
	if (!basic_login(h, c, hlen, user, sizeof(user))) {
		c->resp = json_answer(401, AUTH_CHALLENGE,
				      "a login of the users file is needed",
				      &c->resp_len);
		log_bad(c, 401, "no or wrong credentials");
		return true;
	}
	log_quote(quoted, sizeof(quoted), user, strlen(user));
	csrf_token(h, user, tok);
	if (c->route == METRICS_ROUTE_STATUS_JSON) {
		size_t blen = 0;
		char *json = h->status.json(h->status.arg, &blen), *text = NULL;
		size_t tlen = 0;
		FILE *f = json != NULL && blen >= 2
				  ? open_memstream(&text, &tlen)
				  : NULL;

		if (f != NULL) {
			fwrite(json, 1, blen - 2, f); /* its closing "}\n" */
			fputs(",\"admin\":{\"user\":", f);
			json_str(f, user);
			fprintf(f, ",\"csrf\":\"%s\"}}\n", tok);
			if (fclose(f) == 0)
				c->resp = answer_with(200, "application/json",
						      STATUS_HEADERS, text,
						      tlen, &c->resp_len);
		}
		free(json);
		free(text);
		log_debug("status-json", " client=%s user=%s admin=1", c->peer,
			  quoted);
		return true;
	}
	v = header_value(c->req, hlen, "content-length", &vlen);
	if (v != NULL)
		clen = (size_t)strtoull(v, NULL, 10);
	if (!origin_ok(c, hlen) ||
	    !metrics_http_form_field(body, clen, "csrf", csrf, sizeof(csrf)) ||
	    strlen(csrf) != TOKEN_HEX ||
	    CRYPTO_memcmp(csrf, tok, TOKEN_HEX) != 0) {
		c->resp = json_answer(403, STATUS_HEADERS,
				      "missing or wrong CSRF token (or Origin)",
				      &c->resp_len);
		log_warn("status-admin",
			 " client=%s user=%s result=refused "
			 "detail=\"bad CSRF token or Origin\"",
			 c->peer, quoted);
		return true;
	}
	if (!metrics_http_form_field(body, clen, "op", op, sizeof(op)) ||
	    !metrics_http_form_field(body, clen, "target", target,
				     sizeof(target)))
		snprintf(err, sizeof(err), "op and target are needed");
	else if (!metrics_http_form_field(body, clen, "ttl", ttl, sizeof(ttl)))
		ttl[0] = '\0';
	if (err[0] == '\0' && h->status.action(h->status.arg, user, op, target,
					       ttl, err, sizeof(err)) == 0) {
		c->resp = json_answer(200, STATUS_HEADERS, NULL, &c->resp_len);
		return true;
	}
	c->resp = json_answer(400, STATUS_HEADERS, err, &c->resp_len);
	return true;
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
	if (status == 200 &&
	    (c->route == METRICS_ROUTE_ACTION ||
	     (c->route == METRICS_ROUTE_STATUS_JSON && wants_admin(c))) &&
	    respond_admin(h, c)) {
		if (c->resp == NULL) {
			conn_close(c);
			return;
		}
		c->resp_off = 0;
		c->state = CONN_WRITE;
		c->deadline = timer_now_ms() + METRICS_HTTP_TIMEOUT_MS;
		return;
	}
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
	} else if (status == 405 && c->route == METRICS_ROUTE_ACTION) {
		c->resp = answer_with(405, "text/plain; charset=utf-8",
				      "Allow: POST\r\n", "Method Not Allowed\n",
				      19, &c->resp_len);
		log_bad(c, 405, "only POST is allowed there");
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

/* What an SSL_read() or SSL_write() that returned n <= 0 means: -1 with
 * errno EAGAIN (c->want says which poll event to wait for), 0 closed,
 * -1 with EPROTO (logged) for a TLS error. */
static ssize_t
tls_result(struct http_conn *c, int n)
{
	char e[256];

	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_READ:
		c->want = POLLIN;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		c->want = POLLOUT;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		ERR_error_string_n(ERR_peek_last_error(), e, sizeof(e));
		log_info("metrics-tls-failed", " client=%s error=\"%s\"",
			 c->peer,
			 ERR_peek_last_error() ? e : "connection lost");
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

/* recv(), or SSL_read() (the handshake first) with metrics.tls. */
static ssize_t
conn_recv(struct http_conn *c, void *buf, size_t len)
{
	int n;

	c->want = 0;
	if (c->ssl == NULL)
		return recv(c->fd, buf, len, MSG_DONTWAIT);
	ERR_clear_error();
	n = SSL_read(c->ssl, buf, (int)len);
	return n > 0 ? n : tls_result(c, n);
}

static ssize_t
conn_send(struct http_conn *c, const void *buf, size_t len)
{
	int n;

	c->want = 0;
	if (c->ssl == NULL)
		return send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	ERR_clear_error();
	n = SSL_write(c->ssl, buf, (int)len);
	return n > 0 ? n : tls_result(c, n);
}

static void
on_read(struct metrics_http *h, struct http_conn *c)
{
	ssize_t n = conn_recv(c, c->req + c->used, sizeof(c->req) - c->used);
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
	if (status == 200 && c->route == METRICS_ROUTE_ACTION) {
		/* An action's form follows the header: Content-Length of it. */
		size_t hlen = header_len(c->req, c->used), vlen = 0;
		const char *v =
			header_value(c->req, hlen, "content-length", &vlen);
		char *e = NULL;
		unsigned long long clen = v ? strtoull(v, &e, 10) : 0;

		if (v == NULL || vlen == 0 || e != v + vlen ||
		    clen > ACTION_BODY_MAX) {
			log_bad(c, 400,
				"an action needs Content-Length <= 1024");
			c->resp = error_answer(400, &c->resp_len);
			if (c->resp == NULL) {
				conn_close(c);
				return;
			}
			c->resp_off = 0;
			c->state = CONN_WRITE;
			c->deadline = timer_now_ms() + METRICS_HTTP_TIMEOUT_MS;
			return;
		}
		if (c->used < hlen + clen)
			return; /* the rest of the form */
	}
	if (status != 0)
		respond(h, c, status);
}

static void
on_write(struct http_conn *c)
{
	while (c->resp_off < c->resp_len) {
		ssize_t n = conn_send(c, c->resp + c->resp_off,
				      c->resp_len - c->resp_off);

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
	if (c->ssl != NULL) /* close_notify, one try: the answer is out */
		(void)SSL_shutdown(c->ssl);
	c->want = 0;
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
		if (c->ssl == NULL) /* no plain text into a TLS stream */
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
			if (h->tls == NULL)
				send_once(fd, 503);
			close(fd);
			continue;
		}
		if (h->tls != NULL && (c->ssl = SSL_new(h->tls)) == NULL) {
			close(fd);
			continue;
		}
		if (c->ssl != NULL) {
			SSL_set_fd(c->ssl, fd);
			SSL_set_accept_state(c->ssl);
		}
		c->fd = fd;
		c->local = metrics_http_local_peer(&ss);
		c->state = CONN_READ;
		c->used = 0;
		c->deadline = timer_now_ms() + METRICS_HTTP_TIMEOUT_MS;
		memcpy(c->peer, peer, sizeof(peer));
	}
}

/* ---------------------------------------------------------------------
 * Entry points
 */

/* metrics.tls: the endpoint's certificate chain and key (TLS 1.2 and
 * up), read at start; NULL with "file:line: metrics.tls.KEY: why". */
static SSL_CTX *
tls_ctx(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char e[256] = "out of memory";

	ERR_clear_error();
	if (ctx == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail_cert;
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->metrics_tls_cert) !=
	    1) {
		ERR_error_string_n(ERR_peek_last_error(), e, sizeof(e));
		goto fail_cert;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->metrics_tls_key,
					SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_error_string_n(ERR_peek_last_error(), e, sizeof(e));
		config_fail(cfg, "metrics.tls.key", "metrics.tls", err, errlen,
			    "%s: %s", cfg->metrics_tls_key, e);
		goto fail;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	ERR_clear_error();
	return ctx;
fail_cert:
	config_fail(cfg, "metrics.tls.cert", "metrics.tls", err, errlen,
		    "%s: %s", cfg->metrics_tls_cert, e);
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

int
metrics_http_check_tls(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (cfg->metrics_tls_cert == NULL)
		return 0;
	ctx = tls_ctx(cfg, err, errlen);
	SSL_CTX_free(ctx);
	return ctx != NULL ? 0 : -1;
}

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
	if (RAND_bytes(h->csrf_key, sizeof(h->csrf_key)) != 1) {
		snprintf(err, errlen,
			 "metrics.listen: no random bytes for the "
			 "CSRF key");
		free(h);
		return NULL;
	}
	for (int i = 0; i < METRICS_HTTP_CONNS; i++)
		h->conns[i].fd = -1;
	h->fd = -1;
	if (cfg->metrics_tls_cert != NULL &&
	    (h->tls = tls_ctx(cfg, err, errlen)) == NULL) {
		metrics_http_close(h);
		return NULL;
	}
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
	SSL_CTX_free(h->tls);
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
			.events = c->want		   ? c->want
				  : c->state == CONN_WRITE ? POLLOUT
							   : POLLIN,
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
