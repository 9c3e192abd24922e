/*
 * privilege.h - give up root once start-up's privileged work is done.
 */
#ifndef MSAPROXY_PRIVILEGE_H
#define MSAPROXY_PRIVILEGE_H

#include <stddef.h>

struct config;

/*
 * Switch to privileges.user (when set) and keep only the capability the
 * running proxy still uses: CAP_NET_BIND_SERVICE (a reload may add a
 * listener below port 1024; the XDP blocklist's maps and links need none
 * once open).  Everything else leaves the permitted, effective,
 * inheritable, ambient and (when we may) bounding sets, and no_new_privs
 * is set.  Capability sets are per thread: call it before any thread
 * starts.  Logs what is left; on error the message is in err and the
 * process must not go on.
 */
int privilege_drop(const struct config *cfg, char *err, size_t errlen);

#endif
