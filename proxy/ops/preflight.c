/*
 * preflight.c - what a start will open, checked before it (read
 * preflight.h).
 *
 * What the start opens, and who checks it here or elsewhere:
 *
 *   control.socket          control_check(): fits a unix address, is a
 *                           socket or nothing, its directory exists, is a
 *                           directory and is writable by this process
 *                           (the start binds it before dropping
 *                           privileges, as the user -t runs as under the
 *                           unit's ExecStartPre)
 *   blocklist.files         bans_check(): each one reads and parses
 *   blocklist.xdp           bans_check(): with xdp.required, each
 *                           interface exists (without it, a missing one
 *                           is logged at start and the list is enforced at
 *                           accept())
 *   users file, certificates, keys, backends' CA files
 *                           generation.c, at every load (-t, start, reload)
 *   listeners, metrics.listen
 *                           addresses, not paths: whether another process
 *                           holds one is only known by binding it
 *
 * There is no pid file and no log file (log.output is stderr or syslog;
 * a syslog socket that is missing is retried, never fatal).
 *
 * Config keys: control.socket, blocklist.files, blocklist.xdp.
 */
#include "bans/bans.h"
#include "config/config.h"
#include "ops/control.h"
#include "ops/preflight.h"

int
preflight_check(const struct config *cfg, char *err, size_t errlen)
{
	if (control_check(cfg, err, errlen) != 0 ||
	    bans_check(cfg, err, errlen) != 0)
		return -1;
	return 0;
}
