/*
 * audit.c - the configuration audit: unsafe choices, as warnings.
 *
 * Read audit.h first.  The checks, in the order they run:
 *
 *   tls.ciphers        every TLS 1.2 suite the list enables (expanded by
 *                      OpenSSL, at the configured min_version and the
 *                      library's security level) must be AEAD, forward-
 *                      secret (ECDHE/DHE), authenticated, >= 128 bits.
 *                      Skipped when min_version is TLSv1.3.
 *   limits             a warning when every limit is off (per user,
 *                      per class, per login, per client network), and
 *                      when nothing slows password guessing.
 *   listeners          a wildcard address on port 25 with no allow list:
 *                      port 25 is where MTAs relay to each other, and a
 *                      submission service there invites the world.
 *   metrics.listen     a wildcard address: the endpoint has no
 *                      authentication, and would answer every network.
 *   auth.passwd_file,  world-readable: error (the load refuses it too);
 *   tls...key          readable by a group other than root's or the
 *                      proxy's own (its effective group, or "msaproxy",
 *                      the packaged one: root:msaproxy 0640): warning;
 *                      writable by group or world: warning (the users
 *                      file loader refuses that).
 *   tls...cert         expired: error; expires within 14 days or not yet
 *                      valid: warning.
 *   hostname           no certificate's subjectAltName DNS names cover
 *                      it (RFC 6125: no subject CN, "*" only as the whole
 *                      leftmost label): warning, since clients that check
 *                      the name refuse the handshake.
 *   privileges.user    set: each of those files must be readable by that
 *                      user (owner, one of its groups, or everyone), or
 *                      a reload, which runs as that user, fails: warning.
 *
 * What the issue also names and the configuration cannot express, so
 * there is nothing to check: AUTH without TLS (never offered before TLS,
 * refused with 538 5.7.11) and TLS below 1.2 (tls.min_version knows only
 * TLSv1.2 and TLSv1.3).
 *
 * Every finding names the key and the line it was written on
 * (config_key_line()), or the line of its section when the key was left
 * at its default.
 */
#include <arpa/inet.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config/audit.h"
#include "config/config_value.h"

#define WEAK_NAMES_MAX 6 /* named in a finding; the rest are counted */

struct audit {
	const struct config *cfg;
	audit_report_fn *report;
	void *ctx;
	struct audit_result res;
};

static void finding(struct audit *a, enum audit_level level, const char *key,
		    const char *fallback, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Report "FILE:LINE: key: why"; the line is key's, else fallback's, else
 * 1 (a key left at its default). */
static void
finding(struct audit *a, enum audit_level level, const char *key,
	const char *fallback, const char *fmt, ...)
{
	char text[1024];
	int line = config_key_line(a->cfg, key);
	int n;
	va_list ap;

	if (line == 0 && fallback != NULL)
		line = config_key_line(a->cfg, fallback);
	if (line == 0)
		line = 1;
	n = snprintf(text, sizeof(text), "%s:%d: %s: ", a->cfg->path, line,
		     key);
	if (n < 0 || (size_t)n >= sizeof(text))
		return;
	va_start(ap, fmt);
	vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
	va_end(ap);
	if (level == AUDIT_ERROR)
		a->res.errors++;
	else
		a->res.warnings++;
	a->report(a->ctx, level, text);
}

/* ---- TLS ciphers ------------------------------------------------------- */

static bool
forward_secret(const SSL_CIPHER *c)
{
	switch (SSL_CIPHER_get_kx_nid(c)) {
	case NID_kx_ecdhe:
	case NID_kx_dhe:
	case NID_kx_ecdhe_psk:
	case NID_kx_dhe_psk:
	case NID_kx_any: /* TLS 1.3: always (EC)DHE */
		return true;
	default:
		return false;
	}
}

/* Why c is weak, or "" if it is not. */
static void
cipher_flaws(const SSL_CIPHER *c, char *out, size_t len)
{
	int bits = SSL_CIPHER_get_bits(c, NULL);
	size_t n = 0;

	out[0] = '\0';
#define FLAW(s)                                                                \
	do {                                                                   \
		int r = snprintf(out + n, len - n, "%s%s", n ? ", " : "", s);  \
		if (r > 0 && (size_t)r < len - n)                              \
			n += (size_t)r;                                        \
	} while (0)
	if (!forward_secret(c))
		FLAW("not forward-secret");
	if (!SSL_CIPHER_is_aead(c))
		FLAW("not AEAD");
	if (SSL_CIPHER_get_auth_nid(c) == NID_auth_null)
		FLAW("unauthenticated");
	if (bits < 128)
		FLAW(bits == 0 ? "no encryption" : "under 128 bits");
#undef FLAW
}

int
audit_ciphers(const char *list, int min_version, char *why, size_t len)
{
	STACK_OF(SSL_CIPHER) *sk = NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	SSL *ssl = NULL;
	unsigned weak = 0;
	size_t n = 0;
	int rc = -1;

	why[0] = '\0';
	if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, min_version) != 1)
		goto out;
	if (SSL_CTX_set_cipher_list(ctx, list) != 1) {
		snprintf(why, len, "OpenSSL does not accept the list");
		rc = AUDIT_ERROR;
		goto out;
	}
	/* What could really be negotiated: versions and security level. */
	if ((ssl = SSL_new(ctx)) == NULL ||
	    (sk = SSL_get1_supported_ciphers(ssl)) == NULL)
		goto out;
	for (int i = 0; i < sk_SSL_CIPHER_num(sk); i++) {
		const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);
		char flaws[128];
		int r;

		if (SSL_CIPHER_get_kx_nid(c) == NID_kx_any)
			continue; /* tls.ciphersuites: all AEAD and FS */
		cipher_flaws(c, flaws, sizeof(flaws));
		if (flaws[0] == '\0')
			continue;
		if (weak++ >= WEAK_NAMES_MAX)
			continue;
		r = snprintf(why + n, len - n, "%s%s (%s)", n ? ", " : "",
			     SSL_CIPHER_get_name(c), flaws);
		if (r > 0 && (size_t)r < len - n)
			n += (size_t)r;
	}
	if (weak > WEAK_NAMES_MAX && n < len)
		snprintf(why + n, len - n, " and %u more",
			 weak - WEAK_NAMES_MAX);
	rc = weak > 0 ? AUDIT_WARNING : -1;
out:
	sk_SSL_CIPHER_free(sk);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

static void
check_ciphers(struct audit *a)
{
	const struct config *cfg = a->cfg;
	char why[900];
	int r;

	if (cfg->tls_min_version >= TLS1_3_VERSION)
		return;
	r = audit_ciphers(cfg->tls_ciphers, cfg->tls_min_version, why,
			  sizeof(why));
	if (r >= 0)
		finding(a, (enum audit_level)r, "tls.ciphers", "tls",
			"weak TLS 1.2 ciphers enabled: %s; use ECDHE with "
			"AES-GCM or ChaCha20-Poly1305 only",
			why);
}

/* ---- limits -------------------------------------------------------------- */

static bool
user_limits_off(const struct config_user_limits *u)
{
	return u->messages.count == 0 && u->recipients.count == 0 &&
	       u->bytes.count == 0 && u->messages_quota.count == 0;
}

static void
check_limits(struct audit *a)
{
	const struct config *cfg = a->cfg;
	bool users_off = user_limits_off(&cfg->user_limits);

	for (size_t i = 0; i < cfg->nclasses; i++)
		users_off = users_off && user_limits_off(&cfg->classes[i].lim);
	if (cfg->ip_auth_failures.count == 0 && cfg->login_failures.count == 0)
		finding(a, AUDIT_WARNING, "limits.ip.auth_failures", "limits",
			"off, and so is limits.login.failures: nothing slows "
			"down password guessing");
	if (users_off && cfg->ip_connections.count == 0 &&
	    cfg->ip_concurrency == 0 && cfg->ip_auth_failures.count == 0 &&
	    cfg->login_failures.count == 0)
		finding(a, AUDIT_WARNING, "limits", NULL,
			"every limit is off (per user, per class, per login "
			"and per client network): one stolen password can "
			"send without bound");
}

/* ---- listeners ----------------------------------------------------------- */

static unsigned
addr_port(const struct config_addr *a)
{
	const struct sockaddr_storage *ss = &a->ss;

	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void
check_listeners(struct audit *a)
{
	const struct config *cfg = a->cfg;
	char key[64];

	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];

		if (addr_port(&l->addr) != 25 ||
		    !config_value_addr_is_wildcard(&l->addr) || l->allow.n > 0)
			continue;
		snprintf(key, sizeof(key), "listeners[%zu].address", i);
		finding(a, AUDIT_WARNING, key, NULL,
			"%s is open to every client without an allow list; "
			"port 25 is for MTAs relaying to each other: serve "
			"submission on 587/465, or list the clients in allow",
			l->addr.text);
	}
}

static void
check_metrics(struct audit *a)
{
	const struct config_addr *m = &a->cfg->metrics_listen;

	if (m->len == 0 || !config_value_addr_is_wildcard(m))
		return;
	finding(a, AUDIT_WARNING, "metrics.listen", NULL,
		"%s answers on every address, and the endpoint has no "
		"authentication: bind it to loopback or a management address",
		m->text);
}

/* ---- files holding secrets ----------------------------------------------- */

static bool
own_group(gid_t gid, const gid_t *own, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (own[i] == gid)
			return true;
	return false;
}

static const char *
group_name(gid_t gid, char *buf, size_t len)
{
	struct group gr, *res = NULL;
	char tmp[1024];

	if (getgrgid_r(gid, &gr, tmp, sizeof(tmp), &res) == 0 && res != NULL)
		snprintf(buf, len, "%s", gr.gr_name);
	else
		snprintf(buf, len, "%u", (unsigned)gid);
	return buf;
}

int
audit_secret_file(const char *path, const gid_t *own_gids, size_t ngids,
		  char *why, size_t len)
{
	struct stat st;
	unsigned mode;
	char g[64];

	why[0] = '\0';
	if (stat(path, &st) != 0)
		return -1; /* the loader says why, with more context */
	mode = (unsigned)(st.st_mode & 07777);
	if (st.st_mode & S_IROTH) {
		snprintf(why, len,
			 "%s is readable by every user on the host (mode "
			 "%04o); chmod o-rwx it (0600, or 0640 owned by "
			 "root:msaproxy)",
			 path, mode);
		return AUDIT_ERROR;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, len,
			 "%s is writable by %s (mode %04o); chmod go-w it",
			 path,
			 st.st_mode & S_IWOTH ? "every user" : "its group",
			 mode);
		return AUDIT_WARNING;
	}
	if ((st.st_mode & S_IRGRP) && !own_group(st.st_gid, own_gids, ngids)) {
		snprintf(why, len,
			 "%s is readable by group %s (mode %04o); chmod g-r "
			 "it, or give it the proxy's own group",
			 path, group_name(st.st_gid, g, sizeof(g)), mode);
		return AUDIT_WARNING;
	}
	return -1;
}

/* Can privileges.user read it, by owner, group or other bits? */
static bool
readable_by_run_user(const struct config *cfg, const struct stat *st)
{
	gid_t groups[64];
	int n = 64;

	if (st->st_uid == cfg->run_uid)
		return st->st_mode & S_IRUSR;
	if (st->st_mode & S_IROTH)
		return true;
	if (!(st->st_mode & S_IRGRP))
		return false;
	if (st->st_gid == cfg->run_gid)
		return true;
	if (getgrouplist(cfg->run_user, cfg->run_gid, groups, &n) < 0)
		return false;
	for (int i = 0; i < n; i++)
		if (groups[i] == st->st_gid)
			return true;
	return false;
}

/* root's group, ours, privileges.group and the packaged "msaproxy". */
static size_t
own_gids(const struct config *cfg, gid_t *gids)
{
	struct group gr, *res = NULL;
	char tmp[1024];
	size_t n = 0;

	gids[n++] = 0;
	gids[n++] = getegid();
	if (cfg->run_user != NULL)
		gids[n++] = cfg->run_gid;
	if (getgrnam_r("msaproxy", &gr, tmp, sizeof(tmp), &res) == 0 &&
	    res != NULL)
		gids[n++] = gr.gr_gid;
	return n;
}

static void
check_secret_file(struct audit *a, const char *path, const char *key,
		  const gid_t *gids, size_t ngids)
{
	char why[600];
	int r = audit_secret_file(path, gids, ngids, why, sizeof(why));
	struct stat st;
	char g[64];

	if (r >= 0)
		finding(a, (enum audit_level)r, key, NULL, "%s", why);
	if (a->cfg->run_user != NULL && stat(path, &st) == 0 &&
	    !readable_by_run_user(a->cfg, &st))
		finding(a, AUDIT_WARNING, key, NULL,
			"%s is not readable by %s (privileges.user): a "
			"reload, which runs as %s, would fail; e.g. chown "
			"root:%s and chmod 0640 it",
			path, a->cfg->run_user, a->cfg->run_user,
			group_name(a->cfg->run_gid, g, sizeof(g)));
}

/* ---- certificates -------------------------------------------------------- */

static void
asn1_date(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "an unreadable date");
}

int
audit_cert_file(const char *path, time_t now, char *why, size_t len)
{
	BIO *bio = BIO_new_file(path, "r");
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	int days = 0, secs = 0, rc = -1;
	ASN1_TIME *at = ASN1_TIME_set(NULL, now);
	char date[64];

	why[0] = '\0';
	if (x == NULL || at == NULL)
		goto out; /* the TLS loader says why */
	if (ASN1_TIME_compare(X509_get0_notBefore(x), at) > 0) {
		asn1_date(X509_get0_notBefore(x), date, sizeof(date));
		snprintf(why, len, "%s is not valid until %s", path, date);
		rc = AUDIT_WARNING;
		goto out;
	}
	asn1_date(X509_get0_notAfter(x), date, sizeof(date));
	if (ASN1_TIME_diff(&days, &secs, at, X509_get0_notAfter(x)) != 1)
		goto out;
	if (days < 0 || secs < 0 || (days == 0 && secs == 0)) {
		snprintf(why, len, "%s expired on %s", path, date);
		rc = AUDIT_ERROR;
	} else if (days < AUDIT_CERT_DAYS) {
		snprintf(why, len, "%s expires on %s, in %d day%s", path, date,
			 days, days == 1 ? "" : "s");
		rc = AUDIT_WARNING;
	}
out:
	ASN1_TIME_free(at);
	X509_free(x);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

static void
check_certs(struct audit *a, time_t now, const gid_t *gids, size_t ngids)
{
	const struct config *cfg = a->cfg;
	char key[64], why[600];

	for (size_t i = 0; i < cfg->ncerts; i++) {
		const struct config_cert *c = &cfg->certs[i];
		int r;

		snprintf(key, sizeof(key), "tls.certificates[%zu].cert", i);
		r = audit_cert_file(c->cert_file, now, why, sizeof(why));
		if (r >= 0)
			finding(a, (enum audit_level)r, key, NULL, "%s", why);
		snprintf(key, sizeof(key), "tls.certificates[%zu].key", i);
		check_secret_file(a, c->key_file, key, gids, ngids);
	}
}

/* Append the DNS names of x's subjectAltName to names (", "-separated,
 * cut to len). */
static void
san_names(X509 *x, char *names, size_t len)
{
	GENERAL_NAMES *gens =
		X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);

	for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		size_t n = strlen(names);

		if (g->type != GEN_DNS || n + 4 >= len)
			continue;
		snprintf(names + n, len - n, "%s%.*s", n ? ", " : "",
			 ASN1_STRING_length(g->d.dNSName),
			 (const char *)ASN1_STRING_get0_data(g->d.dNSName));
	}
	GENERAL_NAMES_free(gens);
}

int
audit_hostname(const char *hostname, char *const *cert_files, size_t n,
	       char *why, size_t len)
{
	char names[400] = "";
	size_t read = 0;
	bool covered = false;

	for (size_t i = 0; i < n && !covered; i++) {
		BIO *bio = BIO_new_file(cert_files[i], "r");
		X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;

		BIO_free(bio);
		if (x == NULL)
			continue; /* the TLS loader says why */
		read++;
		/* RFC 6125 as clients apply it: subjectAltName only (no
		 * subject CN), a "*" only as a whole leftmost label. */
		covered = X509_check_host(
				  x, hostname, 0,
				  X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
					  X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
				  NULL) == 1;
		san_names(x, names, sizeof(names));
		X509_free(x);
	}
	ERR_clear_error();
	if (covered || read == 0)
		return -1;
	snprintf(why, len,
		 "%s is not among the certificates' names (%s): clients that "
		 "check the server's name will refuse it",
		 hostname, names[0] ? names : "no DNS names in subjectAltName");
	return AUDIT_WARNING;
}

/* The name the greeting and EHLO give is the one clients are told to
 * connect to: some certificate must carry it. */
static void
check_hostname(struct audit *a)
{
	const struct config *cfg = a->cfg;
	char **files = calloc(cfg->ncerts ? cfg->ncerts : 1, sizeof(*files));
	char why[700];

	if (files == NULL)
		return;
	for (size_t i = 0; i < cfg->ncerts; i++)
		files[i] = cfg->certs[i].cert_file;
	if (audit_hostname(cfg->hostname, files, cfg->ncerts, why,
			   sizeof(why)) >= 0)
		finding(a, AUDIT_WARNING, "hostname", NULL, "%s%s", why,
			config_key_line(cfg, "hostname")
				? ""
				: " (hostname is not set: it is the "
				  "system's host name)");
	free(files);
}

struct audit_result
audit_config(const struct config *cfg, time_t now, audit_report_fn *report,
	     void *ctx)
{
	struct audit a = {.cfg = cfg, .report = report, .ctx = ctx};
	gid_t gids[4];
	size_t ngids = own_gids(cfg, gids);

	check_ciphers(&a);
	check_limits(&a);
	check_listeners(&a);
	check_metrics(&a);
	if (cfg->passwd_file != NULL) /* none with another auth.backend */
		check_secret_file(&a, cfg->passwd_file, "auth.passwd_file",
				  gids, ngids);
	check_certs(&a, now, gids, ngids);
	check_hostname(&a);
	return a.res;
}
