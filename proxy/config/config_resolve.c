/*
 * config_resolve.c - backends by host name (backends.servers[].address:
 * "mx1.example.internal:25").
 *
 * A name is looked up (getaddrinfo(3), stream sockets, AI_ADDRCONFIG) when
 * the configuration is loaded: at start, at -t and at every reload, all on
 * the main thread, never on a worker.  Each address it gives becomes a
 * server of its own, with the item's weight, max_conns, identity and TLS
 * settings: the pool balances across them and tracks each one's health.
 * Its text, in logs, metrics and `msaproxyctl backends`, is
 * "HOST:PORT/IP"; with tls: starttls-verify and no name, the certificate
 * is checked against HOST.  Addresses are sorted, so an answer in another
 * order is the same answer.
 *
 * A name that does not resolve refuses the load ("FILE:LINE:
 * backends.servers[N].address: cannot resolve HOST: why"), as any other
 * error does: at start nothing starts, at a reload the running
 * configuration (with the addresses it resolved) stays.
 * config_resolve_compare() looks the names up again for the timer
 * (backends.resolve_interval): getaddrinfo gives no TTL, so the interval
 * stands in for one (docs/BACKENDS.md).
 *
 * Config keys: backends.servers[].address, backends.resolve_interval
 * (read by the server's timer).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config/config_internal.h"
#include "config/config_value.h"

struct addrs {
	struct sockaddr_storage ss[BACKENDS_MAX];
	socklen_t len[BACKENDS_MAX];
	size_t n;
	bool more; /* the name has more than BACKENDS_MAX */
};

static int
ss_cmp(const struct sockaddr_storage *a, socklen_t alen,
       const struct sockaddr_storage *b, socklen_t blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/* host's stream addresses with port set, distinct and sorted: 0, or -1
 * with why (the resolver's words). */
static int
lookup(const char *host, unsigned port, struct addrs *out, const char **why)
{
	struct addrinfo hints, *res = NULL, *ai;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	out->n = 0;
	out->more = false;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		*why = rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		socklen_t len;
		size_t k, at;

		memset(&ss, 0, sizeof(ss));
		if (ai->ai_family == AF_INET &&
		    ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			memcpy(sin, ai->ai_addr, sizeof(*sin));
			memset(sin->sin_zero, 0, sizeof(sin->sin_zero));
			sin->sin_port = htons((uint16_t)port);
			len = sizeof(*sin);
		} else if (ai->ai_family == AF_INET6 &&
			   ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			memcpy(sin6, ai->ai_addr, sizeof(*sin6));
			sin6->sin6_flowinfo = 0;
			sin6->sin6_port = htons((uint16_t)port);
			len = sizeof(*sin6);
		} else {
			continue;
		}
		/* Sorted insert, duplicates dropped (/etc/hosts may list
		 * one address twice). */
		for (at = 0; at < out->n &&
			     ss_cmp(&out->ss[at], out->len[at], &ss, len) < 0;
		     at++)
			;
		if (at < out->n &&
		    ss_cmp(&out->ss[at], out->len[at], &ss, len) == 0)
			continue;
		if (out->n == BACKENDS_MAX) {
			out->more = true;
			continue;
		}
		for (k = out->n; k > at; k--) {
			out->ss[k] = out->ss[k - 1];
			out->len[k] = out->len[k - 1];
		}
		out->ss[at] = ss;
		out->len[at] = len;
		out->n++;
	}
	freeaddrinfo(res);
	if (out->n == 0) {
		*why = "no IPv4 or IPv6 address";
		return -1;
	}
	return 0;
}

/* "HOST:PORT/IP" into text: false if it does not fit. */
static bool
addr_text(char *text, size_t size, const char *host, unsigned port,
	  const struct sockaddr_storage *ss)
{
	char ip[INET6_ADDRSTRLEN];
	const void *a =
		ss->ss_family == AF_INET6
			? (const void *)&((const struct sockaddr_in6 *)ss)
				  ->sin6_addr
			: (const void *)&((const struct sockaddr_in *)ss)
				  ->sin_addr;
	int n;

	if (inet_ntop(ss->ss_family, a, ip, sizeof(ip)) == NULL)
		return false;
	n = snprintf(text, size, "%s:%u/%s", host, port, ip);
	return n > 0 && (size_t)n < size;
}

static void
backend_strings_free(struct config_backend *b)
{
	free(b->host);
	free(b->ca_file);
	free(b->tls_name);
}

/* A copy of b that owns its own strings; false when out of memory. */
static bool
backend_copy(struct config_backend *dst, const struct config_backend *b)
{
	*dst = *b;
	dst->host = b->host ? strdup(b->host) : NULL;
	dst->ca_file = b->ca_file ? strdup(b->ca_file) : NULL;
	dst->tls_name = b->tls_name ? strdup(b->tls_name) : NULL;
	if ((b->host && !dst->host) || (b->ca_file && !dst->ca_file) ||
	    (b->tls_name && !dst->tls_name)) {
		backend_strings_free(dst);
		return false;
	}
	return true;
}

bool
config_backends_named(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nbackends; i++)
		if (cfg->backends[i].host != NULL)
			return true;
	return false;
}

/*
 * Replace every named item of cfg->backends by one server per address
 * (all of them copies that own their strings; the old array is freed
 * only when all is done, so a failure leaves cfg as it was).
 */
int
config_resolve_backends(struct loader *l, struct config *cfg)
{
	struct config_backend *v;
	struct addrs *a;
	const char *why = NULL;
	size_t n = 0, i, k;
	char key[64];
	int rc = -1;

	for (i = 0; i < cfg->nbackends; i++)
		cfg->backends[i].name_ord = (unsigned)i;
	if (!config_backends_named(cfg))
		return 0;
	v = calloc(BACKENDS_MAX, sizeof(*v));
	a = malloc(sizeof(*a));
	if (v == NULL || a == NULL) {
		config_yaml_fail(l, 0, "backends.servers", "out of memory");
		goto out;
	}
	for (i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *b = &cfg->backends[i];
		size_t want = 1;

		snprintf(key, sizeof(key), "backends.servers[%zu].address", i);
		if (b->host != NULL) {
			if (lookup(b->host, b->port, a, &why) != 0) {
				config_yaml_fail(l, b->line, key,
						 "cannot resolve %s: %s",
						 b->host, why);
				goto out;
			}
			want = a->n;
		}
		if (n + want > BACKENDS_MAX || (b->host && a->more)) {
			config_yaml_fail(l, b->line, "backends.servers",
					 "at most %d servers (%s gives %s%zu "
					 "more)",
					 BACKENDS_MAX, b->addr.text,
					 a->more ? "over " : "", want);
			goto out;
		}
		for (k = 0; k < want; k++) {
			struct config_backend *c = &v[n];

			if (!backend_copy(c, b)) {
				config_yaml_fail(l, b->line, key,
						 "out of memory");
				goto out;
			}
			n++;
			if (b->host == NULL)
				continue;
			c->addr.ss = a->ss[k];
			c->addr.len = a->len[k];
			if (!addr_text(c->addr.text, sizeof(c->addr.text),
				       b->host, b->port, &a->ss[k])) {
				config_yaml_fail(l, b->line, key,
						 "host name too long");
				goto out;
			}
			/* Verified against the name the operator wrote. */
			if (c->tls == BACKEND_TLS_STARTTLS_VERIFY &&
			    c->tls_name == NULL &&
			    (c->tls_name = strdup(b->host)) == NULL) {
				config_yaml_fail(l, b->line, key,
						 "out of memory");
				goto out;
			}
		}
	}
	/* Two items may not reach one server, whatever their spelling. */
	for (i = 0; i < n; i++) {
		for (k = 0; k < i; k++) {
			if (v[i].name_ord == v[k].name_ord ||
			    !config_value_addr_equal(&v[i].addr, &v[k].addr))
				continue;
			snprintf(key, sizeof(key),
				 "backends.servers[%u].address", v[i].name_ord);
			config_yaml_fail(l, v[i].line, key,
					 "%s is the address of servers[%u] "
					 "too; use weight instead",
					 v[i].addr.text, v[k].name_ord);
			goto out;
		}
	}
	for (i = 0; i < cfg->nbackends; i++)
		backend_strings_free(&cfg->backends[i]);
	free(cfg->backends);
	cfg->backends = v;
	cfg->nbackends = n;
	v = NULL;
	rc = 0;
out:
	for (i = 0; v != NULL && i < n; i++)
		backend_strings_free(&v[i]);
	free(v);
	free(a);
	return rc;
}

enum config_resolve_result
config_resolve_compare(const struct config *cfg, char *msg, size_t msglen)
{
	struct addrs *a = malloc(sizeof(*a));
	enum config_resolve_result r = CONFIG_RESOLVE_SAME;
	const char *why = NULL;

	msg[0] = '\0';
	if (a == NULL) {
		snprintf(msg, msglen, "out of memory");
		return CONFIG_RESOLVE_FAILED;
	}
	for (size_t i = 0; i < cfg->nbackends && r == CONFIG_RESOLVE_SAME;
	     i++) {
		const struct config_backend *b = &cfg->backends[i];
		size_t have = 0, j, k;
		bool same = true;

		/* Each name once: at its first server. */
		if (b->host == NULL ||
		    (i > 0 && cfg->backends[i - 1].name_ord == b->name_ord))
			continue;
		if (lookup(b->host, b->port, a, &why) != 0) {
			snprintf(msg, msglen, "%s:%u: %s", b->host, b->port,
				 why);
			r = CONFIG_RESOLVE_FAILED;
			break;
		}
		/* Its servers are consecutive and sorted, as a is. */
		for (j = i; j < cfg->nbackends &&
			    cfg->backends[j].name_ord == b->name_ord;
		     j++)
			have++;
		same = have == a->n;
		for (k = 0; same && k < have; k++)
			same = ss_cmp(&cfg->backends[i + k].addr.ss,
				      cfg->backends[i + k].addr.len, &a->ss[k],
				      a->len[k]) == 0;
		if (!same) {
			size_t used = (size_t)snprintf(
				msg, msglen, "%s:%u:", b->host, b->port);
			for (k = 0; k < a->n && used < msglen; k++) {
				char t[sizeof(b->addr.text)];
				const char *ip;

				if (!addr_text(t, sizeof(t), b->host, b->port,
					       &a->ss[k]))
					continue;
				ip = strrchr(t, '/') + 1;
				used += (size_t)snprintf(msg + used,
							 msglen - used, "%s%s",
							 k ? "," : " ", ip);
			}
			r = CONFIG_RESOLVE_CHANGED;
		}
	}
	free(a);
	return r;
}
