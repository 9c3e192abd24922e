/*
 * test_audit.c - the configuration audit (audit.c).
 *
 * Each check on its own (cipher lists, file modes, certificate dates at a
 * chosen "now"), then audit_config() on whole files: the exact "FILE:LINE:
 * KEY: why" lines, in order, for a config that gets everything wrong, and
 * none for a good one.  Files live in a fresh temporary directory; the
 * certificate is made here with OpenSSL.
 */
#include <grp.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config/audit.h"
#include "config/config.h"

#define DAY 86400

static char tmpdir[128];
static char path[256];
static time_t t0; /* the certificate is valid from t0 - 1 day to t0 + 30 */

/* What audit_config() reported. */
static char found[16][1200];
static enum audit_level levels[16];
static size_t nfound;

static const char *
in_tmp(const char *name)
{
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static void
write_file(const char *name, const char *text, mode_t mode)
{
	FILE *fp = fopen(in_tmp(name), "w");

	assert_non_null(fp);
	assert_true(fputs(text, fp) >= 0);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(chmod(in_tmp(name), mode), 0);
}

/* c.crt + c.key (0600): self-signed P-256, valid [t0 - 1d, t0 + 30d],
 * for mail.example.test and *.example.org. */
static void
make_cert(void)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_EXTENSION *ext;
	X509_NAME *name;
	FILE *fp;

	assert_non_null(pkey);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_time_adj_ex(X509_getm_notBefore(x), -1, 0, &t0);
	X509_time_adj_ex(X509_getm_notAfter(x), 30, 0, &t0);
	X509_set_pubkey(x, pkey);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"mail.example.test",
				   -1, -1, 0);
	X509_set_issuer_name(x, name);
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
				  "DNS:mail.example.test,DNS:*.example.org");
	assert_non_null(ext);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
	fp = fopen(in_tmp("c.crt"), "w");
	assert_non_null(fp);
	PEM_write_X509(fp, x);
	fclose(fp);
	fp = fopen(in_tmp("c.key"), "w");
	assert_non_null(fp);
	PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL);
	fclose(fp);
	chmod(in_tmp("c.key"), 0600);
	X509_free(x);
	EVP_PKEY_free(pkey);
}

static int
setup(void **state)
{
	char tmpl[] = "/tmp/test_audit.XXXXXX";
	char *dir;

	(void)state;
	if (mkdtemp(tmpl) == NULL || (dir = realpath(tmpl, NULL)) == NULL)
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "%s", dir);
	free(dir);
	t0 = time(NULL);
	make_cert();
	write_file("users", "demo:$6$salt$hash\n", 0600);
	nfound = 0;
	return 0;
}

static int
teardown(void **state)
{
	static const char *const names[] = {"c.crt", "c.key", "users", "f",
					    "msaproxy.yaml"};

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
		unlink(in_tmp(names[i]));
	return rmdir(tmpdir);
}

static void
collect(void *ctx, enum audit_level level, const char *text)
{
	(void)ctx;
	assert_true(nfound < sizeof(found) / sizeof(*found));
	snprintf(found[nfound], sizeof(found[0]), "%s", text);
	levels[nfound++] = level;
}

static struct audit_result
audit_text(const char *yaml)
{
	struct config *cfg = NULL;
	struct audit_result r;
	char err[1024], text[4096];

	/* The certificate's name, unless the test is about the hostname;
	 * last, so that the lines above keep their numbers. */
	snprintf(text, sizeof(text), "%s%s", yaml,
		 strstr(yaml, "hostname:") ? ""
					   : "hostname: mail.example.test\n");
	write_file("msaproxy.yaml", text, 0600);
	if (config_load(in_tmp("msaproxy.yaml"), &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	nfound = 0;
	r = audit_config(cfg, t0, collect, NULL);
	config_free(cfg);
	return r;
}

/* found[i] must be "<tmpdir>/msaproxy.yaml:<line>: <rest>". */
static void
assert_found(size_t i, enum audit_level level, int line, const char *rest)
{
	char want[1200];

	assert_true(i < nfound);
	snprintf(want, sizeof(want), "%s/msaproxy.yaml:%d: %s", tmpdir, line,
		 rest);
	assert_string_equal(found[i], want);
	assert_int_equal(levels[i], level);
}

static void
test_ciphers(void **state)
{
	char why[900];

	(void)state;
	assert_int_equal(audit_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:"
				       "ECDHE-RSA-CHACHA20-POLY1305",
				       TLS1_2_VERSION, why, sizeof(why)),
			 -1);
	assert_string_equal(why, "");

	assert_int_equal(audit_ciphers("AES128-GCM-SHA256", TLS1_2_VERSION, why,
				       sizeof(why)),
			 AUDIT_WARNING);
	assert_string_equal(why, "AES128-GCM-SHA256 (not forward-secret)");

	assert_int_equal(audit_ciphers("ECDHE-RSA-AES256-SHA384",
				       TLS1_2_VERSION, why, sizeof(why)),
			 AUDIT_WARNING);
	assert_string_equal(why, "ECDHE-RSA-AES256-SHA384 (not AEAD)");

	assert_int_equal(audit_ciphers("AES256-SHA256:ECDHE-RSA-AES128-GCM-"
				       "SHA256",
				       TLS1_2_VERSION, why, sizeof(why)),
			 AUDIT_WARNING);
	assert_string_equal(why, "AES256-SHA256 (not forward-secret, not "
				 "AEAD)");

	/* Long lists are cut after a few names and counted. */
	assert_int_equal(audit_ciphers("ALL", TLS1_2_VERSION, why, sizeof(why)),
			 AUDIT_WARNING);
	assert_non_null(strstr(why, " more"));
}

static void
test_secret_file(void **state)
{
	gid_t own[] = {0, getegid()};
	char why[600], want[600];

	(void)state;
	write_file("f", "secret\n", 0600);
	assert_int_equal(
		audit_secret_file(in_tmp("f"), own, 2, why, sizeof(why)), -1);

	chmod(in_tmp("f"), 0644);
	assert_int_equal(
		audit_secret_file(in_tmp("f"), own, 2, why, sizeof(why)),
		AUDIT_ERROR);
	snprintf(want, sizeof(want),
		 "%s is readable by every user on the host (mode 0644); "
		 "chmod o-rwx it (0600, or 0640 owned by root:msaproxy)",
		 in_tmp("f"));
	assert_string_equal(why, want);

	chmod(in_tmp("f"), 0620);
	assert_int_equal(
		audit_secret_file(in_tmp("f"), own, 2, why, sizeof(why)),
		AUDIT_WARNING);
	assert_non_null(strstr(why, "writable by its group (mode 0620)"));

	/* Readable by the proxy's own group: the packaged layout. */
	chmod(in_tmp("f"), 0640);
	assert_int_equal(
		audit_secret_file(in_tmp("f"), own, 2, why, sizeof(why)), -1);
	/* By another group: a warning naming it. */
	if (getuid() == 0 && chown(in_tmp("f"), 0, 65534) == 0) {
		assert_int_equal(audit_secret_file(in_tmp("f"), own, 2, why,
						   sizeof(why)),
				 AUDIT_WARNING);
		assert_non_null(strstr(why, "is readable by group "));
		assert_non_null(strstr(why, "(mode 0640); chmod g-r it"));
	}

	/* A missing file is the loader's to report. */
	assert_int_equal(audit_secret_file(in_tmp("nonexistent"), own, 2, why,
					   sizeof(why)),
			 -1);
}

static void
test_cert_dates(void **state)
{
	char why[600];

	(void)state;
	assert_int_equal(audit_cert_file(in_tmp("c.crt"), t0, why, sizeof(why)),
			 -1);
	assert_int_equal(audit_cert_file(in_tmp("c.crt"), t0 + 20 * DAY, why,
					 sizeof(why)),
			 AUDIT_WARNING);
	assert_non_null(strstr(why, ", in 10 days"));
	assert_int_equal(audit_cert_file(in_tmp("c.crt"), t0 + 29 * DAY, why,
					 sizeof(why)),
			 AUDIT_WARNING);
	assert_non_null(strstr(why, ", in 1 day"));
	assert_int_equal(audit_cert_file(in_tmp("c.crt"), t0 + 31 * DAY, why,
					 sizeof(why)),
			 AUDIT_ERROR);
	assert_non_null(strstr(why, "c.crt expired on "));
	assert_int_equal(audit_cert_file(in_tmp("c.crt"), t0 - 2 * DAY, why,
					 sizeof(why)),
			 AUDIT_WARNING);
	assert_non_null(strstr(why, "c.crt is not valid until "));
	/* Not a certificate: the TLS loader says why. */
	assert_int_equal(audit_cert_file(in_tmp("users"), t0, why, sizeof(why)),
			 -1);
}

#define GOOD_CONFIG                                                            \
	"tls:\n"                                                               \
	"  certificates:\n"                                                    \
	"    - cert: c.crt\n"                                                  \
	"      key: c.key\n"                                                   \
	"listeners:\n"                                                         \
	"  - address: '*:587'\n"                                               \
	"    mode: starttls\n"                                                 \
	"auth:\n"                                                              \
	"  passwd_file: users\n"                                               \
	"backends:\n"                                                          \
	"  servers:\n"                                                         \
	"    - address: 127.0.0.1:2525\n"

static void
test_good_config(void **state)
{
	struct audit_result r;

	(void)state;
	r = audit_text(GOOD_CONFIG);
	assert_int_equal(r.warnings, 0);
	assert_int_equal(r.errors, 0);
	assert_int_equal(nfound, 0);
}

/* The metrics endpoint on every address; on loopback it is fine. */
static void
test_metrics_wildcard(void **state)
{
	struct audit_result r;

	(void)state;
	r = audit_text(GOOD_CONFIG "metrics:\n  listen: 127.0.0.1:9587\n");
	assert_int_equal(r.warnings + r.errors, 0);
	r = audit_text(GOOD_CONFIG "metrics:\n  listen: '*:9587'\n");
	assert_int_equal(r.warnings, 1);
	assert_int_equal(r.errors, 0);
	assert_found(0, AUDIT_WARNING, 14,
		     "metrics.listen: *:9587 answers on every address, and the "
		     "endpoint has no authentication: bind it to loopback or a "
		     "management address");
}

static void
test_bad_config(void **state)
{
	struct audit_result r;

	(void)state;
	chmod(in_tmp("users"), 0644);
	r = audit_text("tls:\n"				/* 1 */
		       "  certificates:\n"		/* 2 */
		       "    - cert: c.crt\n"		/* 3 */
		       "      key: c.key\n"		/* 4 */
		       "  ciphers: AES128-GCM-SHA256\n" /* 5 */
		       "listeners:\n"			/* 6 */
		       "  - address: 127.0.0.1:587\n"	/* 7 */
		       "    mode: starttls\n"		/* 8 */
		       "  - address: '*:25'\n"		/* 9 */
		       "    mode: starttls\n"		/* 10 */
		       "  - address: '0.0.0.0:25'\n"	/* 11 */
		       "    mode: starttls\n"		/* 12 */
		       "    allow: [192.0.2.0/24]\n"	/* 13 */
		       "auth:\n"			/* 14 */
		       "  passwd_file: users\n"		/* 15 */
		       "limits:\n"			/* 16 */
		       "  user: {messages: off, recipients: off,"
		       " bytes: off}\n"		    /* 17 */
		       "  login: {failures: off}\n" /* 18 */
		       "  ip: {connections: off, concurrency: 0,"
		       " auth_failures: off}\n"		   /* 19 */
		       "backends:\n"			   /* 20 */
		       "  servers:\n"			   /* 21 */
		       "    - address: 127.0.0.1:2525\n"); /* 22 */
	assert_int_equal(r.warnings, 4);
	assert_int_equal(r.errors, 1);
	assert_int_equal(nfound, 5);
	assert_found(0, AUDIT_WARNING, 5,
		     "tls.ciphers: weak TLS 1.2 ciphers enabled: "
		     "AES128-GCM-SHA256 (not forward-secret); use ECDHE with "
		     "AES-GCM or ChaCha20-Poly1305 only");
	assert_found(1, AUDIT_WARNING, 19,
		     "limits.ip.auth_failures: off, and so is "
		     "limits.login.failures: nothing slows down password "
		     "guessing");
	assert_found(2, AUDIT_WARNING, 16,
		     "limits: every limit is off (per user, per class, per "
		     "login and per client network): one stolen password can "
		     "send without bound");
	assert_found(3, AUDIT_WARNING, 9,
		     "listeners[1].address: *:25 is open to every client "
		     "without an allow list; port 25 is for MTAs relaying to "
		     "each other: serve submission on 587/465, or list the "
		     "clients in allow");
	assert_int_equal(levels[4], AUDIT_ERROR);
	assert_non_null(
		strstr(found[4], "/msaproxy.yaml:15: auth.passwd_file: "));
	assert_non_null(strstr(found[4], "/users is readable by every user"));

	/* min_version TLSv1.3: the 1.2 list is never used. */
	chmod(in_tmp("users"), 0600);
	r = audit_text("tls:\n"
		       "  certificates:\n"
		       "    - cert: c.crt\n"
		       "      key: c.key\n"
		       "  ciphers: AES128-GCM-SHA256\n"
		       "  min_version: TLSv1.3\n"
		       "listeners:\n"
		       "  - address: 127.0.0.1:587\n"
		       "    mode: starttls\n"
		       "auth:\n"
		       "  passwd_file: users\n"
		       "backends:\n"
		       "  servers:\n"
		       "    - address: 127.0.0.1:2525\n");
	assert_int_equal(r.warnings + r.errors, 0);
}

/* The key file and the certificate, with their own lines. */
static void
test_cert_findings(void **state)
{
	struct audit_result r;

	(void)state;
	chmod(in_tmp("c.key"), 0604);
	r = audit_text(GOOD_CONFIG);
	assert_int_equal(r.errors, 1);
	assert_non_null(strstr(found[0], "/msaproxy.yaml:4: "
					 "tls.certificates[0].key: "));
	chmod(in_tmp("c.key"), 0600);

	write_file("msaproxy.yaml", GOOD_CONFIG, 0600);
	{
		struct config *cfg = NULL;
		char err[1024];

		assert_int_equal(config_load(in_tmp("msaproxy.yaml"), &cfg, err,
					     sizeof(err)),
				 0);
		nfound = 0;
		r = audit_config(cfg, t0 + 40 * DAY, collect, NULL);
		config_free(cfg);
	}
	assert_int_equal(r.errors, 1);
	assert_non_null(strstr(found[0], "/msaproxy.yaml:3: "
					 "tls.certificates[0].cert: "));
	assert_non_null(strstr(found[0], "c.crt expired on "));
}

/* privileges.user must be able to read the key and the users file, or
 * a reload (which runs as that user) fails. */
static void
test_run_user_must_read(void **state)
{
	struct group *nogroup = getgrnam("nogroup");
	struct audit_result r;

	(void)state;
	assert_non_null(nogroup);
	r = audit_text(GOOD_CONFIG "privileges:\n  user: nobody\n");
	assert_int_equal(r.errors, 0);
	assert_int_equal(r.warnings, 2);
	assert_non_null(strstr(found[0], "auth.passwd_file: "));
	assert_non_null(strstr(found[0], "/users is not readable by nobody "
					 "(privileges.user): a reload, which "
					 "runs as nobody, would fail; e.g. "
					 "chown root:nogroup and chmod 0640 "
					 "it"));
	assert_non_null(strstr(found[1], "tls.certificates[0].key: "));
	if (getuid() != 0)
		return; /* chown needs root */
	assert_int_equal(chown(in_tmp("users"), 0, nogroup->gr_gid), 0);
	assert_int_equal(chmod(in_tmp("users"), 0640), 0);
	assert_int_equal(chown(in_tmp("c.key"), 65534, 0), 0);
	r = audit_text(GOOD_CONFIG "privileges:\n  user: nobody\n");
	assert_int_equal(r.warnings + r.errors, 0);
}

/* hostname against the certificates' subjectAltName, as clients check
 * it (RFC 6125): a wildcard is one whole leftmost label, the CN is no
 * name, case does not matter. */
static void
test_hostname(void **state)
{
	static const struct {
		const char *name;
		bool covered;
	} cases[] = {
		{"mail.example.test", true},   {"MAIL.Example.Test", true},
		{"a.example.org", true},       {"a.b.example.org", false},
		{"example.org", false},	       {"example.test", false},
		{"other.example.test", false},
	};
	char *files[2] = {strdup(in_tmp("c.crt")), strdup(in_tmp("none"))};
	char why[600], want[300];
	struct audit_result r;

	(void)state;
	assert_non_null(files[0]);
	assert_non_null(files[1]);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int got = audit_hostname(cases[i].name, files, 1, why,
					 sizeof(why));

		assert_int_equal(got, cases[i].covered ? -1 : AUDIT_WARNING);
		if (cases[i].covered)
			continue;
		snprintf(want, sizeof(want),
			 "%s is not among the certificates' names "
			 "(mail.example.test, *.example.org): clients that "
			 "check the server's name will refuse it",
			 cases[i].name);
		assert_string_equal(why, want);
	}
	/* Unreadable certificates: the TLS loader speaks, not the audit. */
	assert_int_equal(audit_hostname("x.example.test", files + 1, 1, why,
					sizeof(why)),
			 -1);
	/* Any one certificate that covers it will do. */
	assert_int_equal(
		audit_hostname("a.example.org", files, 2, why, sizeof(why)),
		-1);
	free(files[0]);
	free(files[1]);

	/* In the audit: at the key's line. */
	r = audit_text(GOOD_CONFIG "hostname: mail.example.com\n");
	assert_int_equal(r.warnings, 1);
	snprintf(want, sizeof(want), "%s:13: hostname: mail.example.com is not",
		 in_tmp("msaproxy.yaml"));
	assert_memory_equal(found[0], want, strlen(want));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ciphers),
		cmocka_unit_test_setup_teardown(test_secret_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cert_dates, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_good_config, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_metrics_wildcard, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cert_findings, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hostname, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_user_must_read, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
