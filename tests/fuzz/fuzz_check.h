/*
 * fuzz_check.h - what every fuzz target shares: the libFuzzer entry point's
 * prototype, CHECK() for invariants (abort with the condition and a
 * message, so libFuzzer saves the input), and an allocator that CHECKs.
 */
#ifndef MSAPROXY_FUZZ_CHECK_H
#define MSAPROXY_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, \
				__LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			abort();                                               \
		}                                                              \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	CHECK(p != NULL, "out of memory");
	return p;
}

#endif
