/*
 * redis_conn.c - one connection to Redis for the cluster thread.  Read
 * redis_conn.h first.
 *
 * Security stance: Redis's replies are parsed by hiredis's reader, which
 * bounds nothing by itself; the cluster only sends commands whose replies
 * it knows the shape of (small arrays of integers, a status), and drops
 * the connection on anything else.  With cluster.tls the server's
 * certificate is verified against cluster.tls_ca (or the system's CAs)
 * and its name against cluster.tls_name (or the address).  The password
 * never appears in a log line or an error.
 *
 * Config keys: cluster.redis, cluster.tls, cluster.tls_ca,
 * cluster.tls_name (the credentials come from cluster.c).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "cluster/redis_conn.h"

uint64_t
redis_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* OpenSSL's first queued error, or what, for an err string. */
static const char *
ssl_why(char *buf, size_t len, const char *what)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		return what;
	ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

SSL_CTX *
redis_tls_ctx(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char why[256];

	if (ctx == NULL) {
		snprintf(err, errlen, "cluster.tls: %s",
			 ssl_why(why, sizeof(why), "out of memory"));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cfg->cluster_tls_ca != NULL
		    ? SSL_CTX_load_verify_locations(ctx, cfg->cluster_tls_ca,
						    NULL) != 1
		    : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "cluster.tls_ca: %s: %s",
			 cfg->cluster_tls_ca ? cfg->cluster_tls_ca
					     : "the system's CAs",
			 ssl_why(why, sizeof(why), "cannot load"));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void
redis_target_set(struct redis_target *t, const struct config *cfg)
{
	t->addr = cfg->cluster_redis;
	snprintf(t->tls_name, sizeof(t->tls_name), "%s",
		 cfg->cluster_tls_name ? cfg->cluster_tls_name : "");
}

SSL *
redis_tls_new(const struct redis_target *target, SSL_CTX *tls, char *err,
	      size_t errlen)
{
	bool by_name = target->tls_name[0] != '\0';
	const char *name = target->tls_name;
	char host[128], why[256];
	SSL *ssl;

	if (!by_name) {
		/* The address's host part: "[::1]:6379" -> "::1". */
		const char *t = target->addr.text;
		size_t n = strcspn(t + (*t == '['), *t == '[' ? "]" : ":");

		snprintf(host, sizeof(host), "%.*s", (int)n, t + (*t == '['));
		name = host;
	}
	ssl = SSL_new(tls);
	if (ssl == NULL) {
		snprintf(err, errlen, "tls: %s",
			 ssl_why(why, sizeof(why), "out of memory"));
		return NULL;
	}
	/* An address is checked against the certificate's IP addresses, a
	 * name against its DNS names (and sent as SNI). */
	if (!by_name ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
						     name) != 1
		     : SSL_set1_host(ssl, name) != 1 ||
			       SSL_set_tlsext_host_name(ssl, name) != 1) {
		snprintf(err, errlen, "tls: cannot check the name %s", name);
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_connect_state(ssl);
	return ssl;
}

/* Wait for fd to be ready for events, until the deadline. */
static int
wait_fd(int fd, short events, uint64_t deadline_us)
{
	struct pollfd p = {.fd = fd, .events = events};
	uint64_t now = redis_now_us();
	int n;

	if (now >= deadline_us)
		return -1;
	do
		n = poll(&p, 1, (int)((deadline_us - now + 999) / 1000));
	while (n < 0 && errno == EINTR);
	return n > 0 ? 0 : -1;
}

static int
connect_tcp(struct redis_conn *c, const struct config_addr *a,
	    uint64_t deadline_us, char *err, size_t errlen)
{
	int one = 1, soerr = 0;
	socklen_t sl = sizeof(soerr);

	c->fd = socket(a->ss.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (a->ss.ss_family != AF_UNIX)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (const struct sockaddr *)&a->ss, a->len) == 0)
		return 0;
	if (errno != EINPROGRESS) {
		snprintf(err, errlen, "connect %s: %s", a->text,
			 strerror(errno));
		return -1;
	}
	if (wait_fd(c->fd, POLLOUT, deadline_us) != 0) {
		snprintf(err, errlen, "connect %s: timed out", a->text);
		return -1;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 ||
	    soerr != 0) {
		snprintf(err, errlen, "connect %s: %s", a->text,
			 strerror(soerr ? soerr : errno));
		return -1;
	}
	return 0;
}

/* *wrong_peer: the server is not who the config says (its certificate
 * failed verification): a config problem, not a network one. */
static int
handshake(struct redis_conn *c, const struct redis_target *t, SSL_CTX *tls,
	  uint64_t deadline_us, bool *wrong_peer, char *err, size_t errlen)
{
	char why[256];
	int r;

	c->ssl = redis_tls_new(t, tls, err, errlen);
	if (c->ssl == NULL)
		return -1;
	if (SSL_set_fd(c->ssl, c->fd) != 1) {
		snprintf(err, errlen, "tls: %s",
			 ssl_why(why, sizeof(why), "out of memory"));
		return -1;
	}
	while ((r = SSL_connect(c->ssl)) != 1) {
		int e = SSL_get_error(c->ssl, r);
		short ev = e == SSL_ERROR_WANT_READ    ? POLLIN
			   : e == SSL_ERROR_WANT_WRITE ? POLLOUT
						       : 0;

		if (ev == 0) {
			long v = SSL_get_verify_result(c->ssl);

			if (v != X509_V_OK) {
				snprintf(err, errlen,
					 "tls: the certificate of %s: %s",
					 t->addr.text,
					 X509_verify_cert_error_string(v));
				*wrong_peer = true;
			} else
				snprintf(err, errlen, "tls: %s",
					 ssl_why(why, sizeof(why),
						 "handshake failed"));
			return -1;
		}
		if (wait_fd(c->fd, ev, deadline_us) != 0) {
			snprintf(err, errlen, "tls: handshake timed out");
			return -1;
		}
	}
	return 0;
}

int
redis_conn_open(struct redis_conn *c, const struct redis_target *t,
		SSL_CTX *tls, const char *user, const char *pass,
		uint64_t deadline_us, bool *auth_refused, char *err,
		size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	*auth_refused = false;
	c->reader = redisReaderCreate();
	if (c->reader == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (connect_tcp(c, &t->addr, deadline_us, err, errlen) != 0 ||
	    (tls != NULL &&
	     handshake(c, t, tls, deadline_us, auth_refused, err, errlen) != 0))
		goto fail;
	if (pass != NULL) {
		const char *argv[3] = {"AUTH", user, pass};
		size_t lens[3] = {4, user ? strlen(user) : 0, strlen(pass)};
		redisReply *r = NULL;
		int argc = user != NULL ? 3 : 2;

		if (user == NULL) {
			argv[1] = pass;
			lens[1] = lens[2];
		}
		if (redis_conn_call(c, argc, argv, lens, deadline_us, &r, err,
				    errlen) != 0)
			goto fail;
		if (r->type == REDIS_REPLY_ERROR) {
			/* WRONGPASS, or ERR for AUTH without a password set:
			 * say what Redis said, never what was sent. */
			snprintf(err, errlen, "AUTH refused: %.*s",
				 (int)(r->len < 200 ? r->len : 200), r->str);
			*auth_refused = true;
			freeReplyObject(r);
			goto fail;
		}
		freeReplyObject(r);
	}
	return 0;
fail:
	redis_conn_close(c);
	return -1;
}

void
redis_conn_close(struct redis_conn *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	if (c->reader != NULL)
		redisReaderFree(c->reader);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

int
redis_conn_queue(struct redis_conn *c, int argc, const char **argv,
		 const size_t *lens)
{
	char *cmd = NULL;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens);

	if (n < 0)
		return -1;
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + (size_t)n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		while (cap < c->out_len + (size_t)n)
			cap *= 2;
		p = realloc(c->out, cap);
		if (p == NULL) {
			redisFreeCommand(cmd);
			return -1;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, cmd, (size_t)n);
	c->out_len += (size_t)n;
	redisFreeCommand(cmd);
	return 0;
}

bool
redis_conn_pending(const struct redis_conn *c)
{
	return c->out_off < c->out_len || c->want_write;
}

int
redis_conn_flush(struct redis_conn *c)
{
	c->want_write = false;
	while (c->out_off < c->out_len) {
		size_t left = c->out_len - c->out_off;
		ssize_t n;

		if (c->ssl != NULL) {
			int r = SSL_write(
				c->ssl, c->out + c->out_off,
				(int)(left > INT32_MAX ? INT32_MAX : left));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_WRITE ||
				    e == SSL_ERROR_WANT_READ) {
					c->want_write = true;
					return 0;
				}
				return -1;
			}
			n = r;
		} else {
			n = send(c->fd, c->out + c->out_off, left,
				 MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return 0;
				return -1;
			}
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

int
redis_conn_read(struct redis_conn *c)
{
	char buf[16384];

	for (int i = 0; i < 64; i++) { /* then the loop looks again */
		ssize_t n;

		if (c->ssl != NULL) {
			int r = SSL_read(c->ssl, buf, sizeof(buf));

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_READ)
					return 0;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->want_write = true;
					return 0;
				}
				return -1;
			}
			n = r;
		} else {
			n = recv(c->fd, buf, sizeof(buf), 0);
			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? 0
									 : -1;
			if (n == 0)
				return -1; /* Redis closed it */
		}
		if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
			return -1;
	}
	return 0;
}

int
redis_conn_reply(struct redis_conn *c, redisReply **reply)
{
	void *r = NULL;

	if (redisReaderGetReply(c->reader, &r) != REDIS_OK)
		return -1;
	*reply = r;
	return r != NULL ? 1 : 0;
}

int
redis_conn_call(struct redis_conn *c, int argc, const char **argv,
		const size_t *lens, uint64_t deadline_us, redisReply **reply,
		char *err, size_t errlen)
{
	int got;

	*reply = NULL;
	if (redis_conn_queue(c, argc, argv, lens) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while (redis_conn_pending(c)) {
		if (redis_conn_flush(c) != 0) {
			snprintf(err, errlen, "write: connection lost");
			return -1;
		}
		if (redis_conn_pending(c) &&
		    wait_fd(c->fd, POLLOUT, deadline_us) != 0) {
			snprintf(err, errlen, "write: timed out");
			return -1;
		}
	}
	while ((got = redis_conn_reply(c, reply)) == 0) {
		if ((c->ssl == NULL || SSL_pending(c->ssl) == 0) &&
		    wait_fd(c->fd, POLLIN, deadline_us) != 0) {
			snprintf(err, errlen, "no answer in time");
			return -1;
		}
		if (redis_conn_read(c) != 0) {
			snprintf(err, errlen, "connection lost");
			return -1;
		}
	}
	if (got < 0) {
		snprintf(err, errlen, "protocol error");
		return -1;
	}
	return 0;
}
