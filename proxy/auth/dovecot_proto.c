/*
 * dovecot_proto.c - Dovecot's authentication protocol, client side, pure
 * (read dovecot_proto.h first).
 *
 * Security stance: Dovecot is trusted to say yes or no, not to send well
 * formed bytes.  A line longer than DOVECOT_LINE_MAX, an OK or FAIL
 * without a numeric id, or a user= that holds a control byte or does not
 * fit SASL_FIELD_MAX is DOVECOT_BAD and the caller drops the connection.
 * reason= is for the log: control bytes become '?', and it is cut to fit.
 * Unknown commands and parameters are ignored, as the protocol asks.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/dovecot_proto.h"

size_t
dovecot_line_len(const char *buf, size_t len)
{
	const char *lf = memchr(buf, '\n', len);

	return lf != NULL ? (size_t)(lf - buf) + 1 : 0;
}

ssize_t
dovecot_unescape(const char *in, size_t len, char *out, size_t outsize)
{
	size_t o = 0;

	if (outsize == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		if (c == '\001') {
			if (++i == len)
				return -1; /* an escape with nothing after */
			switch (in[i]) {
			case '0':
				return -1; /* a NUL has no place in a C string
					    */
			case '1':
				c = '\001';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			case 'n':
			case 'l':
				c = '\n';
				break;
			default:
				c = in[i];
				break;
			}
		}
		if (o + 1 >= outsize)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return (ssize_t)o;
}

/* A decimal number that fits in 32 bits, the whole field. */
static bool
parse_u32(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 10)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool
field_is(const char *f, size_t len, const char *name)
{
	return len == strlen(name) && memcmp(f, name, len) == 0;
}

static bool
has_prefix(const char *f, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(f, prefix, n) == 0;
}

/* FAIL's resp=: an OAuth mechanism's JSON status, kept when it is one
 * (a JSON object, printable ASCII, short) and dropped otherwise. */
static void
take_status(const char *b64, size_t len, struct dovecot_line *out)
{
	unsigned char st[SASL_STATUS_MAX];
	/* 4 characters per started group of 3 bytes: no longer than the
	 * longest status encodes to (decoding bounds it exactly). */
	ssize_t n = len <= (sizeof(st) + 2) / 3 * 4
			    ? sasl_b64_decode(b64, len, st, sizeof(st))
			    : -1;

	if (n < 0 || !sasl_oauth_status_ok((const char *)st, (size_t)n))
		return;
	memcpy(out->status, st, (size_t)n);
	out->status[n] = '\0';
}

/* The optional parameters of OK and FAIL (from field 2 on). */
static bool
parse_params(const char *const *f, const size_t *fl, size_t n,
	     struct dovecot_line *out)
{
	for (size_t i = 2; i < n; i++) {
		if (has_prefix(f[i], fl[i], "user=")) {
			ssize_t ul =
				dovecot_unescape(f[i] + 5, fl[i] - 5, out->user,
						 sizeof(out->user));

			if (ul <= 0)
				return false;
			for (ssize_t k = 0; k < ul; k++)
				if ((unsigned char)out->user[k] < 0x20 ||
				    out->user[k] == 0x7f)
					return false;
		} else if (has_prefix(f[i], fl[i], "reason=")) {
			char r[DOVECOT_LINE_MAX];
			ssize_t rl = dovecot_unescape(f[i] + 7, fl[i] - 7, r,
						      sizeof(r));

			if (rl < 0)
				rl = 0;
			if ((size_t)rl >= sizeof(out->reason))
				rl = sizeof(out->reason) - 1;
			for (ssize_t k = 0; k < rl; k++)
				out->reason[k] = ((unsigned char)r[k] < 0x20 ||
						  r[k] == 0x7f)
							 ? '?'
							 : r[k];
			out->reason[rl] = '\0';
		} else if (has_prefix(f[i], fl[i], "resp=")) {
			take_status(f[i] + 5, fl[i] - 5, out);
		} else if (field_is(f[i], fl[i], "temp")) {
			out->temp = true;
		}
	}
	return true;
}

#define MAX_FIELDS 64

void
dovecot_parse(const char *line, size_t len, struct dovecot_line *out)
{
	const char *f[MAX_FIELDS];
	size_t fl[MAX_FIELDS], n = 0, start = 0;

	memset(out, 0, sizeof(*out));
	out->kind = DOVECOT_BAD;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len >= DOVECOT_LINE_MAX)
		return;
	for (size_t i = 0; i <= len && n < MAX_FIELDS; i++) {
		if (i == len || line[i] == '\t') {
			f[n] = line + start;
			fl[n] = i - start;
			n++;
			start = i + 1;
		}
	}
	if (n == 0 || fl[0] == 0)
		return;
	if (field_is(f[0], fl[0], "VERSION")) {
		uint32_t ma, mi;

		if (n < 3 || !parse_u32(f[1], fl[1], &ma) ||
		    !parse_u32(f[2], fl[2], &mi))
			return;
		out->major = ma;
		out->minor = mi;
		out->kind = DOVECOT_VERSION;
	} else if (field_is(f[0], fl[0], "MECH")) {
		if (n < 2)
			return;
		out->kind = DOVECOT_IGNORED;
		/* Mechanism names are case-insensitive; Dovecot sends them
		 * upper-case. */
		out->mech = sasl_mech_of(f[1], fl[1]);
		if (out->mech != 0)
			out->kind = DOVECOT_MECH;
	} else if (field_is(f[0], fl[0], "DONE")) {
		out->kind = DOVECOT_DONE;
	} else if (field_is(f[0], fl[0], "OK") ||
		   field_is(f[0], fl[0], "FAIL") ||
		   field_is(f[0], fl[0], "CONT")) {
		enum dovecot_kind k = f[0][0] == 'O'   ? DOVECOT_OK
				      : f[0][0] == 'F' ? DOVECOT_FAIL
						       : DOVECOT_CONT;

		if (n < 2 || !parse_u32(f[1], fl[1], &out->id))
			return;
		if (k == DOVECOT_CONT && n >= 3)
			take_status(f[2], fl[2], out);
		if (k != DOVECOT_CONT && !parse_params(f, fl, n, out)) {
			out->user[0] = '\0';
			out->reason[0] = '\0';
			out->status[0] = '\0';
			return;
		}
		out->kind = k;
	} else {
		out->kind = DOVECOT_IGNORED;
	}
}

ssize_t
dovecot_format_dummy(char *out, size_t outsize, uint32_t id)
{
	int n = snprintf(out, outsize, "CONT\t%u\tAQ==\n", (unsigned)id);

	return n < 0 || (size_t)n >= outsize ? -1 : n;
}

ssize_t
dovecot_format_handshake(char *out, size_t outsize, unsigned long pid)
{
	int n = snprintf(out, outsize, "VERSION\t1\t2\nCPID\t%lu\n", pid);

	return n < 0 || (size_t)n >= outsize ? -1 : n;
}

/* An address for a name=value field: nothing that splits a line. */
static bool
field_ok(const char *s)
{
	return strpbrk(s, "\t\r\n\001") == NULL;
}

/* The client's base64 as it is: only base64's alphabet goes on a line. */
static bool
b64_text_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '+' || *s == '/' ||
		      *s == '='))
			return false;
	return true;
}

/* The fields after the mechanism and before resp=. */
static void
format_extra(char *extra, size_t size, const struct dovecot_auth *a)
{
	extra[0] = '\0';
	if (a->rip[0] != '\0')
		snprintf(extra, size, "\trip=%s\trport=%u", a->rip, a->rport);
	if (a->lip[0] != '\0') {
		size_t el = strlen(extra);

		snprintf(extra + el, size - el, "\tlip=%s\tlport=%u", a->lip,
			 a->lport);
	}
}

/* OAUTHBEARER, XOAUTH2: the client's response goes as it came. */
static ssize_t
format_oauth(char *out, size_t outsize, const struct dovecot_auth *a)
{
	char extra[160];
	int n;

	if (!b64_text_ok(a->resp) || !field_ok(a->rip) || !field_ok(a->lip) ||
	    !(sasl_mech_of(a->mech, strlen(a->mech)) & AUTH_MECH_OAUTH))
		return -1;
	format_extra(extra, sizeof(extra), a);
	n = snprintf(out, outsize,
		     "AUTH\t%u\t%s\tservice=smtp\tno-penalty%s%s\tresp=%s\n",
		     (unsigned)a->id, a->mech, extra,
		     a->secured ? "\tsecured" : "", a->resp);
	/* Dovecot refuses a longer line: better a temp failure here. */
	return n < 0 || (size_t)n >= outsize || (size_t)n >= DOVECOT_LINE_MAX
		       ? -1
		       : n;
}

ssize_t
dovecot_format_auth(char *out, size_t outsize, const struct dovecot_auth *a)
{
	unsigned char plain[2 * SASL_FIELD_MAX + 2];
	size_t ul = strnlen(a->user, SASL_FIELD_MAX),
	       pl = strnlen(a->pass, SASL_FIELD_MAX);
	char b64[4 * sizeof(plain) / 3 + 8];
	char extra[160];
	ssize_t bl;
	int n;

	if (a->mech != NULL)
		return format_oauth(out, outsize, a);
	if (ul == 0 || ul >= SASL_FIELD_MAX || pl >= SASL_FIELD_MAX ||
	    !field_ok(a->rip) || !field_ok(a->lip))
		return -1;
	plain[0] = '\0';
	memcpy(plain + 1, a->user, ul);
	plain[1 + ul] = '\0';
	memcpy(plain + 2 + ul, a->pass, pl);
	bl = sasl_b64_encode(plain, 2 + ul + pl, b64, sizeof(b64));
	explicit_bzero(plain, sizeof(plain));
	if (bl < 0)
		return -1;
	format_extra(extra, sizeof(extra), a);
	n = snprintf(out, outsize,
		     "AUTH\t%u\tPLAIN\tservice=smtp\tno-penalty%s%s"
		     "\tresp=%s\n",
		     (unsigned)a->id, extra, a->secured ? "\tsecured" : "",
		     b64);
	explicit_bzero(b64, sizeof(b64));
	return n < 0 || (size_t)n >= outsize ? -1 : n;
}
