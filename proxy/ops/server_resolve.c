/*
 * server_resolve.c - backends by host name, looked up again on a timer
 * (backends.resolve_interval, default 60s), on the main thread.
 *
 * getaddrinfo(3) gives no TTL, so the interval stands in for one.  Each
 * tick looks every name of the running configuration up again
 * (config_resolve_compare()):
 *
 *   the same addresses   nothing happens (a debug line);
 *   other addresses      msg=backend-resolve-changed, then a reload as
 *                        SIGHUP does (the file is read again, the pool
 *                        rebuilt with one server per new address; servers
 *                        kept keep their health, sessions keep theirs);
 *   a lookup failed      msg=backend-resolve-failed: the running addresses
 *                        stay, tried again at the next tick.
 *
 * The lookup blocks the main thread (signals, control, metrics) for as
 * long as the resolver takes (resolv.conf's timeout and attempts); workers
 * never wait on it.
 *
 * Config keys: backends.resolve_interval, backends.servers[].address.
 */
#include <inttypes.h>
#include <stdio.h>

#include "config/generation.h"
#include "lib/log.h"
#include "lib/timer.h"
#include "ops/server.h"
#include "ops/server_internal.h"

void
server_resolve_tick(struct server *srv, uint64_t now_ms)
{
	const struct config *cfg = srv->gen->cfg;
	uint64_t every = cfg->backend_resolve_interval_ms;
	char msg[512], err[1024];

	if (every == 0 || srv->draining || !config_backends_named(cfg))
		return;
	if (srv->resolved_ms == 0)
		srv->resolved_ms = now_ms; /* the load itself just resolved */
	if (now_ms - srv->resolved_ms < every)
		return;
	srv->resolved_ms = now_ms;
	switch (config_resolve_compare(cfg, msg, sizeof(msg))) {
	case CONFIG_RESOLVE_SAME:
		log_debug("backend-resolve", " generation=%u result=same",
			  srv->gen->id);
		break;
	case CONFIG_RESOLVE_FAILED:
		log_warn("backend-resolve-failed",
			 " generation=%u error=\"%s\" detail=\"the running "
			 "addresses stay\"",
			 srv->gen->id, msg);
		break;
	case CONFIG_RESOLVE_CHANGED:
		log_info("backend-resolve-changed",
			 " generation=%u addresses=\"%s\"", srv->gen->id, msg);
		log_info("reloading", " reason=backend-addresses");
		server_reload(srv, NULL, err, sizeof(err));
		break;
	}
}
