/*
 * config.c - read the YAML configuration into a struct config.
 *
 * The file is loaded with libyaml's document API (yaml_parser_load), so
 * every node knows its line.  The schema is a set of tables, one per YAML
 * mapping, each row {key, type, offset, min, max}.  parse_map() walks a
 * mapping against its table: unknown and duplicate keys are refused, each
 * value is converted and range-checked and stored at its offset, and keys
 * marked required must be present.  The first error stops the load and is
 * reported as "FILE:LINE: KEY: why", LINE 1-based, KEY the dotted path.
 *
 * Defaults are filled in before parsing; parsing only overwrites.  Nothing
 * here touches the files named in the configuration (certificates, the
 * passwd file): the modules that open them report their own errors.  The
 * TLS cipher, suite and group strings are checked against OpenSSL here, so
 * a typo in them is reported with its line.  The value forms themselves
 * (durations, sizes, rates, addresses, names) are config_value.c's.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <yaml.h>

#include "config/config.h"
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

#define NO_LIMIT       UINT64_MAX

/* Enums are stored through an int; make sure that is their size. */
_Static_assert(sizeof(enum listener_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum bare_newline_policy) == sizeof(int), "enum size");
_Static_assert(sizeof(enum backend_identity) == sizeof(int), "enum size");
_Static_assert(sizeof(enum backend_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum balance_policy) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_output) == sizeof(int), "enum size");

struct loader {
	const char *path; /* as given, for messages */
	char *dir;	  /* absolute directory of path, for relative files */
	yaml_document_t *doc;
	struct config *cfg; /* for config_key_line() */
	SSL_CTX *ssl;	    /* made on first use, to check cipher strings */
	char *err;
	size_t errlen;
};

enum ftype {
	F_UINT,	   /* unsigned, decimal number */
	F_SIZE,	   /* size_t, decimal number */
	F_BYTES,   /* uint64_t, config_parse_size() */
	F_MS,	   /* uint64_t milliseconds, config_parse_duration() */
	F_BOOL,	   /* bool: true/false/yes/no/on/off */
	F_PATH,	   /* char *, relative to the config file's directory */
	F_ENUM,	   /* int (or enum), one of .names */
	F_ADDR,	   /* struct config_addr */
	F_RATE,	   /* struct config_rate, config_parse_rate() */
	F_BRATE,   /* struct config_rate of bytes: "1GB/1h" */
	F_NETS,	   /* struct config_nets: a list of prefixes */
	F_SECTION, /* nested mapping stored in the same struct: .sub */
	F_LIST,	   /* sequence of mappings: .list */
	F_FUNC,	   /* anything else: .fn */
};

struct field;

struct enum_name {
	const char *name;
	int value;
};

/* A list of mappings, each parsed into an array element. */
struct list_spec {
	const char *what; /* "listener": "must list at least one listener" */
	size_t item_size;
	size_t items_off;	  /* struct config: pointer to the array */
	size_t count_off;	  /* struct config: size_t element count */
	size_t line_off;	  /* element: int line */
	void (*init)(void *item); /* defaults of an element, or NULL */
	const struct field *fields;
	int (*check)(struct loader *l, struct config *cfg); /* after all */
};

typedef int field_fn(struct loader *l, const yaml_node_t *v, const char *key,
		     void *base);

struct field {
	const char *key;
	enum ftype type;
	size_t off;
	uint64_t min, max; /* F_UINT, F_SIZE, F_BYTES, F_MS */
	bool required;
	const struct enum_name *names; /* F_ENUM, ends with {NULL} */
	const struct field *sub;       /* F_SECTION */
	const struct list_spec *list;  /* F_LIST */
	field_fn *fn;		       /* F_FUNC */
};

/* ---- errors ---------------------------------------------------------- */

static int
line_of(const yaml_node_t *n)
{
	return n != NULL ? (int)n->start_mark.line + 1 : 1;
}

static int fail(struct loader *l, int line, const char *key, const char *fmt,
		...) __attribute__((format(printf, 4, 5)));

/* Write "path:line: key: why" into l->err; always returns -1. */
static int
fail(struct loader *l, int line, const char *key, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->err == NULL || l->errlen == 0)
		return -1;
	n = snprintf(l->err, l->errlen, "%s:%d: %s: ", l->path, line, key);
	if (n < 0 || (size_t)n >= l->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- YAML helpers ---------------------------------------------------- */

static yaml_node_t *
node_at(struct loader *l, int id)
{
	return yaml_document_get_node(l->doc, id);
}

static const char *
scalar_str(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* An empty value ("key:" with nothing after it) or an explicit null. */
static bool
is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = scalar_str(n);
	return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int
get_scalar(struct loader *l, const yaml_node_t *v, const char *key,
	   const char **out)
{
	if (v->type != YAML_SCALAR_NODE)
		return fail(l, line_of(v), key,
			    "expected a single value, not a %s",
			    v->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
	if (strlen(scalar_str(v)) != v->data.scalar.length)
		return fail(l, line_of(v), key, "contains a NUL byte");
	*out = scalar_str(v);
	return 0;
}

static yaml_node_t *
map_get(struct loader *l, const yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node_at(l, p->key);
		if (k->type == YAML_SCALAR_NODE &&
		    strcmp(scalar_str(k), key) == 0)
			return node_at(l, p->value);
	}
	return NULL;
}

/* "prefix.name", or "name" at the top. */
static void
join_key(char *buf, size_t len, const char *prefix, const char *name)
{
	int n;

	if (*prefix == '\0')
		n = snprintf(buf, len, "%s", name);
	else
		n = snprintf(buf, len, "%s.%s", prefix, name);
	if (n < 0)
		buf[0] = '\0';
}

static void
index_key(char *buf, size_t len, const char *prefix, size_t i)
{
	if (snprintf(buf, len, "%s[%zu]", prefix, i) < 0)
		buf[0] = '\0';
}

static void *
at(void *base, size_t off)
{
	return (char *)base + off;
}

static char *
xstrdup(struct loader *l, const char *s, const char *key, int line)
{
	char *p = strdup(s);

	if (p == NULL)
		fail(l, line, key, "out of memory");
	return p;
}

/* A file named in the config: absolute, or relative to its directory. */
static char *
resolve_path(struct loader *l, const char *s, const char *key, int line)
{
	const char *sep;
	char *p;

	if (s[0] == '/')
		return xstrdup(l, s, key, line);
	sep = l->dir[strlen(l->dir) - 1] == '/' ? "" : "/";
	if (asprintf(&p, "%s%s%s", l->dir, sep, s) < 0) {
		fail(l, line, key, "out of memory");
		return NULL;
	}
	return p;
}

/* Remember where key was written (config_key_line()). */
static int
note_key(struct loader *l, const char *key, int line)
{
	struct config *cfg = l->cfg;
	struct config_key_line *v;
	size_t n = cfg->nkey_lines;

	/* 32 slots, doubled whenever they are full. */
	if (n == 0 || (n >= 32 && (n & (n - 1)) == 0)) {
		v = realloc(cfg->key_lines, (n == 0 ? 32 : n * 2) * sizeof(*v));
		if (v == NULL)
			return fail(l, line, key, "out of memory");
		cfg->key_lines = v;
	}
	v = &cfg->key_lines[cfg->nkey_lines];
	v->key = xstrdup(l, key, key, line);
	if (v->key == NULL)
		return -1;
	v->line = line;
	cfg->nkey_lines++;
	return 0;
}

/* ---- generic field parsing ------------------------------------------- */

static int parse_map(struct loader *l, const yaml_node_t *map,
		     const yaml_node_t *where, const char *prefix,
		     const struct field *fields, void *base);

static int
range_fail(struct loader *l, const struct field *f, const yaml_node_t *v,
	   const char *key)
{
	char lo[32], hi[32];

	if (f->type == F_BYTES) {
		config_value_format_size(lo, sizeof(lo), f->min);
		config_value_format_size(hi, sizeof(hi), f->max);
	} else if (f->type == F_MS) {
		config_value_format_duration(lo, sizeof(lo), f->min);
		config_value_format_duration(hi, sizeof(hi), f->max);
	} else {
		snprintf(lo, sizeof(lo), "%" PRIu64, f->min);
		snprintf(hi, sizeof(hi), "%" PRIu64, f->max);
	}
	if (f->max != NO_LIMIT)
		return fail(l, line_of(v), key, "must be between %s and %s", lo,
			    hi);
	if (f->min == 1)
		return fail(l, line_of(v), key, "must be greater than 0");
	return fail(l, line_of(v), key, "must be at least %s", lo);
}

static int
parse_enum(struct loader *l, const struct field *f, const yaml_node_t *v,
	   const char *key, const char *s, void *base)
{
	char why[128] = "must be ";
	const struct enum_name *e;
	size_t n;

	for (e = f->names; e->name != NULL; e++) {
		if (strcmp(s, e->name) == 0) {
			memcpy(at(base, f->off), &e->value, sizeof(int));
			return 0;
		}
	}
	/* "must be a, b or c" */
	for (e = f->names; e->name != NULL; e++) {
		n = strlen(why);
		snprintf(why + n, sizeof(why) - n, "%s%s",
			 e == f->names	     ? ""
			 : e[1].name == NULL ? " or "
					     : ", ",
			 e->name);
	}
	return fail(l, line_of(v), key, "%s", why);
}

static int
parse_list(struct loader *l, const yaml_node_t *k, const yaml_node_t *v,
	   const char *key, const struct list_spec *spec, void *base)
{
	char ikey[128];
	size_t n;
	char *items;

	if (is_null(v))
		return fail(l, line_of(k), key, "must list at least one %s",
			    spec->what);
	if (v->type != YAML_SEQUENCE_NODE)
		return fail(l, line_of(v), key, "expected a list");
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return fail(l, line_of(v), key, "must list at least one %s",
			    spec->what);
	items = calloc(n, spec->item_size);
	if (items == NULL)
		return fail(l, line_of(v), key, "out of memory");
	/* Owned by the config from here on, so config_free() cleans up. */
	memcpy(at(base, spec->items_off), &items, sizeof(items));
	memcpy(at(base, spec->count_off), &n, sizeof(n));

	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item =
			node_at(l, v->data.sequence.items.start[i]);
		void *elem = items + i * spec->item_size;
		int line = line_of(item);

		index_key(ikey, sizeof(ikey), key, i);
		if (item->type != YAML_MAPPING_NODE)
			return fail(l, line, ikey, "expected a mapping");
		if (spec->init != NULL)
			spec->init(elem);
		memcpy(at(elem, spec->line_off), &line, sizeof(line));
		if (parse_map(l, item, item, ikey, spec->fields, elem) < 0)
			return -1;
	}
	return spec->check != NULL ? spec->check(l, base) : 0;
}

/* A list of prefixes, e.g. [192.0.2.0/24, "2001:db8::/32"]. */
static int
parse_nets(struct loader *l, const yaml_node_t *v, const char *key,
	   struct config_nets *nets)
{
	char ikey[128];
	size_t n;

	free(nets->v);
	memset(nets, 0, sizeof(*nets));
	if (is_null(v))
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return fail(l, line_of(v), key,
			    "expected a list such as [192.0.2.0/24]");
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return 0;
	nets->v = calloc(n, sizeof(*nets->v));
	if (nets->v == NULL)
		return fail(l, line_of(v), key, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item =
			node_at(l, v->data.sequence.items.start[i]);
		const char *s, *why;

		index_key(ikey, sizeof(ikey), key, i);
		if (get_scalar(l, item, ikey, &s) < 0)
			return -1;
		why = ipnet_parse(s, &nets->v[i]);
		if (why != NULL)
			return fail(l, line_of(item), ikey, "%s", why);
		nets->n = i + 1;
	}
	return 0;
}

static int
parse_field(struct loader *l, const struct field *f, const yaml_node_t *k,
	    const yaml_node_t *v, const char *key, void *base)
{
	const char *s, *why, *end;
	uint64_t n;
	char **str;
	int line = line_of(v), r;

	switch (f->type) {
	case F_SECTION:
		return parse_map(l, v, k, key, f->sub, base);
	case F_LIST:
		return parse_list(l, k, v, key, f->list, base);
	case F_FUNC:
		return f->fn(l, v, key, base);
	case F_NETS:
		return parse_nets(l, v, key, at(base, f->off));
	default:
		break;
	}

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	switch (f->type) {
	case F_UINT:
	case F_SIZE:
		r = config_value_digits(s, &end, &n);
		if (r == -2)
			return fail(l, line, key, "number is too large");
		if (r != 0 || *end != '\0')
			return fail(l, line, key, "expected a whole number");
		if (n < f->min || n > f->max)
			return range_fail(l, f, v, key);
		if (f->type == F_UINT)
			*(unsigned *)at(base, f->off) = (unsigned)n;
		else
			*(size_t *)at(base, f->off) = (size_t)n;
		return 0;
	case F_BYTES:
	case F_MS:
		why = f->type == F_BYTES ? config_value_size(s, &n)
					 : config_value_duration(s, &n);
		if (why != NULL)
			return fail(l, line, key, "%s", why);
		if (n < f->min || n > f->max)
			return range_fail(l, f, v, key);
		*(uint64_t *)at(base, f->off) = n;
		return 0;
	case F_BOOL:
		if (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0 ||
		    strcasecmp(s, "on") == 0)
			*(bool *)at(base, f->off) = true;
		else if (strcasecmp(s, "false") == 0 ||
			 strcasecmp(s, "no") == 0 || strcasecmp(s, "off") == 0)
			*(bool *)at(base, f->off) = false;
		else
			return fail(l, line, key, "expected true or false");
		return 0;
	case F_PATH:
		if (*s == '\0')
			return fail(l, line, key, "must not be empty");
		str = at(base, f->off);
		free(*str);
		*str = resolve_path(l, s, key, line);
		return *str != NULL ? 0 : -1;
	case F_ENUM:
		return parse_enum(l, f, v, key, s, base);
	case F_ADDR:
		why = config_value_addr(s, at(base, f->off));
		return why != NULL ? fail(l, line, key, "%s", why) : 0;
	case F_RATE:
	case F_BRATE:
		why = config_value_rate(s, f->type == F_BRATE,
					at(base, f->off));
		return why != NULL ? fail(l, line, key, "%s", why) : 0;
	default:
		return fail(l, line, key, "internal error: bad field type");
	}
}

/*
 * Parse mapping node map (NULL or an empty value: no keys) against fields,
 * storing into base.  prefix is the dotted path of the mapping ("" at the
 * top); where is the node that missing required keys are reported at.
 */
static int
parse_map(struct loader *l, const yaml_node_t *map, const yaml_node_t *where,
	  const char *prefix, const struct field *fields, void *base)
{
	yaml_node_pair_t *start = NULL, *top = NULL, *p, *q;
	const struct field *f;
	char key[128];

	if (map != NULL && is_null(map))
		map = NULL;
	if (map != NULL && map->type != YAML_MAPPING_NODE)
		return fail(l, line_of(map), prefix, "expected a mapping");
	if (map != NULL) {
		start = map->data.mapping.pairs.start;
		top = map->data.mapping.pairs.top;
	}

	for (p = start; p < top; p++) {
		const yaml_node_t *k = node_at(l, p->key);
		const yaml_node_t *v = node_at(l, p->value);
		const char *name;

		if (k->type != YAML_SCALAR_NODE)
			return fail(l, line_of(k), *prefix ? prefix : "file",
				    "a key must be a plain word");
		name = scalar_str(k);
		join_key(key, sizeof(key), prefix, name);
		if (strlen(name) != k->data.scalar.length)
			return fail(l, line_of(k), key, "contains a NUL byte");
		for (q = start; q < p; q++) {
			const yaml_node_t *k2 = node_at(l, q->key);
			if (k2->type == YAML_SCALAR_NODE &&
			    strcmp(scalar_str(k2), name) == 0)
				return fail(l, line_of(k), key,
					    "duplicate key (first at line %d)",
					    line_of(k2));
		}
		for (f = fields; f->key != NULL; f++)
			if (strcmp(f->key, name) == 0)
				break;
		if (f->key == NULL)
			return fail(l, line_of(k), key, "unknown key");
		if (note_key(l, key, line_of(k)) < 0 ||
		    parse_field(l, f, k, v, key, base) < 0)
			return -1;
	}

	for (f = fields; f->key != NULL; f++) {
		if (!f->required || map_get(l, map, f->key) != NULL)
			continue;
		join_key(key, sizeof(key), prefix, f->key);
		/* A missing section: report what is missing inside it. */
		if (f->type == F_SECTION) {
			if (parse_map(l, NULL, where, key, f->sub, base) < 0)
				return -1;
			continue;
		}
		return fail(l, line_of(where), key, "required key is missing");
	}
	return 0;
}

/* ---- special fields -------------------------------------------------- */

static int
set_hostname(struct loader *l, const yaml_node_t *v, const char *key,
	     void *base)
{
	struct config *cfg = base;
	const char *s;

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	if (!config_value_hostname(s, false))
		return fail(l, line_of(v), key,
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

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	if (!config_value_account(s))
		return fail(l, line_of(v), key,
			    "expected a user name such as msaproxy");
	errno = 0;
	pw = getpwnam(s);
	if (pw == NULL)
		return fail(l, line_of(v), key, "no user \"%s\" on this host",
			    s);
	if (pw->pw_uid == 0)
		return fail(l, line_of(v), key,
			    "\"%s\" is root: name an unprivileged user", s);
	free(cfg->run_user);
	cfg->run_user = xstrdup(l, s, key, line_of(v));
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

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	if (!config_value_account(s))
		return fail(l, line_of(v), key,
			    "expected a group name such as msaproxy");
	gr = getgrnam(s);
	if (gr == NULL)
		return fail(l, line_of(v), key, "no group \"%s\" on this host",
			    s);
	if (gr->gr_gid == 0)
		return fail(l, line_of(v), key,
			    "\"%s\" is root's group: name another", s);
	free(cfg->run_group);
	cfg->run_group = xstrdup(l, s, key, line_of(v));
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

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	m = strtoul(s, &end, 8);
	if (*s < '0' || *s > '7' || *end != '\0' || m > 0777 ||
	    (m & 0600) != 0600)
		return fail(l, line_of(v), key,
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

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	if (log_level_parse(s, &level) < 0)
		return fail(l, line_of(v), key,
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

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	if (strcmp(s, "off") == 0) {
		cfg->max_memory = 0;
		return 0;
	}
	why = config_value_size(s, &n);
	if (why != NULL)
		return fail(l, line_of(v), key, "%s, or off", why);
	if (n < 16 * MIB || n > 1024 * GIB)
		return fail(l, line_of(v), key,
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

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	code = log_facility_parse(s);
	if (code < 0)
		return fail(l, line_of(v), key,
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

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	if (*s == '\0')
		return fail(l, line_of(v), key, "must not be empty");
	if (l->ssl == NULL &&
	    (l->ssl = SSL_CTX_new(TLS_server_method())) == NULL)
		return fail(l, line_of(v), key, "cannot create an SSL_CTX");
	if (apply(l->ssl, s) != 1) {
		ERR_clear_error();
		return fail(l, line_of(v), key, "%s", why);
	}
	free(*dst);
	*dst = xstrdup(l, s, key, line_of(v));
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

/* SNI names of one certificate. */
/* A list of strings, each checked by valid (NULL: any non-empty) and, as
 * a path, made relative to the config's directory. */
static int
string_list(struct loader *l, const yaml_node_t *v, const char *key, bool path,
	    bool (*valid)(const char *), const char *why_list, const char *why,
	    char ***out, size_t *count)
{
	char ikey[128];
	size_t n;

	if (is_null(v))
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return fail(l, line_of(v), key, "%s", why_list);
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return 0;
	*out = calloc(n, sizeof(**out));
	if (*out == NULL)
		return fail(l, line_of(v), key, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item =
			node_at(l, v->data.sequence.items.start[i]);
		const char *s;

		index_key(ikey, sizeof(ikey), key, i);
		if (get_scalar(l, item, ikey, &s) < 0)
			return -1;
		if (*s == '\0' || (valid != NULL && !valid(s)))
			return fail(l, line_of(item), ikey, "%s", why);
		(*out)[i] = path ? resolve_path(l, s, ikey, line_of(item))
				 : xstrdup(l, s, ikey, line_of(item));
		if ((*out)[i] == NULL)
			return -1;
		*count = i + 1;
	}
	return 0;
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

	return string_list(l, v, key, false, valid_cert_name,
			   "expected a list such as [mail.example.com]",
			   "expected a host name or *.domain", &cert->names,
			   &cert->nnames);
}

static int
set_blocklist_files(struct loader *l, const yaml_node_t *v, const char *key,
		    void *base)
{
	struct config *cfg = base;

	return string_list(l, v, key, true, NULL, "expected a list of files",
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

	return string_list(l, v, key, false, valid_ifname,
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

	if (v->type != YAML_SEQUENCE_NODE || is_null(v))
		return fail(l, line_of(v), key,
			    "expected a list such as [PLAIN, LOGIN]");
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return fail(l, line_of(v), key,
			    "must list at least one mechanism");
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item =
			node_at(l, v->data.sequence.items.start[i]);
		const char *s;

		index_key(ikey, sizeof(ikey), key, i);
		if (get_scalar(l, item, ikey, &s) < 0)
			return -1;
		if (strcasecmp(s, "PLAIN") == 0)
			bit = AUTH_MECH_PLAIN;
		else if (strcasecmp(s, "LOGIN") == 0)
			bit = AUTH_MECH_LOGIN;
		else if (strcasecmp(s, "CRAM-MD5") == 0 ||
			 strcasecmp(s, "DIGEST-MD5") == 0)
			return fail(l, line_of(item), ikey,
				    "%s is not supported: it needs plaintext "
				    "passwords on the server; use PLAIN or "
				    "LOGIN",
				    s);
		else
			return fail(l, line_of(item), ikey,
				    "unknown mechanism %s; expected PLAIN or "
				    "LOGIN",
				    s);
		if (mechs & bit)
			return fail(l, line_of(item), ikey,
				    "%s is listed twice", s);
		mechs |= bit;
	}
	cfg->auth_mechs = mechs;
	return 0;
}

/* A backend is connected to, so a wildcard address makes no sense; a
 * local one may be a unix socket. */
static int
set_backend_addr(struct loader *l, const yaml_node_t *v, const char *key,
		 void *base)
{
	struct config_backend *b = base;
	const char *s, *why;

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	if (strncmp(s, "unix:", 5) == 0)
		why = config_value_unix_addr(s, &b->addr);
	else
		why = config_value_addr(s, &b->addr);
	if (why != NULL)
		return fail(l, line_of(v), key, "%s", why);
	if (config_value_addr_is_wildcard(&b->addr))
		return fail(l, line_of(v), key,
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

	if (get_scalar(l, v, key, &s) < 0)
		return -1;
	if (!config_value_hostname(s, false))
		return fail(l, line_of(v), key,
			    "expected a host name such as mx1.example.com");
	free(b->tls_name);
	b->tls_name = xstrdup(l, s, key, line_of(v));
	return b->tls_name != NULL ? 0 : -1;
}

/* ---- limits: users and classes --------------------------------------- */

/* A class leaves unset what it inherits from limits.user. */
#define RATE_UNSET UINT64_MAX

#define ULIM(m)	   offsetof(struct config_user_limits, m)

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

	return parse_map(l, v, v, key, user_limit_fields, &cfg->user_limits);
}

/*
 * A mapping whose keys are names (limits.classes, limits.users): its pairs
 * in *start..*top and a zeroed array of one item_size element per pair in
 * *items.  Returns the pair count (0: empty or null, nothing allocated) or
 * -1 with the error reported.
 */
static ssize_t
named_mapping(struct loader *l, const yaml_node_t *v, const char *key,
	      const char *expected, size_t item_size, void **items,
	      yaml_node_pair_t **start, yaml_node_pair_t **top)
{
	size_t n;

	if (is_null(v))
		return 0;
	if (v->type != YAML_MAPPING_NODE)
		return fail(l, line_of(v), key, "%s", expected);
	*start = v->data.mapping.pairs.start;
	*top = v->data.mapping.pairs.top;
	n = (size_t)(*top - *start);
	if (n == 0)
		return 0;
	*items = calloc(n, item_size);
	if (*items == NULL)
		return fail(l, line_of(v), key, "out of memory");
	return (ssize_t)n;
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

	n = named_mapping(l, v, key,
			  "expected a mapping of class names to limits",
			  sizeof(*cfg->classes), &items, &start, &top);
	if (n <= 0)
		return (int)n;
	cfg->classes = items;
	for (p = start; p < top; p++) {
		const yaml_node_t *k = node_at(l, p->key);
		const yaml_node_t *item = node_at(l, p->value);
		struct config_class *c = &cfg->classes[cfg->nclasses];
		/* Only a scalar key has a string in the node's union. */
		const char *name =
			k->type == YAML_SCALAR_NODE ? scalar_str(k) : NULL;

		join_key(ikey, sizeof(ikey), key, name ? name : "?");
		if (name == NULL || strlen(name) != k->data.scalar.length ||
		    !config_value_class_name(name))
			return fail(l, line_of(k), ikey,
				    "a class name is letters, digits, '_', "
				    "'.' or '-' (at most 64)");
		for (size_t i = 0; i < cfg->nclasses; i++)
			if (strcmp(cfg->classes[i].name, name) == 0)
				return fail(l, line_of(k), ikey,
					    "duplicate class (first at line "
					    "%d)",
					    cfg->classes[i].line);
		c->line = line_of(k);
		c->lim.messages.period_ms = RATE_UNSET;
		c->lim.recipients.period_ms = RATE_UNSET;
		c->lim.bytes.period_ms = RATE_UNSET;
		c->lim.messages_quota.period_ms = RATE_UNSET;
		c->name = xstrdup(l, name, ikey, c->line);
		if (c->name == NULL)
			return -1;
		cfg->nclasses++;
		if (parse_map(l, item, k, ikey, user_limit_fields, &c->lim) < 0)
			return -1;
	}
	return 0;
}

/* limits.users: LOGIN: CLASS; resolved in check_limits(). */
static int
set_user_classes(struct loader *l, const yaml_node_t *v, const char *key,
		 void *base)
{
	struct config *cfg = base;
	yaml_node_pair_t *p, *start = NULL, *top = NULL;
	void *items = NULL;
	char ikey[400];
	ssize_t n;

	n = named_mapping(l, v, key,
			  "expected a mapping of logins to class names",
			  sizeof(*cfg->user_classes), &items, &start, &top);
	if (n <= 0)
		return (int)n;
	cfg->user_classes = items;
	for (p = start; p < top; p++) {
		const yaml_node_t *k = node_at(l, p->key);
		const yaml_node_t *item = node_at(l, p->value);
		struct config_user_class *u =
			&cfg->user_classes[cfg->nuser_classes];
		const char *login =
			k->type == YAML_SCALAR_NODE ? scalar_str(k) : NULL;
		const char *cls;

		join_key(ikey, sizeof(ikey), key, login ? login : "?");
		if (login == NULL || *login == '\0' || strlen(login) >= 256 ||
		    strlen(login) != k->data.scalar.length)
			return fail(l, line_of(k), ikey,
				    "expected a login name (1 to 255 bytes)");
		if (get_scalar(l, item, ikey, &cls) < 0)
			return -1;
		u->line = line_of(k);
		u->login = xstrdup(l, login, ikey, u->line);
		if (u->login == NULL)
			return -1;
		cfg->nuser_classes++;
		u->class_name = xstrdup(l, cls, ikey, u->line);
		if (u->class_name == NULL)
			return -1;
	}
	return 0;
}

static int
user_class_cmp(const void *a, const void *b)
{
	const struct config_user_class *x = a, *y = b;

	return strcmp(x->login, y->login);
}

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
	return fail(l, line, key,
		    "burst %s is smaller than limits.max_message_size (%s): "
		    "such a message could never be sent",
		    have, need);
}

/* Classes inherit from limits.user; logins name existing classes. */
static int
check_limits(struct loader *l, const yaml_node_t *limits, struct config *cfg)
{
	const yaml_node_t *user = map_get(l, limits, "user");
	const yaml_node_t *n = user ? map_get(l, user, "bytes") : NULL;
	char key[400];

	/* bytes left at its default: point at what outgrew it. */
	if (n == NULL)
		n = map_get(l, limits, "max_message_size");
	if (check_bytes_burst(l, &cfg->user_limits, "limits.user.bytes",
			      line_of(n ? n : limits),
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
			return fail(l, u->line, key,
				    "no class %s in limits.classes",
				    u->class_name);
		}
	}
	/* qsort()'s base must not be NULL, even for no elements. */
	if (cfg->nuser_classes > 1)
		qsort(cfg->user_classes, cfg->nuser_classes,
		      sizeof(*cfg->user_classes), user_class_cmp);
	for (size_t i = 1; i < cfg->nuser_classes; i++) {
		struct config_user_class *u = &cfg->user_classes[i];
		if (strcmp(u->login, u[-1].login) != 0)
			continue;
		snprintf(key, sizeof(key), "limits.users.%s", u->login);
		return fail(l, u->line > u[-1].line ? u->line : u[-1].line, key,
			    "login listed twice");
	}
	return 0;
}

const struct config_class *
config_class_find(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nclasses; i++)
		if (strcmp(cfg->classes[i].name, name) == 0)
			return &cfg->classes[i];
	return NULL;
}

const struct config_class *
config_user_class(const struct config *cfg, const char *login)
{
	struct config_user_class k = {.login = (char *)login}, *u;

	if (cfg->nuser_classes == 0)
		return NULL;
	u = bsearch(&k, cfg->user_classes, cfg->nuser_classes,
		    sizeof(*cfg->user_classes), user_class_cmp);
	return u ? u->cls : NULL;
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

/* Two listeners on one address would fail at bind(); say so here. */
static int
listeners_check(struct loader *l, struct config *cfg)
{
	char key[64];

	for (size_t i = 0; i < cfg->nlisteners; i++) {
		for (size_t j = 0; j < i; j++) {
			if (!config_value_addr_equal(&cfg->listeners[i].addr,
						     &cfg->listeners[j].addr))
				continue;
			snprintf(key, sizeof(key), "listeners[%zu].address", i);
			return fail(l, cfg->listeners[i].line, key,
				    "same address as listeners[%zu]", j);
		}
	}
	return 0;
}

static int
backends_check(struct loader *l, struct config *cfg)
{
	char key[64];

	if (cfg->nbackends > BACKENDS_MAX)
		return fail(l, cfg->backends[BACKENDS_MAX].line,
			    "backends.servers", "at most %d servers",
			    BACKENDS_MAX);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *b = &cfg->backends[i];
		if (b->tls != BACKEND_TLS_STARTTLS_VERIFY &&
		    (b->ca_file != NULL || b->tls_name != NULL)) {
			snprintf(key, sizeof(key), "backends.servers[%zu].%s",
				 i, b->ca_file ? "ca_file" : "name");
			return fail(l, b->line, key,
				    "only used with tls: starttls-verify");
		}
		/* Without a name the certificate is checked against the
		 * server's IP address, which a unix socket does not have. */
		if (b->tls == BACKEND_TLS_STARTTLS_VERIFY &&
		    b->addr.ss.ss_family == AF_UNIX && b->tls_name == NULL) {
			snprintf(key, sizeof(key), "backends.servers[%zu].name",
				 i);
			return fail(l, b->line, key,
				    "required with tls: starttls-verify on a "
				    "unix: address");
		}
	}
	for (size_t i = 0; i < cfg->nbackends; i++) {
		for (size_t j = 0; j < i; j++) {
			if (!config_value_addr_equal(&cfg->backends[i].addr,
						     &cfg->backends[j].addr))
				continue;
			snprintf(key, sizeof(key),
				 "backends.servers[%zu].address", i);
			return fail(l, cfg->backends[i].line, key,
				    "same address as servers[%zu]; use weight "
				    "instead",
				    j);
		}
	}
	return 0;
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

static const struct field listener_fields[] = {
	REQ("address", F_ADDR, LISTENER(addr)),
	REQ_ENUM("mode", LISTENER(mode), listener_modes),
	OPT("allow", F_NETS, LISTENER(allow)),
	OPT("deny", F_NETS, LISTENER(deny)),
	OPT("sender_check", F_BOOL, LISTENER(sender_check)),
	END_OF_TABLE,
};

static const struct list_spec listener_list = {
	.what = "listener",
	.item_size = sizeof(struct config_listener),
	.items_off = CFG(listeners),
	.count_off = CFG(nlisteners),
	.line_off = LISTENER(line),
	.fields = listener_fields,
	.check = listeners_check,
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
	.check = backends_check,
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

static const struct field metrics_fields[] = {
	OPT("listen", F_ADDR, CFG(metrics_listen)),
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

static const struct field auth_fields[] = {
	REQ("passwd_file", F_PATH, CFG(passwd_file)),
	FUNC("mechanisms", set_mechanisms),
	NUM("threads", F_UINT, CFG(auth_threads), 1, 64),
	NUM("failure_delay", F_MS, CFG(auth_failure_delay_ms), 0, MINUTE),
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

/* interval: 0s (off) or 1s..1h, checked in check_config(). */
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
	SECTION("health_check", health_fields, false),
	LIST("servers", &server_list),
	END_OF_TABLE,
};

static const struct field top_fields[] = {
	FUNC("hostname", set_hostname),
	NUM("workers", F_UINT, CFG(workers), 0, 256),
	SECTION("log", log_fields, false),
	SECTION("tls", tls_fields, true), /* for tls.certificates */
	LIST("listeners", &listener_list),
	SECTION("auth", auth_fields, true), /* for auth.passwd_file */
	SECTION("limits", limits_fields, false),
	SECTION("backends", backends_fields, true), /* for servers */
	SECTION("blocklist", blocklist_fields, false),
	SECTION("control", control_fields, false),
	SECTION("privileges", privileges_fields, false),
	SECTION("metrics", metrics_fields, false),
	SECTION("shutdown", shutdown_fields, false),
	END_OF_TABLE,
};

/* Checks that span several keys, run after everything is parsed. */
static int
check_config(struct loader *l, const yaml_node_t *root, struct config *cfg)
{
	const yaml_node_t *limits = map_get(l, root, "limits");
	const yaml_node_t *n;

	if (check_limits(l, limits, cfg) < 0)
		return -1;
	if (cfg->health_interval_ms > 0 && cfg->health_interval_ms < SECOND) {
		n = map_get(l,
			    map_get(l, map_get(l, root, "backends"),
				    "health_check"),
			    "interval");
		return fail(l, line_of(n), "backends.health_check.interval",
			    "must be 0s (off) or at least 1s");
	}
	if (cfg->xdp_enabled && cfg->nxdp_interfaces == 0) {
		const yaml_node_t *bl = map_get(l, root, "blocklist");

		return fail(l, line_of(map_get(l, bl, "xdp")),
			    "blocklist.xdp.interfaces",
			    "at least one interface when xdp is enabled");
	}

	if (cfg->run_group != NULL && cfg->run_user == NULL) {
		const yaml_node_t *pr = map_get(l, root, "privileges");

		return fail(l, line_of(map_get(l, pr, "group")),
			    "privileges.group", "needs privileges.user");
	}
	for (size_t i = 0; cfg->metrics_listen.len > 0 && i < cfg->nlisteners;
	     i++) {
		if (!config_value_addr_equal(&cfg->metrics_listen,
					     &cfg->listeners[i].addr))
			continue;
		n = map_get(l, map_get(l, root, "metrics"), "listen");
		return fail(l, line_of(n), "metrics.listen",
			    "same address as listeners[%zu]", i);
	}
	if (cfg->max_auth_line < cfg->max_line) {
		n = map_get(l, limits, "max_auth_line");
		if (n != NULL)
			return fail(l, line_of(n), "limits.max_auth_line",
				    "must be at least limits.max_line (%zu)",
				    cfg->max_line);
		return fail(l, line_of(map_get(l, limits, "max_line")),
			    "limits.max_line",
			    "must not exceed limits.max_auth_line (%zu)",
			    cfg->max_auth_line);
	}
	return 0;
}

/* ---- load ------------------------------------------------------------ */

static int
set_defaults(struct config *cfg)
{
	if (gethostname(cfg->hostname, sizeof(cfg->hostname) - 1) < 0 ||
	    cfg->hostname[0] == '\0')
		snprintf(cfg->hostname, sizeof(cfg->hostname), "localhost");
	cfg->hostname[sizeof(cfg->hostname) - 1] = '\0';
	cfg->workers = 0;
	cfg->log_level = LOG_INFO;
	cfg->control_mode = 0600;
	cfg->blocklist_auto_ban = true;
	cfg->blocklist_max_entries = 1000000;
	cfg->xdp_pin_dir = strdup("/sys/fs/bpf/msaproxy");
	cfg->shutdown_timeout_ms = 30 * SECOND;
	cfg->shutdown_fast_timeout_ms = 3 * SECOND;
	cfg->log_format = LOG_FORMAT_KV;
	cfg->log_output = LOG_OUTPUT_STDERR;
	cfg->log_facility = 2; /* mail */
	cfg->log_syslog_socket = strdup(LOG_SYSLOG_SOCKET);

	cfg->tls_min_version = TLS1_2_VERSION;
	cfg->tls_ciphers = strdup(DEFAULT_CIPHERS);
	cfg->tls_ciphersuites = strdup(DEFAULT_CIPHERSUITES);
	cfg->tls_groups = strdup(DEFAULT_GROUPS);
	cfg->tls_tickets = true;
	cfg->tls13_tickets = 1;
	cfg->ticket_key_lifetime_ms = 12 * HOUR;
	cfg->handshake_timeout_ms = 10 * SECOND;

	cfg->auth_mechs = AUTH_MECH_PLAIN | AUTH_MECH_LOGIN;
	cfg->auth_threads = 2;
	cfg->auth_failure_delay_ms = 1 * SECOND;
	cfg->auth_cache_ttl_ms = 1 * HOUR;
	cfg->auth_cache_size = 10000;

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
read_file(struct loader *l, size_t *len)
{
	unsigned char *buf;
	size_t n;
	FILE *fp;

	fp = fopen(l->path, "rb");
	if (fp == NULL) {
		fail(l, 1, "file", "cannot open: %s", strerror(errno));
		return NULL;
	}
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (buf == NULL) {
		fclose(fp);
		fail(l, 1, "file", "out of memory");
		return NULL;
	}
	n = fread(buf, 1, CONFIG_FILE_MAX + 1, fp);
	if (ferror(fp)) {
		fail(l, 1, "file", "cannot read: %s", strerror(errno));
		goto bad;
	}
	if (n > CONFIG_FILE_MAX) {
		fail(l, 1, "file", "larger than %d bytes", CONFIG_FILE_MAX);
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

/* Is there a tab in the indentation of line (0-based) of buf? */
static bool
tab_indented(const unsigned char *buf, size_t len, size_t line)
{
	size_t i = 0;

	for (; i < len && line > 0; i++)
		line -= buf[i] == '\n';
	for (; i < len && (buf[i] == ' ' || buf[i] == '\t'); i++)
		if (buf[i] == '\t')
			return true;
	return false;
}

static int
yaml_fail(struct loader *l, yaml_parser_t *parser, const unsigned char *buf,
	  size_t len)
{
	const yaml_mark_t *mark = &parser->problem_mark;
	const char *problem = parser->problem ? parser->problem : "bad YAML";
	size_t line = mark->line;

	/* The reader (bad UTF-8, control characters) sets no mark. */
	if (parser->error == YAML_READER_ERROR) {
		line = 0;
		for (size_t i = 0; i < parser->problem_offset && i < len; i++)
			line += buf[i] == '\n';
	}
	/* The most common mistake gets a plain answer. */
	if (parser->error == YAML_SCANNER_ERROR && tab_indented(buf, len, line))
		return fail(l, (int)line + 1, "syntax",
			    "tab character; indent with spaces");
	if (parser->context != NULL && parser->context_mark.line != line)
		return fail(l, (int)line + 1, "syntax",
			    "%s (%s started at line %zu)", problem,
			    parser->context, parser->context_mark.line + 1);
	if (parser->context != NULL)
		return fail(l, (int)line + 1, "syntax", "%s (%s)", problem,
			    parser->context);
	return fail(l, (int)line + 1, "syntax", "%s", problem);
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
		return fail(&l, 1, "file", "out of memory");
	}
	buf = read_file(&l, &len);
	if (buf == NULL) {
		config_free(cfg);
		free(l.dir);
		return -1;
	}

	if (!yaml_parser_initialize(&parser)) {
		fail(&l, 1, "file", "out of memory");
		goto out_buf;
	}
	yaml_parser_set_input_string(&parser, buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		yaml_fail(&l, &parser, buf, len);
		goto out_parser;
	}
	l.doc = &doc;
	l.cfg = cfg;

	root = yaml_document_get_root_node(&doc);
	if (root == NULL) {
		fail(&l, 1, "file", "empty; expected a mapping of settings");
		goto out_doc;
	}
	if (root->type != YAML_MAPPING_NODE) {
		fail(&l, line_of(root), "file",
		     "expected a mapping of settings at the top level");
		goto out_doc;
	}
	/* One document per file: a stray "---" usually means a mistake. */
	if (!yaml_parser_load(&parser, &extra)) {
		yaml_fail(&l, &parser, buf, len);
		goto out_doc;
	}
	if (yaml_document_get_root_node(&extra) != NULL) {
		fail(&l, (int)extra.start_mark.line + 1, "file",
		     "more than one YAML document");
		yaml_document_delete(&extra);
		goto out_doc;
	}
	yaml_document_delete(&extra);

	if (parse_map(&l, root, root, "", top_fields, cfg) < 0 ||
	    check_config(&l, root, cfg) < 0)
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
	}
	free(cfg->backends);
	free(cfg->tls_ciphers);
	free(cfg->tls_ciphersuites);
	free(cfg->tls_groups);
	free(cfg->passwd_file);
	free(cfg->control_socket);
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
	free(cfg->log_syslog_socket);
	free(cfg->path);
	free(cfg);
}
