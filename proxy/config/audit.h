/*
 * audit.h - is this configuration a safe one to run?
 *
 * config_load() refuses what cannot work; audit.c points out what works but is
 * unsafe: weak TLS 1.2 ciphers, no limits at all, a listener open to the
 * world on port 25, private keys or the users file readable by others, a
 * certificate about to expire.  Each finding is one line, "FILE:LINE: KEY:
 * why", a warning or an error.  `msaproxy -t` prints them, `--strict`
 * makes warnings fatal, and a normal start logs them (errors refuse it).
 *
 * The checks read the files the configuration names (stat, certificates)
 * but never log: findings go to the caller's report function.
 */
#ifndef MSAPROXY_AUDIT_H
#define MSAPROXY_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "config/config.h"

#define AUDIT_CERT_DAYS 14 /* warn when a certificate expires sooner */

enum audit_level {
	AUDIT_WARNING,
	AUDIT_ERROR,
};

/* text is "FILE:LINE: KEY: why", no newline. */
typedef void audit_report_fn(void *ctx, enum audit_level level,
			     const char *text);

struct audit_result {
	unsigned warnings;
	unsigned errors;
};

/* Every check against cfg at time now. */
struct audit_result audit_config(const struct config *cfg, time_t now,
				 audit_report_fn *report, void *ctx);

/* The pieces, for tests.  Each returns what it found: AUDIT_ERROR,
 * AUDIT_WARNING, or -1 for nothing, with why filled for a finding. */

/* The ciphers of an OpenSSL TLS 1.2 cipher list (as negotiable from
 * min_version up) that are not AEAD, not forward-secret, unauthenticated
 * or under 128 bits. */
int audit_ciphers(const char *list, int min_version, char *why, size_t len);
/* A file holding secrets (key, users file): world-readable is an error;
 * group-readable a warning unless the group is one of own_gids (the
 * proxy's, root's); writable by group or world a warning. */
int audit_secret_file(const char *path, const gid_t *own_gids, size_t ngids,
		      char *why, size_t len);
/* The first certificate in a PEM file: expired (or not yet valid) is an
 * error, expiring within AUDIT_CERT_DAYS days a warning. */
int audit_cert_file(const char *path, time_t now, char *why, size_t len);
/* hostname against the first certificate of each of the n PEM files:
 * AUDIT_WARNING when none has it among its subjectAltName DNS names
 * (wildcards as RFC 6125; unreadable files skipped), else -1. */
int audit_hostname(const char *hostname, char *const *cert_files, size_t n,
		   char *why, size_t len);

#endif
