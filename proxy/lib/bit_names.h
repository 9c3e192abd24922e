/*
 * bit_names.h - a set of flag bits written as the names of those set
 * ("PLAIN,LOGIN", "NAME ADDR PORT"), from a table of bits and names.
 */
#ifndef MSAPROXY_BIT_NAMES_H
#define MSAPROXY_BIT_NAMES_H

#include <stddef.h>

struct bit_name {
	unsigned bit;
	const char *name;
};

/* The names of the bits set in bits, in the table's order, joined by sep,
 * into out (NUL-terminated; "" for none).  A name that does not fit in
 * size is left out whole, with those after it. */
void bit_names_join(const struct bit_name *table, size_t n, unsigned bits,
		    const char *sep, char *out, size_t size);

#endif
