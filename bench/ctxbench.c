/*
 * ctxbench.c - TLS handshakes on many threads at once: one OpenSSL library
 * context shared by every thread, or one per thread as msaproxy's workers
 * have (proxy/io/tls.c), to show whether OpenSSL 3.0's locks in a shared
 * context (the provider and property caches, the method store: openssl
 * issue 20286) become a cliff as threads grow.
 *
 * Each thread runs TLS 1.3 full handshakes (X25519, ECDSA P-256, as the
 * bench's server) between a client SSL and a server SSL over memory BIOs,
 * back to back, for --seconds.  Threads may outnumber cores: lock
 * contention shows as handshakes per CPU-second falling (spinning and
 * futex wake-ups cost CPU), and as wall-clock throughput flattening.
 * Prints one JSON object per mode on stdout:
 *   {"mode": "shared"|"per-thread", "threads": N, "handshakes": H,
 *    "wall_s": W, "cpu_s": C, "per_cpu_s": H / C}
 *
 * Security stance: a benchmark.  No network; reads only the certificate
 * and key named on the command line.
 *
 * --mode shared|per-thread runs one mode only (both by default);
 * --handshakes H makes each thread run exactly H handshakes after its
 * warm-up one instead of running for --seconds: with bench/lockprobe.c
 * loaded, two runs that differ only in H give the lock operations of
 * one handshake exactly (bench/lockstat.py).
 *
 * usage: ctxbench --cert FILE --key FILE [--threads N] [--seconds S]
 *                 [--mode shared|per-thread] [--handshakes H]
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define SHUTTLE_BUF 65536
#define ROUNDS_MAX  16

static struct {
	const char *cert, *key;
	int threads;
	double seconds;
	const char *mode; /* NULL: both */
	long handshakes;  /* per thread; 0: run for seconds */
} o = {.threads = 8, .seconds = 3};

static atomic_bool stop;

static void
die(const char *what)
{
	fprintf(stderr, "ctxbench: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

struct ctxs {
	OSSL_LIB_CTX *lib; /* NULL: the default context */
	SSL_CTX *server, *client;
};

static void
ctxs_make(struct ctxs *c, bool own_lib)
{
	c->lib = own_lib ? OSSL_LIB_CTX_new() : NULL;
	if (own_lib && c->lib == NULL)
		die("OSSL_LIB_CTX_new");
	c->server = SSL_CTX_new_ex(c->lib, NULL, TLS_server_method());
	c->client = SSL_CTX_new_ex(c->lib, NULL, TLS_client_method());
	if (c->server == NULL || c->client == NULL)
		die("SSL_CTX_new_ex");
	SSL_CTX_set_min_proto_version(c->server, TLS1_3_VERSION);
	SSL_CTX_set_session_cache_mode(c->server, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(c->server, 0);
	if (SSL_CTX_set1_groups_list(c->server, "X25519:P-256") != 1 ||
	    SSL_CTX_use_certificate_chain_file(c->server, o.cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(c->server, o.key, SSL_FILETYPE_PEM) !=
		    1)
		die("certificate or key");
	SSL_CTX_set_verify(c->client, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(c->client, SSL_SESS_CACHE_OFF);
}

static void
ctxs_free(struct ctxs *c)
{
	SSL_CTX_free(c->server);
	SSL_CTX_free(c->client);
	OSSL_LIB_CTX_free(c->lib);
}

/* Bytes waiting in from, into to. */
static void
shuttle(BIO *from, BIO *to)
{
	char buf[SHUTTLE_BUF];
	int n;

	while ((n = BIO_read(from, buf, sizeof(buf))) > 0)
		if (BIO_write(to, buf, n) != n)
			die("BIO_write");
}

static void
handshake(const struct ctxs *c)
{
	SSL *s = SSL_new(c->server), *cl = SSL_new(c->client);
	BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
	BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
	int rs = 0, rc = 0;

	if (s == NULL || cl == NULL || !s_in || !s_out || !c_in || !c_out)
		die("SSL_new");
	SSL_set_bio(s, s_in, s_out);
	SSL_set_bio(cl, c_in, c_out);
	SSL_set_accept_state(s);
	SSL_set_connect_state(cl);
	for (int i = 0; i < ROUNDS_MAX && (rs != 1 || rc != 1); i++) {
		rc = SSL_do_handshake(cl);
		shuttle(c_out, s_in);
		rs = SSL_do_handshake(s);
		shuttle(s_out, c_in);
	}
	if (rs != 1 || rc != 1)
		die("handshake did not finish");
	SSL_free(s);
	SSL_free(cl);
}

struct worker {
	pthread_t t;
	const struct ctxs *shared; /* NULL: make its own */
	long done;
	double cpu_s;
};

static double
thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
run(void *arg)
{
	struct worker *w = arg;
	struct ctxs own;
	const struct ctxs *c = w->shared;
	double cpu0;

	if (c == NULL) {
		ctxs_make(&own, true);
		c = &own;
	}
	handshake(c); /* warm: the first one fetches the algorithms */
	cpu0 = thread_cpu_s();
	while (o.handshakes > 0 ? w->done < o.handshakes
				: !atomic_load(&stop)) {
		handshake(c);
		w->done++;
	}
	w->cpu_s = thread_cpu_s() - cpu0;
	if (c == &own)
		ctxs_free(&own);
	return NULL;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
measure(const char *mode, bool per_thread)
{
	struct worker *w = calloc((size_t)o.threads, sizeof(*w));
	struct ctxs shared;
	struct timespec nap = {
		.tv_sec = (time_t)o.seconds,
		.tv_nsec =
			(long)((o.seconds - (double)(time_t)o.seconds) * 1e9)};
	double t0, wall, cpu = 0;
	long total = 0;

	if (w == NULL)
		die("out of memory");
	if (!per_thread)
		ctxs_make(&shared, false);
	atomic_store(&stop, false);
	t0 = now_s();
	for (int i = 0; i < o.threads; i++) {
		w[i].shared = per_thread ? NULL : &shared;
		if (pthread_create(&w[i].t, NULL, run, &w[i]) != 0)
			die("pthread_create");
	}
	if (o.handshakes == 0)
		nanosleep(&nap, NULL);
	atomic_store(&stop, true);
	for (int i = 0; i < o.threads; i++) {
		pthread_join(w[i].t, NULL);
		total += w[i].done;
		cpu += w[i].cpu_s;
	}
	wall = now_s() - t0;
	printf("{\"mode\": \"%s\", \"threads\": %d, \"handshakes\": %ld, "
	       "\"wall_s\": %.3f, \"cpu_s\": %.3f, \"per_cpu_s\": %.1f}\n",
	       mode, o.threads, total, wall, cpu, cpu > 0 ? total / cpu : 0);
	fflush(stdout);
	if (!per_thread)
		ctxs_free(&shared);
	free(w);
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"cert", required_argument, NULL, 'c'},
		{"key", required_argument, NULL, 'k'},
		{"threads", required_argument, NULL, 't'},
		{"seconds", required_argument, NULL, 's'},
		{"mode", required_argument, NULL, 'm'},
		{"handshakes", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.cert = optarg;
			break;
		case 'k':
			o.key = optarg;
			break;
		case 't':
			o.threads = atoi(optarg);
			break;
		case 's':
			o.seconds = atof(optarg);
			break;
		case 'm':
			o.mode = optarg;
			break;
		case 'n':
			o.handshakes = atol(optarg);
			break;
		default:
			die("usage: ctxbench --cert FILE --key FILE "
			    "[--threads N] [--seconds S] "
			    "[--mode shared|per-thread] [--handshakes H]");
		}
	}
	if (o.cert == NULL || o.key == NULL || o.threads < 1 ||
	    o.threads > 256 || !(o.seconds > 0 && o.seconds <= 600) ||
	    o.handshakes < 0 || o.handshakes > 10000000 ||
	    (o.mode != NULL && strcmp(o.mode, "shared") != 0 &&
	     strcmp(o.mode, "per-thread") != 0))
		die("usage: ctxbench --cert FILE --key FILE [--threads 1..256] "
		    "[--seconds S] [--mode shared|per-thread] "
		    "[--handshakes H]");
	if (o.mode == NULL || strcmp(o.mode, "shared") == 0)
		measure("shared", false);
	if (o.mode == NULL || strcmp(o.mode, "per-thread") == 0)
		measure("per-thread", true);
	return 0;
}
