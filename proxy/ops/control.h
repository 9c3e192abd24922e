/*
 * control.h - the control socket msaproxyctl talks to.
 *
 * A unix stream socket (control.socket, file mode control.mode): whoever
 * may open it may run every command, so its mode and directory are the
 * access control.  One request per connection: a line of words ("reload",
 * "sessions", "user limits alice"), optionally prefixed by "json"; the
 * answer is "ok" or "error: why" on the first line, then the body, then
 * the server closes.  An error's body holds only further findings, one a
 * line, "error: ..." or "warning: ..." (a refused reload's other audit
 * errors and its warnings); an ok's body may hold "warning: ..." lines
 * (reload: a restart-only key changed, an audit warning).  Served on the main
 * thread, one client at a time, each bounded by a 2 s read and write timeout,
 * so a stuck client cannot hold the process.
 */
#ifndef MSAPROXY_CONTROL_H
#define MSAPROXY_CONTROL_H

#include <stddef.h>

struct config;
struct server;

/* Bind control.socket (checked by preflight_control_socket(): a stale
 * socket file is replaced; anything else is refused) and chmod it to
 * control.mode.  The listening fd, or -1 with "FILE:LINE: control.socket: why"
 * in err. */
int control_listen(const struct config *cfg, char *err, size_t errlen);
/* Accept and serve one client of the listening socket lfd. */
void control_serve(int lfd, struct server *srv);

#endif
