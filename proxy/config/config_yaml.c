/*
 * config_yaml.c - walk the YAML document of the configuration against the
 * key tables of config_schema.c.
 *
 * The file is loaded with libyaml's document API (yaml_parser_load, in
 * config.c), so every node knows its line.  config_yaml_map() walks a
 * mapping against its table, rows {key, type, offset, min, max}: unknown
 * and duplicate keys are refused, each value is converted and range-checked
 * and stored at its offset, and keys marked required must be present.  The
 * first error stops the load and is reported as "FILE:LINE: KEY: why",
 * LINE 1-based, KEY the dotted path; a syntax error from libyaml gets the
 * same form (config_yaml_syntax_fail()).  Before the document is built,
 * config_yaml_bounds() counts nesting and nodes as the parser's events
 * arrive and stops a file past CONFIG_DEPTH_MAX or CONFIG_NODES_MAX at
 * once.
 *
 * Security stance: the document is the administrator's but is walked as
 * untrusted input (it is fuzzed): every node's type is checked before its
 * union is read, keys and values with a NUL byte are refused, key paths
 * are cut to their buffers, and lists are as long as the document says,
 * allocated once.  The value forms themselves (durations, sizes, rates,
 * addresses, names) are config_value.c's.  Internal to the config loader:
 * see config_internal.h.
 *
 * Config keys: none of its own; every key, through the tables.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "config/config.h"
#include "config/config_internal.h"
#include "config/config_value.h"

/* ---- errors ---------------------------------------------------------- */

int
config_yaml_line(const yaml_node_t *n)
{
	return n != NULL ? (int)n->start_mark.line + 1 : 1;
}

/* Write "path:line: key: why" into l->err; always returns -1. */
int
config_yaml_fail(struct loader *l, int line, const char *key, const char *fmt,
		 ...)
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

yaml_node_t *
config_yaml_node(struct loader *l, int id)
{
	return yaml_document_get_node(l->doc, id);
}

const char *
config_yaml_str(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* An empty value ("key:" with nothing after it) or an explicit null. */
bool
config_yaml_is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = config_yaml_str(n);
	return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

int
config_yaml_scalar(struct loader *l, const yaml_node_t *v, const char *key,
		   const char **out)
{
	if (v->type != YAML_SCALAR_NODE)
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected a single value, not a %s",
			v->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
	if (strlen(config_yaml_str(v)) != v->data.scalar.length)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"contains a NUL byte");
	*out = config_yaml_str(v);
	return 0;
}

yaml_node_t *
config_yaml_get(struct loader *l, const yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = config_yaml_node(l, p->key);
		if (k->type == YAML_SCALAR_NODE &&
		    strcmp(config_yaml_str(k), key) == 0)
			return config_yaml_node(l, p->value);
	}
	return NULL;
}

/* "prefix.name", or "name" at the top. */
void
config_yaml_join_key(char *buf, size_t len, const char *prefix,
		     const char *name)
{
	int n;

	if (*prefix == '\0')
		n = snprintf(buf, len, "%s", name);
	else
		n = snprintf(buf, len, "%s.%s", prefix, name);
	if (n < 0)
		buf[0] = '\0';
}

void
config_yaml_index_key(char *buf, size_t len, const char *prefix, size_t i)
{
	if (snprintf(buf, len, "%s[%zu]", prefix, i) < 0)
		buf[0] = '\0';
}

static void *
at(void *base, size_t off)
{
	return (char *)base + off;
}

char *
config_yaml_strdup(struct loader *l, const char *s, const char *key, int line)
{
	char *p = strdup(s);

	if (p == NULL)
		config_yaml_fail(l, line, key, "out of memory");
	return p;
}

/* A file named in the config: absolute, or relative to its directory. */
char *
config_yaml_path(struct loader *l, const char *s, const char *key, int line)
{
	const char *sep;
	char *p;

	if (s[0] == '/')
		return config_yaml_strdup(l, s, key, line);
	sep = l->dir[strlen(l->dir) - 1] == '/' ? "" : "/";
	if (asprintf(&p, "%s%s%s", l->dir, sep, s) < 0) {
		config_yaml_fail(l, line, key, "out of memory");
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
			return config_yaml_fail(l, line, key, "out of memory");
		cfg->key_lines = v;
	}
	v = &cfg->key_lines[cfg->nkey_lines];
	v->key = config_yaml_strdup(l, key, key, line);
	if (v->key == NULL)
		return -1;
	v->line = line;
	cfg->nkey_lines++;
	return 0;
}
/* ---- generic field parsing ------------------------------------------- */

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
		return config_yaml_fail(l, config_yaml_line(v), key,
					"must be between %s and %s", lo, hi);
	if (f->min == 1)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"must be greater than 0");
	return config_yaml_fail(l, config_yaml_line(v), key,
				"must be at least %s", lo);
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
	return config_yaml_fail(l, config_yaml_line(v), key, "%s", why);
}

static int
parse_list(struct loader *l, const yaml_node_t *k, const yaml_node_t *v,
	   const char *key, const struct list_spec *spec, void *base)
{
	char ikey[128];
	size_t n;
	char *items;

	if (config_yaml_is_null(v))
		return config_yaml_fail(l, config_yaml_line(k), key,
					"must list at least one %s",
					spec->what);
	if (v->type != YAML_SEQUENCE_NODE)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"expected a list");
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"must list at least one %s",
					spec->what);
	items = calloc(n, spec->item_size);
	if (items == NULL)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"out of memory");
	/* Owned by the config from here on, so config_free() cleans up. */
	memcpy(at(base, spec->items_off), &items, sizeof(items));
	memcpy(at(base, spec->count_off), &n, sizeof(n));

	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item =
			config_yaml_node(l, v->data.sequence.items.start[i]);
		void *elem = items + i * spec->item_size;
		int line = config_yaml_line(item);

		config_yaml_index_key(ikey, sizeof(ikey), key, i);
		if (item->type != YAML_MAPPING_NODE)
			return config_yaml_fail(l, line, ikey,
						"expected a mapping");
		if (spec->init != NULL)
			spec->init(elem);
		memcpy(at(elem, spec->line_off), &line, sizeof(line));
		if (config_yaml_map(l, item, item, ikey, spec->fields, elem) <
		    0)
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
	if (config_yaml_is_null(v))
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return config_yaml_fail(
			l, config_yaml_line(v), key,
			"expected a list such as [192.0.2.0/24]");
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return 0;
	nets->v = calloc(n, sizeof(*nets->v));
	if (nets->v == NULL)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"out of memory");
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item =
			config_yaml_node(l, v->data.sequence.items.start[i]);
		const char *s, *why;

		config_yaml_index_key(ikey, sizeof(ikey), key, i);
		if (config_yaml_scalar(l, item, ikey, &s) < 0)
			return -1;
		why = ipnet_parse(s, &nets->v[i]);
		if (why != NULL)
			return config_yaml_fail(l, config_yaml_line(item), ikey,
						"%s", why);
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
	int line = config_yaml_line(v), r;

	switch (f->type) {
	case F_SECTION:
		return config_yaml_map(l, v, k, key, f->sub, base);
	case F_LIST:
		return parse_list(l, k, v, key, f->list, base);
	case F_FUNC:
		return f->fn(l, v, key, base);
	case F_NETS:
		return parse_nets(l, v, key, at(base, f->off));
	default:
		break;
	}

	if (config_yaml_scalar(l, v, key, &s) < 0)
		return -1;
	switch (f->type) {
	case F_UINT:
	case F_SIZE:
		r = config_value_digits(s, &end, &n);
		if (r == -2)
			return config_yaml_fail(l, line, key,
						"number is too large");
		if (r != 0 || *end != '\0')
			return config_yaml_fail(l, line, key,
						"expected a whole number");
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
			return config_yaml_fail(l, line, key, "%s", why);
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
			return config_yaml_fail(l, line, key,
						"expected true or false");
		return 0;
	case F_PATH:
		if (*s == '\0')
			return config_yaml_fail(l, line, key,
						"must not be empty");
		str = at(base, f->off);
		free(*str);
		*str = config_yaml_path(l, s, key, line);
		return *str != NULL ? 0 : -1;
	case F_ENUM:
		return parse_enum(l, f, v, key, s, base);
	case F_ADDR:
		why = config_value_addr(s, at(base, f->off));
		return why != NULL ? config_yaml_fail(l, line, key, "%s", why)
				   : 0;
	case F_RATE:
	case F_BRATE:
		why = config_value_rate(s, f->type == F_BRATE,
					at(base, f->off));
		return why != NULL ? config_yaml_fail(l, line, key, "%s", why)
				   : 0;
	default:
		return config_yaml_fail(l, line, key,
					"internal error: bad field type");
	}
}

/*
 * Parse mapping node map (NULL or an empty value: no keys) against fields,
 * storing into base.  prefix is the dotted path of the mapping ("" at the
 * top); where is the node that missing required keys are reported at.
 */
int
config_yaml_map(struct loader *l, const yaml_node_t *map,
		const yaml_node_t *where, const char *prefix,
		const struct field *fields, void *base)
{
	yaml_node_pair_t *start = NULL, *top = NULL, *p, *q;
	const struct field *f;
	char key[128];

	if (map != NULL && config_yaml_is_null(map))
		map = NULL;
	if (map != NULL && map->type != YAML_MAPPING_NODE)
		return config_yaml_fail(l, config_yaml_line(map), prefix,
					"expected a mapping");
	if (map != NULL) {
		start = map->data.mapping.pairs.start;
		top = map->data.mapping.pairs.top;
	}

	for (p = start; p < top; p++) {
		const yaml_node_t *k = config_yaml_node(l, p->key);
		const yaml_node_t *v = config_yaml_node(l, p->value);
		const char *name;

		if (k->type != YAML_SCALAR_NODE)
			return config_yaml_fail(l, config_yaml_line(k),
						*prefix ? prefix : "file",
						"a key must be a plain word");
		name = config_yaml_str(k);
		config_yaml_join_key(key, sizeof(key), prefix, name);
		if (strlen(name) != k->data.scalar.length)
			return config_yaml_fail(l, config_yaml_line(k), key,
						"contains a NUL byte");
		for (q = start; q < p; q++) {
			const yaml_node_t *k2 = config_yaml_node(l, q->key);
			if (k2->type == YAML_SCALAR_NODE &&
			    strcmp(config_yaml_str(k2), name) == 0)
				return config_yaml_fail(
					l, config_yaml_line(k), key,
					"duplicate key (first at line %d)",
					config_yaml_line(k2));
		}
		for (f = fields; f->key != NULL; f++)
			if (strcmp(f->key, name) == 0)
				break;
		if (f->key == NULL)
			return config_yaml_fail(l, config_yaml_line(k), key,
						"unknown key");
		if (note_key(l, key, config_yaml_line(k)) < 0 ||
		    parse_field(l, f, k, v, key, base) < 0)
			return -1;
	}

	for (f = fields; f->key != NULL; f++) {
		if (!f->required || config_yaml_get(l, map, f->key) != NULL)
			continue;
		config_yaml_join_key(key, sizeof(key), prefix, f->key);
		/* A missing section: report what is missing inside it. */
		if (f->type == F_SECTION) {
			if (config_yaml_map(l, NULL, where, key, f->sub, base) <
			    0)
				return -1;
			continue;
		}
		return config_yaml_fail(l, config_yaml_line(where), key,
					"required key is missing");
	}
	return 0;
}

/* ---- lists of strings, mappings of names ----------------------------- */

/* A list of strings, each checked by valid (NULL: any non-empty) and, as
 * a path, made relative to the config's directory. */
int
config_yaml_strings(struct loader *l, const yaml_node_t *v, const char *key,
		    bool path, bool (*valid)(const char *),
		    const char *why_list, const char *why, char ***out,
		    size_t *count)
{
	char ikey[128];
	size_t n;

	if (config_yaml_is_null(v))
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return config_yaml_fail(l, config_yaml_line(v), key, "%s",
					why_list);
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return 0;
	*out = calloc(n, sizeof(**out));
	if (*out == NULL)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"out of memory");
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item =
			config_yaml_node(l, v->data.sequence.items.start[i]);
		const char *s;

		config_yaml_index_key(ikey, sizeof(ikey), key, i);
		if (config_yaml_scalar(l, item, ikey, &s) < 0)
			return -1;
		if (*s == '\0' || (valid != NULL && !valid(s)))
			return config_yaml_fail(l, config_yaml_line(item), ikey,
						"%s", why);
		(*out)[i] = path ? config_yaml_path(l, s, ikey,
						    config_yaml_line(item))
				 : config_yaml_strdup(l, s, ikey,
						      config_yaml_line(item));
		if ((*out)[i] == NULL)
			return -1;
		*count = i + 1;
	}
	return 0;
}

/*
 * A mapping whose keys are names (limits.classes, limits.users): its pairs
 * in *start..*top and a zeroed array of one item_size element per pair in
 * *items.  Returns the pair count (0: empty or null, nothing allocated) or
 * -1 with the error reported.
 */
ssize_t
config_yaml_named(struct loader *l, const yaml_node_t *v, const char *key,
		  const char *expected, size_t item_size, void **items,
		  yaml_node_pair_t **start, yaml_node_pair_t **top)
{
	size_t n;

	if (config_yaml_is_null(v))
		return 0;
	if (v->type != YAML_MAPPING_NODE)
		return config_yaml_fail(l, config_yaml_line(v), key, "%s",
					expected);
	*start = v->data.mapping.pairs.start;
	*top = v->data.mapping.pairs.top;
	n = (size_t)(*top - *start);
	if (n == 0)
		return 0;
	*items = calloc(n, item_size);
	if (*items == NULL)
		return config_yaml_fail(l, config_yaml_line(v), key,
					"out of memory");
	return (ssize_t)n;
}

/* ---- syntax errors --------------------------------------------------- */

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

int
config_yaml_syntax_fail(struct loader *l, yaml_parser_t *parser,
			const unsigned char *buf, size_t len)
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
		return config_yaml_fail(l, (int)line + 1, "syntax",
					"tab character; indent with spaces");
	if (parser->context != NULL && parser->context_mark.line != line)
		return config_yaml_fail(l, (int)line + 1, "syntax",
					"%s (%s started at line %zu)", problem,
					parser->context,
					parser->context_mark.line + 1);
	if (parser->context != NULL)
		return config_yaml_fail(l, (int)line + 1, "syntax", "%s (%s)",
					problem, parser->context);
	return config_yaml_fail(l, (int)line + 1, "syntax", "%s", problem);
}

/* ---- bounds ---------------------------------------------------------- */

/*
 * libyaml's scanner keeps a "simple key" slot per flow level and looks at
 * every one of them at each token, so nesting costs the square of its
 * depth: a 1 MB file of "[" took 54 s in yaml_parser_load(), on the main
 * thread that also answers control requests and signals.  The events
 * arrive one at a time, so counting them stops such a file at its 65th
 * "[", after a few hundred bytes.
 *
 * The bounds: the schema's deepest path is six levels
 * (limits.classes.NAME.messages, listeners[N].allow[M]), so 64 is ten
 * times what a valid file needs and still nothing for the scanner.  A
 * node (a scalar, a list, a mapping) costs libyaml about 100 bytes plus
 * its text; 100,000 of them is more than a 1 MB file of real keys holds
 * (a prefix list item is ~20 bytes, a limits.users entry ~25 for its two
 * nodes: 40,000 to 50,000), and bounds the tree at ~10 MB whatever the
 * file: per-user classes in bulk belong in the users file (class=NAME).
 */
int
config_yaml_bounds(struct loader *l, const unsigned char *buf, size_t len)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	unsigned depth = 0;
	size_t nodes = 0;
	int rc = -1;

	if (!yaml_parser_initialize(&parser))
		return config_yaml_fail(l, 1, "file", "out of memory");
	yaml_parser_set_input_string(&parser, buf, len);
	for (;;) {
		yaml_event_type_t type;
		int line;

		if (!yaml_parser_parse(&parser, &ev)) {
			config_yaml_syntax_fail(l, &parser, buf, len);
			break;
		}
		type = ev.type;
		line = (int)ev.start_mark.line + 1;
		yaml_event_delete(&ev);
		if (type == YAML_STREAM_END_EVENT) {
			rc = 0;
			break;
		}
		if (type == YAML_SEQUENCE_END_EVENT ||
		    type == YAML_MAPPING_END_EVENT) {
			depth--;
			continue;
		}
		if (type != YAML_SCALAR_EVENT && type != YAML_ALIAS_EVENT &&
		    type != YAML_SEQUENCE_START_EVENT &&
		    type != YAML_MAPPING_START_EVENT)
			continue;
		if (++nodes > CONFIG_NODES_MAX) {
			config_yaml_fail(l, line, "file",
					 "more than %d values (YAML nodes); a "
					 "configuration needs a few hundred",
					 CONFIG_NODES_MAX);
			break;
		}
		if ((type == YAML_SEQUENCE_START_EVENT ||
		     type == YAML_MAPPING_START_EVENT) &&
		    ++depth > CONFIG_DEPTH_MAX) {
			config_yaml_fail(l, line, "file",
					 "lists and mappings nested more than "
					 "%d deep; a configuration needs 6",
					 CONFIG_DEPTH_MAX);
			break;
		}
	}
	yaml_parser_delete(&parser);
	return rc;
}
