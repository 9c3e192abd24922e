/*
 * hsbench.c - server-side TLS handshake cost, in memory, no sockets.
 *
 * A client SSL and a server SSL exchange bytes through memory BIOs; the
 * server is set up the way proxy/io/tls.c sets it up: its own OSSL_LIB_CTX
 * (SSL_CTX_new_ex), TLS 1.2 minimum, the proxy's default cipher lists,
 * groups X25519:P-256, SSL_MODE_RELEASE_BUFFERS, no session cache, one
 * TLS 1.3 ticket, tickets through an EVP callback with AES-256-CBC fetched
 * once, and two BIO_s_mem per SSL.  For each of TLS 1.3 full, TLS 1.3
 * resumed (ticket), TLS 1.2 full and TLS 1.2 resumed (ticket) it measures
 * the server thread's CPU time (CLOCK_THREAD_CPUTIME_ID, around the
 * server-side calls only: SSL_new with its BIOs, SSL_do_handshake, moving
 * bytes in and out of its BIOs, SSL_free; the cost of reading the clock is
 * subtracted).  It also measures the heap held by an idle server SSL after
 * a handshake and one request/reply (mallinfo2 delta over many objects).
 * Prints one JSON object on stdout.  See README.md.
 *
 * Security stance: a benchmark.  No network at all; reads only the
 * certificate and key named on the command line; the ticket key is random
 * per run and cleared at exit.
 *
 * RFCs: 8446 (TLS 1.3), 5246 (TLS 1.2), 5077 (session tickets).
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#define SHUTTLE_BUF 65536
#define ROUNDS_MAX  16 /* handshake flights before giving up */
#define WARMUP	    50
#define ITER_MAX    10000000L

/* The proxy's defaults (conf/msaproxy.yaml). */
#define CIPHERS                                                                \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define CIPHERSUITES                                                           \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"                       \
	"TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS "X25519:P-256"

static struct {
	const char *cert;
	const char *key;
	long iterations;
	double seconds;
	long objects;
} o = {.iterations = 2000, .objects = 1000};

static OSSL_LIB_CTX *libctx;
static EVP_CIPHER *ticket_cipher;
static unsigned char tk_name[16], tk_aes[32], tk_hmac[32];
static SSL_CTX *server_ctx, *client13, *client12;
static SSL_SESSION *captured; /* last ticket the client received */
static bool renew13;	      /* ticket_cb: fresh ticket on TLS 1.3 resume */
static int64_t clock_cost;    /* ns per cpu_ns() call */
static char shuttle[SHUTTLE_BUF];

static void
die(const char *msg)
{
	char e[256];
	unsigned long err = ERR_get_error();

	if (err != 0) {
		ERR_error_string_n(err, e, sizeof(e));
		fprintf(stderr, "hsbench: %s: %s\n", msg, e);
	} else {
		fprintf(stderr, "hsbench: %s\n", msg);
	}
	exit(2);
}

static int64_t
cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---------------------------------------------------------------------
 * Contexts
 */

/*
 * One key, no rotation: the proxy's callback minus its key schedule.  Like
 * the proxy's, it returns 1 for a ticket under the current key, and then
 * OpenSSL sends no new ticket after a TLS 1.3 resumption; with renew13 it
 * returns 2 instead, to measure what issuing one costs.
 */
static int
ticket_cb(SSL *ssl, unsigned char name[16], unsigned char iv[16],
	  EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
	OSSL_PARAM params[3];

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
						      tk_hmac, 32);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (enc) {
		memcpy(name, tk_name, 16);
		if (RAND_bytes(iv, 16) != 1 ||
		    EVP_EncryptInit_ex(ectx, ticket_cipher, NULL, tk_aes, iv) !=
			    1)
			return -1;
	} else {
		if (memcmp(name, tk_name, 16) != 0)
			return 0;
		if (EVP_DecryptInit_ex(ectx, ticket_cipher, NULL, tk_aes, iv) !=
		    1)
			return -1;
	}
	if (EVP_MAC_CTX_set_params(hctx, params) != 1)
		return -1;
	return !enc && renew13 && SSL_version(ssl) == TLS1_3_VERSION ? 2 : 1;
}

static void
server_setup(void)
{
	libctx = OSSL_LIB_CTX_new();
	if (libctx == NULL)
		die("OSSL_LIB_CTX_new");
	ticket_cipher = EVP_CIPHER_fetch(libctx, "AES-256-CBC", NULL);
	if (ticket_cipher == NULL)
		die("cannot fetch AES-256-CBC");
	if (RAND_bytes(tk_name, sizeof(tk_name)) != 1 ||
	    RAND_bytes(tk_aes, sizeof(tk_aes)) != 1 ||
	    RAND_bytes(tk_hmac, sizeof(tk_hmac)) != 1)
		die("RAND_bytes");
	server_ctx = SSL_CTX_new_ex(libctx, NULL, TLS_server_method());
	if (server_ctx == NULL)
		die("SSL_CTX_new_ex");
	SSL_CTX_set_min_proto_version(server_ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(server_ctx,
			    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
				    SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(server_ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(server_ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_cipher_list(server_ctx, CIPHERS) != 1 ||
	    SSL_CTX_set_ciphersuites(server_ctx, CIPHERSUITES) != 1 ||
	    SSL_CTX_set1_groups_list(server_ctx, GROUPS) != 1)
		die("cipher or group list");
	SSL_CTX_set_num_tickets(server_ctx, 1);
	SSL_CTX_set_tlsext_ticket_key_evp_cb(server_ctx, ticket_cb);
	if (SSL_CTX_use_certificate_chain_file(server_ctx, o.cert) != 1)
		die(o.cert);
	if (SSL_CTX_use_PrivateKey_file(server_ctx, o.key, SSL_FILETYPE_PEM) !=
	    1)
		die(o.key);
	if (SSL_CTX_check_private_key(server_ctx) != 1)
		die("the key does not match the certificate");
}

static int
client_new_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	if (captured != NULL)
		SSL_SESSION_free(captured);
	captured = sess;
	return 1;
}

static SSL_CTX *
client_ctx(int version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		die("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, version);
	SSL_CTX_set_max_proto_version(ctx, version);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(
		ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, client_new_session);
	return ctx;
}

/* "ECDSA P-256", "RSA-2048", ... from the server's key. */
static void
cert_describe(char *buf, size_t len)
{
	EVP_PKEY *pk = SSL_CTX_get0_privatekey(server_ctx);
	char group[48];

	if (pk == NULL) {
		snprintf(buf, len, "unknown");
	} else if (EVP_PKEY_is_a(pk, "EC")) {
		if (EVP_PKEY_get_utf8_string_param(
			    pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
			    sizeof(group), NULL) != 1)
			snprintf(group, sizeof(group), "?");
		snprintf(buf, len, "ECDSA %s",
			 strcmp(group, "prime256v1") == 0  ? "P-256"
			 : strcmp(group, "secp384r1") == 0 ? "P-384"
							   : group);
	} else if (EVP_PKEY_is_a(pk, "RSA")) {
		snprintf(buf, len, "RSA-%d", EVP_PKEY_get_bits(pk));
	} else {
		snprintf(buf, len, "%s", EVP_PKEY_get0_type_name(pk));
	}
}

/* ---------------------------------------------------------------------
 * One handshake
 */

struct pair {
	SSL *c, *s;
	int64_t server_ns;
	int clock_calls;
};

/* The server's SSL as the proxy makes it (tls_ssl_new). */
static SSL *
server_ssl_new(void)
{
	SSL *ssl = SSL_new(server_ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());

	if (ssl == NULL || rbio == NULL || wbio == NULL)
		die("SSL_new (server)");
	BIO_set_mem_eof_return(rbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_accept_state(ssl);
	return ssl;
}

static SSL *
client_ssl_new(SSL_CTX *ctx, SSL_SESSION *resume)
{
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());

	if (ssl == NULL || rbio == NULL || wbio == NULL)
		die("SSL_new (client)");
	BIO_set_mem_eof_return(rbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_connect_state(ssl);
	if (resume != NULL && SSL_set_session(ssl, resume) != 1)
		die("SSL_set_session");
	return ssl;
}

/* Client output to the server: the server's BIO_write is timed. */
static void
to_server(struct pair *p)
{
	BIO *from = SSL_get_wbio(p->c), *to = SSL_get_rbio(p->s);
	int n;

	while ((n = BIO_read(from, shuttle, sizeof(shuttle))) > 0) {
		int64_t t0 = cpu_ns();

		BIO_write(to, shuttle, n);
		p->server_ns += cpu_ns() - t0;
		p->clock_calls += 2;
	}
}

/* Server output to the client: the server's BIO_read is timed. */
static void
to_client(struct pair *p)
{
	BIO *from = SSL_get_wbio(p->s), *to = SSL_get_rbio(p->c);

	for (;;) {
		int64_t t0 = cpu_ns();
		int n = BIO_read(from, shuttle, sizeof(shuttle));

		p->server_ns += cpu_ns() - t0;
		p->clock_calls += 2;
		if (n <= 0)
			break;
		BIO_write(to, shuttle, n);
	}
}

static bool
want_more(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);

	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Handshake a new pair; p->server_ns is the server's CPU time so far. */
static void
pair_handshake(struct pair *p, SSL_CTX *cctx, SSL_SESSION *resume)
{
	bool cdone = false, sdone = false;
	unsigned char b[16];
	int64_t t0;
	int r;

	memset(p, 0, sizeof(*p));
	p->c = client_ssl_new(cctx, resume);
	t0 = cpu_ns();
	p->s = server_ssl_new();
	p->server_ns += cpu_ns() - t0;
	p->clock_calls += 2;
	for (int round = 0; round < ROUNDS_MAX && !(cdone && sdone); round++) {
		if (!cdone) {
			r = SSL_do_handshake(p->c);
			if (r == 1)
				cdone = true;
			else if (!want_more(p->c, r))
				die("client handshake failed");
		}
		to_server(p);
		if (!sdone) {
			t0 = cpu_ns();
			r = SSL_do_handshake(p->s);
			p->server_ns += cpu_ns() - t0;
			p->clock_calls += 2;
			if (r == 1)
				sdone = true;
			else if (!want_more(p->s, r))
				die("server handshake failed");
		}
		to_client(p);
	}
	if (!(cdone && sdone))
		die("handshake did not finish");
	/* Let the client take the TLS 1.3 ticket the server sent. */
	r = SSL_read(p->c, b, sizeof(b));
	if (r > 0 || !want_more(p->c, r))
		die("unexpected data after the handshake");
}

static void
pair_free(struct pair *p)
{
	int64_t t0;

	/* As if closed cleanly: SSL_free would mark the ticket unusable. */
	SSL_set_shutdown(p->c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(p->c);
	t0 = cpu_ns();
	SSL_free(p->s);
	p->server_ns += cpu_ns() - t0;
	p->clock_calls += 2;
}

/* A command and its reply, so the server has read and written once. */
static void
pair_exchange(struct pair *p)
{
	static const char cmd[] = "EHLO client.example.test\r\n";
	static const char rep[] = "250 mail.example.test\r\n";
	char b[128];

	if (SSL_write(p->c, cmd, (int)sizeof(cmd) - 1) <= 0)
		die("client write");
	to_server(p);
	if (SSL_read(p->s, b, sizeof(b)) <= 0)
		die("server read");
	if (SSL_write(p->s, rep, (int)sizeof(rep) - 1) <= 0)
		die("server write");
	to_client(p);
	if (SSL_read(p->c, b, sizeof(b)) <= 0)
		die("client read");
}

/* ---------------------------------------------------------------------
 * Measurements
 */

enum mode {
	FULL,
	RESUMED,       /* the same ticket every time (OpenSSL's client marks a
			  TLS 1.3 session used, so each try gets a copy) */
	RESUMED_RENEW, /* TLS 1.3, each ticket once, a fresh one each time */
};

struct result {
	double mean_us, p50_us, min_us;
	long n;
};

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* A ticket from one full handshake, for the resumed runs. */
static SSL_SESSION *
ticket_get(SSL_CTX *cctx)
{
	struct pair p;
	SSL_SESSION *s;

	pair_handshake(&p, cctx, NULL);
	pair_free(&p);
	s = captured;
	captured = NULL;
	if (s == NULL || !SSL_SESSION_is_resumable(s))
		die("no resumable session ticket");
	return s;
}

static struct result
measure(SSL_CTX *cctx, enum mode mode)
{
	SSL_SESSION *ticket = mode != FULL ? ticket_get(cctx) : NULL;
	long cap = o.iterations, n = 0;
	int64_t *v, end = 0, sum = 0;
	struct result r = {0};

	if (o.seconds > 0) {
		cap = ITER_MAX;
		end = wall_ns() + (int64_t)(o.seconds * 1e9);
	}
	v = malloc((size_t)cap * sizeof(*v));
	if (v == NULL)
		die("out of memory");
	for (long i = -WARMUP; i < cap; i++) {
		struct pair p;
		int64_t ns;

		if (i >= 0 && end != 0 && wall_ns() >= end)
			break;
		SSL_SESSION *use = ticket;

		if (mode == RESUMED && (use = SSL_SESSION_dup(ticket)) == NULL)
			die("SSL_SESSION_dup");
		pair_handshake(&p, cctx, use);
		if (mode == RESUMED)
			SSL_SESSION_free(use);
		if (SSL_session_reused(p.s) != (mode != FULL))
			die(mode != FULL ? "the server did not resume"
					 : "the server resumed unexpectedly");
		pair_free(&p);
		if (mode == RESUMED_RENEW) {
			if (captured == NULL)
				die("no fresh ticket after a TLS 1.3 "
				    "resumption");
			SSL_SESSION_free(ticket);
			ticket = captured;
		} else if (captured != NULL) {
			SSL_SESSION_free(captured);
		}
		captured = NULL;
		if (i < 0)
			continue;
		ns = p.server_ns - p.clock_calls / 2 * clock_cost;
		v[n++] = ns;
		sum += ns;
	}
	SSL_SESSION_free(ticket);
	qsort(v, (size_t)n, sizeof(*v), cmp_i64);
	r.n = n;
	if (n > 0) {
		r.mean_us = (double)sum / (double)n / 1e3;
		r.p50_us = (double)v[n / 2] / 1e3;
		r.min_us = (double)v[0] / 1e3;
	}
	free(v);
	return r;
}

/* Capacity kept by an SSL's two memory BIOs (part of the idle bytes). */
static size_t
bio_capacity(SSL *ssl)
{
	BUF_MEM *r = NULL, *w = NULL;

	BIO_get_mem_ptr(SSL_get_rbio(ssl), &r);
	BIO_get_mem_ptr(SSL_get_wbio(ssl), &w);
	return (r != NULL ? r->max : 0) + (w != NULL ? w->max : 0);
}

/* Bytes the heap holds per idle server SSL after a handshake and one
 * command/reply, with RELEASE_BUFFERS, as the mean over o.objects; *bio
 * gets the part its memory BIOs keep. */
static long
idle_bytes(SSL_CTX *cctx, long *bio)
{
	size_t bio_sum = 0;
	SSL **keep = calloc((size_t)o.objects, sizeof(*keep));
	struct mallinfo2 m0, m1;
	struct pair p;

	if (keep == NULL)
		die("out of memory");
	for (int i = 0; i < WARMUP; i++) {
		pair_handshake(&p, cctx, NULL);
		pair_exchange(&p);
		pair_free(&p);
	}
	if (captured != NULL) {
		SSL_SESSION_free(captured);
		captured = NULL;
	}
	m0 = mallinfo2();
	for (long i = 0; i < o.objects; i++) {
		pair_handshake(&p, cctx, NULL);
		pair_exchange(&p);
		SSL_free(p.c);
		if (captured != NULL) {
			SSL_SESSION_free(captured);
			captured = NULL;
		}
		keep[i] = p.s;
	}
	m1 = mallinfo2();
	for (long i = 0; i < o.objects; i++) {
		bio_sum += bio_capacity(keep[i]);
		SSL_free(keep[i]);
	}
	*bio = (long)(bio_sum / (size_t)o.objects);
	free(keep);
	return (long)(((int64_t)(m1.uordblks + m1.hblkhd) -
		       (int64_t)(m0.uordblks + m0.hblkhd)) /
		      o.objects);
}

static void
result_json(const char *name, const struct result *r, const char *sep)
{
	printf("\"%s\": {\"mean_us\": %.1f, \"p50_us\": %.1f, "
	       "\"min_us\": %.1f, \"n\": %ld}%s",
	       name, r->mean_us, r->p50_us, r->min_us, r->n, sep);
}

static void
clock_calibrate(void)
{
	int64_t t0 = cpu_ns(), t1;

	for (int i = 0; i < 10000; i++)
		(void)cpu_ns();
	t1 = cpu_ns();
	clock_cost = (t1 - t0) / 10001;
}

static void
usage(FILE *f)
{
	fputs("usage: hsbench --cert FILE --key FILE [options]\n"
	      "  --cert FILE        PEM certificate chain (ECDSA or RSA)\n"
	      "  --key FILE         PEM private key\n"
	      "  --iterations N     handshakes per case (2000)\n"
	      "  --seconds S        run each case for S seconds instead\n"
	      "  --objects N        idle SSL objects for the memory figure "
	      "(1000)\n",
	      f);
}

static void
opts_parse(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"cert", required_argument, NULL, 'c'},
		{"key", required_argument, NULL, 'k'},
		{"iterations", required_argument, NULL, 'n'},
		{"seconds", required_argument, NULL, 's'},
		{"objects", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char *end;
	int ch;

	while ((ch = getopt_long(argc, argv, "c:k:n:s:o:h", lopts, NULL)) !=
	       -1) {
		errno = 0;
		switch (ch) {
		case 'c':
			o.cert = optarg;
			break;
		case 'k':
			o.key = optarg;
			break;
		case 'n':
			o.iterations = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || o.iterations < 1 ||
			    o.iterations > ITER_MAX)
				die("--iterations: want 1..10000000");
			break;
		case 's':
			o.seconds = strtod(optarg, &end);
			if (errno != 0 || *end != '\0' || !(o.seconds > 0) ||
			    o.seconds > 3600)
				die("--seconds: want 0 < S <= 3600");
			break;
		case 'o':
			o.objects = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || o.objects < 1 ||
			    o.objects > 1000000)
				die("--objects: want 1..1000000");
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc || o.cert == NULL || o.key == NULL) {
		usage(stderr);
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	struct result r13f, r13r, r13n, r12f, r12r;
	long idle13, idle12, bio13, bio12;
	char cert[96];

	opts_parse(argc, argv);
	server_setup();
	client13 = client_ctx(TLS1_3_VERSION);
	client12 = client_ctx(TLS1_2_VERSION);
	cert_describe(cert, sizeof(cert));
	clock_calibrate();

	r13f = measure(client13, FULL);
	r13r = measure(client13, RESUMED);
	r12f = measure(client12, FULL);
	r12r = measure(client12, RESUMED);
	renew13 = true;
	r13n = measure(client13, RESUMED_RENEW);
	renew13 = false;
	idle13 = idle_bytes(client13, &bio13);
	idle12 = idle_bytes(client12, &bio12);

	printf("{\"tls13_full_us\": %.1f, \"tls13_resumed_us\": %.1f, "
	       "\"tls12_full_us\": %.1f, \"tls12_resumed_us\": %.1f, "
	       "\"tls13_resumed_renew_us\": %.1f, "
	       "\"server_ssl_idle_bytes\": %ld, "
	       "\"server_ssl_idle_bytes_tls12\": %ld, "
	       "\"server_bio_kept_bytes\": %ld, "
	       "\"server_bio_kept_bytes_tls12\": %ld, \"cert\": \"%s\", "
	       "\"detail\": {",
	       r13f.mean_us, r13r.mean_us, r12f.mean_us, r12r.mean_us,
	       r13n.mean_us, idle13, idle12, bio13, bio12, cert);
	result_json("tls13_full", &r13f, ", ");
	result_json("tls13_resumed", &r13r, ", ");
	result_json("tls12_full", &r12f, ", ");
	result_json("tls12_resumed", &r12r, ", ");
	result_json("tls13_resumed_renew", &r13n, "");
	printf("}, \"idle_objects\": %ld, \"clock_overhead_ns\": %lld, "
	       "\"openssl\": \"%s\"}\n",
	       o.objects, (long long)clock_cost,
	       OpenSSL_version(OPENSSL_VERSION));

	SSL_CTX_free(client13);
	SSL_CTX_free(client12);
	SSL_CTX_free(server_ctx);
	EVP_CIPHER_free(ticket_cipher);
	OSSL_LIB_CTX_free(libctx);
	OPENSSL_cleanse(tk_aes, sizeof(tk_aes));
	OPENSSL_cleanse(tk_hmac, sizeof(tk_hmac));
	return 0;
}
