/*
 * config_check.c - the configuration's checks across keys, run once the
 * keys are parsed: what no single value can decide.
 *
 *   limits     classes inherit unset rates from limits.user; every byte
 *              burst holds a message of limits.max_message_size; logins
 *              in limits.users name existing classes, each login once
 *   listeners  no two on one address (bind() would fail later)
 *   backends   at most BACKENDS_MAX (host names: config_resolve.c);
 *              ca_file and name only with tls:
 *              starttls-verify, a name for it on a unix: address; no two
 *              on one address
 *   others     worker_buffers.* powers of two;
 *              backends.health_check.interval 0 or at least 1s;
 *              blocklist.xdp.interfaces when xdp is enabled;
 *              privileges.group needs privileges.user; metrics.listen
 *              not on a listener's address; limits.max_auth_line at
 *              least limits.max_line
 *
 * Each failure is reported at the line of the key that has to change (or
 * the section holding it) as "FILE:LINE: KEY: why".  Security stance: a
 * configuration that would fail, or silently never work, at run time is
 * refused at load.  Internal to the config loader: see
 * config_internal.h.
 *
 * Config keys: those above.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <yaml.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "config/config_value.h"

static void
inherit_rate(struct config_rate *r, const struct config_rate *from)
{
	if (r->period_ms == RATE_UNSET)
		*r = *from;
}

/* A message of max_message_size must fit in the byte burst. */
static int
check_bytes_burst(struct loader *l, const struct config_user_limits *lim,
		  const char *key, int line, uint64_t max_message_size)
{
	char have[32], need[32];

	if (lim->bytes.count == 0 || lim->bytes.burst >= max_message_size)
		return 0;
	config_value_format_size(have, sizeof(have), lim->bytes.burst);
	config_value_format_size(need, sizeof(need), max_message_size);
	return config_yaml_fail(
		l, line, key,
		"burst %s is smaller than limits.max_message_size (%s): "
		"such a message could never be sent",
		have, need);
}

/* Classes inherit from limits.user; logins name existing classes. */
static int
config_check_limits(struct loader *l, const yaml_node_t *limits,
		    struct config *cfg)
{
	const yaml_node_t *user = config_yaml_get(l, limits, "user");
	const yaml_node_t *n = user ? config_yaml_get(l, user, "bytes") : NULL;
	char key[400];

	/* bytes left at its default: point at what outgrew it. */
	if (n == NULL)
		n = config_yaml_get(l, limits, "max_message_size");
	if (check_bytes_burst(l, &cfg->user_limits, "limits.user.bytes",
			      config_yaml_line(n ? n : limits),
			      cfg->max_message_size) < 0)
		return -1;
	for (size_t i = 0; i < cfg->nclasses; i++) {
		struct config_class *c = &cfg->classes[i];
		inherit_rate(&c->lim.messages, &cfg->user_limits.messages);
		inherit_rate(&c->lim.recipients, &cfg->user_limits.recipients);
		inherit_rate(&c->lim.bytes, &cfg->user_limits.bytes);
		inherit_rate(&c->lim.messages_quota,
			     &cfg->user_limits.messages_quota);
		snprintf(key, sizeof(key), "limits.classes.%s.bytes", c->name);
		if (check_bytes_burst(l, &c->lim, key, c->line,
				      cfg->max_message_size) < 0)
			return -1;
	}
	for (size_t i = 0; i < cfg->nuser_classes; i++) {
		struct config_user_class *u = &cfg->user_classes[i];
		u->cls = config_class_find(cfg, u->class_name);
		if (u->cls == NULL) {
			snprintf(key, sizeof(key), "limits.users.%s", u->login);
			return config_yaml_fail(l, u->line, key,
						"no class %s in limits.classes",
						u->class_name);
		}
	}
	/* qsort()'s base must not be NULL, even for no elements. */
	if (cfg->nuser_classes > 1)
		qsort(cfg->user_classes, cfg->nuser_classes,
		      sizeof(*cfg->user_classes), config_user_class_cmp);
	for (size_t i = 1; i < cfg->nuser_classes; i++) {
		struct config_user_class *u = &cfg->user_classes[i];
		if (strcmp(u->login, u[-1].login) != 0)
			continue;
		snprintf(key, sizeof(key), "limits.users.%s", u->login);
		return config_yaml_fail(
			l, u->line > u[-1].line ? u->line : u[-1].line, key,
			"login listed twice");
	}
	return 0;
}

/* Two listeners on one address would fail at bind(); say so here. */
int
config_check_listeners(struct loader *l, struct config *cfg)
{
	char key[64];

	for (size_t i = 0; i < cfg->nlisteners; i++) {
		for (size_t j = 0; j < i; j++) {
			if (!config_value_addr_equal(&cfg->listeners[i].addr,
						     &cfg->listeners[j].addr))
				continue;
			snprintf(key, sizeof(key), "listeners[%zu].address", i);
			return config_yaml_fail(
				l, cfg->listeners[i].line, key,
				"same address as listeners[%zu]", j);
		}
	}
	return 0;
}

int
config_check_backends(struct loader *l, struct config *cfg)
{
	char key[64];

	if (cfg->nbackends > BACKENDS_MAX)
		return config_yaml_fail(l, cfg->backends[BACKENDS_MAX].line,
					"backends.servers",
					"at most %d servers", BACKENDS_MAX);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *b = &cfg->backends[i];
		if (b->tls != BACKEND_TLS_STARTTLS_VERIFY &&
		    (b->ca_file != NULL || b->tls_name != NULL)) {
			snprintf(key, sizeof(key), "backends.servers[%zu].%s",
				 i, b->ca_file ? "ca_file" : "name");
			return config_yaml_fail(
				l, b->line, key,
				"only used with tls: starttls-verify");
		}
		/* Without a name the certificate is checked against the
		 * server's IP address, which a unix socket does not have. */
		if (b->tls == BACKEND_TLS_STARTTLS_VERIFY &&
		    b->addr.ss.ss_family == AF_UNIX && b->tls_name == NULL) {
			snprintf(key, sizeof(key), "backends.servers[%zu].name",
				 i);
			return config_yaml_fail(
				l, b->line, key,
				"required with tls: starttls-verify on a "
				"unix: address");
		}
	}
	for (size_t i = 0; i < cfg->nbackends; i++) {
		for (size_t j = 0; j < i; j++) {
			const struct config_backend *a = &cfg->backends[i],
						    *b = &cfg->backends[j];
			/* Names as written here; their addresses are
			 * compared once resolved (config_resolve.c). */
			if ((a->host != NULL || b->host != NULL)
				    ? (a->host == NULL || b->host == NULL ||
				       a->port != b->port ||
				       strcasecmp(a->host, b->host) != 0)
				    : !config_value_addr_equal(&a->addr,
							       &b->addr))
				continue;
			snprintf(key, sizeof(key),
				 "backends.servers[%zu].address", i);
			return config_yaml_fail(
				l, cfg->backends[i].line, key,
				"same address as servers[%zu]; use weight "
				"instead",
				j);
		}
	}
	/* Last: what follows sees one server per address. */
	return config_resolve_backends(l, cfg);
}

/* worker_buffers.*: io_uring's buffer rings hold a power of two. */
static int
config_check_worker_buffers(struct loader *l, const yaml_node_t *root,
			    const struct config *cfg)
{
	const yaml_node_t *wb = config_yaml_get(l, root, "worker_buffers");
	const struct {
		const char *key, *name;
		unsigned v;
	} k[] = {
		{"receive", "worker_buffers.receive", cfg->recv_buffers},
		{"data", "worker_buffers.data", cfg->data_buffers},
	};

	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		if ((k[i].v & (k[i].v - 1)) == 0)
			continue;
		return config_yaml_fail(
			l, config_yaml_line(config_yaml_get(l, wb, k[i].key)),
			k[i].name,
			"must be a power of two (e.g. %u or %u), not %u",
			1u << (31 - __builtin_clz(k[i].v)),
			1u << (32 - __builtin_clz(k[i].v)), k[i].v);
	}
	return 0;
}

/* Checks that span several keys, run after everything is parsed. */
/* cluster: the TLS keys only with tls on; the node named after the host
 * unless told otherwise. */
static int
config_check_cluster(struct loader *l, const yaml_node_t *root,
		     struct config *cfg)
{
	const yaml_node_t *c = config_yaml_get(l, root, "cluster");

	if (c == NULL)
		return 0;
	if (cfg->cluster_redis.len == 0)
		return config_yaml_fail(l, config_yaml_line(c), "cluster",
					"needs cluster.redis (host:port)");
	if (cfg->cluster_redis.ss.ss_family == AF_UNIX && cfg->cluster_tls)
		return config_yaml_fail(
			l, config_yaml_line(config_yaml_get(l, c, "tls")),
			"cluster.tls", "not over a unix socket");
	if (!cfg->cluster_tls &&
	    (cfg->cluster_tls_ca != NULL || cfg->cluster_tls_name != NULL)) {
		const yaml_node_t *n = config_yaml_get(l, c, "tls_ca");

		if (n == NULL)
			n = config_yaml_get(l, c, "tls_name");
		return config_yaml_fail(l, config_yaml_line(n), "cluster.tls",
					"tls_ca and tls_name need tls: true");
	}
	if (cfg->cluster_node_id[0] == '\0') {
		/* The machine's name (not hostname: every node greets with
		 * the cluster's), cut at the first dot. */
		char host[256] = "";

		if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
			snprintf(host, sizeof(host), "node");
		snprintf(cfg->cluster_node_id, sizeof(cfg->cluster_node_id),
			 "%.*s", (int)strcspn(host, "."), host);
	}
	return 0;
}

/* The line of the key "name" in mapping map (where a key missing inside
 * its section is reported); map's line when it is not there. */
static int
key_line(struct loader *l, const yaml_node_t *map, const char *name)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return config_yaml_line(map);
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top; p++) {
		const yaml_node_t *k = config_yaml_node(l, p->key);

		if (k != NULL && k->type == YAML_SCALAR_NODE &&
		    strcmp(config_yaml_str(k), name) == 0)
			return config_yaml_line(k);
	}
	return config_yaml_line(map);
}

/* OAUTHBEARER or XOAUTH2 with the passwd file: the item that names it. */
static int
oauth_needs_tokens(struct loader *l, const yaml_node_t *root, int line)
{
	const yaml_node_t *v = config_yaml_get(
		l, config_yaml_get(l, root, "auth"), "mechanisms");
	char key[64] = "auth.mechanisms";
	const char *name = "OAUTHBEARER";

	if (v != NULL && v->type == YAML_SEQUENCE_NODE) {
		size_t n = (size_t)(v->data.sequence.items.top -
				    v->data.sequence.items.start);

		line = config_yaml_line(v);
		for (size_t i = 0; i < n; i++) {
			const yaml_node_t *it = config_yaml_node(
				l, v->data.sequence.items.start[i]);
			const char *s =
				it != NULL && it->type == YAML_SCALAR_NODE
					? config_yaml_str(it)
					: "";

			if (sasl_mech_of(s, strlen(s)) & AUTH_MECH_OAUTH) {
				config_yaml_index_key(key, sizeof(key),
						      "auth.mechanisms", i);
				line = config_yaml_line(it);
				name = s;
				break;
			}
		}
	}
	return config_yaml_fail(l, line, key,
				"%s needs a back end that checks tokens "
				"(auth.backend dovecot or http); the passwd "
				"file holds passwords only",
				name);
}

/* auth: the back end named has what it needs. */
static int
config_check_auth(struct loader *l, const yaml_node_t *root,
		  const struct config *cfg)
{
	int line = key_line(l, root, "auth");

	if (cfg->auth_backend == AUTH_BACKEND_PASSWD &&
	    cfg->passwd_file == NULL)
		return config_yaml_fail(l, line, "auth.passwd_file",
					"required key is missing");
	if (cfg->auth_backend == AUTH_BACKEND_DOVECOT &&
	    cfg->auth_dovecot_socket.len == 0)
		return config_yaml_fail(l, line, "auth.dovecot.socket",
					"required with auth.backend dovecot");
	if (cfg->auth_backend == AUTH_BACKEND_HTTP &&
	    cfg->auth_http_addr.len == 0)
		return config_yaml_fail(l, line, "auth.http.url",
					"required with auth.backend http");
	if (cfg->auth_backend == AUTH_BACKEND_PASSWD &&
	    (cfg->auth_mechs & AUTH_MECH_OAUTH))
		return oauth_needs_tokens(l, root, line);
	return 0;
}

int
config_check(struct loader *l, const yaml_node_t *root, struct config *cfg)
{
	const yaml_node_t *limits = config_yaml_get(l, root, "limits");
	const yaml_node_t *n;

	if (config_check_limits(l, limits, cfg) < 0)
		return -1;
	if (config_check_worker_buffers(l, root, cfg) < 0 ||
	    config_check_auth(l, root, cfg) < 0)
		return -1;
	if (cfg->health_interval_ms > 0 && cfg->health_interval_ms < SECOND) {
		n = config_yaml_get(
			l,
			config_yaml_get(l, config_yaml_get(l, root, "backends"),
					"health_check"),
			"interval");
		return config_yaml_fail(l, config_yaml_line(n),
					"backends.health_check.interval",
					"must be 0s (off) or at least 1s");
	}
	if (cfg->xdp_enabled && cfg->nxdp_interfaces == 0) {
		const yaml_node_t *bl = config_yaml_get(l, root, "blocklist");

		return config_yaml_fail(
			l, config_yaml_line(config_yaml_get(l, bl, "xdp")),
			"blocklist.xdp.interfaces",
			"at least one interface when xdp is enabled");
	}

	if (cfg->run_group != NULL && cfg->run_user == NULL) {
		const yaml_node_t *pr = config_yaml_get(l, root, "privileges");

		return config_yaml_fail(
			l, config_yaml_line(config_yaml_get(l, pr, "group")),
			"privileges.group", "needs privileges.user");
	}
	for (size_t i = 0; cfg->metrics_listen.len > 0 && i < cfg->nlisteners;
	     i++) {
		if (!config_value_addr_equal(&cfg->metrics_listen,
					     &cfg->listeners[i].addr))
			continue;
		n = config_yaml_get(l, config_yaml_get(l, root, "metrics"),
				    "listen");
		return config_yaml_fail(l, config_yaml_line(n),
					"metrics.listen",
					"same address as listeners[%zu]", i);
	}
	if (cfg->max_auth_line < cfg->max_line) {
		n = config_yaml_get(l, limits, "max_auth_line");
		if (n != NULL)
			return config_yaml_fail(
				l, config_yaml_line(n), "limits.max_auth_line",
				"must be at least limits.max_line (%zu)",
				cfg->max_line);
		return config_yaml_fail(
			l,
			config_yaml_line(
				config_yaml_get(l, limits, "max_line")),
			"limits.max_line",
			"must not exceed limits.max_auth_line (%zu)",
			cfg->max_auth_line);
	}
	return config_check_cluster(l, root, cfg);
}
