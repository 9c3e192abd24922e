/*
 * fuzz_proxy_header.c - libFuzzer target: the PROXY protocol reader
 * (proxy_header.c).
 *
 * The input is what a balancer sends first.  Checked: the verdict on the
 * whole input is stable when bytes are appended (a header's length does
 * not move, an error stays the same error), every prefix of a header is
 * MORE, a header is at most PROXY_HEADER_MAX bytes (v1 at most 107, ending
 * in CRLF; v2 exactly 16 plus its length field), its addresses are IPv4 or
 * IPv6 unless it says "use the connection's own", and nothing is read past
 * the input (ASan, on an exact-size copy).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz_check.h"
#include "smtp/proxy_header.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h, h2;
	enum proxy_header_status st, st2;
	uint8_t *copy = xmalloc(size);

	memcpy(copy, data, size);
	st = proxy_header_parse(copy, size, &h);
	switch (st) {
	case PROXY_HEADER_MORE:
		CHECK(size < PROXY_HEADER_MAX, "MORE after %zu bytes", size);
		break;
	case PROXY_HEADER_ERROR:
		CHECK(h.error > PROXY_ERR_NONE && h.error < PROXY_ERR_COUNT,
		      "error %d", h.error);
		break;
	case PROXY_HEADER_DONE:
		CHECK(h.len > 0 && h.len <= size && h.len <= PROXY_HEADER_MAX,
		      "length %zu of %zu", h.len, size);
		if (h.version == 1) {
			CHECK(h.len <= PROXY_V1_MAX, "v1 of %zu", h.len);
			CHECK(copy[h.len - 2] == '\r' &&
				      copy[h.len - 1] == '\n',
			      "v1 without CRLF");
		} else {
			CHECK(h.version == 2, "version %u", h.version);
			CHECK(h.len == 16 + ((size_t)copy[14] << 8 | copy[15]),
			      "v2 length");
		}
		if (h.local)
			CHECK(h.src.sa.sa_family == AF_UNSPEC &&
				      h.dst.sa.sa_family == AF_UNSPEC,
			      "local with addresses");
		else
			CHECK((h.src.sa.sa_family == AF_INET ||
			       h.src.sa.sa_family == AF_INET6) &&
				      h.dst.sa.sa_family == h.src.sa.sa_family,
			      "families %d %d", h.src.sa.sa_family,
			      h.dst.sa.sa_family);
		/* Exactly the header: the same answer. */
		st2 = proxy_header_parse(copy, h.len, &h2);
		CHECK(st2 == PROXY_HEADER_DONE && h2.len == h.len &&
			      memcmp(&h2.src, &h.src, sizeof(h.src)) == 0,
		      "the header alone reads differently");
		/* Every prefix of it: more. */
		for (size_t i = 0; i < h.len; i++)
			CHECK(proxy_header_parse(copy, i, &h2) ==
				      PROXY_HEADER_MORE,
			      "prefix %zu of a %zu-byte header", i, h.len);
		break;
	}
	/* Shorter inputs never contradict the whole one. */
	for (size_t i = 0; i < size && i <= PROXY_HEADER_MAX; i++) {
		st2 = proxy_header_parse(copy, i, &h2);
		if (st2 == PROXY_HEADER_MORE)
			continue;
		CHECK(st2 == st, "verdict at %zu differs", i);
		if (st == PROXY_HEADER_ERROR)
			CHECK(h2.error == h.error, "error at %zu differs", i);
		else
			CHECK(h2.len == h.len, "length at %zu differs", i);
	}
	free(copy);
	return 0;
}
