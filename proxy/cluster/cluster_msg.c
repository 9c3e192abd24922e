/*
 * cluster_msg.c - the bans' publish messages between nodes.  Read
 * cluster_msg.h first.
 *
 * Security stance: the message comes from Redis, which anyone with access
 * to the channel can publish on; it is parsed word by word with every
 * length bounded, the prefix through ipnet_parse(), numbers without sign
 * or overflow, and refused whole on anything unexpected.
 */
#include <string.h>

#include "../../bpf/blocklist.h" /* enum blocklist_reason */
#include "cluster/cluster_msg.h"

/* The next space-separated word of [*p, end): its start and length; the
 * last word may end at end.  false when there is none or it is empty. */
static bool
word(const char **p, const char *end, const char **w, size_t *len)
{
	const char *s = *p, *e = s;

	while (e < end && *e != ' ')
		e++;
	if (e == s)
		return false;
	*w = s;
	*len = (size_t)(e - s);
	*p = e < end ? e + 1 : e;
	return true;
}

static bool
number(const char *w, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (w[i] < '0' || w[i] > '9')
			return false;
		if (v > (max - (uint64_t)(w[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(w[i] - '0');
	}
	*out = v;
	return true;
}

bool
cluster_msg_parse(const char *msg, size_t len, struct cluster_msg *out)
{
	const char *p = msg, *end = msg + len, *w;
	char text[IPNET_TEXT_MAX];
	size_t n;
	uint64_t v;

	memset(out, 0, sizeof(*out));
	if (len > CLUSTER_MSG_MAX || !word(&p, end, &w, &n))
		return false;
	if (n == 5 && memcmp(w, "files", 5) == 0)
		out->files = true;
	else if (n == 3 && memcmp(w, "add", 3) == 0)
		out->add = true;
	else if (n != 3 || memcmp(w, "del", 3) != 0)
		return false;
	if (!out->files) {
		if (!word(&p, end, &w, &n) || n >= sizeof(text))
			return false;
		memcpy(text, w, n);
		text[n] = '\0';
		if (ipnet_parse(text, &out->net) != NULL)
			return false;
	}
	if (out->add) {
		if (!word(&p, end, &w, &n) ||
		    !number(w, n, UINT64_MAX / 2, &out->ttl_ms) ||
		    !word(&p, end, &w, &n) || !number(w, n, 9, &v) ||
		    (v != BLOCKLIST_REASON_MANUAL &&
		     v != BLOCKLIST_REASON_AUTO))
			return false;
		out->reason = (int)v;
	}
	/* The origin is the last word: it ends the message. */
	if (!word(&p, end, &w, &n) || n >= sizeof(out->origin) || w + n != end)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)w[i] <= ' ' || (unsigned char)w[i] >= 0x7f)
			return false;
	memcpy(out->origin, w, n);
	out->origin[n] = '\0';
	return true;
}
