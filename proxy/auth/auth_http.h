/*
 * auth_http.h - logins checked by an nginx-style auth_http service
 * (auth.backend: http; docs/AUTH.md).
 *
 * One thread multiplexes with poll() up to auth.http.connections HTTP/1.0
 * requests at once, one connection each (as nginx does): workers drop
 * requests in a mailbox and ring an eventfd; the thread connects to
 * auth.http.url, sends the GET with nginx's headers
 * (http_auth_proto.h), reads the reply's headers and answers through
 * req->done().  A refused connection, a status other than 200, a reply
 * without Auth-Status, or auth.http.timeout passing: temp (454 4.7.0).
 */
#ifndef MSAPROXY_AUTH_AUTH_HTTP_H
#define MSAPROXY_AUTH_AUTH_HTTP_H

#include <stddef.h>

#include "auth/auth_backend.h"
#include "config/config.h"

struct auth_http;

struct auth_http *auth_http_start(const struct config *cfg, char *err,
				  size_t errlen);
void auth_http_submit(struct auth_http *h, struct auth_request *req);
/* Answers every request still waiting (temp), then stops.  NULL is
 * fine. */
void auth_http_stop(struct auth_http *h);

#endif
