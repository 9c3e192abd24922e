/*
 * blocklist_file.h - blocklist files: one prefix per line (ipnet.h
 * syntax), "#" or ";" comments.  Pure apart from blocklist_file_read().
 */
#ifndef MSAPROXY_BLOCKLIST_FILE_H
#define MSAPROXY_BLOCKLIST_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/ipnet.h"

/* The longest line a file may have, and the largest file read. */
#define BLOCKLIST_FILE_LINE_MAX 1024
#define BLOCKLIST_FILE_SIZE_MAX (64u << 20)

/* A parsed file: sorted (address, then length), duplicates removed. */
struct blocklist_file {
	struct ipnet *v;
	size_t n;
	size_t cap;
};

/* Parse the text of a file: one prefix per line; "#" or ";" (as in the
 * Spamhaus DROP lists) starts a comment, whole line or after the prefix;
 * blank lines, surrounding blanks and CRLF are fine.  The first bad line
 * stops the parse with "NAME:LINE: why: \"text\"" in err and an empty
 * list, so a broken file never half-applies.  At most max prefixes
 * (duplicates included).  out is initialised here; free it with
 * blocklist_file_free().  0 or -1. */
int blocklist_file_parse(const char *name, const char *text, size_t len,
			 size_t max, struct blocklist_file *out, char *err,
			 size_t errlen);
/* Read and parse a file (a regular file of at most 64 MiB); errors as
 * above, or "PATH: why" when it cannot be read. */
int blocklist_file_read(const char *path, size_t max,
			struct blocklist_file *out, char *err, size_t errlen);
/* Add src's prefixes to dst (the union of several files); -1 out of
 * memory (dst unchanged but for capacity). */
int blocklist_file_merge(struct blocklist_file *dst,
			 const struct blocklist_file *src);
/* Is exactly this prefix listed? */
bool blocklist_file_has(const struct blocklist_file *l,
			const struct ipnet *net);
void blocklist_file_free(struct blocklist_file *l);
/* Total order used for sorting: address bytes, then length. */
int blocklist_file_cmp(const struct ipnet *a, const struct ipnet *b);

#endif
