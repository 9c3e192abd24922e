/*
 * fuzz_cluster_msg.c - libFuzzer target: the bans' publish messages
 * between nodes (proxy/cluster/cluster_msg.c).
 *
 * The input is what a publisher on the bans' channel sends.  Checked: a
 * message taken is one of the three forms with its parts in bounds (a
 * reason of 1 or 2, an origin of printable bytes that fits), the prefix
 * formats back to text that parses to the same prefix, and nothing is
 * read past the input (ASan, on an exact-size copy).
 */
#include <stdint.h>
#include <string.h>

#include "cluster/cluster_msg.h"
#include "fuzz_check.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cluster_msg m;
	struct ipnet again;
	char text[IPNET_TEXT_MAX];
	char *copy = xmalloc(size);

	memcpy(copy, data, size);
	if (cluster_msg_parse(copy, size, &m)) {
		size_t n = strlen(m.origin);

		CHECK(size <= CLUSTER_MSG_MAX, "taken at %zu bytes", size);
		CHECK(n > 0 && n < CLUSTER_ORIGIN_MAX, "origin of %zu", n);
		for (size_t i = 0; i < n; i++)
			CHECK(m.origin[i] > ' ' && m.origin[i] < 0x7f,
			      "origin byte %d", m.origin[i]);
		CHECK(!m.add || m.reason == 1 || m.reason == 2, "reason %d",
		      m.reason);
		ipnet_format(&m.net, text, sizeof(text));
		CHECK(ipnet_parse(text, &again) == NULL &&
			      again.len == m.net.len &&
			      memcmp(again.addr, m.net.addr, 16) == 0,
		      "%s does not parse back", text);
	}
	free(copy);
	return 0;
}
