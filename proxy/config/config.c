/*
 * config.c - read the YAML configuration into a struct config: the entry
 * points (load, free, lookups) and the defaults.
 *
 * config_load() fills every default (set_defaults()), reads the file
 * whole (at most CONFIG_FILE_MAX bytes, 1 MiB), counts its nesting and
 * nodes as libyaml's events arrive (config_yaml_bounds(): at most 64
 * deep, 100,000 nodes), loads it with libyaml's document
 * API (one document, a mapping at the top), then walks it against the
 * key tables (config_yaml.c over config_schema.c) and runs the checks
 * across keys (config_check.c).  Parsing only overwrites defaults.  The
 * first error stops the load and is reported as "FILE:LINE: KEY: why",
 * LINE 1-based, KEY the dotted path; the config is then freed whole.
 *
 * Security stance: the file is read once, bounded, and nothing else is:
 * the files the configuration names (certificates, the passwd file) are
 * opened by the modules that use them, which report their own errors.
 * Relative paths are made absolute from the config file's directory.
 *
 * Config keys: every key has its default here (conf/msaproxy.yaml writes
 * each with its default).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <yaml.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "config/config_value.h"
#include "lib/log.h"

#define CONFIG_FILE_MAX (1024 * 1024) /* a bigger config is a mistake */

#define DEFAULT_CIPHERS                                                        \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define DEFAULT_CIPHERSUITES                                                   \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"                       \
	"TLS_CHACHA20_POLY1305_SHA256"
#define DEFAULT_GROUPS "X25519:P-256"

/* ---- load ------------------------------------------------------------ */

static int
set_defaults(struct config *cfg)
{
	if (gethostname(cfg->hostname, sizeof(cfg->hostname) - 1) < 0 ||
	    cfg->hostname[0] == '\0')
		snprintf(cfg->hostname, sizeof(cfg->hostname), "localhost");
	cfg->hostname[sizeof(cfg->hostname) - 1] = '\0';
	cfg->workers = 0;
	cfg->recv_buffers = 512;
	cfg->data_buffers = 64;
	cfg->log_level = LOG_INFO;
	cfg->control_mode = 0600;
	cfg->blocklist_auto_ban = true;
	cfg->blocklist_max_entries = 1000000;
	cfg->xdp_pin_dir = strdup("/sys/fs/bpf/msaproxy");
	cfg->shutdown_timeout_ms = 30 * SECOND;
	cfg->shutdown_fast_timeout_ms = 3 * SECOND;
	snprintf(cfg->cluster_prefix, sizeof(cfg->cluster_prefix), "msaproxy:");
	cfg->cluster_timeout_ms = 500;
	cfg->cluster_share_files = true;
	cfg->log_format = LOG_FORMAT_KV;
	cfg->log_output = LOG_OUTPUT_STDERR;
	cfg->log_facility = 2; /* mail */
	cfg->log_syslog_socket = strdup(LOG_SYSLOG_SOCKET);

	cfg->tls_min_version = TLS1_2_VERSION;
	cfg->tls_ciphers = strdup(DEFAULT_CIPHERS);
	cfg->tls_ciphersuites = strdup(DEFAULT_CIPHERSUITES);
	cfg->tls_groups = strdup(DEFAULT_GROUPS);
	cfg->tls_tickets = true;
	cfg->metrics_status = true;
	cfg->tls13_tickets = 1;
	cfg->ticket_key_lifetime_ms = 12 * HOUR;
	cfg->handshake_timeout_ms = 10 * SECOND;

	cfg->auth_mechs = AUTH_MECH_PLAIN | AUTH_MECH_LOGIN;
	cfg->auth_threads = 2;
	cfg->auth_failure_delay_ms = 1 * SECOND;
	cfg->auth_max_failures = 3;
	cfg->auth_cache_ttl_ms = 1 * HOUR;
	cfg->auth_cache_size = 10000;
	cfg->auth_dovecot_connections = 2;
	cfg->auth_dovecot_timeout_ms = 5 * SECOND;
	cfg->auth_http_connections = 32;
	cfg->auth_http_timeout_ms = 5 * SECOND;

	cfg->max_line = 1000;
	cfg->max_auth_line = 12288;
	cfg->max_message_size = 50 * MIB;
	cfg->max_recipients = 100;
	cfg->max_errors = 10;
	cfg->max_sessions = 10000;
	cfg->command_timeout_ms = 5 * MINUTE;
	cfg->data_timeout_ms = 10 * MINUTE;
	cfg->bare_newlines = BARE_NEWLINE_REJECT;

	cfg->user_limits.messages = (struct config_rate){300, HOUR, 300};
	cfg->user_limits.recipients = (struct config_rate){1000, HOUR, 1000};
	cfg->user_limits.bytes = (struct config_rate){GIB, HOUR, GIB};
	cfg->max_users = 100000;
	cfg->login_failures = (struct config_rate){5, 10 * MINUTE, 5};
	cfg->login_max_delay_ms = 30 * SECOND;
	cfg->ip_prefix_v4 = 32;
	cfg->ip_prefix_v6 = 64;
	cfg->ip_connections = (struct config_rate){120, MINUTE, 120};
	cfg->ip_concurrency = 50;
	cfg->ip_auth_failures = (struct config_rate){10, 10 * MINUTE, 10};
	cfg->ip_ban_time_ms = HOUR;
	cfg->ip_max_entries = 100000;

	cfg->backend_connect_timeout_ms = 10 * SECOND;
	cfg->backend_reply_timeout_ms = 5 * MINUTE;
	cfg->backend_data_timeout_ms = 10 * MINUTE;
	cfg->balance = BALANCE_ROUND_ROBIN;
	cfg->backend_down_time_ms = 30 * SECOND;
	cfg->health_interval_ms = 0;
	cfg->backend_resolve_interval_ms = 60 * SECOND;
	cfg->health_timeout_ms = 5 * SECOND;
	cfg->health_rise = 2;
	cfg->health_fall = 3;

	if (cfg->tls_ciphers == NULL || cfg->tls_ciphersuites == NULL ||
	    cfg->tls_groups == NULL || cfg->xdp_pin_dir == NULL ||
	    cfg->log_syslog_socket == NULL)
		return -1;
	return 0;
}

/* Read the whole file; NULL with a message in l->err on failure. */
static unsigned char *
config_read_file(struct loader *l, size_t *len)
{
	unsigned char *buf;
	size_t n;
	FILE *fp;

	fp = fopen(l->path, "rb");
	if (fp == NULL) {
		config_yaml_fail(l, 1, "file", "cannot open: %s",
				 strerror(errno));
		return NULL;
	}
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (buf == NULL) {
		fclose(fp);
		config_yaml_fail(l, 1, "file", "out of memory");
		return NULL;
	}
	n = fread(buf, 1, CONFIG_FILE_MAX + 1, fp);
	if (ferror(fp)) {
		config_yaml_fail(l, 1, "file", "cannot read: %s",
				 strerror(errno));
		goto bad;
	}
	if (n > CONFIG_FILE_MAX) {
		config_yaml_fail(
			l, 1, "file",
			"larger than 1 MiB (%d bytes); a configuration "
			"needs a few KiB",
			CONFIG_FILE_MAX);
		goto bad;
	}
	fclose(fp);
	*len = n;
	return buf;
bad:
	fclose(fp);
	free(buf);
	return NULL;
}

/* The absolute directory of the config file. */
static char *
config_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, *abs;

	if (slash == NULL)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (dir == NULL)
		return NULL;
	abs = realpath(dir, NULL);
	if (abs == NULL)
		return dir; /* raced away; relative still works from here */
	free(dir);
	return abs;
}

int
config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	struct loader l = {.path = path, .err = err, .errlen = errlen};
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	yaml_node_t *root;
	struct config *cfg;
	unsigned char *buf;
	size_t len;
	int rc = -1;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || set_defaults(cfg) < 0 ||
	    (cfg->path = strdup(path)) == NULL ||
	    (l.dir = config_dir(path)) == NULL) {
		config_free(cfg);
		free(l.dir);
		return config_yaml_fail(&l, 1, "file", "out of memory");
	}
	buf = config_read_file(&l, &len);
	if (buf == NULL) {
		config_free(cfg);
		free(l.dir);
		return -1;
	}

	if (config_yaml_bounds(&l, buf, len) != 0)
		goto out_buf;
	if (!yaml_parser_initialize(&parser)) {
		config_yaml_fail(&l, 1, "file", "out of memory");
		goto out_buf;
	}
	yaml_parser_set_input_string(&parser, buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		config_yaml_syntax_fail(&l, &parser, buf, len);
		goto out_parser;
	}
	l.doc = &doc;
	l.cfg = cfg;

	root = yaml_document_get_root_node(&doc);
	if (root == NULL) {
		config_yaml_fail(&l, 1, "file",
				 "empty; expected a mapping of settings");
		goto out_doc;
	}
	if (root->type != YAML_MAPPING_NODE) {
		config_yaml_fail(
			&l, config_yaml_line(root), "file",
			"expected a mapping of settings at the top level");
		goto out_doc;
	}
	/* One document per file: a stray "---" usually means a mistake. */
	if (!yaml_parser_load(&parser, &extra)) {
		config_yaml_syntax_fail(&l, &parser, buf, len);
		goto out_doc;
	}
	if (yaml_document_get_root_node(&extra) != NULL) {
		config_yaml_fail(&l, (int)extra.start_mark.line + 1, "file",
				 "more than one YAML document");
		yaml_document_delete(&extra);
		goto out_doc;
	}
	yaml_document_delete(&extra);

	if (config_yaml_map(&l, root, root, "", config_schema_top, cfg) < 0 ||
	    config_check(&l, root, cfg) < 0)
		goto out_doc;
	*out = cfg;
	cfg = NULL;
	rc = 0;

out_doc:
	yaml_document_delete(&doc);
out_parser:
	yaml_parser_delete(&parser);
out_buf:
	free(buf);
	free(l.dir);
	SSL_CTX_free(l.ssl);
	config_free(cfg);
	return rc;
}

int
config_key_line(const struct config *cfg, const char *key)
{
	for (size_t i = 0; i < cfg->nkey_lines; i++)
		if (strcmp(cfg->key_lines[i].key, key) == 0)
			return cfg->key_lines[i].line;
	return 0;
}

int
config_fail(const struct config *cfg, const char *key, const char *fallback,
	    char *err, size_t errlen, const char *fmt, ...)
{
	int line = config_key_line(cfg, key), n;
	va_list ap;

	if (line == 0 && fallback != NULL)
		line = config_key_line(cfg, fallback);
	if (errlen == 0)
		return -1;
	n = snprintf(err, errlen, "%s:%d: %s: ", cfg->path, line ? line : 1,
		     key);
	if (n < 0 || (size_t)n >= errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nkey_lines; i++)
		free(cfg->key_lines[i].key);
	free(cfg->key_lines);
	for (size_t i = 0; i < cfg->ncerts; i++) {
		struct config_cert *c = &cfg->certs[i];
		free(c->cert_file);
		free(c->key_file);
		for (size_t j = 0; j < c->nnames; j++)
			free(c->names[j]);
		free(c->names);
	}
	free(cfg->certs);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		free(cfg->listeners[i].allow.v);
		free(cfg->listeners[i].deny.v);
		free(cfg->listeners[i].proxy_trusted.v);
	}
	free(cfg->listeners);
	for (size_t i = 0; i < cfg->nclasses; i++)
		free(cfg->classes[i].name);
	free(cfg->classes);
	for (size_t i = 0; i < cfg->nuser_classes; i++) {
		free(cfg->user_classes[i].login);
		free(cfg->user_classes[i].class_name);
	}
	free(cfg->user_classes);
	free(cfg->ip_allow.v);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		free(cfg->backends[i].ca_file);
		free(cfg->backends[i].tls_name);
		free(cfg->backends[i].host);
	}
	free(cfg->backends);
	free(cfg->tls_ciphers);
	free(cfg->tls_ciphersuites);
	free(cfg->tls_groups);
	free(cfg->passwd_file);
	free(cfg->control_socket);
	free(cfg->metrics_admin_users);
	free(cfg->metrics_tls_cert);
	free(cfg->metrics_tls_key);
	free(cfg->run_user);
	free(cfg->run_group);
	for (size_t i = 0; i < cfg->nblocklist_files; i++)
		free(cfg->blocklist_files[i]);
	free(cfg->blocklist_files);
	free(cfg->blocklist_allow.v);
	for (size_t i = 0; i < cfg->nxdp_interfaces; i++)
		free(cfg->xdp_interfaces[i]);
	free(cfg->xdp_interfaces);
	free(cfg->xdp_pin_dir);
	free(cfg->cluster_username);
	free(cfg->cluster_password_file);
	free(cfg->cluster_tls_ca);
	free(cfg->cluster_tls_name);
	free(cfg->log_syslog_socket);
	free(cfg->path);
	free(cfg);
}
