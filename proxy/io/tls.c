/*
 * tls.c - server TLS contexts, SNI, session tickets.
 *
 * Read tls.h first.  Defaults that matter for speed (measured, see
 * ../shared/DESIGN.md): ECDSA P-256 first, groups X25519:P-256,
 * SSL_MODE_RELEASE_BUFFERS, no server-side session cache (tickets only),
 * one TLS 1.3 ticket per handshake, ticket crypto through the EVP callback
 * with the cipher fetched once per worker.  A client offering ALPN without
 * "smtp" is refused in the handshake (ALPACA; RFC 7301 section 3.2).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "io/tls.h"

/* ---------------------------------------------------------------------
 * Ticket keys, shared by every worker
 */

struct ticket_key {
	unsigned char name[16];
	unsigned char aes[32];
	unsigned char hmac[32];
	time_t born;
};

static struct {
	pthread_rwlock_t lock;
	struct ticket_key cur, prev;
	time_t lifetime;
	int have_prev;
} tickets = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static int
ticket_key_new(struct ticket_key *k)
{
	if (RAND_bytes(k->name, sizeof(k->name)) != 1 ||
	    RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
		return -1;
	k->born = time(NULL);
	return 0;
}

/* Called with the write lock held. */
static void
ticket_rotate_locked(time_t now)
{
	struct ticket_key next;

	if (now - tickets.cur.born < tickets.lifetime)
		return; /* another worker rotated first */
	if (ticket_key_new(&next) != 0)
		return; /* keep the old key rather than fail handshakes */
	tickets.prev = tickets.cur;
	tickets.have_prev = 1;
	tickets.cur = next;
	OPENSSL_cleanse(&next, sizeof(next));
}

int
tls_global_init(const struct config *cfg, char *err, size_t errlen)
{
	tickets.lifetime = (time_t)(cfg->ticket_key_lifetime_ms / 1000);
	if (tickets.lifetime < 1)
		tickets.lifetime = 1;
	if (ticket_key_new(&tickets.cur) != 0) {
		snprintf(err, errlen, "cannot make a session ticket key");
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------------
 * Per-worker contexts
 */

struct tls_group {
	SSL_CTX *ctx;
	char **names; /* SNI names served, "*.example.com" allowed */
	size_t nnames;
};

struct tls_server {
	OSSL_LIB_CTX *libctx;
	EVP_CIPHER *ticket_cipher; /* AES-256-CBC, fetched once */
	struct tls_group *groups;
	size_t ngroups;
};

const char *
tls_error_string(char *buf, size_t len)
{
	unsigned long e;
	size_t n = 0;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		if (n + 2 < len) {
			if (n > 0)
				buf[n++] = ';';
			ERR_error_string_n(e, buf + n, len - n);
			n += strlen(buf + n);
		}
	}
	if (n == 0)
		snprintf(buf, len, "unknown TLS error");
	return buf;
}

static int
ticket_cb(SSL *ssl, unsigned char name[16], unsigned char iv[16],
	  EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
	struct tls_server *ts = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	const struct ticket_key *k = NULL;
	struct ticket_key key;
	OSSL_PARAM params[3];
	int ret = 1;
	time_t now = time(NULL);

	pthread_rwlock_rdlock(&tickets.lock);
	if (enc && now - tickets.cur.born >= tickets.lifetime) {
		/* Due for rotation: the write lock re-checks, so only one
		 * worker rotates. */
		pthread_rwlock_unlock(&tickets.lock);
		pthread_rwlock_wrlock(&tickets.lock);
		ticket_rotate_locked(now);
		pthread_rwlock_unlock(&tickets.lock);
		pthread_rwlock_rdlock(&tickets.lock);
	}
	if (enc) {
		k = &tickets.cur;
	} else if (memcmp(name, tickets.cur.name, 16) == 0) {
		k = &tickets.cur;
		/* TLS 1.3 tickets are single-use (RFC 8446 C.4): renew, or
		 * the client's next connection is a full handshake. */
		if (SSL_version(ssl) == TLS1_3_VERSION)
			ret = 2;
	} else if (tickets.have_prev &&
		   memcmp(name, tickets.prev.name, 16) == 0 &&
		   now - tickets.prev.born < 2 * tickets.lifetime) {
		k = &tickets.prev;
		ret = 2; /* good, but issue a fresh ticket */
	}
	if (k != NULL)
		key = *k;
	pthread_rwlock_unlock(&tickets.lock);
	if (k == NULL)
		return 0; /* unknown key: full handshake */

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
						      key.hmac, 32);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (enc) {
		memcpy(name, key.name, 16);
		if (RAND_bytes(iv, 16) != 1 ||
		    EVP_EncryptInit_ex(ectx, ts->ticket_cipher, NULL, key.aes,
				       iv) != 1)
			ret = -1;
	} else if (EVP_DecryptInit_ex(ectx, ts->ticket_cipher, NULL, key.aes,
				      iv) != 1) {
		ret = -1;
	}
	if (ret > 0 && EVP_MAC_CTX_set_params(hctx, params) != 1)
		ret = -1;
	OPENSSL_cleanse(&key, sizeof(key));
	return ret;
}

/* "*.example.com" matches exactly one more label in front. */
static int
name_matches(const char *pattern, const char *name)
{
	const char *dot;

	if (strcasecmp(pattern, name) == 0)
		return 1;
	if (pattern[0] != '*' || pattern[1] != '.')
		return 0;
	dot = strchr(name, '.');
	return dot != NULL && dot != name && strcasecmp(dot, pattern + 1) == 0;
}

static int
sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_server *ts = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	(void)alert;
	if (name == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	for (size_t g = 0; g < ts->ngroups; g++) {
		for (size_t i = 0; i < ts->groups[g].nnames; i++) {
			if (name_matches(ts->groups[g].names[i], name)) {
				if (g != 0)
					SSL_set_SSL_CTX(ssl, ts->groups[g].ctx);
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	/* Unknown name: serve the default certificate. */
	return SSL_TLSEXT_ERR_NOACK;
}

/* ALPACA (cross-protocol attacks): a client that names the protocols it
 * speaks and not SMTP, a browser sent here by an attacker say, gets the
 * no_application_protocol alert instead of replies it would take for
 * another protocol's.  "smtp" is chosen when offered; a client that offers
 * no ALPN at all, as nearly every mail client, never comes here.  The list
 * is well formed: OpenSSL checked it before the call. */
static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
	const unsigned char *in, unsigned int inlen, void *arg)
{
	static const char smtp[] = "smtp";
	unsigned int i = 0;

	(void)ssl;
	(void)arg;
	while (i < inlen) {
		unsigned int len = in[i];

		if (len > inlen - i - 1)
			break;
		if (len == sizeof(smtp) - 1 &&
		    memcmp(in + i + 1, smtp, len) == 0) {
			*out = in + i + 1;
			*outlen = (unsigned char)len;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + len;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static SSL_CTX *
ctx_new(struct tls_server *ts, const struct config *cfg, char *err,
	size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new_ex(ts->libctx, NULL, TLS_server_method());
	char e[256];

	if (ctx == NULL)
		goto fail;
	SSL_CTX_set_app_data(ctx, ts);
	if (SSL_CTX_set_min_proto_version(ctx, cfg->tls_min_version) != 1)
		goto fail;
	/* SSL_OP_CLEANSE_PLAINTEXT (OpenSSL wipes each record's plaintext
	 * once we have read it, so AUTH credentials do not linger in its
	 * buffers) is on from the end of the handshake (tls_established())
	 * until AUTH succeeds (tls_authed()): message data is not worth the
	 * extra pass. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
					 SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers) != 1) {
		config_fail(cfg, "tls.ciphers", "tls", err, errlen,
			    "OpenSSL: %s", tls_error_string(e, sizeof(e)));
		goto fail_quiet;
	}
	if (SSL_CTX_set_ciphersuites(ctx, cfg->tls_ciphersuites) != 1) {
		config_fail(cfg, "tls.ciphersuites", "tls", err, errlen,
			    "OpenSSL: %s", tls_error_string(e, sizeof(e)));
		goto fail_quiet;
	}
	if (SSL_CTX_set1_groups_list(ctx, cfg->tls_groups) != 1) {
		config_fail(cfg, "tls.groups", "tls", err, errlen,
			    "OpenSSL: %s", tls_error_string(e, sizeof(e)));
		goto fail_quiet;
	}
	if (cfg->tls_tickets) {
		SSL_CTX_set_num_tickets(ctx, cfg->tls13_tickets);
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
	} else {
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
	}
	SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, ts);
	/* On every context: after SNI the switched-to one's is called. */
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	return ctx;
fail:
	snprintf(err, errlen, "SSL_CTX: %s", tls_error_string(e, sizeof(e)));
fail_quiet:
	SSL_CTX_free(ctx);
	return NULL;
}

static void
names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The DNS names in a certificate file's subjectAltName, for SNI. */
static int
cert_file_names(const char *path, char ***names, size_t *nnames)
{
	BIO *bio = BIO_new_file(path, "r");
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	GENERAL_NAMES *gens;
	int n;

	*names = NULL;
	*nnames = 0;
	BIO_free(bio);
	if (x == NULL)
		return -1;
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	n = gens ? sk_GENERAL_NAME_num(gens) : 0;
	*names = calloc((size_t)n + 1, sizeof(char *));
	for (int i = 0; *names != NULL && i < n; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;
		int len;
		char *name;

		if (g->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(g->d.dNSName);
		len = ASN1_STRING_length(g->d.dNSName);
		name = strndup((const char *)d, (size_t)len);
		if (name == NULL || strlen(name) != (size_t)len) {
			free(name); /* embedded NUL: never match it */
			continue;
		}
		(*names)[(*nnames)++] = name;
	}
	GENERAL_NAMES_free(gens);
	X509_free(x);
	return *names == NULL ? -1 : 0;
}

/* The names an entry serves: configured, or else from its certificate. */
static int
entry_names(const struct config_cert *c, char ***names, size_t *n)
{
	if (c->nnames == 0)
		return cert_file_names(c->cert_file, names, n);
	*names = calloc(c->nnames, sizeof(char *));
	*n = 0;
	for (size_t i = 0; *names != NULL && i < c->nnames; i++) {
		if (((*names)[i] = strdup(c->names[i])) == NULL)
			return -1;
		(*n)++;
	}
	return *names == NULL ? -1 : 0;
}

static int
same_names(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++) {
		if (strcasecmp(a[i], b[i]) != 0)
			return 0;
	}
	return 1;
}

/* "tls.certificates[i].cert" or ".key" for config_fail(). */
static const char *
cert_key(char *buf, size_t len, size_t i, const char *which)
{
	snprintf(buf, len, "tls.certificates[%zu].%s", i, which);
	return buf;
}

/* Can the file be opened for reading?  Checked before OpenSSL reads it,
 * so that a missing or unreadable file is said in words, not as
 * OpenSSL's error queue. */
static int
file_opens(const struct config *cfg, const char *key, const char *what,
	   const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "r");

	if (fp == NULL)
		return config_fail(cfg, key, "tls", err, errlen,
				   "cannot open the %s %s: %s", what, path,
				   strerror(errno));
	fclose(fp);
	return 0;
}

/* A key with a passphrase is refused, never prompted for. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* Each error says what is wrong in words, then OpenSSL's own text. */
static int
load_cert(SSL_CTX *ctx, OSSL_LIB_CTX *libctx, const struct config *cfg,
	  size_t i, char *err, size_t errlen)
{
	const struct config_cert *c = &cfg->certs[i];
	char e[512], ck[64], kk[64];
	struct stat st;
	EVP_PKEY *key;
	BIO *bio;
	int ok;

	cert_key(ck, sizeof(ck), i, "cert");
	cert_key(kk, sizeof(kk), i, "key");
	/* A private key every local user can read is refused (audit.c also
	 * warns about a group that is not the proxy's). */
	if (stat(c->key_file, &st) == 0 && (st.st_mode & S_IROTH))
		return config_fail(cfg, kk, "tls", err, errlen,
				   "private key %s is readable by every user "
				   "(mode %04o); chmod o-rwx it",
				   c->key_file, (unsigned)(st.st_mode & 07777));
	if (file_opens(cfg, ck, "certificate", c->cert_file, err, errlen) != 0)
		return -1;
	if (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1)
		return config_fail(cfg, ck, "tls", err, errlen,
				   "%s holds no PEM certificate (chain) that "
				   "can be used: OpenSSL: %s",
				   c->cert_file,
				   tls_error_string(e, sizeof(e)));
	if (file_opens(cfg, kk, "private key", c->key_file, err, errlen) != 0)
		return -1;
	bio = BIO_new_file(c->key_file, "r");
	key = bio ? PEM_read_bio_PrivateKey_ex(bio, NULL, no_passphrase, NULL,
					       libctx, NULL)
		  : NULL;
	BIO_free(bio);
	if (key == NULL)
		return config_fail(cfg, kk, "tls", err, errlen,
				   "%s holds no unencrypted PEM private key: "
				   "OpenSSL: %s",
				   c->key_file, tls_error_string(e, sizeof(e)));
	if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1) {
		EVP_PKEY_free(key);
		return config_fail(cfg, kk, "tls", err, errlen,
				   "%s is not the private key of the "
				   "certificate %s: OpenSSL: %s",
				   c->key_file, c->cert_file,
				   tls_error_string(e, sizeof(e)));
	}
	ok = SSL_CTX_use_PrivateKey(ctx, key);
	EVP_PKEY_free(key);
	if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1)
		return config_fail(cfg, kk, "tls", err, errlen,
				   "%s cannot be used with the certificate "
				   "%s: OpenSSL: %s",
				   c->key_file, c->cert_file,
				   tls_error_string(e, sizeof(e)));
	return 0;
}

/*
 * One library context per worker slot for the life of the process, made on
 * first use (always on the main thread).  Never freed while threads run:
 * OpenSSL keeps per-thread state for each context a thread has used and
 * cleans it when the thread ends, so a context freed by a reload would be
 * touched again at the worker's exit.
 */
#define LIBCTX_SLOTS 257
static OSSL_LIB_CTX *libctx_slots[LIBCTX_SLOTS];

/* The client sessions' BIO method (below), made on first use. */
static BIO_METHOD *io_method;
static pthread_once_t io_method_once = PTHREAD_ONCE_INIT;

static OSSL_LIB_CTX *
library_context(unsigned slot)
{
	if (slot >= LIBCTX_SLOTS)
		return NULL;
	if (libctx_slots[slot] == NULL)
		libctx_slots[slot] = OSSL_LIB_CTX_new();
	return libctx_slots[slot];
}

void
tls_global_free(void)
{
	for (unsigned i = 0; i < LIBCTX_SLOTS; i++) {
		OSSL_LIB_CTX_free(libctx_slots[i]);
		libctx_slots[i] = NULL;
	}
	BIO_meth_free(io_method);
	io_method = NULL;
}

struct tls_server *
tls_server_new(const struct config *cfg, unsigned slot, char *err,
	       size_t errlen)
{
	struct tls_server *ts = calloc(1, sizeof(*ts));
	size_t i;

	if (ts == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ts->libctx = library_context(slot);
	ts->groups = calloc(cfg->ncerts, sizeof(*ts->groups));
	if (ts->libctx == NULL || ts->groups == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	ts->ticket_cipher = EVP_CIPHER_fetch(ts->libctx, "AES-256-CBC", NULL);
	if (ts->ticket_cipher == NULL) {
		snprintf(err, errlen, "cannot fetch AES-256-CBC");
		goto fail;
	}
	for (i = 0; i < cfg->ncerts; i++) {
		const struct config_cert *c = &cfg->certs[i];
		struct tls_group *g = NULL;
		char **names;
		size_t nnames;

		if (entry_names(c, &names, &nnames) != 0) {
			char ck[64], e[512];

			cert_key(ck, sizeof(ck), i, "cert");
			if (file_opens(cfg, ck, "certificate", c->cert_file,
				       err, errlen) == 0)
				config_fail(cfg, ck, "tls", err, errlen,
					    "%s holds no PEM certificate: "
					    "OpenSSL: %s",
					    c->cert_file,
					    tls_error_string(e, sizeof(e)));
			ERR_clear_error();
			goto fail;
		}
		/* Entries serving the same names share one context, so
		 * OpenSSL picks ECDSA or RSA by what the client supports. */
		for (size_t k = 0; k < ts->ngroups && g == NULL; k++) {
			if (same_names(names, nnames, ts->groups[k].names,
				       ts->groups[k].nnames))
				g = &ts->groups[k];
		}
		if (g != NULL) {
			names_free(names, nnames);
		} else {
			g = &ts->groups[ts->ngroups++];
			g->names = names;
			g->nnames = nnames;
			g->ctx = ctx_new(ts, cfg, err, errlen);
			if (g->ctx == NULL)
				goto fail;
		}
		if (load_cert(g->ctx, ts->libctx, cfg, i, err, errlen) != 0)
			goto fail;
	}
	return ts;
fail:
	tls_server_free(ts);
	return NULL;
}

int64_t
tls_cert_file_expiry(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;
	struct tm tm;
	int64_t t = 0;

	if (f == NULL)
		return 0;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x != NULL && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		t = (int64_t)timegm(&tm);
	X509_free(x);
	ERR_clear_error();
	return t;
}

void
tls_server_free(struct tls_server *ts)
{
	if (ts == NULL)
		return;
	for (size_t g = 0; g < ts->ngroups; g++) {
		SSL_CTX_free(ts->groups[g].ctx);
		names_free(ts->groups[g].names, ts->groups[g].nnames);
	}
	free(ts->groups);
	EVP_CIPHER_free(ts->ticket_cipher);
	free(ts);
}

void
tls_established(SSL *ssl)
{
	SSL_set_options(ssl, SSL_OP_CLEANSE_PLAINTEXT);
}

void
tls_authed(SSL *ssl)
{
	SSL_clear_options(ssl, SSL_OP_CLEANSE_PLAINTEXT);
}

/* ssl (may be NULL) with a memory BIO on each side, or NULL (freed): the
 * backend side. */
static SSL *
with_memory_bios(SSL *ssl)
{
	BIO *rbio, *wbio;

	if (ssl == NULL)
		return NULL;
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(BIO_s_mem());
	if (rbio == NULL || wbio == NULL) {
		BIO_free(rbio);
		BIO_free(wbio);
		SSL_free(ssl);
		return NULL;
	}
	/* An empty read BIO means "wait for more", not end of file. */
	BIO_set_mem_eof_return(rbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	return ssl;
}

/* ---------------------------------------------------------------------
 * A client session's BIO: the session's own buffers (struct tls_io).  One
 * BIO serves as both read and write BIO, and no bytes are kept in it: two
 * memory BIOs cost ~1.7 KB per idle session (their structures, locks and
 * the capacity they keep once drained) and one more copy of every byte
 * received.
 */

int
tls_io_keep(struct tls_io *io)
{
	int r = 0;

	if (io->rxlen > 0 && buf_append_all(&io->held, io->rx, io->rxlen) != 0)
		r = -1;
	io->rx = NULL;
	io->rxlen = 0;
	return r;
}

static int
io_read(BIO *b, char *out, size_t outl, size_t *readbytes)
{
	struct tls_io *io = BIO_get_data(b);
	size_t n = 0, m;

	BIO_clear_retry_flags(b);
	if (buf_used(&io->held) > 0) {
		n = buf_used(&io->held) < outl ? buf_used(&io->held) : outl;
		memcpy(out, buf_head(&io->held), n);
		buf_consume(&io->held, n); /* frees it once empty */
	}
	if (n < outl && io->rxlen > 0) {
		m = io->rxlen < outl - n ? io->rxlen : outl - n;
		memcpy(out + n, io->rx, m);
		io->rx += m;
		io->rxlen -= m;
		n += m;
	}
	*readbytes = n;
	if (n == 0) {
		/* Nothing yet: "wait for more", not end of file. */
		BIO_set_retry_read(b);
		return 0;
	}
	return 1;
}

static int
io_write(BIO *b, const char *in, size_t inl, size_t *written)
{
	struct tls_io *io = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	*written = 0;
	if (buf_append_all(io->out, in, inl) != 0)
		return 0; /* no retry flag: a write error */
	*written = inl;
	return 1;
}

static long
io_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_io *io = BIO_get_data(b);

	(void)num, (void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)tls_io_pending(io);
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

static int
io_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void
io_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "msaproxy session");

	if (m == NULL || BIO_meth_set_read_ex(m, io_read) != 1 ||
	    BIO_meth_set_write_ex(m, io_write) != 1 ||
	    BIO_meth_set_ctrl(m, io_ctrl) != 1 ||
	    BIO_meth_set_create(m, io_create) != 1) {
		BIO_meth_free(m);
		return;
	}
	io_method = m;
}

SSL *
tls_ssl_new(struct tls_server *ts, struct tls_io *io)
{
	SSL *ssl;
	BIO *bio;

	pthread_once(&io_method_once, io_method_init);
	if (io_method == NULL || (ssl = SSL_new(ts->groups[0].ctx)) == NULL)
		return NULL;
	if ((bio = BIO_new(io_method)) == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	BIO_set_data(bio, io);
	SSL_set_bio(ssl, bio, bio); /* one reference for both */
	SSL_set_accept_state(ssl);
	return ssl;
}

/* ---------------------------------------------------------------------
 * Backend side: a client, one context per configured server.  These use
 * the default library context: backend handshakes happen once per
 * backend connection, not per client, so the global locks do not bite.
 */

SSL_CTX *
tls_backend_ctx_new(const struct config_backend *b, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	FILE *fp = NULL;
	char e[256];

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS client context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (b->tls != BACKEND_TLS_STARTTLS_VERIFY) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (b->ca_file != NULL && (fp = fopen(b->ca_file, "r")) == NULL) {
		snprintf(err, errlen, "cannot open the CA file %s: %s",
			 b->ca_file, strerror(errno));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (fp != NULL)
		fclose(fp);
	if (b->ca_file != NULL
		    ? SSL_CTX_load_verify_locations(ctx, b->ca_file, NULL) != 1
		    : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen,
			 "%s holds no PEM certificate: OpenSSL: %s",
			 b->ca_file ? b->ca_file : "the system CA store",
			 tls_error_string(e, sizeof(e)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL *
tls_backend_ssl_new(SSL_CTX *ctx, const struct config_backend *b)
{
	SSL *ssl = with_memory_bios(SSL_new(ctx));
	char ip[INET6_ADDRSTRLEN];

	if (ssl == NULL)
		return NULL;
	SSL_set_connect_state(ssl);
	if (b->tls_name != NULL) {
		SSL_set_tlsext_host_name(ssl, b->tls_name);
		if (b->tls == BACKEND_TLS_STARTTLS_VERIFY &&
		    SSL_set1_host(ssl, b->tls_name) != 1)
			goto fail;
	} else if (b->tls == BACKEND_TLS_STARTTLS_VERIFY) {
		const struct sockaddr_storage *ss = &b->addr.ss;
		const void *a =
			ss->ss_family == AF_INET6
				? (const void *)&(
					  (const struct sockaddr_in6 *)ss)
					  ->sin6_addr
				: (const void *)&(
					  (const struct sockaddr_in *)ss)
					  ->sin_addr;
		if (inet_ntop(ss->ss_family, a, ip, sizeof(ip)) == NULL ||
		    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) != 1)
			goto fail;
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}
