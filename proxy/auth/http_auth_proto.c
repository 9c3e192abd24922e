/*
 * http_auth_proto.c - nginx's mail auth_http protocol, client side, pure
 * (read http_auth_proto.h first).
 *
 * Security stance: the auth service is trusted to say yes or no, not to
 * send well-formed bytes.  The header block is bounded
 * (HTTP_AUTH_REPLY_MAX); Auth-User with a control byte, or too long, is
 * dropped (and an OK without a usable login is then the client's name);
 * Auth-Status text is cut to printable ASCII before it can reach a client
 * or a log; Auth-Error-Code is only taken in the shape of an SMTP code.
 * Unknown headers are ignored.  The request's fields are escaped as nginx
 * does, so a CR or LF in a name or password never splits a header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/http_auth_proto.h"

ssize_t
http_auth_escape(const char *src, size_t len, char *out, size_t outsize)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c <= 0x20 || c == '%') {
			if (o + 3 >= outsize)
				return -1;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			if (o + 1 >= outsize)
				return -1;
			out[o++] = (char)c;
		}
	}
	if (o >= outsize)
		return -1;
	out[o] = '\0';
	return (ssize_t)o;
}

/* Text for a header as it is (host, path, addresses, TLS names): printable
 * ASCII without spaces. */
static bool
token_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* Appends "name: escaped value\r\n". */
static bool
put_escaped(char *out, size_t outsize, size_t *o, const char *name,
	    const char *value)
{
	int n = snprintf(out + *o, outsize - *o, "%s: ", name);
	ssize_t e;

	if (n < 0 || (size_t)n >= outsize - *o)
		return false;
	*o += (size_t)n;
	e = http_auth_escape(value, strlen(value), out + *o, outsize - *o);
	if (e < 0 || outsize - *o - (size_t)e < 3)
		return false;
	*o += (size_t)e;
	memcpy(out + *o, "\r\n", 3);
	*o += 2;
	return true;
}

ssize_t
http_auth_format(char *out, size_t outsize, const struct http_auth_args *a)
{
	size_t o;
	int n;

	if (!token_ok(a->host) || !token_ok(a->path) || a->path[0] != '/' ||
	    !token_ok(a->method) || !token_ok(a->client_ip))
		return -1;
	n = snprintf(out, outsize,
		     "GET %s HTTP/1.0\r\nHost: %s\r\nAuth-Method: %s\r\n",
		     a->path, a->host, a->method);
	if (n < 0 || (size_t)n >= outsize)
		return -1;
	o = (size_t)n;
	if (!put_escaped(out, outsize, &o, "Auth-User", a->user) ||
	    !put_escaped(out, outsize, &o, "Auth-Pass", a->pass))
		return -1;
	n = snprintf(out + o, outsize - o,
		     "Auth-Protocol: smtp\r\nAuth-Login-Attempt: %u\r\n"
		     "Client-IP: %s\r\nClient-Host: [UNAVAILABLE]\r\n",
		     a->attempt, a->client_ip);
	if (n < 0 || (size_t)n >= outsize - o)
		return -1;
	o += (size_t)n;
	if (a->ssl) {
		bool proto = a->ssl_protocol != NULL &&
			     a->ssl_protocol[0] != '\0' &&
			     token_ok(a->ssl_protocol);
		bool cipher = a->ssl_cipher != NULL &&
			      a->ssl_cipher[0] != '\0' &&
			      token_ok(a->ssl_cipher);

		n = snprintf(out + o, outsize - o,
			     "Auth-SSL: on\r\n%s%s%s%s%s%s",
			     proto ? "Auth-SSL-Protocol: " : "",
			     proto ? a->ssl_protocol : "", proto ? "\r\n" : "",
			     cipher ? "Auth-SSL-Cipher: " : "",
			     cipher ? a->ssl_cipher : "", cipher ? "\r\n" : "");
		if (n < 0 || (size_t)n >= outsize - o)
			return -1;
		o += (size_t)n;
	}
	if (!put_escaped(out, outsize, &o, "Auth-SMTP-Helo",
			 a->helo != NULL ? a->helo : ""))
		return -1;
	if (outsize - o < 3)
		return -1;
	memcpy(out + o, "\r\n", 3);
	return (ssize_t)(o + 2);
}

/* The end of the header block: the offset after its blank line, 0 when it
 * has not come yet. */
static size_t
head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static bool
name_is(const char *n, size_t nl, const char *want)
{
	return nl == strlen(want) && strncasecmp(n, want, nl) == 0;
}

/* A decimal number of at most digits digits, the whole of s[0..len). */
static bool
number(const char *s, size_t len, size_t digits, unsigned long *out)
{
	unsigned long v = 0;

	if (len == 0 || len > digits)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* "4xx" or "5xx", optionally " x.y.z": what an SMTP reply may start with. */
static bool
smtp_code_ok(const char *v, size_t vl)
{
	if (vl < 3 || (v[0] != '4' && v[0] != '5') || v[1] < '0' ||
	    v[1] > '9' || v[2] < '0' || v[2] > '9')
		return false;
	if (vl == 3)
		return true;
	if (v[3] != ' ' || vl < 9 || vl > 15 || v[4] != v[0] || v[5] != '.')
		return false;
	for (size_t i = 6; i < vl; i++)
		if (!((v[i] >= '0' && v[i] <= '9') || v[i] == '.'))
			return false;
	return true;
}

static void
header(const char *n, size_t nl, const char *v, size_t vl,
       struct http_auth_reply *out)
{
	unsigned long num;

	if (name_is(n, nl, "Auth-Status")) {
		size_t k = vl < sizeof(out->status_text) - 1
				   ? vl
				   : sizeof(out->status_text) - 1;

		out->has_status = true;
		out->ok = vl == 2 && memcmp(v, "OK", 2) == 0;
		for (size_t i = 0; i < k; i++)
			out->status_text[i] =
				(v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
		out->status_text[k] = '\0';
	} else if (name_is(n, nl, "Auth-User")) {
		bool fine = vl > 0 && vl < sizeof(out->user);

		for (size_t i = 0; fine && i < vl; i++)
			fine = (unsigned char)v[i] >= 0x20 && v[i] != 0x7f;
		if (fine) {
			memcpy(out->user, v, vl);
			out->user[vl] = '\0';
		} else {
			out->user[0] = '\0';
		}
	} else if (name_is(n, nl, "Auth-Server")) {
		if (vl < sizeof(out->server)) {
			memcpy(out->server, v, vl);
			out->server[vl] = '\0';
			for (size_t i = 0; i < vl; i++)
				if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f)
					out->server[0] = '\0';
		}
	} else if (name_is(n, nl, "Auth-Port")) {
		if (number(v, vl, 5, &num) && num >= 1 && num <= 65535)
			out->port = (unsigned)num;
	} else if (name_is(n, nl, "Auth-Wait")) {
		if (number(v, vl, 4, &num))
			out->wait_s = (int)num;
	} else if (name_is(n, nl, "Auth-OAuth-Status")) {
		if (sasl_oauth_status_ok(v, vl)) {
			memcpy(out->oauth_status, v, vl);
			out->oauth_status[vl] = '\0';
		}
	} else if (name_is(n, nl, "Auth-Error-Code")) {
		if (smtp_code_ok(v, vl) && vl < sizeof(out->error_code)) {
			memcpy(out->error_code, v, vl);
			out->error_code[vl] = '\0';
		}
	}
}

enum http_auth_parse
http_auth_parse(const char *buf, size_t len, bool eof,
		struct http_auth_reply *out)
{
	size_t end = head_end(buf, len), pos, le;
	unsigned long status;

	memset(out, 0, sizeof(*out));
	out->wait_s = -1;
	if (end == 0) {
		if (len >= HTTP_AUTH_REPLY_MAX || eof)
			return HTTP_AUTH_BAD;
		return HTTP_AUTH_MORE;
	}
	if (end > HTTP_AUTH_REPLY_MAX)
		return HTTP_AUTH_BAD;
	/* "HTTP/1.x NNN ..." */
	if (end < 12 || memcmp(buf, "HTTP/1.", 7) != 0 ||
	    (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' ||
	    !number(buf + 9, 3, 3, &status) ||
	    (buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n'))
		return HTTP_AUTH_BAD;
	out->http_status = (int)status;
	pos = (size_t)((const char *)memchr(buf, '\n', end) - buf) + 1;
	while (pos < end) {
		const char *line = buf + pos, *colon, *v;
		size_t ll, nl, vl;

		le = (size_t)((const char *)memchr(line, '\n', end - pos) -
			      line);
		ll = le > 0 && line[le - 1] == '\r' ? le - 1 : le;
		pos += le + 1;
		if (ll == 0)
			break; /* the blank line */
		colon = memchr(line, ':', ll);
		if (colon == NULL || colon == line)
			return HTTP_AUTH_BAD;
		nl = (size_t)(colon - line);
		v = colon + 1;
		vl = ll - nl - 1;
		while (vl > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vl--;
		}
		while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		header(line, nl, v, vl, out);
	}
	return HTTP_AUTH_DONE;
}
