/*
 * fuzz_blocklist_file.c - libFuzzer target: blocklist files
 * (blocklist_file.c over ipnet.c), as the XDP blocklist reads them.
 *
 * The input is one whole file.  Checked: an accepted file yields a
 * strictly sorted list of valid prefixes (length at most 128, no host
 * bits), no more than the maximum and no more than the lines that hold
 * text; every entry formats to text that parses back to itself and is
 * found by blocklist_file_has(); merging the list into a copy of itself
 * changes nothing.  A refused file leaves an empty list and an error
 * "fuzz:LINE: why" of printable ASCII.  Nothing is read past the input
 * (libFuzzer's buffer is exactly its size; ASan checks).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bans/blocklist_file.h"
#include "fuzz_check.h"

#define MAX_ENTRIES 512

static void
check_entry(const struct blocklist_file *l, size_t i)
{
	const struct ipnet *n = &l->v[i];
	char text[IPNET_TEXT_MAX];
	struct ipnet back;
	const char *why;

	CHECK(n->len <= 128, "length %u", n->len);
	for (unsigned b = n->len; b < 128; b++)
		CHECK(!(n->addr[b / 8] & (0x80u >> (b % 8))),
		      "bit %u set past /%u", b, n->len);
	ipnet_format(n, text, sizeof(text));
	why = ipnet_parse(text, &back);
	CHECK(why == NULL, "own output \"%s\" refused: %s", text, why);
	CHECK(blocklist_file_cmp(&back, n) == 0, "\"%s\" parses differently",
	      text);
	CHECK(blocklist_file_has(l, n), "entry %zu not found", i);
	CHECK(ipnet_contains(n, n->addr), "%s does not contain itself", text);
	if (i > 0)
		CHECK(blocklist_file_cmp(&l->v[i - 1], n) < 0,
		      "not sorted and unique at %zu", i);
}

static bool
printable(const char *s)
{
	for (; *s; s++) {
		if (*s < ' ' || *s > '~')
			return false;
	}
	return true;
}

/* Lines holding anything but blanks before a "#" or ";": an upper
 * bound on the entries. */
static size_t
text_lines(const uint8_t *data, size_t size)
{
	size_t n = 0, i = 0;

	while (i < size) {
		bool text = false, comment = false;

		for (; i < size && data[i] != '\n'; i++) {
			if (data[i] == '#' || data[i] == ';')
				comment = true;
			else if (!comment && data[i] != ' ' &&
				 data[i] != '\t' && data[i] != '\r')
				text = true;
		}
		i++;
		n += text;
	}
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blocklist_file l, copy = {0};
	char err[512] = "";
	unsigned long line;
	int consumed = 0;

	if (blocklist_file_parse("fuzz", (const char *)data, size, MAX_ENTRIES,
				 &l, err, sizeof(err)) < 0) {
		CHECK(l.v == NULL && l.n == 0, "refused file left entries");
		CHECK(sscanf(err, "fuzz:%lu: %n", &line, &consumed) == 1 &&
			      consumed > 0 && line >= 1,
		      "error without FILE:LINE: \"%s\"", err);
		CHECK(printable(err), "unprintable error");
		return 0;
	}
	CHECK(l.n <= MAX_ENTRIES, "%zu entries", l.n);
	CHECK(l.n <= text_lines(data, size), "more entries than lines");
	for (size_t i = 0; i < l.n; i++)
		check_entry(&l, i);
	CHECK(blocklist_file_merge(&copy, &l) == 0, "merge");
	CHECK(blocklist_file_merge(&copy, &l) == 0, "merge");
	CHECK(copy.n == l.n, "self-merge changed the list");
	blocklist_file_free(&copy);
	blocklist_file_free(&l);
	return 0;
}
