/*
 * config_internal.h - internal to proxy/config/config*.c: what the loader
 * (config.c), the YAML walker (config_yaml.c), the schema and its setters
 * (config_schema.c) and the cross-checks (config_check.c) share.  Nothing
 * outside those four files includes it; the rest of the tree sees
 * config.h.
 *
 * The walker reports every error as "FILE:LINE: KEY: why" through
 * config_yaml_fail(), which always returns -1, so a setter or a check
 * says `return config_yaml_fail(...)`.  Nodes come from libyaml's
 * document API; their lines are 1-based here.
 */
#ifndef MSAPROXY_CONFIG_INTERNAL_H
#define MSAPROXY_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>
#include <yaml.h>

#include "config/config.h"

#define NO_LIMIT UINT64_MAX /* a range with no upper bound */
/* A class leaves unset what it inherits from limits.user. */
#define RATE_UNSET UINT64_MAX

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
	F_BYTES,   /* uint64_t, config_value_size() */
	F_MS,	   /* uint64_t milliseconds, config_value_duration() */
	F_BOOL,	   /* bool: true/false/yes/no/on/off */
	F_PATH,	   /* char *, relative to the config file's directory */
	F_ENUM,	   /* int (or enum), one of .names */
	F_ADDR,	   /* struct config_addr */
	F_RATE,	   /* struct config_rate, config_value_rate() */
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

/* ---- config_yaml.c: the walker --------------------------------------- */

/* Write "path:line: key: why" into l->err; always returns -1. */
int config_yaml_fail(struct loader *l, int line, const char *key,
		     const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A libyaml parser error as "path:line: syntax: why"; returns -1. */
int config_yaml_syntax_fail(struct loader *l, yaml_parser_t *parser,
			    const unsigned char *buf, size_t len);

/* Before libyaml builds the document: refuse, as the events arrive, a
 * file nested deeper than CONFIG_DEPTH_MAX or holding more than
 * CONFIG_NODES_MAX nodes (config_yaml.c says why those).  0, or -1 with
 * "FILE:LINE: file: why" (or a syntax error) in l->err. */
#define CONFIG_DEPTH_MAX 64
#define CONFIG_NODES_MAX 100000
int config_yaml_bounds(struct loader *l, const unsigned char *buf, size_t len);

/* n's 1-based line; 1 for NULL (a missing node: the file's start). */
int config_yaml_line(const yaml_node_t *n);
yaml_node_t *config_yaml_node(struct loader *l, int id);
/* A scalar node's text. */
const char *config_yaml_str(const yaml_node_t *n);
/* An empty value ("key:" with nothing after it) or an explicit null. */
bool config_yaml_is_null(const yaml_node_t *n);
/* v's text in *out, or an error if v is a list, a mapping or has a NUL. */
int config_yaml_scalar(struct loader *l, const yaml_node_t *v, const char *key,
		       const char **out);
/* The value of key in mapping map, or NULL (also when map is NULL). */
yaml_node_t *config_yaml_get(struct loader *l, const yaml_node_t *map,
			     const char *key);
/* "prefix.name" ("name" at the top) and "prefix[i]", for messages. */
void config_yaml_join_key(char *buf, size_t len, const char *prefix,
			  const char *name);
void config_yaml_index_key(char *buf, size_t len, const char *prefix, size_t i);
/* strdup(), and a file named in the config (absolute, or relative to its
 * directory), reported as out of memory at key, line. */
char *config_yaml_strdup(struct loader *l, const char *s, const char *key,
			 int line);
char *config_yaml_path(struct loader *l, const char *s, const char *key,
		       int line);

/*
 * Parse mapping node map (NULL or an empty value: no keys) against fields,
 * storing into base.  prefix is the dotted path of the mapping ("" at the
 * top); where is the node that missing required keys are reported at.
 */
int config_yaml_map(struct loader *l, const yaml_node_t *map,
		    const yaml_node_t *where, const char *prefix,
		    const struct field *fields, void *base);
/* A list of strings, each checked by valid (NULL: any non-empty) and, as
 * a path, made relative to the config's directory. */
int config_yaml_strings(struct loader *l, const yaml_node_t *v, const char *key,
			bool path, bool (*valid)(const char *),
			const char *why_list, const char *why, char ***out,
			size_t *count);
/*
 * A mapping whose keys are names (limits.classes, limits.users): its pairs
 * in *start..*top and a zeroed array of one item_size element per pair in
 * *items.  Returns the pair count (0: empty or null, nothing allocated) or
 * -1 with the error reported.
 */
ssize_t config_yaml_named(struct loader *l, const yaml_node_t *v,
			  const char *key, const char *expected,
			  size_t item_size, void **items,
			  yaml_node_pair_t **start, yaml_node_pair_t **top);

/* ---- config_schema.c: the key tables --------------------------------- */

/* The top-level mapping's keys; every section hangs off it. */
extern const struct field config_schema_top[];

/* ---- config_check.c: checks across keys ------------------------------ */

/* After everything is parsed: what no single key can decide. */
int config_check(struct loader *l, const yaml_node_t *root, struct config *cfg);
/* The listener and server lists' own checks (list_spec.check). */
int config_check_listeners(struct loader *l, struct config *cfg);
int config_check_backends(struct loader *l, struct config *cfg);
/* config_resolve.c: named backends into one server per address (at the
 * end of config_check_backends()). */
int config_resolve_backends(struct loader *l, struct config *cfg);

/* ---- config.c -------------------------------------------------------- */

/* The order of limits.users (by login), for qsort() and bsearch(). */
int config_user_class_cmp(const void *a, const void *b);

#endif
