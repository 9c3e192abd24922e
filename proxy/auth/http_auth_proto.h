/*
 * http_auth_proto.h - nginx's mail auth_http protocol, client side, as
 * pure functions (nginx.org/en/docs/mail/ngx_mail_auth_http_module.html):
 * the request formatted into a buffer, the reply's headers parsed.
 *
 *   GET <path> HTTP/1.0
 *   Host: <host>
 *   Auth-Method: plain | login | oauthbearer | xoauth2
 *   Auth-User: <escaped>        Auth-Pass: <escaped>
 *     (oauthbearer, xoauth2: Auth-User the login the client named,
 *     Auth-Pass the bearer token; nginx has no such methods)
 *   Auth-Protocol: smtp         Auth-Login-Attempt: <n>
 *   Client-IP: <ip>             Client-Host: [UNAVAILABLE]
 *   Auth-SSL: on, Auth-SSL-Protocol, Auth-SSL-Cipher (on TLS)
 *   Auth-SMTP-Helo: <escaped>
 *
 * Escaping is nginx's for these headers: bytes 0x00-0x20 and '%' become
 * %XX (upper-case hex); anything else goes as it is.
 *
 * The reply: HTTP 200 with Auth-Status: OK (optionally Auth-User, the
 * login to use; Auth-Server and Auth-Port), or with Auth-Status: <text>
 * (optionally Auth-Wait: <seconds>, Auth-Error-Code: <code>, and for the
 * OAuth methods Auth-OAuth-Status: <JSON object>, RFC 7628's status).  Anything
 * else (another status, no Auth-Status, a malformed header block) is a
 * temporary failure.  No sockets, no clock, no logging.
 */
#ifndef MSAPROXY_AUTH_HTTP_AUTH_PROTO_H
#define MSAPROXY_AUTH_HTTP_AUTH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "smtp/sasl.h"

/* The reply's header block must fit this; a longer one is refused. */
#define HTTP_AUTH_REPLY_MAX 8192
#define HTTP_AUTH_TEXT_MAX  128
/* The request must fit this: a bearer token of SASL_TOKEN_MAX and the
 * rest of the headers. */
#define HTTP_AUTH_REQUEST_MAX (SASL_TOKEN_MAX + 4096)

struct http_auth_args {
	const char *host, *path; /* Host header and request target */
	const char *method; /* "plain", "login", "oauthbearer", "xoauth2" */
	const char *user, *pass, *helo;
	const char *client_ip;
	unsigned attempt; /* Auth-Login-Attempt, from 1 */
	bool ssl;
	const char *ssl_protocol, *ssl_cipher; /* NULL or "" to leave out */
};

/* The request; its length (NUL-terminated), -1 if it does not fit or host
 * or path hold a control byte or space.  Holds the password: the caller
 * wipes out. */
ssize_t http_auth_format(char *out, size_t outsize,
			 const struct http_auth_args *a);
/* nginx's escaping of src into out; the length, or -1 if no room. */
ssize_t http_auth_escape(const char *src, size_t len, char *out,
			 size_t outsize);

enum http_auth_parse {
	HTTP_AUTH_MORE, /* the header block has not ended yet */
	HTTP_AUTH_DONE, /* *out is filled */
	HTTP_AUTH_BAD,	/* not an HTTP reply, or too long */
};

struct http_auth_reply {
	int http_status;
	bool has_status; /* an Auth-Status header came */
	bool ok;	 /* Auth-Status: OK */
	/* Auth-Status when not OK: printable ASCII only (others become
	 * '?'), cut to fit.  nginx sends it to the client; so does this. */
	char status_text[HTTP_AUTH_TEXT_MAX];
	char user[SASL_FIELD_MAX]; /* Auth-User; "" none (or unusable) */
	char server[64];	   /* Auth-Server; "" none */
	unsigned port;		   /* Auth-Port; 0 none */
	int wait_s;		   /* Auth-Wait in seconds; -1 none */
	/* Auth-Error-Code when it is "4xx" or "5xx", optionally followed by
	 * an enhanced code ("535 5.7.8"); "" none or not of that shape. */
	char error_code[16];
	/* Auth-OAuth-Status: a JSON object of printable ASCII that fits;
	 * "" none (or unfit). */
	char oauth_status[SASL_STATUS_MAX + 1];
};

/* Parses what arrived so far (buf[0..len)); eof: the server closed. */
enum http_auth_parse http_auth_parse(const char *buf, size_t len, bool eof,
				     struct http_auth_reply *out);

#endif
