/*
 * dovecot_proto.h - the client side of Dovecot's authentication protocol
 * (v1: doc.dovecot.org, "Dovecot Authentication Protocol"), as pure
 * functions: lines in, facts out; requests formatted into a buffer.
 *
 *   C: VERSION 1 2, CPID <pid>
 *   S: VERSION 1 x, MECH <name> [flags]..., SPID, CUID, COOKIE, DONE
 *   C: AUTH <id> PLAIN service=smtp no-penalty rip= rport= lip= lport=
 *      [secured] resp=<base64>
 *
 * no-penalty: msaproxy delays and bans failed logins itself (auth.*,
 * limits.login, limits.ip); Dovecot's own penalty by rip would stack on
 * them and turn a retry after a typo into a timeout.
 *   C: AUTH <id> OAUTHBEARER|XOAUTH2 ... resp=<the client's base64>
 *   S: OK <id> [user=<login>]...  |  FAIL <id> [reason=] [temp]
 *      [resp=<base64 JSON status>]...  |  CONT <id> <base64>
 *
 * OAUTHBEARER and XOAUTH2 need Dovecot's oauth2 passdb.  A refused token
 * comes back as RFC 7628 3.2.2's JSON status: Dovecot 2.3 sends it as a
 * CONT (the client is to answer ^A: "CONT <id> AQ==", then FAIL), others
 * in FAIL's resp=.
 *
 * Fields are TAB-separated and "tab-escaped" with \001 (0 NUL, 1 \001,
 * t TAB, r CR, n or l LF).  No sockets, no clock, no logging.
 */
#ifndef MSAPROXY_AUTH_DOVECOT_PROTO_H
#define MSAPROXY_AUTH_DOVECOT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "smtp/sasl.h"

/* Dovecot expects lines to fit 16 KiB; a longer one is an error. */
#define DOVECOT_LINE_MAX   16384
#define DOVECOT_REASON_MAX 128

enum dovecot_kind {
	DOVECOT_IGNORED, /* SPID, CUID, COOKIE, a MECH we do not use, ... */
	DOVECOT_VERSION, /* major, minor */
	DOVECOT_MECH,	 /* mech: one AUTH_MECH_* bit (smtp/sasl.h) */
	DOVECOT_DONE,	 /* end of the server's handshake */
	DOVECOT_OK,	 /* id, user */
	DOVECOT_FAIL,	 /* id, temp, reason, user */
	DOVECOT_CONT,	 /* id, status (an OAuth refusal's challenge) */
	DOVECOT_BAD,	 /* malformed: the connection is not to be trusted */
};

struct dovecot_line {
	enum dovecot_kind kind;
	unsigned major, minor;
	unsigned mech;
	uint32_t id;
	bool temp;
	/* user=, unescaped; "" none.  A login with a control byte or that
	 * does not fit makes the line DOVECOT_BAD. */
	char user[SASL_FIELD_MAX];
	/* reason=, unescaped, control bytes turned to '?', cut to fit. */
	char reason[DOVECOT_REASON_MAX];
	/* FAIL's resp= or CONT's challenge, decoded, when it is a JSON
	 * object of printable ASCII that fits (the OAuth mechanisms'
	 * status); "" otherwise. */
	char status[SASL_STATUS_MAX + 1];
};

/* The length of the first line in buf[0..len) with its LF, 0 when no whole
 * line is there yet. */
size_t dovecot_line_len(const char *buf, size_t len);
/* Parses one line (without its LF; a CR before it is dropped). */
void dovecot_parse(const char *line, size_t len, struct dovecot_line *out);
/* Unescapes in[0..len) into out (NUL-terminated).  The decoded length, or
 * -1 when it does not fit outsize - 1 or decodes a NUL byte. */
ssize_t dovecot_unescape(const char *in, size_t len, char *out, size_t outsize);

/* The client's handshake.  Length written (NUL-terminated), -1 if no
 * room. */
ssize_t dovecot_format_handshake(char *out, size_t outsize, unsigned long pid);

struct dovecot_auth {
	uint32_t id;
	const char *user, *pass; /* PLAIN: "" NUL user NUL pass */
	/* OAUTHBEARER, XOAUTH2: the mechanism and the client's base64
	 * initial response, sent as they are (user and pass unused); NULL:
	 * PLAIN. */
	const char *mech, *resp;
	const char *rip, *lip; /* numeric addresses, "" unknown */
	unsigned rport, lport; /* 0: unknown */
	bool secured;	       /* TLS */
};

/* An AUTH line for a PLAIN login, or an OAuth one, with its initial
 * response.  Length
 * written (NUL-terminated), -1 if no room or a field is unfit (a TAB, CR
 * or LF in an address).  Holds the password: the caller wipes out. */
ssize_t dovecot_format_auth(char *out, size_t outsize,
			    const struct dovecot_auth *a);

/* "CONT <id> AQ==": the ^A that ends an OAuth refusal's exchange.  Length
 * written (NUL-terminated), -1 if no room. */
ssize_t dovecot_format_dummy(char *out, size_t outsize, uint32_t id);

#endif
