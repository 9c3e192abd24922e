/*
 * sasl.h - SASL PLAIN (RFC 4616) and LOGIN decoding, base64 (RFC 4648),
 * the mechanisms' names.
 *
 * Pure functions: base64 text in, credentials out.  Buffers that held a
 * password are cleared by sasl_creds_clear().
 */
#ifndef MSAPROXY_SASL_H
#define MSAPROXY_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SASL_FIELD_MAX 256 /* authzid, user and password, each incl. NUL */

/* The mechanisms, one bit each: auth.mechanisms, what EHLO offers, what a
 * back end says it checks. */
#define AUTH_MECH_PLAIN	      0x1u
#define AUTH_MECH_LOGIN	      0x2u
#define AUTH_MECH_OAUTHBEARER 0x4u /* RFC 7628: dovecot and http only */
#define AUTH_MECH_XOAUTH2     0x8u /* Google's: dovecot and http only */
#define AUTH_MECH_OAUTH	      (AUTH_MECH_OAUTHBEARER | AUTH_MECH_XOAUTH2)

/* The AUTH_MECH_* bit that name[0..len) names, case-insensitively (RFC
 * 4422 3.1); 0 for a name not among them. */
unsigned sasl_mech_of(const char *name, size_t len);
/* The name of one AUTH_MECH_* bit, upper-case; NULL for any other value. */
const char *sasl_mech_name(unsigned bit);
/* The names of bits, comma-separated ("PLAIN,LOGIN"), "none" for none;
 * names that do not fit in size are left out whole. */
void sasl_mech_list(unsigned bits, char *out, size_t size);

struct sasl_creds {
	char authzid[SASL_FIELD_MAX];
	char user[SASL_FIELD_MAX];
	char pass[SASL_FIELD_MAX];
	/* Set by the caller for a password longer than pass holds: the
	 * check runs (same cost) and must fail (docs/SECURITY.md). */
	bool pass_too_long;
	/* OAUTHBEARER and XOAUTH2 only (NULL otherwise): what smtp.c keeps
	 * of the exchange.  Not the decoders': its owner wipes and frees it
	 * before sasl_creds_clear(). */
	struct sasl_oauth_exchange *oauth;
};

enum sasl_status {
	SASL_OK = 0,
	SASL_BAD_BASE64 = -1, /* not valid base64: reply 501 5.5.2 */
	SASL_MALFORMED = -2,  /* decoded but not a valid message: 501 */
	SASL_TOO_LONG = -3,   /* a field does not fit: 501 */
	/* PLAIN only: authzid and user are good and filled in, the password
	 * does not fit (pass left empty, its bytes not looked at).  The
	 * caller answers it as a wrong password: 535 after the same check. */
	SASL_PASS_TOO_LONG = -4,
};

/* Strict base64: alphabet A-Z a-z 0-9 + /, '=' padding only at the end,
 * length a multiple of 4, no whitespace.  The empty string decodes to 0
 * bytes.  Returns the decoded length, or -1 (bad input or out too small).
 * out needs 3 * (len / 4) bytes. */
ssize_t sasl_b64_decode(const char *in, size_t len, unsigned char *out,
			size_t outsize);
/* Returns the encoded length (written NUL-terminated), or -1 if it does
 * not fit in outsize. */
ssize_t sasl_b64_encode(const unsigned char *in, size_t len, char *out,
			size_t outsize);

/* PLAIN: base64 of authzid NUL authcid NUL passwd.  "=" means an empty
 * response (which is malformed for PLAIN).  authcid must be non-empty; no
 * field may contain NUL; user and password must be valid UTF-8 without
 * control characters below 0x20. (Also: no DEL 0x7f, no overlong forms,
 * surrogates or code points above U+10FFFF; the authzid obeys the same
 * rule.)  On any failure *out is cleared.
 *
 * "=" handling: RFC 4954 spells a zero-length initial response "=".  The
 * caller may map "=" to the empty string (len 0) before calling, or pass
 * it through: both decoders treat "" and "=" alike, so the result is the
 * same either way.
 *
 * A password of SASL_FIELD_MAX bytes or more, after a good authzid and
 * user, is SASL_PASS_TOO_LONG (not a failure to clear: *out keeps the
 * authzid and user, pass stays zero).  Only the first 768 decoded bytes
 * are looked at then, however long the message. */
enum sasl_status sasl_plain_decode(const char *b64, size_t len,
				   struct sasl_creds *out);

/* LOGIN: one base64 field (user name or password) into out, NUL-terminated.
 * "=" decodes to the empty string.  Refuses NUL bytes inside
 * (SASL_MALFORMED), and holds the field to the same UTF-8 rule as PLAIN.
 * A field that does not fit outsize - 1 bytes is SASL_TOO_LONG.  On any
 * failure out[0..outsize) is cleared. */
enum sasl_status sasl_login_decode(const char *b64, size_t len, char *out,
				   size_t outsize);

void sasl_creds_clear(struct sasl_creds *c);

/*
 * OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's): the client's initial
 * response decoded.  Offered after TLS when the back end can check a
 * token (docs/AUTH.md); smtp.c runs the exchange.
 *
 *   OAUTHBEARER: gs2 header "n,a=<authzid>," or "n,," (or "y,"; "p=",
 *   channel binding, is refused), ^A, then key=value^A pairs ending in
 *   ^A: auth=Bearer <token> (required), host=, port= (kept), others
 *   ignored.  XOAUTH2: user=<login>^Aauth=Bearer <token>^A^A.
 *   The token must be an RFC 6750 b64token; names obey PLAIN's UTF-8
 *   rule.  On any failure *out is cleared.
 */
#define SASL_OAUTH_MAX 16384 /* decoded initial response, at most */
#define SASL_TOKEN_MAX 8192  /* the bearer token, incl. NUL */

struct sasl_oauth {
	char user[SASL_FIELD_MAX]; /* authzid (OAUTHBEARER), user= (XOAUTH2) */
	char host[256];		   /* OAUTHBEARER host=, "" none */
	unsigned port;		   /* OAUTHBEARER port=, 0 none */
	char token[SASL_TOKEN_MAX];
	size_t token_len;
};

enum sasl_status sasl_oauthbearer_decode(const char *b64, size_t len,
					 struct sasl_oauth *out);
enum sasl_status sasl_xoauth2_decode(const char *b64, size_t len,
				     struct sasl_oauth *out);
/* RFC 7628 3.2.3: after the server's error challenge the client answers
 * with a lone ^A ("AQ=="). */
bool sasl_oauth_is_dummy(const char *b64, size_t len);

/* One OAuth exchange as smtp.c keeps it: the decoded response, and the
 * client's base64 as it came (for a back end that runs the mechanism
 * itself, Dovecot), NUL-terminated, in one allocation. */
struct sasl_oauth_exchange {
	struct sasl_oauth dec;
	size_t b64_len;
	char b64[];
};

/* RFC 7628 3.2.2's error challenge: the JSON status (NULL, "" or one
 * that is not a printable-ASCII object of at most SASL_STATUS_MAX bytes:
 * {"status":"invalid_token"}) as "334 <base64>" into out.  The length
 * written, -1 if out is too small (SASL_CHALLENGE_MAX is enough). */
#define SASL_STATUS_MAX	   512
#define SASL_CHALLENGE_MAX (4 + (SASL_STATUS_MAX + 2) / 3 * 4 + 1)
ssize_t sasl_oauth_challenge(const char *status, char *out, size_t outsize);
/* Is st (len bytes) a status fit to relay: a JSON object ({...}) of
 * printable ASCII, 2 to SASL_STATUS_MAX bytes?  The back ends' parsers
 * keep only such a status. */
bool sasl_oauth_status_ok(const char *st, size_t len);

#endif
