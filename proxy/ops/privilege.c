/*
 * privilege.c - give up root once start-up's privileged work is done.
 *
 * Start-up binds the listeners and the control socket, reads keys and
 * attaches the XDP program: that needs root (or a unit's capabilities).
 * What runs afterwards reads untrusted bytes all day and needs almost
 * nothing, so before the first thread starts we
 *
 *   1. shrink the bounding set, so that no execve() could grant more later
 *      (needs CAP_SETPCAP: a root start has it, a systemd start as
 *      User=msaproxy is bounded by the unit already);
 *   2. switch to privileges.user, keeping capabilities across the switch
 *      (PR_SET_KEEPCAPS) only long enough to
 *   3. set permitted = effective = CAP_NET_BIND_SERVICE (when we had it),
 *      inheritable and ambient empty;
 *   4. set no_new_privs;
 *   5. check, as OpenSMTPD does, that root cannot be had back.
 *
 * libcap does the capability bookkeeping; the rest are plain system calls.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/log.h"
#include "ops/privilege.h"

/* What the running proxy may use, when it has it at start: binding a
 * port below 1024 for a listener a reload adds.  The blocklist maps need
 * nothing once open (docs/XDP.md, Privileges). */
static bool
wanted(cap_value_t c)
{
	return c == CAP_NET_BIND_SERVICE;
}

static bool
has(cap_t caps, cap_value_t c, cap_flag_t set)
{
	cap_flag_value_t v = CAP_CLEAR;

	return cap_get_flag(caps, c, set, &v) == 0 && v == CAP_SET;
}

static int
shrink_bounding_set(cap_t now, char *err, size_t errlen)
{
	if (!has(now, CAP_SETPCAP, CAP_EFFECTIVE))
		return 0;
	for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++) {
		if (wanted(c) || cap_get_bound(c) != 1)
			continue;
		if (cap_drop_bound(c) != 0) {
			snprintf(err, errlen,
				 "dropping %s from the bounding set: %s",
				 cap_to_name(c), strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int
switch_user(const struct config *cfg, char *err, size_t errlen)
{
	uid_t uid = cfg->run_uid;
	gid_t gid = cfg->run_gid;

	if (geteuid() != 0) {
		if (geteuid() == uid && getegid() == gid)
			return 0; /* started as that user (systemd User=) */
		snprintf(err, errlen,
			 "privileges.user is %s (uid %u, gid %u) but msaproxy "
			 "runs as uid %u, gid %u without root: start it as "
			 "root or as %s",
			 cfg->run_user, (unsigned)uid, (unsigned)gid,
			 (unsigned)geteuid(), (unsigned)getegid(),
			 cfg->run_user);
		return -1;
	}
	if (prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0 ||
	    initgroups(cfg->run_user, gid) != 0 ||
	    setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
		snprintf(err, errlen, "switching to user %s: %s", cfg->run_user,
			 strerror(errno));
		return -1;
	}
	prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
	return 0;
}

/* Permitted = effective = wanted ∩ what we had; nothing inheritable. */
static int
set_capabilities(cap_t before, char *kept, size_t keptlen, char *err,
		 size_t errlen)
{
	cap_value_t keep[1];
	int n = 0, rc = 0;
	cap_t next;

	kept[0] = '\0';
	for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits() && n < 1; c++) {
		if (!wanted(c) || !has(before, c, CAP_PERMITTED))
			continue;
		keep[n++] = c;
		char *name = cap_to_name(c);
		size_t len = strlen(kept);

		snprintf(kept + len, keptlen - len, "%s%s", len ? "," : "",
			 name);
		cap_free(name);
	}
	next = cap_init();
	if (next == NULL ||
	    (n > 0 && (cap_set_flag(next, CAP_PERMITTED, n, keep, CAP_SET) ||
		       cap_set_flag(next, CAP_EFFECTIVE, n, keep, CAP_SET))) ||
	    cap_set_proc(next) != 0) {
		snprintf(err, errlen, "setting capabilities to {%s}: %s", kept,
			 strerror(errno));
		rc = -1;
	}
	cap_free(next);
	/* Ambient capabilities follow the permitted set down; clear them
	 * all the same (a kernel without them says EINVAL). */
	if (rc == 0 && cap_reset_ambient() != 0 && errno != EINVAL) {
		snprintf(err, errlen, "clearing ambient capabilities: %s",
			 strerror(errno));
		rc = -1;
	}
	if (kept[0] == '\0')
		snprintf(kept, keptlen, "none");
	return rc;
}

int
privilege_drop(const struct config *cfg, char *err, size_t errlen)
{
	cap_t before = cap_get_proc();
	char kept[128];
	int rc = -1;

	if (before == NULL) {
		snprintf(err, errlen, "reading capabilities: %s",
			 strerror(errno));
		return -1;
	}
	if (shrink_bounding_set(before, err, errlen) != 0)
		goto out;
	if (cfg->run_user != NULL && switch_user(cfg, err, errlen) != 0)
		goto out;
	if (set_capabilities(before, kept, sizeof(kept), err, errlen) != 0)
		goto out;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) != 0) {
		snprintf(err, errlen, "setting no_new_privs: %s",
			 strerror(errno));
		goto out;
	}
	if (cfg->run_user != NULL && (setuid(0) == 0 || seteuid(0) == 0)) {
		snprintf(err, errlen,
			 "still able to become root after switching to %s",
			 cfg->run_user);
		goto out;
	}
	log_info("privileges",
		 " user=%s uid=%u gid=%u capabilities=%s no_new_privs=1",
		 cfg->run_user != NULL ? cfg->run_user : "(unchanged)",
		 (unsigned)getuid(), (unsigned)getgid(), kept);
	rc = 0;
out:
	cap_free(before);
	return rc;
}
