/*
 * redis_conn.h - one connection to Redis, plain or TLS, for the cluster
 * thread: connect (with AUTH), write formatted commands, read replies.
 *
 * Commands are RESP, formatted by hiredis (redisFormatCommandArgv); replies
 * are parsed by hiredis's reader.  The I/O is ours, non-blocking, so the
 * thread can wait on the connection and its mailbox at once.  Every call
 * that may wait takes a deadline (CLOCK_MONOTONIC microseconds).
 */
#ifndef MSAPROXY_REDIS_CONN_H
#define MSAPROXY_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "config/config.h"

struct redis_conn {
	int fd;
	SSL *ssl;	     /* NULL: plain TCP */
	redisReader *reader; /* replies as they come */
	char *out;	     /* formatted commands not yet written */
	size_t out_len, out_cap, out_off;
	bool want_write; /* SSL needs the socket writable to go on */
};

/* Where Redis is: copied from the config at start, because a reload
 * frees the config while the connection lives on (cluster.* is
 * restart-only). */
struct redis_target {
	struct config_addr addr; /* cluster.redis */
	char tls_name[256];	 /* cluster.tls_name; "": check the address */
};
void redis_target_set(struct redis_target *t, const struct config *cfg);

/* An SSL_CTX for cfg's cluster.tls (NULL with err when it cannot be had). */
SSL_CTX *redis_tls_ctx(const struct config *cfg, char *err, size_t errlen);

/* A client SSL for Redis from tls, set to verify the name or address
 * t gives (NULL with err). */
SSL *redis_tls_new(const struct redis_target *t, SSL_CTX *tls, char *err,
		   size_t errlen);

/* Connects, and logs in with user/pass when pass is not NULL.  0, or -1
 * with err: *auth_refused says Redis refused the credentials, or its
 * certificate failed verification (the config is wrong, not the
 * network). */
int redis_conn_open(struct redis_conn *c, const struct redis_target *t,
		    SSL_CTX *tls, const char *user, const char *pass,
		    uint64_t deadline_us, bool *auth_refused, char *err,
		    size_t errlen);
void redis_conn_close(struct redis_conn *c);

/* Queue one command (argv, lengths; lens NULL: each argv is a C string)
 * for the next write.  -1: no memory. */
int redis_conn_queue(struct redis_conn *c, int argc, const char **argv,
		     const size_t *lens);
/* Write what is queued without waiting: 0 (maybe some left), -1 broken. */
int redis_conn_flush(struct redis_conn *c);
bool redis_conn_pending(const struct redis_conn *c);
/* Read what has arrived without waiting: 0, or -1 when the connection
 * broke.  Then redis_conn_reply() hands out the replies one by one. */
int redis_conn_read(struct redis_conn *c);
/* 1 with *reply (free it with freeReplyObject), 0 for none yet, -1 on a
 * protocol error. */
int redis_conn_reply(struct redis_conn *c, redisReply **reply);

/* One command and its reply, waiting up to the deadline (setup calls). */
int redis_conn_call(struct redis_conn *c, int argc, const char **argv,
		    const size_t *lens, uint64_t deadline_us,
		    redisReply **reply, char *err, size_t errlen);

uint64_t redis_now_us(void);

#endif
