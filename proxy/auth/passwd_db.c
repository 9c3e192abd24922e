/*
 * passwd_db.c - the passwd-file credential back end (auth.passwd_file).
 *
 * The whole file is read once at start into a sorted array of
 * {user, hash}; lookups are a binary search (no hash table, so no key can
 * be chosen to make lookups slow).  Loading is strict: any line that is not
 * "user:hash[:ignored...]" with a supported crypt(3) scheme stops the load
 * with "path:line: why", as does a group- or world-writable file, and a
 * world-readable one (the hashes are secrets: an offline guess costs no
 * failed login).  Group-readable is the packaged layout (root:msaproxy
 * 0640); audit.c warns when the group is another one.
 *
 * Security stance: passwords are never logged or kept; every buffer that
 * held one (and crypt_r's work area) is cleared with OPENSSL_cleanse.  The
 * hash comparison is constant-time (CRYPTO_memcmp).  An unknown user costs
 * the same crypt_r as a known one: the password is hashed against the
 * first entry's hash (same scheme and cost as real entries in a file that
 * uses one scheme) and the result thrown away, so response time does not
 * reveal which users exist.  crypt_r gets a heap work area per call (it is
 * 32 KiB), so verification is thread-safe and stack-friendly.
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth/passwd_db.h"
#include "lib/log.h"
#include "config/config_value.h" /* the class name rule */

#ifndef CRYPT_GENSALT_IMPLEMENTS_AUTO_ENTROPY
#error "libxcrypt with crypt_gensalt auto entropy is required"
#endif

#define PASSWD_USER_MAX	     255	  /* bytes, as SASL_FIELD_MAX - 1 */
#define PASSWD_FILE_MAX	     (256u << 20) /* refuse larger files */
#define PASSWD_FILE_BAD_MODE (S_IWGRP | S_IWOTH)

enum scheme {
	SCHEME_NONE,
	SCHEME_YESCRYPT,
	SCHEME_BCRYPT,
	SCHEME_SHA512,
	/* What Dovecot migrations bring: */
	SCHEME_MD5,	/* "$1$" (MD5-CRYPT): weak, warned about at load */
	SCHEME_SSHA,	/* {SSHA}: base64(SHA-1(pass salt) salt): weak */
	SCHEME_SSHA512, /* {SSHA512}: base64(SHA-512(pass salt) salt): weak */
	SCHEME_ARGON2,	/* "$argon2i$", "$argon2id$" (libargon2) */
};

struct entry {
	const char *user; /* points into db->text */
	const char *hash; /* crypt(3) string, Dovecot prefix stripped */
	size_t hashlen;
	enum scheme scheme;
	unsigned long line;
	struct passwd_user_info info; /* extra fields; into db->text */
};

struct passwd_db {
	char *path;
	char *text; /* the file, NUL-split in place */
	size_t textlen;
	struct entry *entries; /* sorted by user */
	size_t count;
	const char *dummy; /* hash for unknown users: the first entry's */
	enum scheme dummy_scheme;
	size_t weak; /* entries with a fast hash (MD5-CRYPT, SSHA) */
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- reading the file ---- */

/* The file, NUL-terminated, in a malloc'd buffer; NULL with err set. */
static char *
passwd_db_read_file(const char *path, size_t *lenp, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		seterr(err, errlen, "cannot open the users file %s: %s", path,
		       strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0) {
		seterr(err, errlen, "%s: fstat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		seterr(err, errlen, "the users file %s is not a regular file",
		       path);
		goto fail;
	}
	if (st.st_mode & PASSWD_FILE_BAD_MODE) {
		seterr(err, errlen,
		       "%s: file is group- or world-writable (mode %04o); "
		       "chmod go-w it",
		       path, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_mode & S_IROTH) {
		seterr(err, errlen,
		       "%s: file is readable by every user (mode %04o); "
		       "chmod o-rwx it",
		       path, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if ((uintmax_t)st.st_size > PASSWD_FILE_MAX) {
		seterr(err, errlen, "%s: file too large", path);
		goto fail;
	}

	/* +2: room for the NUL and for the read that sees EOF. */
	cap = (size_t)st.st_size + 2;
	for (;;) {
		ssize_t n;

		if (buf == NULL || len + 1 >= cap) {
			size_t ncap = buf == NULL ? cap : cap * 2;
			char *nbuf;

			if (ncap > PASSWD_FILE_MAX + 1)
				ncap = PASSWD_FILE_MAX + 1;
			if (buf != NULL && len + 1 >= ncap) {
				seterr(err, errlen, "%s: file too large", path);
				goto fail;
			}
			nbuf = malloc(ncap);
			if (nbuf == NULL) {
				seterr(err, errlen, "%s: out of memory", path);
				goto fail;
			}
			if (buf != NULL) {
				memcpy(nbuf, buf, len);
				OPENSSL_cleanse(buf, len);
				free(buf);
			}
			buf = nbuf;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			seterr(err, errlen, "%s: read: %s", path,
			       strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	*lenp = len;
	return buf;

fail:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	close(fd);
	return NULL;
}

/* ---- hash syntax ---- */

static int
is_crypt_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '/';
}

static int
all_crypt_chars(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_crypt_char(s[i]))
			return 0;
	return 1;
}

/* The scheme of a crypt(3) string by its id, SCHEME_NONE if unsupported. */
static enum scheme
scheme_of(const char *h)
{
	if (strncmp(h, "$y$", 3) == 0)
		return SCHEME_YESCRYPT;
	if (strncmp(h, "$2b$", 4) == 0 || strncmp(h, "$2a$", 4) == 0 ||
	    strncmp(h, "$2y$", 4) == 0)
		return SCHEME_BCRYPT;
	if (strncmp(h, "$6$", 3) == 0)
		return SCHEME_SHA512;
	if (strncmp(h, "$1$", 3) == 0)
		return SCHEME_MD5;
	if (strncmp(h, "$argon2i$", 9) == 0 ||
	    strncmp(h, "$argon2id$", 10) == 0)
		return SCHEME_ARGON2;
	return SCHEME_NONE;
}

/* {SSHA} and {SSHA512}: the digest and salt decoded (at most 64 + 64
 * bytes); 0 when h is not that. */
static size_t
ssha_decode(enum scheme s, const char *h, unsigned char *out, size_t cap)
{
	size_t len = strlen(h), dlen = s == SCHEME_SSHA ? 20 : 64;
	unsigned char buf[3 * 256 / 4 + 3];
	int n;

	if (len == 0 || len % 4 != 0 || len > 4 * ((dlen + 64 + 2) / 3))
		return 0;
	n = EVP_DecodeBlock(buf, (const unsigned char *)h, (int)len);
	if (n < 0)
		return 0;
	/* EVP_DecodeBlock counts the padding's zero bytes too. */
	if (h[len - 1] == '=')
		n--;
	if (h[len - 2] == '=')
		n--;
	if ((size_t)n <= dlen || (size_t)n > cap)
		return 0;
	memcpy(out, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof(buf));
	return (size_t)n;
}

/*
 * Whether h is a complete hash of its scheme, so that a truncated or
 * mangled entry is refused at load rather than silently never matching:
 *   $2b$NN$<53>                 NN = 04..31
 *   $6$[rounds=N$]<salt<=16>$<86>
 *   $y$<params>$<salt>$<43>
 */
static int
hash_well_formed(enum scheme s, const char *h, size_t len)
{
	const char *f[6];
	size_t flen[6], nf = 0;
	const char *p = h + 1, *end = h + len;

	/* Split after the leading '$' into at most 6 fields. */
	while (nf < 6) {
		const char *d = memchr(p, '$', (size_t)(end - p));

		f[nf] = p;
		flen[nf] = d ? (size_t)(d - p) : (size_t)(end - p);
		nf++;
		if (d == NULL)
			break;
		p = d + 1;
	}
	if (nf == 6)
		return 0;

	switch (s) {
	case SCHEME_BCRYPT:
		/* "2b", "NN", salt+hash */
		if (nf != 3 || flen[1] != 2 || flen[2] != 53)
			return 0;
		if (f[1][0] < '0' || f[1][0] > '3' || f[1][1] < '0' ||
		    f[1][1] > '9')
			return 0;
		{
			int cost = (f[1][0] - '0') * 10 + (f[1][1] - '0');
			if (cost < 4 || cost > 31)
				return 0;
		}
		return all_crypt_chars(f[2], flen[2]);
	case SCHEME_SHA512: {
		size_t i = 1;

		if (nf == 4) {
			const char *r = f[1];
			size_t rl = flen[1];

			if (rl <= 7 || strncmp(r, "rounds=", 7) != 0)
				return 0;
			for (size_t k = 7; k < rl; k++)
				if (r[k] < '0' || r[k] > '9')
					return 0;
			i = 2;
		} else if (nf != 3) {
			return 0;
		}
		if (flen[i] > 16 || !all_crypt_chars(f[i], flen[i]))
			return 0;
		return flen[i + 1] == 86 && all_crypt_chars(f[i + 1], 86);
	}
	case SCHEME_YESCRYPT:
		if (nf != 4 || flen[1] == 0 || flen[2] == 0 || flen[3] != 43)
			return 0;
		return all_crypt_chars(f[1], flen[1]) &&
		       all_crypt_chars(f[2], flen[2]) &&
		       all_crypt_chars(f[3], flen[3]);
	case SCHEME_MD5:
		/* "1", salt of 1..8, 22 */
		return nf == 3 && flen[1] >= 1 && flen[1] <= 8 &&
		       all_crypt_chars(f[1], flen[1]) && flen[2] == 22 &&
		       all_crypt_chars(f[2], 22);
	case SCHEME_ARGON2:
		/* "argon2id", "v=19", "m=..,t=..,p=..", salt, hash */
		return nf == 5 && strncmp(f[1], "v=", 2) == 0 &&
		       strncmp(f[2], "m=", 2) == 0 && flen[3] >= 8 &&
		       flen[4] >= 16;
	case SCHEME_SSHA:
	case SCHEME_SSHA512: {
		unsigned char d[128];
		size_t n = ssha_decode(s, h, d, sizeof(d));

		return n > 0;
	}
	case SCHEME_NONE:
		break;
	}
	return 0;
}

/*
 * Strip a Dovecot scheme prefix from *hp, and say its scheme in *sp (the
 * crypt id's, or SSHA's, which has none).  0 if there was none or it fits
 * the hash behind it; -1 for an unknown prefix (unsupported), -2 for a
 * prefix that contradicts the hash.
 */
static int
strip_dovecot_prefix(const char **hp, enum scheme *sp)
{
	static const struct {
		const char *prefix;
		enum scheme scheme; /* SCHEME_NONE: any supported */
	} prefixes[] = {
		{"{BLF-CRYPT}", SCHEME_BCRYPT},
		{"{SHA512-CRYPT}", SCHEME_SHA512},
		{"{MD5-CRYPT}", SCHEME_MD5},
		{"{ARGON2I}", SCHEME_ARGON2},
		{"{ARGON2ID}", SCHEME_ARGON2},
		{"{SSHA512}", SCHEME_SSHA512},
		{"{SSHA}", SCHEME_SSHA},
		{"{CRYPT}", SCHEME_NONE},
	};
	const char *h = *hp;

	*sp = scheme_of(h);
	if (h[0] != '{')
		return 0;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t n = strlen(prefixes[i].prefix);
		enum scheme s;

		if (strncmp(h, prefixes[i].prefix, n) != 0)
			continue;
		if (prefixes[i].scheme == SCHEME_SSHA ||
		    prefixes[i].scheme == SCHEME_SSHA512) {
			*hp = h + n;
			*sp = prefixes[i].scheme;
			return 0;
		}
		s = scheme_of(h + n);
		*sp = s;
		if (s == SCHEME_NONE)
			return -1;
		if (prefixes[i].scheme != SCHEME_NONE &&
		    prefixes[i].scheme != s)
			return -2;
		*hp = h + n;
		return 0;
	}
	return -1;
}

/* ---- parsing ---- */

/* "a@example.com,@example.org": addresses or @domains, no spaces. */
static bool
senders_ok(const char *s)
{
	const char *p = s;

	if (*s == '\0')
		return false;
	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		const char *at = memchr(p, '@', n);

		if (n == 0 || at == NULL || at == p + n - 1 ||
		    memchr(at + 1, '@', (size_t)(p + n - at - 1)) != NULL)
			return false;
		p += n;
		if (*p == ',')
			p++;
	}
	return true;
}

/*
 * The extra fields: everything after the 7th ':' (Dovecot's
 * user:pass:uid:gid:gecos:home:shell:extra), space-separated key=value.
 * Ours are class= and senders=; other keys are Dovecot's and ignored.
 */
static int
parse_extra(char *x, struct passwd_user_info *info, const char *path,
	    unsigned long lineno, char *err, size_t errlen)
{
	char *save = NULL;

	for (char *tok = strtok_r(x, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (strncmp(tok, "class=", 6) == 0) {
			if (!config_value_class_name(tok + 6)) {
				seterr(err, errlen,
				       "%s:%lu: class=: a class name is "
				       "letters, digits, '_', '.' or '-'",
				       path, lineno);
				return -1;
			}
			info->class_name = tok + 6;
		} else if (strncmp(tok, "senders=", 8) == 0) {
			if (!senders_ok(tok + 8)) {
				seterr(err, errlen,
				       "%s:%lu: senders=: expected addresses "
				       "or @domains separated by commas",
				       path, lineno);
				return -1;
			}
			info->senders = tok + 8;
		}
	}
	return 0;
}

/* Past the hash field (at hend, NUL-terminated line end at eol): the
 * fields up to the extras, which start after 5 more ':'. */
static char *
extra_fields(char *hend, char *eol)
{
	char *p = hend;

	for (int i = 0; i < 5; i++) {
		if (p >= eol)
			return NULL;
		p = memchr(p + 1, ':', (size_t)(eol - p - 1));
		if (p == NULL)
			return NULL;
	}
	return p + 1;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->user, y->user);

	if (c != 0)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

static int
blank_line(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return 0;
	return 1;
}

static int
parse(struct passwd_db *db, const char *path, char *err, size_t errlen)
{
	char *p = db->text, *end = db->text + db->textlen;
	size_t cap = 0;
	unsigned long lineno = 0;

	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *eol = nl ? nl : end;
		char *colon, *hend, *h, *extra;
		struct passwd_user_info info = {NULL, NULL};
		const char *hash;
		size_t ulen;
		enum scheme s;
		int rc;

		lineno++;
		if (eol > p && eol[-1] == '\r')
			eol--;
		if (memchr(p, '\0', (size_t)(eol - p)) != NULL) {
			seterr(err, errlen, "%s:%lu: NUL byte in line", path,
			       lineno);
			return -1;
		}
		if (eol == p || p[0] == '#' || blank_line(p, (size_t)(eol - p)))
			goto next;

		colon = memchr(p, ':', (size_t)(eol - p));
		if (colon == NULL) {
			seterr(err, errlen, "%s:%lu: missing ':'", path,
			       lineno);
			return -1;
		}
		ulen = (size_t)(colon - p);
		if (ulen == 0) {
			seterr(err, errlen, "%s:%lu: empty user name", path,
			       lineno);
			return -1;
		}
		if (ulen > PASSWD_USER_MAX) {
			seterr(err, errlen,
			       "%s:%lu: user name longer than %d bytes", path,
			       lineno, PASSWD_USER_MAX);
			return -1;
		}
		for (size_t i = 0; i < ulen; i++) {
			unsigned char c = (unsigned char)p[i];

			if (c < 0x20 || c == 0x7f) {
				seterr(err, errlen,
				       "%s:%lu: control character in user name",
				       path, lineno);
				return -1;
			}
		}
		h = colon + 1;
		hend = memchr(h, ':', (size_t)(eol - h));
		if (hend == NULL)
			hend = eol;
		extra = hend < eol ? extra_fields(hend, eol) : NULL;
		*colon = '\0';
		*eol = '\0';
		*hend = '\0'; /* the ':', '\r', '\n' or the final NUL */
		if (extra != NULL &&
		    parse_extra(extra, &info, path, lineno, err, errlen) < 0)
			return -1;

		hash = h;
		rc = strip_dovecot_prefix(&hash, &s);
		if (rc == -2) {
			seterr(err, errlen,
			       "%s:%lu: scheme prefix does not match the hash "
			       "for user %s",
			       path, lineno, p);
			return -1;
		}
		if (rc != 0)
			s = SCHEME_NONE;
		if (s == SCHEME_NONE) {
			seterr(err, errlen,
			       "%s:%lu: unsupported hash scheme for user %s",
			       path, lineno, p);
			return -1;
		}
		if (!hash_well_formed(s, hash, strlen(hash))) {
			seterr(err, errlen,
			       "%s:%lu: malformed hash for user %s", path,
			       lineno, p);
			return -1;
		}

		if (db->count == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct entry *ne;

			ne = reallocarray(db->entries, ncap, sizeof(*ne));
			if (ne == NULL) {
				seterr(err, errlen, "%s: out of memory", path);
				return -1;
			}
			db->entries = ne;
			cap = ncap;
		}
		db->entries[db->count++] = (struct entry){
			.user = p,
			.hash = hash,
			.hashlen = strlen(hash),
			.scheme = s,
			.line = lineno,
			.info = info,
		};
		if (s == SCHEME_MD5 || s == SCHEME_SSHA || s == SCHEME_SSHA512)
			db->weak++;
	next:
		if (nl == NULL)
			break;
		p = nl + 1;
	}

	if (db->count == 0) {
		seterr(err, errlen, "%s: no users", path);
		return -1;
	}
	db->dummy = db->entries[0].hash;
	db->dummy_scheme = db->entries[0].scheme;

	qsort(db->entries, db->count, sizeof(*db->entries), entry_cmp);

	/* Report the earliest line that repeats a user seen before. */
	{
		const struct entry *dup = NULL;

		for (size_t i = 1; i < db->count; i++) {
			const struct entry *e = &db->entries[i];

			if (strcmp(e->user, db->entries[i - 1].user) != 0)
				continue;
			if (dup == NULL || e->line < dup->line)
				dup = e;
		}
		if (dup != NULL) {
			seterr(err, errlen, "%s:%lu: duplicate user %s", path,
			       dup->line, dup->user);
			return -1;
		}
	}
	return 0;
}

/* ---- API ---- */

struct passwd_db *
passwd_db_load(const char *path, char *err, size_t errlen)
{
	struct passwd_db *db;

	db = calloc(1, sizeof(*db));
	if (db == NULL) {
		seterr(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	db->path = strdup(path);
	db->text = passwd_db_read_file(path, &db->textlen, err, errlen);
	if (db->path == NULL || db->text == NULL ||
	    parse(db, path, err, errlen) != 0) {
		passwd_db_free(db);
		return NULL;
	}
	if (db->weak > 0)
		log_warn("passwd-weak-hashes",
			 " path=%s users=%zu detail=\"%s\"", path, db->weak,
			 "MD5-CRYPT or SSHA: fast hashes, rehash with "
			 "msaproxy hash-password as users log in");
	return db;
}

struct passwd_db *
passwd_db_empty(char *err, size_t errlen)
{
	struct passwd_db *db = calloc(1, sizeof(*db));

	if (db == NULL || (db->path = strdup("-")) == NULL) {
		free(db);
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	return db;
}

void
passwd_db_free(struct passwd_db *db)
{
	if (db == NULL)
		return;
	if (db->text != NULL) {
		OPENSSL_cleanse(db->text, db->textlen);
		free(db->text);
	}
	free(db->entries);
	free(db->path);
	free(db);
}

size_t
passwd_db_count(const struct passwd_db *db)
{
	return db != NULL ? db->count : 0;
}

const char *
passwd_db_login(const struct passwd_db *db, size_t i)
{
	return db != NULL && i < db->count ? db->entries[i].user : NULL;
}

static int
user_cmp(const void *key, const void *elem)
{
	const struct entry *e = elem;

	return strcmp(key, e->user);
}

static const struct entry *
passwd_db_find(const struct passwd_db *db, const char *user)
{
	if (db == NULL || db->count == 0 || user == NULL ||
	    strnlen(user, PASSWD_USER_MAX + 1) > PASSWD_USER_MAX)
		return NULL;
	return bsearch(user, db->entries, db->count, sizeof(struct entry),
		       user_cmp);
}

const char *
passwd_db_stored_hash(const struct passwd_db *db, const char *user)
{
	const struct entry *e = passwd_db_find(db, user);

	return e != NULL ? e->hash : NULL;
}

/* The schemes crypt(3) does not know: SSHA by digest, Argon2 by
 * libargon2. */
static int
verify_other(enum scheme s, const char *hash, const char *pass)
{
	unsigned char d[128], md[EVP_MAX_MD_SIZE];
	size_t n, dlen = s == SCHEME_SSHA ? 20 : 64;
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	int ok;

	if (s == SCHEME_ARGON2)
		return argon2_verify(hash, pass, strlen(pass),
				     strncmp(hash, "$argon2id$", 10) == 0
					     ? Argon2_id
					     : Argon2_i) == ARGON2_OK;
	n = ssha_decode(s, hash, d, sizeof(d));
	ctx = EVP_MD_CTX_new();
	ok = n > dlen && ctx != NULL &&
	     EVP_DigestInit_ex(ctx,
			       s == SCHEME_SSHA ? EVP_sha1() : EVP_sha512(),
			       NULL) == 1 &&
	     EVP_DigestUpdate(ctx, pass, strlen(pass)) == 1 &&
	     EVP_DigestUpdate(ctx, d + dlen, n - dlen) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == dlen &&
	     CRYPTO_memcmp(md, d, dlen) == 0;
	EVP_MD_CTX_free(ctx);
	OPENSSL_cleanse(d, sizeof(d));
	OPENSSL_cleanse(md, sizeof(md));
	return ok;
}

int
passwd_db_verify(const struct passwd_db *db, const char *user, const char *pass)
{
	const struct entry *e = NULL;
	struct crypt_data *cd;
	const char *out, *hash;
	enum scheme scheme;
	int ok = 0;

	if (db == NULL || db->count == 0 || user == NULL || pass == NULL)
		return 0;
	e = passwd_db_find(db, user);

	/* Unknown user: the same work against the dummy hash, result
	 * discarded. */
	hash = e != NULL ? e->hash : db->dummy;
	scheme = e != NULL ? e->scheme : db->dummy_scheme;
	if (scheme == SCHEME_ARGON2 || scheme == SCHEME_SSHA ||
	    scheme == SCHEME_SSHA512) {
		ok = verify_other(scheme, hash, pass);
		return e != NULL ? ok : 0;
	}
	cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return 0;
	out = crypt_r(pass, hash, cd);
	if (e != NULL && out != NULL && strlen(out) == e->hashlen &&
	    CRYPTO_memcmp(out, e->hash, e->hashlen) == 0)
		ok = 1;
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return ok;
}

/* The schemes hash-password writes: crypt(3) prefix, cost bounds and the
 * default (libxcrypt's own, but bcrypt's: its 5 is 2^5 rounds, far below
 * what a password file wants today; OWASP and Dovecot say 10 to 12). */
static const struct hash_scheme {
	const char *name, *prefix, *unit;
	unsigned long min, max, dflt;
} hash_schemes[] = {
	{"yescrypt", "$y$", "cost", 1, 11, 5},
	{"bcrypt", "$2b$", "cost", 4, 31, 12},
	{"sha512-crypt", "$6$", "rounds", 1000, 999999999, 5000},
};

/* The scheme called name (NULL: yescrypt), or NULL with err set. */
static const struct hash_scheme *
hash_scheme_find(const char *name, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(hash_schemes) / sizeof(hash_schemes[0]);
	     i++)
		if (name == NULL || strcmp(name, hash_schemes[i].name) == 0)
			return &hash_schemes[i];
	seterr(err, errlen,
	       "unknown hash scheme %s (yescrypt, bcrypt, sha512-crypt)", name);
	return NULL;
}

int
passwd_hash_check(const char *scheme, unsigned long cost, char *err,
		  size_t errlen)
{
	const struct hash_scheme *h = hash_scheme_find(scheme, err, errlen);

	if (h == NULL)
		return -1;
	if (cost != 0 && (cost < h->min || cost > h->max)) {
		seterr(err, errlen, "%s %lu: %s takes %lu to %lu", h->unit,
		       cost, h->name, h->min, h->max);
		return -1;
	}
	return 0;
}

char *
passwd_hash_cost(const char *password, const char *scheme, unsigned long cost,
		 char *err, size_t errlen)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	const struct hash_scheme *h;
	struct crypt_data *cd;
	const char *out;
	char *res = NULL;

	if (password == NULL) {
		seterr(err, errlen, "no password");
		return NULL;
	}
	if (passwd_hash_check(scheme, cost, err, errlen) != 0)
		return NULL;
	h = hash_scheme_find(scheme, NULL, 0);
	if (cost == 0)
		cost = h->dflt;
	/* rbytes NULL: libxcrypt draws the salt from the kernel's random
	 * source. */
	if (crypt_gensalt_rn(h->prefix, cost, NULL, 0, setting,
			     sizeof(setting)) == NULL) {
		seterr(err, errlen, "crypt_gensalt: %s", strerror(errno));
		return NULL;
	}
	cd = calloc(1, sizeof(*cd));
	if (cd == NULL) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	out = crypt_r(password, setting, cd);
	if (out == NULL || out[0] != '$') {
		seterr(err, errlen, "crypt: hashing failed");
	} else {
		res = strdup(out);
		if (res == NULL)
			seterr(err, errlen, "out of memory");
	}
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return res;
}

char *
passwd_hash(const char *password, const char *scheme, char *err, size_t errlen)
{
	return passwd_hash_cost(password, scheme, 0, err, errlen);
}

const struct passwd_user_info *
passwd_db_user_info(const struct passwd_db *db, const char *user)
{
	const struct entry *e = passwd_db_find(db, user);

	return e != NULL ? &e->info : NULL;
}

int
passwd_db_check_classes(const struct passwd_db *db,
			bool (*exists)(const char *name, void *arg), void *arg,
			char *err, size_t errlen)
{
	for (size_t i = 0; i < db->count; i++) {
		const struct entry *e = &db->entries[i];

		if (e->info.class_name == NULL ||
		    exists(e->info.class_name, arg))
			continue;
		seterr(err, errlen,
		       "%s:%lu: class=%s: no such class in limits.classes",
		       db->path, e->line, e->info.class_name);
		return -1;
	}
	return 0;
}
