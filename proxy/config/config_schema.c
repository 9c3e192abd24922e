/*
 * config_schema.c - the configuration's keys: one table per YAML mapping,
 * each row {key, type, offset, min, max} (nginx directives), and the
 * setters of the keys no row type covers.
 *
 * A row names where its value goes in struct config (or a list element)
 * and what it accepts; config_yaml.c walks the document against the
 * tables.  A setter (FUNC rows) takes one node and stores one value: host
 * and interface names, the run-as account (looked up now, so -t finds a
 * typo and the switch after start-up cannot fail on a lookup), the control
 * socket's mode, the TLS cipher, suite and group strings (checked against
 * OpenSSL here, so a typo is reported with its line), SASL mechanisms,
 * backend addresses, and the limits' classes and users.  Checks across
 * keys are config_check.c's; defaults are set in config.c before any key
 * is read.
 *
 * Security stance: every value is refused unless it is whole and in its
 * range; nothing here opens the files a key names (certificates, the
 * passwd file): the modules that open them report their own errors.
 * Internal to the config loader: see config_internal.h.
 *
 * Config keys: all of them (conf/msaproxy.yaml lists each with its
 * default).
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <yaml.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "config/config_value.h"
#include "lib/log.h"

/* Enums are stored through an int; make sure that is their size. */
_Static_assert(sizeof(enum listener_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum bare_newline_policy) == sizeof(int), "enum size");
_Static_assert(sizeof(enum backend_identity) == sizeof(int), "enum size");
_Static_assert(sizeof(enum backend_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum balance_policy) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_output) == sizeof(int), "enum size");

/* ---- special fields -------------------------------------------------- */

static int
set_hostname(struct loader *l, const yaml_node_t *v, const char *key,
	     void *base)
{
	struct config *cfg = base;
	const char *s;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (!config_value_hostname(s, false))
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected a host name such as mail.example.com");
	snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", s);
	return 0;
}

/* privileges.user: an existing account, resolved now so that -t finds a
 * typo and the switch after start-up cannot fail on a lookup. */
static int
set_run_user(struct loader *l, const yaml_node_t *v, const char *key,
	     void *base)
{
	struct config *cfg = base;
	struct passwd *pw;
	const char *s;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (!config_value_account(s))
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected a user name such as msaproxy");
	errno = 0;
	pw = getpwnam(s);
	if (pw == NULL)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"no user \"%s\" on this host", s);
	if (pw->pw_uid == 0)
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"\"%s\" is root: name an unprivileged user", s);
	free(cfg->run_user);
	cfg->run_user = config_yaml_strdup(l, s, key, config_yaml_line(v));
	cfg->run_uid = pw->pw_uid;
	if (cfg->run_group == NULL)
		cfg->run_gid = pw->pw_gid;
	return cfg->run_user == NULL ? -1 : 0;
}

static int
set_run_group(struct loader *l, const yaml_node_t *v, const char *key,
	      void *base)
{
	struct config *cfg = base;
	struct group *gr;
	const char *s;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (!config_value_account(s))
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected a group name such as msaproxy");
	gr = getgrnam(s);
	if (gr == NULL)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"no group \"%s\" on this host", s);
	if (gr->gr_gid == 0)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"\"%s\" is root's group: name another",
					s);
	free(cfg->run_group);
	cfg->run_group = config_yaml_strdup(l, s, key, config_yaml_line(v));
	cfg->run_gid = gr->gr_gid;
	return cfg->run_group == NULL ? -1 : 0;
}

/* An octal file mode such as "0660" (YAML would read 0660 as a number in
 * some dialects: take the text). */
static int
set_control_mode(struct loader *l, const yaml_node_t *v, const char *key,
		 void *base)
{
	struct config *cfg = base;
	const char *s;
	char *end;
	unsigned long m;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	m = strtoul(s, &end, 8);
	if (*s < '0' || *s > '7' || *end != '\0' || m > 0777 ||
	    (m & 0600) != 0600)
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected an octal mode from 0600 to 0777, "
			"such as 0660 (the owner must read and write)");
	cfg->control_mode = (unsigned)m;
	return 0;
}

static int
set_log_level(struct loader *l, const yaml_node_t *v, const char *key,
	      void *base)
{
	struct config *cfg = base;
	enum log_level level;
	const char *s;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (log_level_parse(s, &level) < 0)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"must be error, warn, info or debug");
	cfg->log_level = (int)level;
	return 0;
}

/* limits.max_memory: "off" or a size.  Below 16MB it could never be met:
 * the receive buffers and tables a started proxy holds come to more. */
static int
set_max_memory(struct loader *l, const yaml_node_t *v, const char *key,
	       void *base)
{
	struct config *cfg = base;
	const char *s, *why;
	uint64_t n;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (strcmp(s, "off") == 0) {
		cfg->max_memory = 0;
		return 0;
	}
	why = config_value_size(s, &n);
	if (why != NULL)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"%s, or off", why);
	if (n < 16 * MIB || n > 1024 * GIB)
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"must be off or between 16MB and 1024GB");
	cfg->max_memory = n;
	return 0;
}

static int
set_log_facility(struct loader *l, const yaml_node_t *v, const char *key,
		 void *base)
{
	struct config *cfg = base;
	const char *s;
	int code;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	code = log_facility_parse(s);
	if (code < 0)
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"must be mail, daemon, user, auth, authpriv or "
			"local0..local7");
	cfg->log_facility = code;
	return 0;
}

static int
groups_apply(SSL_CTX *ctx, const char *s)
{
	return (int)SSL_CTX_set1_groups_list(ctx, s);
}

/* A TLS list string, checked by handing it to an SSL_CTX. */
static int
set_tls_string(struct loader *l, const yaml_node_t *v, const char *key,
	       char **dst, int (*apply)(SSL_CTX *, const char *),
	       const char *why)
{
	const char *s;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (*s == '\0')
		return config_yaml_fail(l, config_yaml_line(v), key,
					"must not be empty");
	if (l->ssl == NULL &&
	    (l->ssl = SSL_CTX_new(TLS_server_method())) == NULL)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"cannot create an SSL_CTX");
	if (apply(l->ssl, s) != 1) {
		ERR_clear_error();
		return config_yaml_fail(l, config_yaml_line(v), key, "%s", why);
	}
	free(*dst);
	*dst = config_yaml_strdup(l, s, key, config_yaml_line(v));
	return *dst != NULL ? 0 : -1;
}

static int
set_ciphers(struct loader *l, const yaml_node_t *v, const char *key, void *base)
{
	return set_tls_string(l, v, key, &((struct config *)base)->tls_ciphers,
			      SSL_CTX_set_cipher_list,
			      "no cipher in the list is known to OpenSSL");
}

static int
set_ciphersuites(struct loader *l, const yaml_node_t *v, const char *key,
		 void *base)
{
	return set_tls_string(l, v, key,
			      &((struct config *)base)->tls_ciphersuites,
			      SSL_CTX_set_ciphersuites,
			      "no suite in the list is known to OpenSSL");
}

static int
set_groups(struct loader *l, const yaml_node_t *v, const char *key, void *base)
{
	return set_tls_string(
		l, v, key, &((struct config *)base)->tls_groups, groups_apply,
		"unknown group (known: X25519, P-256, P-384, ...)");
}

/* A certificate's SNI names ("*.example.com" allowed). */
static bool
valid_cert_name(const char *s)
{
	return config_value_hostname(s, true);
}

static int
set_names(struct loader *l, const yaml_node_t *v, const char *key, void *base)
{
	struct config_cert *cert = base;

	return config_yaml_strings(l, v, key, false, valid_cert_name,
				   "expected a list such as [mail.example.com]",
				   "expected a host name or *.domain",
				   &cert->names, &cert->nnames);
}

static int
set_blocklist_files(struct loader *l, const yaml_node_t *v, const char *key,
		    void *base)
{
	struct config *cfg = base;

	return config_yaml_strings(l, v, key, true, NULL,
				   "expected a list of files",
				   "must not be empty", &cfg->blocklist_files,
				   &cfg->nblocklist_files);
}

/* An interface name as the kernel takes it (IFNAMSIZ - 1 bytes, no '/',
 * no white space). */
static bool
valid_ifname(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 15 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (; *s; s++) {
		if (*s == '/' || *s == ':' || *s <= ' ' || *s == 0x7f)
			return false;
	}
	return true;
}

static int
set_xdp_interfaces(struct loader *l, const yaml_node_t *v, const char *key,
		   void *base)
{
	struct config *cfg = base;

	return config_yaml_strings(l, v, key, false, valid_ifname,
				   "expected a list such as [eth0]",
				   "expected an interface name such as eth0",
				   &cfg->xdp_interfaces, &cfg->nxdp_interfaces);
}

static int
set_mechanisms(struct loader *l, const yaml_node_t *v, const char *key,
	       void *base)
{
	struct config *cfg = base;
	unsigned mechs = 0, bit;
	char ikey[128];
	size_t n;

	if (v->type != YAML_SEQUENCE_NODE || config_yaml_is_null(v))
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected a list such as [PLAIN, LOGIN]");
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"must list at least one mechanism");
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item =
			config_yaml_node(l, v->data.sequence.items.start[i]);
		const char *s;

		config_yaml_index_key(ikey, sizeof(ikey), key, i);
		if (config_yaml_scalar(l, item, ikey, &s) < 0)
			return -1;
		bit = sasl_mech_of(s, strlen(s));
		if (bit == 0 && (strcasecmp(s, "CRAM-MD5") == 0 ||
				 strcasecmp(s, "DIGEST-MD5") == 0))
			return config_yaml_fail(
				l, config_yaml_line(item), ikey,
				"%s is not supported: it needs plaintext "
				"passwords on the server; use PLAIN or "
				"LOGIN",
				s);
		if (bit == 0)
			return config_yaml_fail(
				l, config_yaml_line(item), ikey,
				"unknown mechanism %s; expected PLAIN, "
				"LOGIN, OAUTHBEARER or XOAUTH2",
				s);
		if (mechs & bit)
			return config_yaml_fail(l, config_yaml_line(item), ikey,
						"%s is listed twice", s);
		mechs |= bit;
	}
	cfg->auth_mechs = mechs;
	return 0;
}

/* "mx1.example.internal:25": kept as a name and a port, resolved once the
 * whole file is read (config_resolve.c).  -1 (nothing said) when s is no
 * HOST:PORT, so the address's own error stands. */
static int
set_backend_host(struct loader *l, const yaml_node_t *v, const char *key,
		 struct config_backend *b, const char *s)
{
	const char *colon = strrchr(s, ':'), *end;
	char host[sizeof(b->addr.text)];
	uint64_t port;
	size_t hlen;

	if (colon == NULL || s[0] == '[' || (hlen = (size_t)(colon - s)) == 0 ||
	    hlen >= sizeof(host))
		return -1;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (!config_value_hostname(host, false) ||
	    config_value_digits(colon + 1, &end, &port) != 0 || *end != '\0' ||
	    port < 1 || port > 65535)
		return -1;
	/* Every letter is a letter: not an IPv4 address gone wrong. */
	if (strspn(host, "0123456789.") == hlen)
		return -1;
	memset(&b->addr, 0, sizeof(b->addr));
	memcpy(b->addr.text, s, strlen(s) + 1);
	b->port = (unsigned)port;
	free(b->host);
	b->host = config_yaml_strdup(l, host, key, config_yaml_line(v));
	return b->host != NULL ? 0 : -1;
}

/* A backend is connected to, so a wildcard address makes no sense; a
 * local one may be a unix socket. */
static int
set_backend_addr(struct loader *l, const yaml_node_t *v, const char *key,
		 void *base)
{
	struct config_backend *b = base;
	const char *s, *why;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (strncmp(s, "unix:", 5) == 0)
		why = config_value_unix_addr(s, &b->addr);
	else
		why = config_value_addr(s, &b->addr);
	if (why != NULL && set_backend_host(l, v, key, b, s) == 0)
		return 0; /* a host name: config_resolve.c looks it up */
	if (why != NULL)
		return config_yaml_fail(l, config_yaml_line(v), key, "%s", why);
	if (config_value_addr_is_wildcard(&b->addr))
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"must be a specific address, not a wildcard");
	return 0;
}

/* The name a backend's certificate must carry. */
static int
set_backend_name(struct loader *l, const yaml_node_t *v, const char *key,
		 void *base)
{
	struct config_backend *b = base;
	const char *s;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (!config_value_hostname(s, false))
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected a host name such as mx1.example.com");
	free(b->tls_name);
	b->tls_name = config_yaml_strdup(l, s, key, config_yaml_line(v));
	return b->tls_name != NULL ? 0 : -1;
}

/* ---- limits: users and classes --------------------------------------- */

#define ULIM(m) offsetof(struct config_user_limits, m)

static const struct field user_limit_fields[] = {
	{.key = "messages", .type = F_RATE, .off = ULIM(messages)},
	{.key = "recipients", .type = F_RATE, .off = ULIM(recipients)},
	{.key = "bytes", .type = F_BRATE, .off = ULIM(bytes)},
	{.key = "messages_quota", .type = F_RATE, .off = ULIM(messages_quota)},
	{.key = NULL},
};

static int
set_user_limits(struct loader *l, const yaml_node_t *v, const char *key,
		void *base)
{
	struct config *cfg = base;

	return config_yaml_map(l, v, v, key, user_limit_fields,
			       &cfg->user_limits);
}

/* limits.classes: NAME: {messages: .., ...}, each key optional. */
static int
set_classes(struct loader *l, const yaml_node_t *v, const char *key, void *base)
{
	struct config *cfg = base;
	yaml_node_pair_t *p, *start = NULL, *top = NULL;
	void *items = NULL;
	char ikey[160];
	ssize_t n;

	n = config_yaml_named(l, v, key,
			      "expected a mapping of class names to limits",
			      sizeof(*cfg->classes), &items, &start, &top);
	if (n <= 0)
		return (int)n;
	cfg->classes = items;
	for (p = start; p < top; p++) {
		const yaml_node_t *k = config_yaml_node(l, p->key);
		const yaml_node_t *item = config_yaml_node(l, p->value);
		struct config_class *c = &cfg->classes[cfg->nclasses];
		/* Only a scalar key has a string in the node's union. */
		const char *name =
			k->type == YAML_SCALAR_NODE ? config_yaml_str(k) : NULL;

		config_yaml_join_key(ikey, sizeof(ikey), key,
				     name ? name : "?");
		if (name == NULL || strlen(name) != k->data.scalar.length ||
		    !config_value_class_name(name))
			return config_yaml_fail(
				l, config_yaml_line(k), ikey,
				"a class name is letters, digits, '_', "
				"'.' or '-' (at most 64)");
		for (size_t i = 0; i < cfg->nclasses; i++)
			if (strcmp(cfg->classes[i].name, name) == 0)
				return config_yaml_fail(
					l, config_yaml_line(k), ikey,
					"duplicate class (first at line "
					"%d)",
					cfg->classes[i].line);
		c->line = config_yaml_line(k);
		c->lim.messages.period_ms = RATE_UNSET;
		c->lim.recipients.period_ms = RATE_UNSET;
		c->lim.bytes.period_ms = RATE_UNSET;
		c->lim.messages_quota.period_ms = RATE_UNSET;
		c->name = config_yaml_strdup(l, name, ikey, c->line);
		if (c->name == NULL)
			return -1;
		cfg->nclasses++;
		if (config_yaml_map(l, item, k, ikey, user_limit_fields,
				    &c->lim) < 0)
			return -1;
	}
	return 0;
}

/* limits.users: LOGIN: CLASS; resolved in config_check_limits(). */
static int
set_user_classes(struct loader *l, const yaml_node_t *v, const char *key,
		 void *base)
{
	struct config *cfg = base;
	yaml_node_pair_t *p, *start = NULL, *top = NULL;
	void *items = NULL;
	char ikey[400];
	ssize_t n;

	n = config_yaml_named(l, v, key,
			      "expected a mapping of logins to class names",
			      sizeof(*cfg->user_classes), &items, &start, &top);
	if (n <= 0)
		return (int)n;
	cfg->user_classes = items;
	for (p = start; p < top; p++) {
		const yaml_node_t *k = config_yaml_node(l, p->key);
		const yaml_node_t *item = config_yaml_node(l, p->value);
		struct config_user_class *u =
			&cfg->user_classes[cfg->nuser_classes];
		const char *login =
			k->type == YAML_SCALAR_NODE ? config_yaml_str(k) : NULL;
		const char *cls;

		config_yaml_join_key(ikey, sizeof(ikey), key,
				     login ? login : "?");
		if (login == NULL || *login == '\0' || strlen(login) >= 256 ||
		    strlen(login) != k->data.scalar.length)
			return config_yaml_fail(
				l, config_yaml_line(k), ikey,
				"expected a login name (1 to 255 bytes)");
		if (config_yaml_scalar(l, item, ikey, &cls) < 0)
			return -1;
		u->line = config_yaml_line(k);
		u->login = config_yaml_strdup(l, login, ikey, u->line);
		if (u->login == NULL)
			return -1;
		cfg->nuser_classes++;
		u->class_name = config_yaml_strdup(l, cls, ikey, u->line);
		if (u->class_name == NULL)
			return -1;
	}
	return 0;
}

/* ---- the schema ------------------------------------------------------ */

#define CFG(m)	    offsetof(struct config, m)
#define LISTENER(m) offsetof(struct config_listener, m)
#define CERT(m)	    offsetof(struct config_cert, m)
#define BACKEND(m)  offsetof(struct config_backend, m)

/*
 * Table rows.  NUM: a number, size or duration and its range (inclusive);
 * OPT and REQ: an optional or required value of another type; ENUM: one of
 * a list of names; FUNC: parsed by a function of its own.
 */
/* clang-format off */
#define NUM(k, t, o, lo, hi) \
	{.key = k, .type = t, .off = o, .min = lo, .max = hi}
#define OPT(k, t, o)	  {.key = k, .type = t, .off = o}
#define REQ(k, t, o)	  {.key = k, .type = t, .off = o, .required = true}
#define ENUM(k, o, n)	  {.key = k, .type = F_ENUM, .off = o, .names = n}
#define REQ_ENUM(k, o, n) \
	{.key = k, .type = F_ENUM, .off = o, .names = n, .required = true}
#define FUNC(k, f)	  {.key = k, .type = F_FUNC, .fn = f}
#define REQ_FUNC(k, f)	  {.key = k, .type = F_FUNC, .fn = f, .required = true}
#define SECTION(k, s, r)  {.key = k, .type = F_SECTION, .sub = s, .required = r}
#define LIST(k, spec) \
	{.key = k, .type = F_LIST, .list = spec, .required = true}
#define END_OF_TABLE	  {.key = NULL}
/* clang-format on */

static const struct enum_name tls_versions[] = {
	{"TLSv1.2", TLS1_2_VERSION},
	{"TLSv1.3", TLS1_3_VERSION},
	{NULL, 0},
};
static const struct enum_name listener_modes[] = {
	{"starttls", LISTENER_STARTTLS},
	{"implicit", LISTENER_IMPLICIT},
	{NULL, 0},
};
static const struct enum_name bare_newline_policies[] = {
	{"reject", BARE_NEWLINE_REJECT},
	{"normalize", BARE_NEWLINE_NORMALIZE},
	{NULL, 0},
};
static const struct enum_name log_formats[] = {
	{"kv", LOG_FORMAT_KV},
	{"json", LOG_FORMAT_JSON},
	{NULL, 0},
};
static const struct enum_name log_outputs[] = {
	{"stderr", LOG_OUTPUT_STDERR},
	{"syslog", LOG_OUTPUT_SYSLOG},
	{NULL, 0},
};
static const struct enum_name identities[] = {
	{"xclient", IDENTITY_XCLIENT},
	{"proxy-v2", IDENTITY_PROXY_V2},
	{"none", IDENTITY_NONE},
	{NULL, 0},
};
static const struct enum_name backend_tls_modes[] = {
	{"none", BACKEND_TLS_NONE},
	{"starttls", BACKEND_TLS_STARTTLS},
	{"starttls-verify", BACKEND_TLS_STARTTLS_VERIFY},
	{NULL, 0},
};
static const struct enum_name balance_policies[] = {
	{"round-robin", BALANCE_ROUND_ROBIN},
	{"least-connections", BALANCE_LEAST_CONN},
	{"hash-login", BALANCE_HASH_LOGIN},
	{NULL, 0},
};

static void
backend_init(void *item)
{
	struct config_backend *b = item;

	b->weight = 1;
	b->identity = IDENTITY_XCLIENT;
}

static const struct field cert_fields[] = {
	REQ("cert", F_PATH, CERT(cert_file)),
	REQ("key", F_PATH, CERT(key_file)),
	FUNC("names", set_names),
	END_OF_TABLE,
};

static const struct list_spec cert_list = {
	.what = "certificate",
	.item_size = sizeof(struct config_cert),
	.items_off = CFG(certs),
	.count_off = CFG(ncerts),
	.line_off = CERT(line),
	.fields = cert_fields,
};

#define PROXY_TIMEOUT_DEFAULT 3000 /* ms: a balancer sends it at once */

static const struct field proxy_protocol_fields[] = {
	OPT("trusted", F_NETS, LISTENER(proxy_trusted)),
	NUM("timeout", F_MS, LISTENER(proxy_timeout_ms), 100, 60000),
	END_OF_TABLE,
};

/* listeners[].proxy_protocol: {trusted: [prefixes], timeout: 3s}.  Its
 * presence turns the header on; an empty trust list would refuse every
 * connection, so it is an error here rather than a dead listener. */
static int
set_proxy_protocol(struct loader *l, const yaml_node_t *v, const char *key,
		   void *base)
{
	struct config_listener *cl = base;
	const yaml_node_t *trusted;
	char tkey[128];

	if (v->type != YAML_MAPPING_NODE)
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected a mapping such as {trusted: [10.0.0.0/8]}");
	cl->proxy_timeout_ms = PROXY_TIMEOUT_DEFAULT;
	if (config_yaml_map(l, v, v, key, proxy_protocol_fields, cl) < 0)
		return -1;
	if (cl->proxy_trusted.n == 0) {
		trusted = config_yaml_get(l, v, "trusted");
		config_yaml_join_key(tkey, sizeof(tkey), key, "trusted");
		return config_yaml_fail(
			l, config_yaml_line(trusted != NULL ? trusted : v),
			tkey,
			"must list at least one prefix: the balancers allowed "
			"to send a PROXY header");
	}
	cl->proxy_protocol = true;
	return 0;
}

static const struct field listener_fields[] = {
	REQ("address", F_ADDR, LISTENER(addr)),
	REQ_ENUM("mode", LISTENER(mode), listener_modes),
	OPT("allow", F_NETS, LISTENER(allow)),
	OPT("deny", F_NETS, LISTENER(deny)),
	OPT("sender_check", F_BOOL, LISTENER(sender_check)),
	FUNC("proxy_protocol", set_proxy_protocol),
	END_OF_TABLE,
};

static const struct list_spec listener_list = {
	.what = "listener",
	.item_size = sizeof(struct config_listener),
	.items_off = CFG(listeners),
	.count_off = CFG(nlisteners),
	.line_off = LISTENER(line),
	.fields = listener_fields,
	.check = config_check_listeners,
};

static const struct field server_fields[] = {
	REQ_FUNC("address", set_backend_addr), /* no wildcard */
	NUM("weight", F_UINT, BACKEND(weight), 1, 1000),
	NUM("max_conns", F_UINT, BACKEND(max_conns), 0, 1000000),
	ENUM("identity", BACKEND(identity), identities),
	ENUM("tls", BACKEND(tls), backend_tls_modes),
	OPT("ca_file", F_PATH, BACKEND(ca_file)),
	FUNC("name", set_backend_name),
	END_OF_TABLE,
};

static const struct list_spec server_list = {
	.what = "server",
	.item_size = sizeof(struct config_backend),
	.items_off = CFG(backends),
	.count_off = CFG(nbackends),
	.line_off = BACKEND(line),
	.init = backend_init,
	.fields = server_fields,
	.check = config_check_backends,
};

static const struct enum_name xdp_modes[] = {
	{"auto", XDP_MODE_AUTO},
	{"native", XDP_MODE_NATIVE},
	{"generic", XDP_MODE_GENERIC},
	{NULL, 0},
};
static const struct enum_name xdp_scopes[] = {
	{"all", XDP_SCOPE_ALL},
	{"listeners", XDP_SCOPE_LISTENERS},
	{NULL, 0},
};

static const struct field xdp_fields[] = {
	OPT("enabled", F_BOOL, CFG(xdp_enabled)),
	FUNC("interfaces", set_xdp_interfaces),
	ENUM("mode", CFG(xdp_mode), xdp_modes),
	OPT("required", F_BOOL, CFG(xdp_required)),
	OPT("pin_dir", F_PATH, CFG(xdp_pin_dir)),
	ENUM("scope", CFG(xdp_scope), xdp_scopes),
	END_OF_TABLE,
};

static const struct field blocklist_fields[] = {
	FUNC("files", set_blocklist_files),
	OPT("allow", F_NETS, CFG(blocklist_allow)),
	OPT("auto_ban", F_BOOL, CFG(blocklist_auto_ban)),
	OPT("ban_floods", F_BOOL, CFG(blocklist_ban_floods)),
	NUM("max_entries", F_SIZE, CFG(blocklist_max_entries), 1, 100000000),
	SECTION("xdp", xdp_fields, false),
	END_OF_TABLE,
};

static const struct field control_fields[] = {
	OPT("socket", F_PATH, CFG(control_socket)),
	FUNC("mode", set_control_mode),
	END_OF_TABLE,
};

static const struct enum_name seccomp_modes[] = {
	{"off", SECCOMP_OFF},
	{"log", SECCOMP_LOG},
	{"kill", SECCOMP_KILL},
	{NULL, 0},
};

/* user before group: the user's primary group is the default. */
static const struct field privileges_fields[] = {
	FUNC("user", set_run_user),
	FUNC("group", set_run_group),
	ENUM("seccomp", CFG(seccomp), seccomp_modes),
	END_OF_TABLE,
};

static const struct field metrics_tls_fields[] = {
	REQ("cert", F_PATH, CFG(metrics_tls_cert)),
	REQ("key", F_PATH, CFG(metrics_tls_key)),
	END_OF_TABLE,
};

static const struct field metrics_fields[] = {
	OPT("listen", F_ADDR, CFG(metrics_listen)),
	OPT("status", F_BOOL, CFG(metrics_status)),
	OPT("admin", F_BOOL, CFG(metrics_admin)),
	OPT("admin_users", F_PATH, CFG(metrics_admin_users)),
	OPT("hash_logins", F_BOOL, CFG(metrics_hash_logins)),
	SECTION("tls", metrics_tls_fields, false),
	END_OF_TABLE,
};

/* cluster: names Redis's keys and the node; plain printable words. */
static int
cluster_word(struct loader *l, const yaml_node_t *v, const char *key, char *out,
	     size_t len, const char *extra)
{
	const char *s;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (*s == '\0' || strlen(s) >= len)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"expected 1 to %zu characters",
					len - 1);
	for (const char *p = s; *p != '\0'; p++)
		if (!(isalnum((unsigned char)*p) || strchr(extra, *p) != NULL))
			return config_yaml_fail(
				l, config_yaml_line(v), key,
				"expected letters, digits and \"%s\" only",
				extra);
	snprintf(out, len, "%s", s);
	return 0;
}

static int
set_cluster_prefix(struct loader *l, const yaml_node_t *v, const char *key,
		   void *base)
{
	struct config *cfg = base;

	return cluster_word(l, v, key, cfg->cluster_prefix,
			    sizeof(cfg->cluster_prefix), ":._-{}");
}

static int
set_cluster_node_id(struct loader *l, const yaml_node_t *v, const char *key,
		    void *base)
{
	struct config *cfg = base;

	return cluster_word(l, v, key, cfg->cluster_node_id,
			    sizeof(cfg->cluster_node_id), "._-");
}

static int
set_cluster_username(struct loader *l, const yaml_node_t *v, const char *key,
		     void *base)
{
	struct config *cfg = base;
	char name[128];

	if (cluster_word(l, v, key, name, sizeof(name), "._-@") < 0)
		return -1;
	free(cfg->cluster_username);
	cfg->cluster_username =
		config_yaml_strdup(l, name, key, config_yaml_line(v));
	return cfg->cluster_username == NULL ? -1 : 0;
}

static int
set_cluster_tls_name(struct loader *l, const yaml_node_t *v, const char *key,
		     void *base)
{
	struct config *cfg = base;
	const char *s;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (!config_value_hostname(s, false))
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected a host name such as redis.example.internal");
	free(cfg->cluster_tls_name);
	cfg->cluster_tls_name =
		config_yaml_strdup(l, s, key, config_yaml_line(v));
	return cfg->cluster_tls_name == NULL ? -1 : 0;
}

static const struct enum_name fail_modes[] = {
	{"open", 0},
	{"closed", 1},
	{NULL, 0},
};

static int
set_cluster_fail(struct loader *l, const yaml_node_t *v, const char *key,
		 void *base)
{
	struct config *cfg = base;
	const char *s;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	for (const struct enum_name *e = fail_modes; e->name != NULL; e++) {
		if (strcmp(s, e->name) == 0) {
			cfg->cluster_fail_closed = e->value != 0;
			return 0;
		}
	}
	return config_yaml_fail(l, config_yaml_line(v), key,
				"expected open or closed");
}

static const struct field cluster_fields[] = {
	OPT("redis", F_ADDR, CFG(cluster_redis)),
	FUNC("username", set_cluster_username),
	OPT("password_file", F_PATH, CFG(cluster_password_file)),
	OPT("tls", F_BOOL, CFG(cluster_tls)),
	OPT("tls_ca", F_PATH, CFG(cluster_tls_ca)),
	FUNC("tls_name", set_cluster_tls_name),
	FUNC("prefix", set_cluster_prefix),
	FUNC("node_id", set_cluster_node_id),
	NUM("timeout", F_MS, CFG(cluster_timeout_ms), 10, 60 * SECOND),
	FUNC("fail", set_cluster_fail),
	OPT("share_files", F_BOOL, CFG(cluster_share_files)),
	END_OF_TABLE,
};

static const struct field shutdown_fields[] = {
	NUM("timeout", F_MS, CFG(shutdown_timeout_ms), 0, DAY),
	NUM("fast_timeout", F_MS, CFG(shutdown_fast_timeout_ms), 0, DAY),
	END_OF_TABLE,
};

static const struct field log_fields[] = {
	FUNC("level", set_log_level),
	ENUM("format", CFG(log_format), log_formats),
	ENUM("output", CFG(log_output), log_outputs),
	FUNC("facility", set_log_facility),
	OPT("syslog_socket", F_PATH, CFG(log_syslog_socket)),
	END_OF_TABLE,
};

/* ticket_key_lifetime: tls.c rotates keys with 1s granularity. */
static const struct field tls_fields[] = {
	LIST("certificates", &cert_list),
	ENUM("min_version", CFG(tls_min_version), tls_versions),
	FUNC("ciphers", set_ciphers),
	FUNC("ciphersuites", set_ciphersuites),
	FUNC("groups", set_groups),
	OPT("session_tickets", F_BOOL, CFG(tls_tickets)),
	NUM("tls13_tickets", F_UINT, CFG(tls13_tickets), 0, 10),
	NUM("ticket_key_lifetime", F_MS, CFG(ticket_key_lifetime_ms), SECOND,
	    NO_LIMIT),
	NUM("handshake_timeout", F_MS, CFG(handshake_timeout_ms), 1, NO_LIMIT),
	END_OF_TABLE,
};

static const struct enum_name auth_backends[] = {
	{"passwd", AUTH_BACKEND_PASSWD},
	{"dovecot", AUTH_BACKEND_DOVECOT},
	{"http", AUTH_BACKEND_HTTP},
	{NULL, 0},
};

/* Dovecot's auth socket: "unix:/path" (its auth-client listener) or
 * "host:port" (an inet_listener), an IP address, not a name. */
static int
set_auth_socket(struct loader *l, const yaml_node_t *v, const char *key,
		void *base)
{
	struct config *cfg = base;
	const char *s, *why;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (strncmp(s, "unix:", 5) == 0)
		why = config_value_unix_addr(s, &cfg->auth_dovecot_socket);
	else if ((why = config_value_addr(s, &cfg->auth_dovecot_socket)) ==
			 NULL &&
		 config_value_addr_is_wildcard(&cfg->auth_dovecot_socket))
		why = "a wildcard address cannot be connected to";
	if (why != NULL) {
		memset(&cfg->auth_dovecot_socket, 0,
		       sizeof(cfg->auth_dovecot_socket));
		return config_yaml_fail(l, config_yaml_line(v), key,
					"%s (expected unix:/path or host:port)",
					why);
	}
	return 0;
}

static const struct field auth_dovecot_fields[] = {
	FUNC("socket", set_auth_socket),
	NUM("connections", F_UINT, CFG(auth_dovecot_connections), 1, 16),
	NUM("timeout", F_MS, CFG(auth_dovecot_timeout_ms), 100, 10 * MINUTE),
	NUM("cache_ttl", F_MS, CFG(auth_dovecot_cache_ttl_ms), 0, DAY),
	END_OF_TABLE,
};

/* "http://IP[:port]/path": the auth_http service (no TLS, no host
 * names: the thread that asks never blocks on a resolver). */
static int
set_auth_url(struct loader *l, const yaml_node_t *v, const char *key,
	     void *base)
{
	struct config *cfg = base;
	const char *s, *hp, *slash, *why;
	char hostport[sizeof(cfg->auth_http_host) + 8];
	size_t hl;

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	if (strncmp(s, "http://", 7) != 0)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"expected http://IP[:port]/path "
					"(https is not supported)");
	hp = s + 7;
	slash = strchr(hp, '/');
	hl = slash != NULL ? (size_t)(slash - hp) : strlen(hp);
	if (hl == 0 || hl >= sizeof(cfg->auth_http_host))
		return config_yaml_fail(l, config_yaml_line(v), key,
					"expected http://IP[:port]/path");
	if (strlen(slash != NULL ? slash : "/") >= sizeof(cfg->auth_http_path))
		return config_yaml_fail(l, config_yaml_line(v), key,
					"path is too long (at most %zu bytes)",
					sizeof(cfg->auth_http_path) - 1);
	for (const char *c = hp; *c != '\0'; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			return config_yaml_fail(l, config_yaml_line(v), key,
						"spaces and control bytes are "
						"not allowed in the URL");
	memcpy(cfg->auth_http_host, hp, hl);
	cfg->auth_http_host[hl] = '\0';
	/* A port unless one is given: after "]" for IPv6, else any ':'. */
	{
		const char *rb = strchr(cfg->auth_http_host, ']');
		const char *colon =
			strchr(rb != NULL ? rb : cfg->auth_http_host, ':');

		snprintf(hostport, sizeof(hostport), "%s%s",
			 cfg->auth_http_host, colon != NULL ? "" : ":80");
	}
	why = config_value_addr(hostport, &cfg->auth_http_addr);
	if (why == NULL && config_value_addr_is_wildcard(&cfg->auth_http_addr))
		why = "a wildcard address cannot be connected to";
	if (why != NULL) {
		memset(&cfg->auth_http_addr, 0, sizeof(cfg->auth_http_addr));
		return config_yaml_fail(l, config_yaml_line(v), key,
					"%s (expected http://IP[:port]/path)",
					why);
	}
	snprintf(cfg->auth_http_path, sizeof(cfg->auth_http_path), "%s",
		 slash != NULL ? slash : "/");
	return 0;
}

static const struct field auth_http_fields[] = {
	FUNC("url", set_auth_url),
	NUM("connections", F_UINT, CFG(auth_http_connections), 1, 1024),
	NUM("timeout", F_MS, CFG(auth_http_timeout_ms), 100, 10 * MINUTE),
	NUM("cache_ttl", F_MS, CFG(auth_http_cache_ttl_ms), 0, DAY),
	END_OF_TABLE,
};

static const struct field auth_fields[] = {
	ENUM("backend", CFG(auth_backend), auth_backends),
	OPT("passwd_file", F_PATH, CFG(passwd_file)),
	SECTION("dovecot", auth_dovecot_fields, false),
	SECTION("http", auth_http_fields, false),
	FUNC("mechanisms", set_mechanisms),
	NUM("threads", F_UINT, CFG(auth_threads), 1, 64),
	NUM("failure_delay", F_MS, CFG(auth_failure_delay_ms), 0, MINUTE),
	NUM("max_failures", F_UINT, CFG(auth_max_failures), 0, 1000),
	NUM("cache_ttl", F_MS, CFG(auth_cache_ttl_ms), 0, DAY),
	NUM("cache_size", F_SIZE, CFG(auth_cache_size), 1, 10000000),
	END_OF_TABLE,
};

static const struct field login_fields[] = {
	OPT("failures", F_RATE, CFG(login_failures)),
	NUM("max_delay", F_MS, CFG(login_max_delay_ms), 0, 10 * MINUTE),
	END_OF_TABLE,
};

static const struct field ip_fields[] = {
	NUM("prefix_v4", F_UINT, CFG(ip_prefix_v4), 8, 32),
	NUM("prefix_v6", F_UINT, CFG(ip_prefix_v6), 16, 128),
	OPT("connections", F_RATE, CFG(ip_connections)),
	NUM("concurrency", F_UINT, CFG(ip_concurrency), 0, 1000000),
	OPT("auth_failures", F_RATE, CFG(ip_auth_failures)),
	NUM("ban_time", F_MS, CFG(ip_ban_time_ms), SECOND, 365 * DAY),
	OPT("allow", F_NETS, CFG(ip_allow)),
	NUM("max_entries", F_SIZE, CFG(ip_max_entries), 64, 100000000),
	END_OF_TABLE,
};

static const struct field limits_fields[] = {
	NUM("max_line", F_SIZE, CFG(max_line), 512, 65536),
	NUM("max_auth_line", F_SIZE, CFG(max_auth_line), 1000, 65536),
	NUM("max_message_size", F_BYTES, CFG(max_message_size), KIB, 4 * GIB),
	NUM("max_recipients", F_UINT, CFG(max_recipients), 1, 100000),
	NUM("max_errors", F_UINT, CFG(max_errors), 1, 1000),
	NUM("max_sessions", F_UINT, CFG(max_sessions), 1, 1000000),
	FUNC("max_memory", set_max_memory),
	NUM("command_timeout", F_MS, CFG(command_timeout_ms), 1, NO_LIMIT),
	NUM("data_timeout", F_MS, CFG(data_timeout_ms), 1, NO_LIMIT),
	ENUM("bare_newlines", CFG(bare_newlines), bare_newline_policies),
	FUNC("user", set_user_limits),
	FUNC("classes", set_classes),
	FUNC("users", set_user_classes),
	NUM("max_users", F_SIZE, CFG(max_users), 64, 100000000),
	SECTION("login", login_fields, false),
	SECTION("ip", ip_fields, false),
	END_OF_TABLE,
};

/* interval: 0s (off) or 1s..1h, checked in config_check(). */
static const struct field health_fields[] = {
	NUM("interval", F_MS, CFG(health_interval_ms), 0, HOUR),
	NUM("timeout", F_MS, CFG(health_timeout_ms), 100, 10 * MINUTE),
	NUM("rise", F_UINT, CFG(health_rise), 1, 100),
	NUM("fall", F_UINT, CFG(health_fall), 1, 100),
	END_OF_TABLE,
};

static const struct field backends_fields[] = {
	NUM("connect_timeout", F_MS, CFG(backend_connect_timeout_ms), 1,
	    NO_LIMIT),
	NUM("reply_timeout", F_MS, CFG(backend_reply_timeout_ms), 1, NO_LIMIT),
	NUM("data_timeout", F_MS, CFG(backend_data_timeout_ms), 1, NO_LIMIT),
	ENUM("balance", CFG(balance), balance_policies),
	NUM("down_time", F_MS, CFG(backend_down_time_ms), SECOND, DAY),
	NUM("resolve_interval", F_MS, CFG(backend_resolve_interval_ms), 0, DAY),
	SECTION("health_check", health_fields, false),
	LIST("servers", &server_list),
	END_OF_TABLE,
};

/* Powers of two (io_uring's buffer rings): config_check.c says so. */
static const struct field worker_buffers_fields[] = {
	NUM("receive", F_UINT, CFG(recv_buffers), 8, 32768),
	NUM("data", F_UINT, CFG(data_buffers), 1, 32768),
	END_OF_TABLE,
};

const struct field config_schema_top[] = {
	FUNC("hostname", set_hostname),
	NUM("workers", F_UINT, CFG(workers), 0, 256),
	SECTION("worker_buffers", worker_buffers_fields, false),
	SECTION("log", log_fields, false),
	SECTION("tls", tls_fields, true), /* for tls.certificates */
	LIST("listeners", &listener_list),
	SECTION("auth", auth_fields, true), /* for auth.backend */
	SECTION("limits", limits_fields, false),
	SECTION("backends", backends_fields, true), /* for servers */
	SECTION("blocklist", blocklist_fields, false),
	SECTION("control", control_fields, false),
	SECTION("privileges", privileges_fields, false),
	SECTION("metrics", metrics_fields, false),
	SECTION("shutdown", shutdown_fields, false),
	SECTION("cluster", cluster_fields, false),
	END_OF_TABLE,
};
