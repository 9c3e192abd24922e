/*
 * passwd_db.h - the passwd-file credential back end.
 *
 * File format (Dovecot passwd-file compatible):
 *   user:hash[:uid:gid:gecos:home:shell:extra fields]
 * The extra fields are space-separated key=value; msaproxy reads
 *   class=NAME              limits.classes entry for this user
 *   senders=LIST            addresses and @domains the user may use in
 *                           MAIL FROM (comma-separated)
 * and ignores the rest (Dovecot's own).
 * blank lines and lines starting with '#' skipped.  hash is a crypt(3)
 * string: yescrypt "$y$", bcrypt "$2b$" (also $2a$/$2y$), sha512-crypt
 * "$6$", MD5-CRYPT "$1$", or an Argon2 string "$argon2i$"/"$argon2id$"
 * (libargon2), optionally behind a Dovecot scheme prefix "{BLF-CRYPT}",
 * "{SHA512-CRYPT}", "{MD5-CRYPT}", "{ARGON2I}", "{ARGON2ID}", "{CRYPT}";
 * or Dovecot's "{SSHA}"/"{SSHA512}" (base64 of the digest and the salt).
 * MD5-CRYPT and SSHA are fast hashes: a load that finds some logs
 * msg=passwd-weak-hashes.  Anything else is refused at load with
 * "path:line: why" (the whole file: docs/AUTH.md says why).  The file
 * must not be group- or world-writable.
 */
#ifndef MSAPROXY_AUTH_PASSWD_DB_H
#define MSAPROXY_AUTH_PASSWD_DB_H

#include <stdbool.h>
#include <stddef.h>

struct passwd_db;

/* What the extra fields say about a user; NULL members when absent. */
struct passwd_user_info {
	const char *class_name;
	const char *senders;
};

struct passwd_db *passwd_db_load(const char *path, char *err, size_t errlen);
/* A database with no users (auth.backend other than passwd, no file). */
struct passwd_db *passwd_db_empty(char *err, size_t errlen);
void passwd_db_free(struct passwd_db *db);
size_t passwd_db_count(const struct passwd_db *db);
/* The i-th login (in sorted order; NULL past the end), for the status
 * page's names of the users nearest their limits. */
const char *passwd_db_login(const struct passwd_db *db, size_t i);

/* 1 if user exists and pass matches, 0 otherwise.  An unknown user costs a
 * hash computation of the same scheme and cost as a real one, so timing
 * does not tell which users exist.  Thread-safe (crypt_r). */
int passwd_db_verify(const struct passwd_db *db, const char *user,
		     const char *pass);

/* The stored crypt(3) hash of user, or NULL if there is no such user: what
 * the auth cache fingerprints so a changed entry voids a cached login. */
const char *passwd_db_stored_hash(const struct passwd_db *db, const char *user);

/* The user's extra fields, or NULL if there is no such user. */
const struct passwd_user_info *passwd_db_user_info(const struct passwd_db *db,
						   const char *user);
/* Every class= names a class exists() knows; else -1 with
 * "path:line: class=NAME: no such class in limits.classes". */
int passwd_db_check_classes(const struct passwd_db *db,
			    bool (*exists)(const char *name, void *arg),
			    void *arg, char *err, size_t errlen);

/* A new hash of password for the passwd file; scheme is "yescrypt"
 * (default when NULL), "bcrypt" or "sha512-crypt".  Returns a malloc'd
 * string or NULL with err set.  passwd_hash() uses the scheme's default
 * cost; passwd_hash_cost() takes one (0: the default): yescrypt's cost
 * 1..11 (default 5), bcrypt's 4..31 (default 12, "$2b$12$"),
 * sha512-crypt's rounds 1000..999999999 (default 5000).  Out of range:
 * NULL, and err says the range. */
char *passwd_hash(const char *password, const char *scheme, char *err,
		  size_t errlen);
char *passwd_hash_cost(const char *password, const char *scheme,
		       unsigned long cost, char *err, size_t errlen);
/* 0 if passwd_hash_cost() would take scheme and cost, else -1 with err
 * set (hash-password says so before it asks for the password). */
int passwd_hash_check(const char *scheme, unsigned long cost, char *err,
		      size_t errlen);

#endif
