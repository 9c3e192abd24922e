/*
 * fuzz_dovecot_proto.c - libFuzzer target: the lines Dovecot's auth server
 * sends, as this client parses them (auth/dovecot_proto.c), and the AUTH
 * line it writes.
 *
 * The input is split into lines as the connection does; each is parsed.
 * Checked: the kind is one of the enum's; a user= that comes through has
 * no control byte and fits SASL_FIELD_MAX; a reason has no control byte
 * and fits; only VERSION sets versions and only MECH a mechanism.  The
 * input is also unescaped into an exact-size buffer (never overrun, the
 * length agrees, one byte short is refused), and used as a user name and
 * password for an AUTH line, which must be exactly one line with nothing
 * of the input outside its base64.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dovecot_proto.h"
#include "fuzz_check.h"

static void
check_line(const char *line, size_t len)
{
	struct dovecot_line l;
	size_t ul, rl, sl;

	dovecot_parse(line, len, &l);
	CHECK(l.kind >= DOVECOT_IGNORED && l.kind <= DOVECOT_BAD, "kind %d",
	      (int)l.kind);
	ul = strnlen(l.user, sizeof(l.user));
	rl = strnlen(l.reason, sizeof(l.reason));
	CHECK(ul < sizeof(l.user) && rl < sizeof(l.reason), "unterminated");
	for (size_t i = 0; i < ul; i++)
		CHECK((unsigned char)l.user[i] >= 0x20 && l.user[i] != 0x7f,
		      "control byte in user");
	for (size_t i = 0; i < rl; i++)
		CHECK((unsigned char)l.reason[i] >= 0x20 && l.reason[i] != 0x7f,
		      "control byte in reason");
	if (l.kind != DOVECOT_VERSION)
		CHECK(l.major == 0 && l.minor == 0, "version outside VERSION");
	if (l.kind != DOVECOT_MECH)
		CHECK(l.mech == 0, "mechanism outside MECH");
	if (l.kind == DOVECOT_BAD)
		CHECK(ul == 0 && rl == 0, "a bad line left a user or reason");
	/* An OAuth status kept is one fit to relay, or none. */
	sl = strnlen(l.status, sizeof(l.status));
	CHECK(sl < sizeof(l.status), "status unterminated");
	CHECK(sl == 0 || sasl_oauth_status_ok(l.status, sl), "status %s",
	      l.status);
}

static void
check_unescape(const uint8_t *data, size_t size)
{
	char *out = xmalloc(size + 1);
	ssize_t n = dovecot_unescape((const char *)data, size, out, size + 1);

	if (n >= 0) {
		CHECK((size_t)n <= size && out[n] == '\0', "length %zd", n);
		free(out);
		out = xmalloc((size_t)n + 1);
		CHECK(dovecot_unescape((const char *)data, size, out,
				       (size_t)n + 1) == n,
		      "exact buffer refused");
		if (n > 0)
			CHECK(dovecot_unescape((const char *)data, size, out,
					       (size_t)n) == -1,
			      "one byte short accepted");
	}
	free(out);
}

static void
check_format(const uint8_t *data, size_t size)
{
	char user[SASL_FIELD_MAX] = "", pass[SASL_FIELD_MAX] = "";
	char out[2048];
	size_t half = size / 2, ul, pl;
	struct dovecot_auth a = {.id = 1, .rip = "", .lip = ""};
	ssize_t n;

	ul = half < sizeof(user) - 1 ? half : sizeof(user) - 1;
	pl = size - half < sizeof(pass) - 1 ? size - half : sizeof(pass) - 1;
	memcpy(user, data, ul);
	memcpy(pass, data + half, pl);
	a.user = user;
	a.pass = pass;
	n = dovecot_format_auth(out, sizeof(out), &a);
	if (n < 0) {
		CHECK(user[0] == '\0', "refused a user name");
		return;
	}
	CHECK((size_t)n == strlen(out), "length");
	CHECK(memchr(out, '\n', (size_t)n) == out + n - 1, "not one line");
	CHECK(memchr(out, '\r', (size_t)n) == NULL, "CR in the line");
	CHECK(strncmp(out, "AUTH\t1\tPLAIN\tservice=smtp\tno-penalty\tresp=",
		      41) == 0,
	      "unexpected fields: %s", out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t off = 0, ll;

	while ((ll = dovecot_line_len(p + off, size - off)) > 0) {
		check_line(p + off, ll - 1);
		off += ll;
	}
	if (off < size)
		check_line(p + off, size - off);
	check_unescape(data, size);
	check_format(data, size);
	return 0;
}
