/*
 * auth_backend.h - the one way a session asks whether a login is good,
 * whoever checks it (auth.backend; docs/AUTH.md).
 *
 *   passwd   auth.passwd_file, checked with crypt(3) by the auth_pool
 *            threads (the default);
 *   dovecot  Dovecot's auth socket (auth.dovecot.*), many requests in
 *            flight on a few connections, one thread (auth_dovecot.c);
 *   http     an nginx-style auth_http service (auth.http.*), one HTTP/1.0
 *            request per login, many at once, one thread (auth_http.c).
 *
 * A worker fills a struct auth_request (the credentials and the client's
 * facts), tries auth_backend_check_cached() and else
 * auth_backend_submit(); req->done(req) is called later on a back-end
 * thread with the verdict in req->ok / req->temp, the canonical login in
 * req->login and a reason for the log in req->reason.  The back ends know
 * nothing of workers or sessions.
 */
#ifndef MSAPROXY_AUTH_AUTH_BACKEND_H
#define MSAPROXY_AUTH_AUTH_BACKEND_H

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "smtp/sasl.h"

struct passwd_db;
struct auth_backend;

#define AUTH_REASON_MAX 128

struct auth_request {
	char user[SASL_FIELD_MAX];
	char pass[SASL_FIELD_MAX]; /* cleared by the back end after the check */
	/* The users file to check against (a reload may have a newer one
	 * than the pool's own); NULL: the pool's.  Must outlive the check.
	 * passwd back end only. */
	const struct passwd_db *db;
	/* in: refuse whatever the check says (a password longer than pass
	 * holds): the passwd back end still runs the hash, so the answer
	 * costs the same time; the others are not asked. */
	int refuse;
	/* The client's facts, for back ends that pass them on (Dovecot's
	 * rip, lip, rport, lport and secured). */
	char rip[INET6_ADDRSTRLEN], lip[INET6_ADDRSTRLEN];
	unsigned rport, lport;
	bool secured; /* the client is on TLS */
	/* More for auth_http: the mechanism ("plain", "login",
	 * "oauthbearer", "xoauth2"), the EHLO name, the TLS version and
	 * cipher, which try this is. */
	char mech[16];
	char helo[256];
	char tls_version[16], tls_cipher[64];
	unsigned attempt;
	/* OAUTHBEARER and XOAUTH2 (mech says which; NULL otherwise): the
	 * bearer token (auth_http sends it) and the client's base64 initial
	 * response (Dovecot runs the mechanism on it), NUL-terminated, in the
	 * same allocation as the request (after it): free(req) frees them.
	 * user is the login the response names.  Wiped by the back end once
	 * sent; never cached. */
	char *token, *oauth_resp;
	size_t token_len, oauth_resp_len;

	/* The verdict. */
	int ok;	    /* 1 verified, 0 refused or not known */
	int temp;   /* with ok 0: a temporary failure (454), not a refusal */
	int cached; /* 1 when ok came from the cache, no back-end work */
	/* With ok: the login as the back end names it (Dovecot's user=), ""
	 * when it kept user.  The login the limits count and XCLIENT
	 * carries.  Without ok, Dovecot's FAIL user= when it gives one: the
	 * name the failure counts under (limits.login), nothing else. */
	char login[SASL_FIELD_MAX];
	char reason[AUTH_REASON_MAX]; /* for the log only, "" none */
	/* Without ok: the SMTP reply to give instead of the default 535 or
	 * 454 ("" default; auth_http's Auth-Error-Code and Auth-Status), and
	 * how long to wait before it (Auth-Wait). */
	char reply[AUTH_REASON_MAX + 24];
	uint64_t wait_ms;
	/* Without ok, for OAUTHBEARER and XOAUTH2: the back end's JSON
	 * error status (RFC 7628 3.2.2; Dovecot's FAIL resp=, auth_http's
	 * Auth-OAuth-Status), "" none: smtp.c sends a generic one. */
	char oauth_status[SASL_STATUS_MAX + 1];
	/* With ok: the backend the back end chose (auth_http's Auth-Server
	 * and Auth-Port; "" none): it must be one of backends.servers. */
	char server[64];
	unsigned server_port;

	void (*done)(struct auth_request *req); /* on a back-end thread */
	void *owner;				/* for the caller */
	uint64_t cookie;			/* for the caller */

	/* The seam's own (auth_backend.c): its counts and the caller's
	 * done(), called after them. */
	struct auth_backend *backend;
	void (*caller_done)(struct auth_request *req);
	uint64_t submitted_us;
	/* The seam caches this back end's answers (auth.dovecot.cache_ttl,
	 * auth.http.cache_ttl): the back end leaves the password in place
	 * and the seam wipes it after storing a success. */
	bool keep_pass;

	/* The back end's own. */
	struct auth_request *next; /* queue link */
	uint32_t backend_id;	   /* Dovecot's request id */
	uint64_t deadline_ms;	   /* Dovecot: answered temp after this */
	bool backend_cont;	   /* Dovecot: the OAuth ^A was sent */
};

/* What the back end did, for the metrics (relaxed atomics). */
struct auth_backend_stats {
	atomic_ullong cache_hits; /* answered from the cache on a worker */
	atomic_ullong requests;	  /* submitted to the back end */
	atomic_ullong ok, refused, temp;
	atomic_ullong timeouts; /* temp: the back end's timeout passed */
	atomic_llong inflight;	/* submitted, not answered yet */
	atomic_ullong latency_us_sum, latency_count; /* submit to answer */
};

/* Starts the back end cfg->auth_backend names (threads, connections).
 * db is the passwd back end's users file.  NULL with err set. */
struct auth_backend *auth_backend_start(const struct config *cfg,
					struct passwd_db *db, char *err,
					size_t errlen);
/* A returning client's login answered from the cache on the caller's
 * thread: true with the verdict set, done() not called.  false: submit. */
bool auth_backend_check_cached(struct auth_backend *b,
			       struct auth_request *req);
void auth_backend_submit(struct auth_backend *b, struct auth_request *req);
/* The mechanisms (AUTH_MECH_*) the back end can check now, for EHLO: the
 * passwd back end all, Dovecot what its last handshake offered.  Stays
 * valid until auth_backend_stop(). */
const atomic_uint *auth_backend_offer(const struct auth_backend *b);
/* Which back end, for the log ("passwd", "dovecot", "http"). */
const char *auth_backend_name(const struct auth_backend *b);
const struct auth_backend_stats *
auth_backend_stats(const struct auth_backend *b);
/* Every submitted request gets its done() call, then the threads stop. */
void auth_backend_stop(struct auth_backend *b);

/* auth_request.c: for the Dovecot and auth_http threads.  The requests
 * their mailbox handed over (oldest first), each given its deadline,
 * appended to the FIFO *head .. *tail of what waits for a connection. */
void auth_request_queue(struct auth_request **head, struct auth_request **tail,
			struct auth_request *fifo, uint64_t deadline_ms);
/* The request's secrets wiped once written to the back end (the password
 * kept when the cache still needs it, the OAuth token and response). */
void auth_request_sent(struct auth_request *req);
/* The verdict (temp only when not ok; the first reason kept), then
 * done(), which may free req. */
void auth_request_answer(struct auth_request *req, int ok, int temp,
			 const char *reason);
/* Every request of the list answered temp with reason. */
void auth_request_answer_all(struct auth_request *list, const char *reason);

#endif
