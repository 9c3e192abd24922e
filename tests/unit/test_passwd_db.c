/*
 * test_passwd_db.c - the passwd-file back end: hashing with every scheme,
 * Dovecot prefixes, verification, strict loading with line numbers, the
 * Dovecot extra fields we read (class=, senders=) and the class check,
 * and the file-permission check.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/passwd_db.h"

static char tmpdir[] = "/tmp/msa-passwd-db-XXXXXX";
static unsigned nfiles;

/* One hash per scheme, all of the password "correct horse". */
#define PASS  "correct horse"
#define PASS2 "battery staple"
static char *h_y, *h_b, *h_6;
/* Of PASS2, for a second user. */
static char *h2_y;

static char *
must_hash(const char *pass, const char *scheme)
{
	char err[256] = "";
	/* bcrypt at cost 5: the fixtures test the scheme, not its default
	 * cost (12, test_hash_costs), which takes 50 times longer. */
	char *h = scheme != NULL && strcmp(scheme, "bcrypt") == 0
			  ? passwd_hash_cost(pass, scheme, 5, err, sizeof(err))
			  : passwd_hash(pass, scheme, err, sizeof(err));

	if (h == NULL)
		fail_msg("passwd_hash(%s): %s", scheme ? scheme : "NULL", err);
	return h;
}

static int
group_setup(void **state)
{
	(void)state;
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	h_y = must_hash(PASS, "yescrypt");
	h_b = must_hash(PASS, "bcrypt");
	h_6 = must_hash(PASS, "sha512-crypt");
	h2_y = must_hash(PASS2, NULL);
	return 0;
}

static int
group_teardown(void **state)
{
	DIR *d;
	struct dirent *de;

	(void)state;
	d = opendir(tmpdir);
	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			char p[512];

			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", tmpdir, de->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(tmpdir);
	free(h_y);
	free(h_b);
	free(h_6);
	free(h2_y);
	return 0;
}

/* Write len bytes to a new file in tmpdir with exactly this mode; the path
 * goes to path (static storage is not used so tests can keep several). */
static void
write_file_n(char *path, size_t pathlen, const char *data, size_t len,
	     mode_t mode)
{
	int fd;

	snprintf(path, pathlen, "%s/passwd.%u", tmpdir, nfiles++);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static void
write_file(char *path, size_t pathlen, const char *data)
{
	write_file_n(path, pathlen, data, strlen(data), 0600);
}

/* Expand @Y @B @6 @2 in a template into the test hashes (of PASS; @2 is
 * yescrypt of PASS2).  Returns a malloc'd string. */
static char *
expand(const char *tmpl)
{
	size_t cap = strlen(tmpl) * 8 + 1024, n = 0;
	char *out = malloc(cap);

	assert_non_null(out);
	for (const char *t = tmpl; *t != '\0'; t++) {
		const char *ins = NULL;

		if (t[0] == '@') {
			switch (t[1]) {
			case 'Y':
				ins = h_y;
				break;
			case 'B':
				ins = h_b;
				break;
			case '6':
				ins = h_6;
				break;
			case '2':
				ins = h2_y;
				break;
			default:
				break;
			}
		}
		if (ins != NULL) {
			size_t l = strlen(ins);

			assert_true(n + l < cap);
			memcpy(out + n, ins, l);
			n += l;
			t++;
		} else {
			assert_true(n + 1 < cap);
			out[n++] = *t;
		}
	}
	out[n] = '\0';
	return out;
}

static struct passwd_db *
load_tmpl(const char *tmpl)
{
	char path[512], err[512] = "";
	char *text = expand(tmpl);
	struct passwd_db *db;

	write_file(path, sizeof(path), text);
	free(text);
	db = passwd_db_load(path, err, sizeof(err));
	if (db == NULL)
		fail_msg("load failed: %s", err);
	return db;
}

/* ---- hashing ---- */

static void
test_hash_schemes(void **state)
{
	char err[256] = "";
	char *h;

	(void)state;
	assert_memory_equal(h_y, "$y$", 3);
	assert_memory_equal(h_b, "$2b$", 4);
	assert_memory_equal(h_6, "$6$", 3);
	assert_memory_equal(h2_y, "$y$", 3); /* NULL scheme: yescrypt */

	/* Fresh salt each time. */
	h = must_hash(PASS, "yescrypt");
	assert_string_not_equal(h, h_y);
	free(h);

	h = passwd_hash(PASS, "md5-crypt", err, sizeof(err));
	assert_null(h);
	assert_non_null(strstr(err, "md5-crypt"));

	h = passwd_hash(NULL, NULL, err, sizeof(err));
	assert_null(h);
}

/* Issue 18 item 14: bcrypt's default cost is 12, not libxcrypt's 5; every
 * scheme takes a cost in its own range, refused outside it with the range
 * said. */
static void
test_hash_costs(void **state)
{
	char err[256] = "";
	char *h;

	(void)state;
	h = passwd_hash(PASS, "bcrypt", err, sizeof(err));
	assert_non_null(h);
	assert_memory_equal(h, "$2b$12$", 7);
	free(h);
	h = passwd_hash_cost(PASS, "bcrypt", 4, err, sizeof(err));
	assert_non_null(h);
	assert_memory_equal(h, "$2b$04$", 7);
	free(h);
	h = passwd_hash_cost(PASS, "sha512-crypt", 20000, err, sizeof(err));
	assert_non_null(h);
	assert_memory_equal(h, "$6$rounds=20000$", 16);
	free(h);
	h = passwd_hash_cost(PASS, "yescrypt", 3, err, sizeof(err));
	assert_non_null(h);
	assert_memory_equal(h, "$y$", 3);
	free(h);
	/* The default costs, as the header says. */
	h = passwd_hash(PASS, "sha512-crypt", err, sizeof(err));
	assert_non_null(h);
	assert_null(strstr(h, "rounds=")); /* 5000: libxcrypt omits it */
	free(h);

	assert_int_equal(passwd_hash_check("bcrypt", 3, err, sizeof(err)), -1);
	assert_string_equal(err, "cost 3: bcrypt takes 4 to 31");
	assert_int_equal(passwd_hash_check("bcrypt", 32, err, sizeof(err)), -1);
	assert_int_equal(passwd_hash_check("yescrypt", 12, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "cost 12: yescrypt takes 1 to 11");
	assert_int_equal(
		passwd_hash_check("sha512-crypt", 999, err, sizeof(err)), -1);
	assert_string_equal(err,
			    "rounds 999: sha512-crypt takes 1000 to 999999999");
	assert_int_equal(passwd_hash_check("md5", 0, err, sizeof(err)), -1);
	assert_int_equal(passwd_hash_check(NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(passwd_hash_check("bcrypt", 31, err, sizeof(err)), 0);
	assert_null(passwd_hash_cost(PASS, "bcrypt", 3, err, sizeof(err)));
}

/* ---- verification ---- */

static void
test_verify_each_scheme(void **state)
{
	struct passwd_db *db;

	(void)state;
	db = load_tmpl("alice:@Y\n"
		       "bob:@B\n"
		       "carol:@6\n"
		       "dave:@2:1000:1000::/home/dave::\n");
	assert_int_equal(passwd_db_count(db), 4);

	assert_int_equal(passwd_db_verify(db, "alice", PASS), 1);
	assert_int_equal(passwd_db_verify(db, "bob", PASS), 1);
	assert_int_equal(passwd_db_verify(db, "carol", PASS), 1);
	assert_int_equal(passwd_db_verify(db, "dave", PASS2), 1);

	assert_int_equal(passwd_db_verify(db, "alice", PASS2), 0);
	assert_int_equal(passwd_db_verify(db, "bob", "correct horsE"), 0);
	assert_int_equal(passwd_db_verify(db, "carol", ""), 0);
	assert_int_equal(passwd_db_verify(db, "dave", PASS), 0);

	/* Unknown users, including near misses of real ones. */
	assert_int_equal(passwd_db_verify(db, "mallory", PASS), 0);
	assert_int_equal(passwd_db_verify(db, "Alice", PASS), 0);
	assert_int_equal(passwd_db_verify(db, "alic", PASS), 0);
	assert_int_equal(passwd_db_verify(db, "alicee", PASS), 0);
	assert_int_equal(passwd_db_verify(db, "", PASS), 0);

	assert_int_equal(passwd_db_verify(db, NULL, PASS), 0);
	assert_int_equal(passwd_db_verify(db, "alice", NULL), 0);
	assert_int_equal(passwd_db_verify(NULL, "alice", PASS), 0);
	passwd_db_free(db);
}

/*
 * An unknown user runs crypt_r against the dummy hash (the first entry's,
 * here alice's) and the result is discarded, so the cost matches a wrong
 * password.  Timing is deliberately not asserted; what is asserted is that
 * the dummy hash's own password does not let an unknown user in.
 */
static void
test_unknown_user_dummy_hash(void **state)
{
	struct passwd_db *db;

	(void)state;
	db = load_tmpl("alice:@Y\nbob:@2\n");
	assert_int_equal(passwd_db_verify(db, "nobody", PASS), 0);
	assert_int_equal(passwd_db_verify(db, "nobody", PASS2), 0);
	assert_int_equal(passwd_db_verify(db, "alice", PASS), 1);
	passwd_db_free(db);
}

static void
test_dovecot_prefixes(void **state)
{
	struct passwd_db *db;

	(void)state;
	db = load_tmpl("a:{BLF-CRYPT}@B\n"
		       "b:{SHA512-CRYPT}@6\n"
		       "c:{CRYPT}@Y\n"
		       "d:{CRYPT}@B\n"
		       "e:{CRYPT}@6:extra\n");
	assert_int_equal(passwd_db_count(db), 5);
	for (char u[2] = "a"; u[0] <= 'e'; u[0]++) {
		assert_int_equal(passwd_db_verify(db, u, PASS), 1);
		assert_int_equal(passwd_db_verify(db, u, PASS2), 0);
	}
	passwd_db_free(db);
}

/* What Dovecot migrations bring: MD5-CRYPT, SSHA, SSHA512, Argon2i and
 * Argon2id, bare or behind Dovecot's prefixes.  The vectors were made with
 * `openssl passwd -1`, Python's hashlib and the argon2 CLI. */
static void
test_migration_schemes(void **state)
{
	static const struct {
		const char *line, *user, *pass;
	} v[] = {
		{"m:$1$saltsalt$q8kxg97WSQuObpwWnNayF/\n", "m", "md5-pass-1"},
		{"n:{MD5-CRYPT}$1$saltsalt$q8kxg97WSQuObpwWnNayF/\n", "n",
		 "md5-pass-1"},
		{"s:{SSHA}wCqJkoS368yhdeZLa6LakRhdz/JOYUNsMTIzNA==\n", "s",
		 "ssha-pass-2"},
		{"t:{SSHA512}z9KQoQHt25JvgOlqq7GKjGdKuEcOrFtGaDuZG9VM4ldLg1opm/"
		 "AQ1baOHWo1OJaLg7iCLgJwR6g67w+3BO5i4k5hQ2wxMjM0\n",
		 "t", "ssha512-pass-3"},
		{"a:{ARGON2ID}$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$"
		 "ga7AsD/DHsyrPpzyMgkrO5bOY/TGFWkGnZVm43XEu44\n",
		 "a", "argon-pass-4"},
		{"b:$argon2i$v=19$m=4096,t=2,p=1$b3RoZXJzYWx0MQ$"
		 "wIYpFz3+0HGsNrOoSwFWdvjz4t4ovcYamIroQUFeSq8\n",
		 "b", "argon-pass-5"},
	};
	char path[256], err[256], text[2048] = "";
	struct passwd_db *db;

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++)
		strcat(text, v[i].line);
	write_file(path, sizeof(path), text);
	db = passwd_db_load(path, err, sizeof(err));
	assert_non_null(db);
	assert_int_equal(passwd_db_count(db), 6);
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
		assert_int_equal(passwd_db_verify(db, v[i].user, v[i].pass), 1);
		assert_int_equal(passwd_db_verify(db, v[i].user, "wrong"), 0);
	}
	/* An unknown user is checked against the first entry's hash, and
	 * refused. */
	assert_int_equal(passwd_db_verify(db, "nobody", "md5-pass-1"), 0);
	passwd_db_free(db);

	/* Mangled ones are refused with their line, the file with them. */
	static const char *const bad[] = {
		"x:$1$saltsaltX$q8kxg97WSQuObpwWnNayF/\n", /* salt > 8 */
		"x:$1$saltsalt$q8kxg97WSQuObpwWnNayF\n",   /* short */
		"x:{SSHA}wCqJkoS368yhdeZLa6LakRhdz/I=\n",  /* no salt */
		"x:{SSHA}not*base64*at*all=\n",
		"x:{ARGON2ID}$argon2id$v=19$c29tZXNhbHRzYWx0\n",
		"x:{MD5-CRYPT}$6$abc$def\n", /* prefix vs hash */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		write_file(path, sizeof(path), bad[i]);
		assert_null(passwd_db_load(path, err, sizeof(err)));
		assert_non_null(strstr(err, ":1: "));
	}
}

/* $2a$ and $2y$ are accepted; for ASCII passwords they hash like $2b$. */
static void
test_bcrypt_variants(void **state)
{
	char tmpl[256];
	struct passwd_db *db;
	char *a = strdup(h_b), *y = strdup(h_b);

	(void)state;
	assert_non_null(a);
	assert_non_null(y);
	a[2] = 'a';
	y[2] = 'y';
	snprintf(tmpl, sizeof(tmpl), "a:%s\ny:{BLF-CRYPT}%s\n", a, y);
	db = load_tmpl(tmpl);
	assert_int_equal(passwd_db_verify(db, "a", PASS), 1);
	assert_int_equal(passwd_db_verify(db, "y", PASS), 1);
	assert_int_equal(passwd_db_verify(db, "a", PASS2), 0);
	passwd_db_free(db);
	free(a);
	free(y);
}

static void
test_comments_blank_crlf(void **state)
{
	struct passwd_db *db;

	(void)state;
	db = load_tmpl("# users\n"
		       "\n"
		       "  \t \n"
		       "alice:@Y\r\n"
		       "#bob:@B\n"
		       "carol:@6"); /* no final newline */
	assert_int_equal(passwd_db_count(db), 2);
	assert_int_equal(passwd_db_verify(db, "alice", PASS), 1);
	assert_int_equal(passwd_db_verify(db, "carol", PASS), 1);
	assert_int_equal(passwd_db_verify(db, "bob", PASS), 0);
	assert_int_equal(passwd_db_verify(db, "#bob", PASS), 0);
	passwd_db_free(db);
}

static void
test_user_name_length(void **state)
{
	char user[300], tmpl[600];
	struct passwd_db *db;

	(void)state;
	memset(user, 'u', 255);
	user[255] = '\0';
	snprintf(tmpl, sizeof(tmpl), "%s:@6\n", user);
	db = load_tmpl(tmpl);
	assert_int_equal(passwd_db_verify(db, user, PASS), 1);
	user[255] = 'u';
	user[256] = '\0';
	assert_int_equal(passwd_db_verify(db, user, PASS), 0);
	passwd_db_free(db);
}

/* ---- refusals ---- */

struct bad_case {
	const char *tmpl;
	const char *why; /* expected error after the path */
};

static void
expect_refusal(const char *data, size_t len, const char *why)
{
	char path[512], err[512] = "", want[1024];
	struct passwd_db *db;

	write_file_n(path, sizeof(path), data, len, 0600);
	db = passwd_db_load(path, err, sizeof(err));
	if (db != NULL)
		fail_msg("loaded, expected \"%s\"", why);
	snprintf(want, sizeof(want), "%s%s", path, why);
	assert_string_equal(err, want);
}

static void
test_malformed_files(void **state)
{
	static const struct bad_case cases[] = {
		{"# c\nalice:@Y\nnocolon\n", ":3: missing ':'"},
		{"\n:@Y\n", ":2: empty user name"},
		{"alice:$7$CU..../....abcdefgh$0123456789012345678901\n",
		 ":1: unsupported hash scheme for user alice"},
		{"alice:@Y\nbob:plaintext\n",
		 ":2: unsupported hash scheme for user bob"},
		{"alice:{PLAIN}secret\n",
		 ":1: unsupported hash scheme for user alice"},
		{"alice:{CRYPT}$1$abc$def\n", /* MD5-CRYPT, cut short */
		 ":1: malformed hash for user alice"},
		{"alice:\n", ":1: unsupported hash scheme for user alice"},
		{"alice:$5$abc$def\n",
		 ":1: unsupported hash scheme for user alice"},
		{"alice:$gy$j9T$abc$def\n",
		 ":1: unsupported hash scheme for user alice"},
		{"alice:{BLF-CRYPT}@6\n",
		 ":1: scheme prefix does not match the hash for user "
		 "alice"},
		{"a:@B\nalice:{SHA512-CRYPT}@Y\n",
		 ":2: scheme prefix does not match the hash for user "
		 "alice"},
		{"alice:$y$j9T$abc$tooshort\n",
		 ":1: malformed hash for user alice"},
		{"alice:$2b$05$tooshort\n",
		 ":1: malformed hash for user alice"},
		{"alice: @Y\n", ":1: unsupported hash scheme for user alice"},
		{"alice:@Y\nbob:@B\n\nalice:@6\nbob:@Y\n",
		 ":4: duplicate user alice"},
		{"a\tb:@Y\n", ":1: control character in user name"},
		{"# nobody here\n\n", ": no users"},
		{"", ": no users"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *data = expand(cases[i].tmpl);

		expect_refusal(data, strlen(data), cases[i].why);
		free(data);
	}
}

static void
test_long_user_refused(void **state)
{
	char tmpl[600];
	char *data;

	(void)state;
	memset(tmpl, 'u', 256);
	snprintf(tmpl + 256, sizeof(tmpl) - 256, ":@Y\n");
	data = expand(tmpl);
	expect_refusal(data, strlen(data),
		       ":1: user name longer than 255 bytes");
	free(data);
}

static void
test_truncated_hash_refused(void **state)
{
	char tmpl[256];
	char *data;

	(void)state;
	snprintf(tmpl, sizeof(tmpl), "alice:%.*s\n", (int)strlen(h_6) - 1, h_6);
	data = expand(tmpl);
	expect_refusal(data, strlen(data), ":1: malformed hash for user alice");
	free(data);
}

static void
test_nul_byte_refused(void **state)
{
	char *line1 = expand("a:@6\n"), *line2 = expand("b_b:@6\n");
	size_t l1 = strlen(line1), l2 = strlen(line2);
	char *data = malloc(l1 + l2);

	(void)state;
	assert_non_null(data);
	memcpy(data, line1, l1);
	memcpy(data + l1, line2, l2);
	data[l1 + 1] = '\0'; /* "b\0b:..." */
	expect_refusal(data, l1 + l2, ":2: NUL byte in line");
	free(data);
	free(line1);
	free(line2);
}

/* ---- extra fields ---- */

/* Load tmpl, keeping its path for messages. */
static struct passwd_db *
load_tmpl_path(const char *tmpl, char *path, size_t pathlen)
{
	char err[512] = "";
	char *text = expand(tmpl);
	struct passwd_db *db;

	write_file(path, pathlen, text);
	free(text);
	db = passwd_db_load(path, err, sizeof(err));
	if (db == NULL)
		fail_msg("load failed: %s", err);
	return db;
}

static void
test_extra_fields(void **state)
{
	const struct passwd_user_info *info;
	struct passwd_db *db;

	(void)state;
	db = load_tmpl(
		"alice:@Y:1000:1000:Alice A:/home/alice:/bin/sh:class=bulk "
		"senders=a@x.test,@y.test other=ignored\n"
		"bob:@B:1001:1001::/home/bob:/bin/sh\n"
		"carol:@6\n"
		"dave:@Y:::::\n"
		"erin:@Y::::::\n"
		"frank:@Y::::::userdb_quota_rule=*:storage=1G \t "
		"class=slow.lane_2  nosuchkey\n"
		"gina:@Y:1:1:g:/h:class=bulk\n"
		"hank:@Y:1:1:g:/h:/s:senders=h@x.test\r\n"
		"ivy:@Y:1:1:g:/h:/s:class=a class=b senders=i@x.test "
		"senders=@i.test\n"
		"jo:@Y:1:1:g:/h:/s:xclass=bulk mysenders=j@x.test\n");
	assert_int_equal(passwd_db_count(db), 10);

	/* The 8th field on: ours are read, the rest ignored. */
	info = passwd_db_user_info(db, "alice");
	assert_non_null(info);
	assert_string_equal(info->class_name, "bulk");
	assert_string_equal(info->senders, "a@x.test,@y.test");
	/* The hash field still ends at its ':'. */
	assert_int_equal(passwd_db_verify(db, "alice", PASS), 1);
	assert_int_equal(passwd_db_verify(db, "bob", PASS), 1);

	/* Seven fields or fewer: no extras. */
	for (const char *const *u = (const char *const[]){"bob", "carol",
							  "dave", "erin", NULL};
	     *u != NULL; u++) {
		info = passwd_db_user_info(db, *u);
		assert_non_null(info);
		assert_null(info->class_name);
		assert_null(info->senders);
	}
	/* "class=bulk" in the 7th field is the shell, not an extra. */
	info = passwd_db_user_info(db, "gina");
	assert_null(info->class_name);
	assert_int_equal(passwd_db_verify(db, "gina", PASS), 1);

	/* Dovecot's own keys (with ':' and '=' in them), tabs and runs of
	 * spaces between fields. */
	info = passwd_db_user_info(db, "frank");
	assert_string_equal(info->class_name, "slow.lane_2");
	assert_null(info->senders);

	/* CRLF: the '\r' is not part of the last field. */
	info = passwd_db_user_info(db, "hank");
	assert_null(info->class_name);
	assert_string_equal(info->senders, "h@x.test");
	assert_int_equal(passwd_db_verify(db, "hank", PASS), 1);

	/* A key given twice: the last one counts. */
	info = passwd_db_user_info(db, "ivy");
	assert_string_equal(info->class_name, "b");
	assert_string_equal(info->senders, "@i.test");

	/* Only exact key names. */
	info = passwd_db_user_info(db, "jo");
	assert_null(info->class_name);
	assert_null(info->senders);

	assert_null(passwd_db_user_info(db, "nobody"));
	assert_null(passwd_db_user_info(db, "Alice"));
	assert_null(passwd_db_user_info(db, ""));
	assert_null(passwd_db_user_info(db, NULL));
	assert_null(passwd_db_user_info(NULL, "alice"));
	passwd_db_free(db);
}

#define BAD_CLASS ": class=: a class name is letters, digits, '_', '.' or '-'"
#define BAD_SENDERS                                                            \
	": senders=: expected addresses or @domains separated by commas"

static void
test_extra_fields_refused(void **state)
{
	static const struct {
		const char *extra;
		const char *why;
	} cases[] = {
		{"class=", BAD_CLASS},
		{"class=bad/name", BAD_CLASS},
		{"class=a,b", BAD_CLASS},
		{"class=a:b", BAD_CLASS},
		{"class=\xc3\xbcn", BAD_CLASS},
		{"class=ccccccccccccccccccccccccccccccccccccccccccccccccccc"
		 "ccccccccccccccc",
		 BAD_CLASS}, /* 65 */
		{"senders=", BAD_SENDERS},
		{"senders=nobody", BAD_SENDERS},
		{"senders=a@", BAD_SENDERS},
		{"senders=@", BAD_SENDERS},
		{"senders=a@b@c.test", BAD_SENDERS},
		{"senders=a@x.test,,b@x.test", BAD_SENDERS},
		{"senders=,a@x.test", BAD_SENDERS},
		{"senders=a@x.test,nobody", BAD_SENDERS},
		{"other=1 senders=a@x.test;b@x.test", BAD_SENDERS},
	};
	char line[512], *data;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[256];

		/* Comment, blank, good user, then the bad line: line 4. */
		snprintf(line, sizeof(line),
			 "# users\n\nbob:@B\nalice:@Y:1:1::/h:/s:%s\n",
			 cases[i].extra);
		snprintf(why, sizeof(why), ":4%s", cases[i].why);
		data = expand(line);
		expect_refusal(data, strlen(data), why);
		free(data);
	}
}

/* The longest class name, 64 characters, is accepted. */
static void
test_extra_class_name_length(void **state)
{
	char tmpl[256], name[65];
	struct passwd_db *db;

	(void)state;
	memset(name, 'c', 64);
	name[64] = '\0';
	snprintf(tmpl, sizeof(tmpl), "alice:@Y:1:1::/h:/s:class=%s\n", name);
	db = load_tmpl(tmpl);
	assert_string_equal(passwd_db_user_info(db, "alice")->class_name, name);
	passwd_db_free(db);
}

/* exists() for passwd_db_check_classes(): arg is a NULL-ended list. */
static bool
class_in(const char *name, void *arg)
{
	for (const char *const *c = arg; *c != NULL; c++)
		if (strcmp(*c, name) == 0)
			return true;
	return false;
}

static void
test_check_classes(void **state)
{
	static const char *const known[] = {"bulk", "slow", NULL};
	static const char *const none[] = {NULL};
	char path[512], err[512], want[1024];
	struct passwd_db *db;

	(void)state;
	db = load_tmpl_path("alice:@Y:1:1::/h:/s:class=bulk\n"
			    "bob:@Y\n"
			    "carol:@Y:1:1::/h:/s:senders=c@x.test\n"
			    "dave:@Y:1:1::/h:/s:class=slow\n",
			    path, sizeof(path));
	err[0] = '\0';
	assert_int_equal(passwd_db_check_classes(db, class_in, (void *)known,
						 err, sizeof(err)),
			 0);
	assert_string_equal(err, "");
	/* Without the classes: the first user's line and name. */
	assert_int_equal(passwd_db_check_classes(db, class_in, (void *)none,
						 err, sizeof(err)),
			 -1);
	snprintf(want, sizeof(want),
		 "%s:1: class=bulk: no such class in limits.classes", path);
	assert_string_equal(err, want);
	passwd_db_free(db);

	/* Class names are exact; the line is the entry's own. */
	db = load_tmpl_path("# users\n"
			    "alice:@Y:1:1::/h:/s:class=bulk\n"
			    "\n"
			    "dave:@Y:1:1::/h:/s:class=Slow\n",
			    path, sizeof(path));
	assert_int_equal(passwd_db_check_classes(db, class_in, (void *)known,
						 err, sizeof(err)),
			 -1);
	snprintf(want, sizeof(want),
		 "%s:4: class=Slow: no such class in limits.classes", path);
	assert_string_equal(err, want);
	/* A short buffer is cut, still terminated; none at all is fine. */
	memset(err, 'x', sizeof(err));
	assert_int_equal(
		passwd_db_check_classes(db, class_in, (void *)known, err, 8),
		-1);
	assert_int_equal(strlen(err), 7);
	assert_int_equal(
		passwd_db_check_classes(db, class_in, (void *)known, NULL, 0),
		-1);
	passwd_db_free(db);

	/* No class= anywhere: nothing to check. */
	db = load_tmpl_path("alice:@Y\nbob:@B:1:1::/h:/s:senders=b@x.test\n",
			    path, sizeof(path));
	assert_int_equal(passwd_db_check_classes(db, class_in, (void *)none,
						 err, sizeof(err)),
			 0);
	passwd_db_free(db);
}

static void
test_permissions(void **state)
{
	static const mode_t bad[] = {0666, 0620, 0602, 0660};
	static const mode_t readable[] = {0644, 0604, 0444};
	static const mode_t good[] = {0600, 0640, 0400, 0440};
	char path[512], err[512];
	char *text = expand("alice:@Y\n");
	struct passwd_db *db;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file_n(path, sizeof(path), text, strlen(text), bad[i]);
		err[0] = '\0';
		db = passwd_db_load(path, err, sizeof(err));
		assert_null(db);
		assert_non_null(strstr(err, "group- or world-writable"));
		assert_memory_equal(err, path, strlen(path));
	}
	/* The hashes are secrets: world-readable is refused too. */
	for (size_t i = 0; i < sizeof(readable) / sizeof(readable[0]); i++) {
		write_file_n(path, sizeof(path), text, strlen(text),
			     readable[i]);
		err[0] = '\0';
		db = passwd_db_load(path, err, sizeof(err));
		assert_null(db);
		assert_non_null(strstr(err, "readable by every user"));
		assert_memory_equal(err, path, strlen(path));
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		write_file_n(path, sizeof(path), text, strlen(text), good[i]);
		db = passwd_db_load(path, err, sizeof(err));
		if (db == NULL)
			fail_msg("mode %04o refused: %s", (unsigned)good[i],
				 err);
		assert_int_equal(passwd_db_verify(db, "alice", PASS), 1);
		passwd_db_free(db);
	}
	free(text);
}

static void
test_missing_and_not_regular(void **state)
{
	char path[512], err[512] = "";

	(void)state;
	snprintf(path, sizeof(path), "%s/does-not-exist", tmpdir);
	assert_null(passwd_db_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot open the users file"));
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, strerror(ENOENT)));

	assert_null(passwd_db_load(tmpdir, err, sizeof(err)));
	assert_non_null(strstr(err, "not a regular file"));

	passwd_db_free(NULL);
	assert_int_equal(passwd_db_count(NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_schemes),
		cmocka_unit_test(test_hash_costs),
		cmocka_unit_test(test_verify_each_scheme),
		cmocka_unit_test(test_unknown_user_dummy_hash),
		cmocka_unit_test(test_dovecot_prefixes),
		cmocka_unit_test(test_migration_schemes),
		cmocka_unit_test(test_bcrypt_variants),
		cmocka_unit_test(test_comments_blank_crlf),
		cmocka_unit_test(test_user_name_length),
		cmocka_unit_test(test_malformed_files),
		cmocka_unit_test(test_long_user_refused),
		cmocka_unit_test(test_truncated_hash_refused),
		cmocka_unit_test(test_nul_byte_refused),
		cmocka_unit_test(test_extra_fields),
		cmocka_unit_test(test_extra_fields_refused),
		cmocka_unit_test(test_extra_class_name_length),
		cmocka_unit_test(test_check_classes),
		cmocka_unit_test(test_permissions),
		cmocka_unit_test(test_missing_and_not_regular),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
