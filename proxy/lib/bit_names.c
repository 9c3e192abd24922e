/*
 * bit_names.c - flag bits as a list of names (bit_names.h).
 */
#include <stdio.h>

#include "lib/bit_names.h"

void
bit_names_join(const struct bit_name *table, size_t n, unsigned bits,
	       const char *sep, char *out, size_t size)
{
	size_t used = 0;

	if (size == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int w;

		if (!(bits & table[i].bit))
			continue;
		w = snprintf(out + used, size - used, "%s%s",
			     used > 0 ? sep : "", table[i].name);
		if (w < 0 || (size_t)w >= size - used) {
			out[used] = '\0'; /* cut before a name, not inside */
			return;
		}
		used += (size_t)w;
	}
}
