/*
 * fuzz_config.c - libFuzzer target: config_load() (config.c) on arbitrary
 * bytes.
 *
 * The input is written to a memfd and loaded through its /proc/self/fd
 * path, as a file on disk would be.  Checked: config_load() returns 0 with
 * a config, or -1 with none and an error "PATH:LINE: KEY: why" (PATH the
 * path given, LINE a plausible line number; "^[^:]+:[0-9]+: "), always
 * NUL-terminated, also in a buffer too small for it; an accepted config
 * holds every value within the ranges config_schema.c documents; nothing leaks
 * (libFuzzer's leak check runs on every input) and nothing crashes.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "config/config.h"
#include "fuzz_check.h"

#define ERR_LEN 1024 /* as main.c */

/*
 * Backend host names (config_resolve.c) are looked up with getaddrinfo():
 * here, without the network (a fuzzed name must not wait on a DNS
 * server), "localhost" is 127.0.0.1 and ::1 and every other name does not
 * resolve.  These two replace libc's for this binary only.
 */
int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
	    struct addrinfo **res)
{
	struct addrinfo *v4, *v6;

	(void)service, (void)hints;
	if (node == NULL || strcmp(node, "localhost") != 0)
		return EAI_NONAME;
	v4 = calloc(1, sizeof(*v4) + sizeof(struct sockaddr_in));
	v6 = calloc(1, sizeof(*v6) + sizeof(struct sockaddr_in6));
	if (v4 == NULL || v6 == NULL) {
		free(v4);
		free(v6);
		return EAI_MEMORY;
	}
	v4->ai_family = AF_INET;
	v4->ai_socktype = SOCK_STREAM;
	v4->ai_addrlen = sizeof(struct sockaddr_in);
	v4->ai_addr = (struct sockaddr *)(v4 + 1);
	((struct sockaddr_in *)v4->ai_addr)->sin_family = AF_INET;
	((struct sockaddr_in *)v4->ai_addr)->sin_addr.s_addr =
		htonl(INADDR_LOOPBACK);
	v6->ai_family = AF_INET6;
	v6->ai_socktype = SOCK_STREAM;
	v6->ai_addrlen = sizeof(struct sockaddr_in6);
	v6->ai_addr = (struct sockaddr *)(v6 + 1);
	((struct sockaddr_in6 *)v6->ai_addr)->sin6_family = AF_INET6;
	((struct sockaddr_in6 *)v6->ai_addr)->sin6_addr = in6addr_loopback;
	v4->ai_next = v6;
	*res = v4;
	return 0;
}

void
freeaddrinfo(struct addrinfo *res)
{
	while (res != NULL) {
		struct addrinfo *next = res->ai_next;
		free(res);
		res = next;
	}
}

/* "PATH:LINE: " with the path we gave; returns LINE, or -1. */
static long
error_line(const char *err, const char *path)
{
	size_t n = strlen(path);
	const char *p;
	long line = 0;

	if (strncmp(err, path, n) != 0 || err[n] != ':')
		return -1;
	p = err + n + 1;
	if (!isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p) && line < 100000000)
		line = line * 10 + (*p++ - '0');
	if (p[0] != ':' || p[1] != ' ' || p[2] == '\0')
		return -1;
	return line;
}

static bool
terminated(const char *s, size_t len)
{
	return memchr(s, '\0', len) != NULL;
}

static void
check_config(const struct config *c)
{
	CHECK(terminated(c->hostname, sizeof(c->hostname)) &&
		      c->hostname[0] != '\0',
	      "hostname");
	CHECK(c->workers <= 256, "workers %u", c->workers);
	CHECK(c->ncerts >= 1 && c->certs != NULL, "no certificate");
	for (size_t i = 0; i < c->ncerts; i++) {
		const struct config_cert *k = &c->certs[i];
		CHECK(k->cert_file != NULL && k->cert_file[0] == '/' &&
			      k->key_file != NULL && k->key_file[0] == '/',
		      "certificate %zu files", i);
		CHECK(k->nnames == 0 || k->names != NULL, "names");
		for (size_t j = 0; j < k->nnames; j++)
			CHECK(k->names[j] != NULL && k->names[j][0] != '\0',
			      "certificate %zu name %zu", i, j);
	}
	CHECK(c->tls_min_version == TLS1_2_VERSION ||
		      c->tls_min_version == TLS1_3_VERSION,
	      "min_version %d", c->tls_min_version);
	CHECK(c->tls_ciphers && c->tls_ciphersuites && c->tls_groups,
	      "TLS strings");
	CHECK(c->tls13_tickets <= 10, "tls13_tickets");
	CHECK(c->ticket_key_lifetime_ms >= 1000, "ticket_key_lifetime");
	CHECK(c->handshake_timeout_ms >= 1, "handshake_timeout");
	CHECK(c->nlisteners >= 1 && c->listeners != NULL, "no listener");
	for (size_t i = 0; i < c->nlisteners; i++) {
		const struct config_listener *l = &c->listeners[i];
		CHECK(l->addr.len > 0 && l->addr.len <= sizeof(l->addr.ss) &&
			      terminated(l->addr.text, sizeof(l->addr.text)),
		      "listener %zu address", i);
		CHECK(l->mode == LISTENER_STARTTLS ||
			      l->mode == LISTENER_IMPLICIT,
		      "listener %zu mode", i);
		for (size_t j = 0; j < i; j++)
			CHECK(l->addr.len != c->listeners[j].addr.len ||
				      memcmp(&l->addr.ss,
					     &c->listeners[j].addr.ss,
					     l->addr.len) != 0,
			      "listeners %zu and %zu share an address", j, i);
	}
	CHECK(c->passwd_file != NULL && c->passwd_file[0] == '/',
	      "passwd_file");
	CHECK(c->auth_mechs != 0 &&
		      (c->auth_mechs & ~(AUTH_MECH_PLAIN | AUTH_MECH_LOGIN |
					 AUTH_MECH_OAUTH)) == 0 &&
		      (c->auth_backend != AUTH_BACKEND_PASSWD ||
		       (c->auth_mechs & AUTH_MECH_OAUTH) == 0),
	      "mechanisms %#x", c->auth_mechs);
	CHECK(c->auth_threads >= 1 && c->auth_threads <= 64, "threads");
	CHECK(c->auth_failure_delay_ms <= 60000, "failure_delay");
	CHECK(c->max_line >= 512 && c->max_line <= 65536, "max_line %zu",
	      c->max_line);
	CHECK(c->max_auth_line >= c->max_line && c->max_auth_line >= 1000 &&
		      c->max_auth_line <= 65536,
	      "max_auth_line %zu", c->max_auth_line);
	CHECK(c->max_message_size >= 1024 &&
		      c->max_message_size <= 4ull * 1024 * 1024 * 1024,
	      "max_message_size");
	CHECK(c->max_recipients >= 1 && c->max_recipients <= 100000,
	      "max_recipients");
	CHECK(c->max_errors >= 1 && c->max_errors <= 1000, "max_errors");
	CHECK(c->max_sessions >= 1 && c->max_sessions <= 1000000,
	      "max_sessions");
	CHECK(c->max_memory == 0 || (c->max_memory >= (16ull << 20) &&
				     c->max_memory <= (1024ull << 30)),
	      "max_memory");
	CHECK(c->command_timeout_ms >= 1 && c->data_timeout_ms >= 1,
	      "limits timeouts");
	CHECK(c->bare_newlines == BARE_NEWLINE_REJECT ||
		      c->bare_newlines == BARE_NEWLINE_NORMALIZE,
	      "bare_newlines");
	CHECK(c->nbackends >= 1 && c->backends != NULL, "no backend");
	for (size_t i = 0; i < c->nbackends; i++) {
		const struct config_backend *b = &c->backends[i];
		CHECK(b->addr.len > 0 && b->addr.len <= sizeof(b->addr.ss),
		      "backend %zu address", i);
		CHECK(b->weight >= 1 && b->weight <= 1000, "backend weight");
		CHECK(b->identity == IDENTITY_NONE ||
			      b->identity == IDENTITY_XCLIENT,
		      "backend identity");
	}
	CHECK(c->backend_connect_timeout_ms >= 1 &&
		      c->backend_reply_timeout_ms >= 1 &&
		      c->backend_data_timeout_ms >= 1,
	      "backend timeouts");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct config *cfg = (struct config *)1;
	char err[ERR_LEN], small[24];
	long line;
	int rc;

	if (fd < 0) {
		fd = memfd_create("fuzz-config", MFD_CLOEXEC);
		CHECK(fd >= 0, "memfd_create");
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	CHECK(ftruncate(fd, 0) == 0 &&
		      pwrite(fd, data, size, 0) == (ssize_t)size,
	      "writing the memfd");

	memset(err, 0x5a, sizeof(err));
	rc = config_load(path, &cfg, err, sizeof(err));
	CHECK(terminated(err, sizeof(err)), "error not NUL-terminated");
	if (getenv("FUZZ_TRACE") != NULL) /* for writing seeds */
		fprintf(stderr, "config_load: %d %s\n", rc, err);
	if (rc == 0) {
		CHECK(cfg != NULL, "0 without a config");
		CHECK(err[0] == '\0', "accepted, with an error: %s", err);
		check_config(cfg);
		config_free(cfg);
		return 0;
	}
	CHECK(rc == -1, "config_load() returned %d", rc);
	CHECK(cfg == NULL, "-1 with a config");
	line = error_line(err, path);
	CHECK(line >= 1 && (size_t)line <= size + 1,
	      "error not \"%s:LINE: ...\" with 1 <= LINE <= %zu: %s", path,
	      size + 1, err);

	/* The same error cut to a small buffer: still a C string. */
	if (size % 8 == 0) {
		size_t errlen = 1 + size / 8 % (sizeof(small) - 1);
		memset(small, 0x5a, sizeof(small));
		rc = config_load(path, &cfg, small, errlen);
		CHECK(rc == -1 && cfg == NULL, "second load: %d", rc);
		CHECK(terminated(small, errlen),
		      "cut error not NUL-terminated");
		for (size_t i = errlen; i < sizeof(small); i++)
			CHECK(small[i] == 0x5a, "wrote past errlen %zu",
			      errlen);
	}
	return 0;
}
