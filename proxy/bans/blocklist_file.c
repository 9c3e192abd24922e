/*
 * blocklist_file.c - blocklist files for the XDP blocklist (blocklist.h):
 * one prefix per line, comments, parsed into a sorted list that
 * blocklist_apply() diffs against the kernel's table on every reload.
 *
 * Security stance: the files come from operators or third-party feeds and
 * may be garbage.  Each line is checked in full by ipnet_parse() (no
 * trailing text, no host bits, lengths in range); the first bad line
 * refuses the whole file, so a truncated or corrupted feed never
 * half-applies (a half-applied feed would unban everything after the bad
 * line).  Errors quote at most 64 bytes of the line, anything unprintable
 * as "?".  Memory is bounded by the caller's maximum count and a 64 MiB
 * file size limit; lines are at most BLOCKLIST_FILE_LINE_MAX bytes.
 *
 * Config keys: none here (xdp.blocklist names the files; the caller reads
 * them with blocklist_file_read()).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "bans/blocklist_file.h"

#define QUOTE_MAX 64

/* A line echoed into an error: printable ASCII only, cut short. */
static void
quote(char *dst, size_t dstlen, const char *s, size_t len)
{
	size_t i, n = len < QUOTE_MAX ? len : QUOTE_MAX;

	if (n > dstlen - 1)
		n = dstlen - 1;
	for (i = 0; i < n; i++)
		dst[i] = s[i] >= ' ' && s[i] < 0x7f ? s[i] : '?';
	dst[i] = '\0';
}

int
blocklist_file_cmp(const struct ipnet *a, const struct ipnet *b)
{
	int r = memcmp(a->addr, b->addr, sizeof(a->addr));

	if (r != 0)
		return r < 0 ? -1 : 1;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return 0;
}

static int
cmp_void(const void *a, const void *b)
{
	return blocklist_file_cmp(a, b);
}

static int
push(struct blocklist_file *l, const struct ipnet *net)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct ipnet *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *net;
	return 0;
}

static void
sort_unique(struct blocklist_file *l)
{
	size_t i, o;

	if (l->n < 2)
		return;
	qsort(l->v, l->n, sizeof(*l->v), cmp_void);
	for (i = 1, o = 1; i < l->n; i++) {
		if (blocklist_file_cmp(&l->v[i], &l->v[o - 1]) != 0)
			l->v[o++] = l->v[i];
	}
	l->n = o;
}

static bool
blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* One line without its newline: 0 and *net set, 1 nothing on it, or -1
 * with the reason in why. */
static int
parse_line(const char *line, size_t n, struct ipnet *net, char *why,
	   size_t whylen)
{
	char text[BLOCKLIST_FILE_LINE_MAX + 1], q[QUOTE_MAX + 1];
	const char *reason;
	size_t b = 0;

	/* "#", or ";" as in Spamhaus DROP lists, starts a comment. */
	for (size_t i = 0; i < n; i++) {
		if (line[i] == '#' || line[i] == ';') {
			n = i;
			break;
		}
	}
	while (n > 0 && blank(line[n - 1]))
		n--;
	while (b < n && blank(line[b]))
		b++;
	if (b == n)
		return 1;
	memcpy(text, line + b, n - b);
	text[n - b] = '\0';
	reason = memchr(text, '\0', n - b) != NULL
			 ? "expected an address or prefix, e.g. 192.0.2.0/24"
			 : ipnet_parse(text, net);
	if (reason == NULL)
		return 0;
	quote(q, sizeof(q), line + b, n - b);
	snprintf(why, whylen, "%s: \"%s\"", reason, q);
	return -1;
}

int
blocklist_file_parse(const char *name, const char *text, size_t len, size_t max,
		     struct blocklist_file *out, char *err, size_t errlen)
{
	struct blocklist_file l = {0};
	char why[256];
	size_t pos = 0, lineno = 0;

	*out = l;
	while (pos < len) {
		const char *line = text + pos, *nl;
		struct ipnet net;
		size_t n;
		int r;

		nl = memchr(line, '\n', len - pos);
		n = nl ? (size_t)(nl - line) : len - pos;
		pos += n + (nl ? 1 : 0);
		lineno++;
		if (n > BLOCKLIST_FILE_LINE_MAX) {
			snprintf(err, errlen,
				 "%s:%zu: line longer than %d bytes", name,
				 lineno, BLOCKLIST_FILE_LINE_MAX);
			goto fail;
		}
		r = parse_line(line, n, &net, why, sizeof(why));
		if (r == 1)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s:%zu: %s", name, lineno, why);
			goto fail;
		}
		if (l.n >= max) {
			snprintf(err, errlen, "%s:%zu: more than %zu entries",
				 name, lineno, max);
			goto fail;
		}
		if (push(&l, &net) < 0) {
			snprintf(err, errlen, "%s:%zu: out of memory", name,
				 lineno);
			goto fail;
		}
	}
	sort_unique(&l);
	*out = l;
	return 0;
fail:
	blocklist_file_free(&l);
	return -1;
}

int
blocklist_file_read(const char *path, size_t max, struct blocklist_file *out,
		    char *err, size_t errlen)
{
	struct stat st;
	char *text = NULL;
	size_t got = 0;
	int fd, rc = -1;

	*out = (struct blocklist_file){0};
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto done;
	}
	if (!S_ISREG(st.st_mode) ||
	    (uintmax_t)st.st_size > BLOCKLIST_FILE_SIZE_MAX) {
		snprintf(err, errlen,
			 "%s: not a regular file of at most %u MiB", path,
			 BLOCKLIST_FILE_SIZE_MAX >> 20);
		goto done;
	}
	text = malloc((size_t)st.st_size + 1);
	if (text == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto done;
	}
	/* What is there now: a file growing meanwhile is cut at the size
	 * fstat saw, never overrun. */
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, text + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	rc = blocklist_file_parse(path, text, got, max, out, err, errlen);
done:
	free(text);
	close(fd);
	return rc;
}

int
blocklist_file_merge(struct blocklist_file *dst,
		     const struct blocklist_file *src)
{
	size_t n = dst->n;

	for (size_t i = 0; i < src->n; i++) {
		if (push(dst, &src->v[i]) < 0) {
			dst->n = n;
			return -1;
		}
	}
	sort_unique(dst);
	return 0;
}

bool
blocklist_file_has(const struct blocklist_file *l, const struct ipnet *net)
{
	return l->n > 0 &&
	       bsearch(net, l->v, l->n, sizeof(*l->v), cmp_void) != NULL;
}

void
blocklist_file_free(struct blocklist_file *l)
{
	free(l->v);
	*l = (struct blocklist_file){0};
}
