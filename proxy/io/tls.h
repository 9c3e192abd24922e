/*
 * tls.h - server TLS contexts and per-session SSL objects.
 *
 * Each worker builds its own struct tls_server: its own OSSL_LIB_CTX and
 * SSL_CTXs (OpenSSL 3.0 takes global locks per handshake when threads share
 * one library context), one SSL_CTX per certificate group (a group holds the
 * certificates, e.g. ECDSA and RSA, served for one set of SNI names).
 * Session ticket keys are process-wide, so a ticket issued by one worker
 * resumes on another; they rotate every tls.ticket_key_lifetime and the
 * previous key is still accepted (and renewed) for one more lifetime.
 *
 * A client session's SSL reads and writes the session's own buffers
 * through one BIO (struct tls_io): ciphertext is read in place from the
 * receive buffer the ring filled, and records are written straight into
 * the session's wire buffer.  Backend connections use memory BIOs.  The
 * worker's ring moves the bytes either way.
 *
 * Config keys: tls.certificates, tls.min_version, tls.ciphers,
 * tls.ciphersuites, tls.groups, tls.session_tickets, tls.tls13_tickets,
 * tls.ticket_key_lifetime.  Standards: RFC 8446, 5246, 8996 (no TLS < 1.2),
 * 5077/8446 4.6.1 (tickets), 6066 (SNI).
 */
#ifndef MSAPROXY_TLS_H
#define MSAPROXY_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lib/buf.h"
#include "config/config.h"

struct tls_server;

/* Once at start-up, before any worker: ticket keys. */
int tls_global_init(const struct config *cfg, char *err, size_t errlen);

/* After every thread has ended: the library contexts. */
void tls_global_free(void);

/* Per worker: slot is the worker's number (its OpenSSL library context,
 * kept across reloads). */
struct tls_server *tls_server_new(const struct config *cfg, unsigned slot,
				  char *err, size_t errlen);
void tls_server_free(struct tls_server *ts);

/* The notAfter of the first certificate in a PEM file, as Unix time; 0 if
 * the file cannot be read or holds none (the metrics' certificate expiry:
 * read once per load, on the main thread). */
int64_t tls_cert_file_expiry(const char *path);

/*
 * Where a client session's TLS bytes come from and go to.  During a
 * receive completion rx/rxlen name the ciphertext just received, which
 * OpenSSL reads in place; tls_io_keep() then copies what it left into held
 * (allocated only while it holds bytes).  Records go to *out; one that
 * does not fit is a write error (the session bounds its writes by the
 * room in *out, so only a peer that never reads can cause it).
 */
struct tls_io {
	const char *rx;
	size_t rxlen;
	struct buf held; /* ciphertext received but not yet read by TLS */
	struct buf *out; /* where records go */
};

/* Ciphertext received and not yet read by TLS. */
static inline size_t
tls_io_pending(const struct tls_io *io)
{
	return buf_used(&io->held) + io->rxlen;
}

/* End of a receive: keep what TLS did not read of rx in held, whose
 * capacity (the owner's buf_init()) leaves room for a whole receive on top
 * of what was pending when it was armed.  Returns -1 when it does not fit
 * or memory ran out. */
int tls_io_keep(struct tls_io *io);

/* A server SSL reading and writing through io (which must outlive it). */
SSL *tls_ssl_new(struct tls_server *ts, struct tls_io *io);
/* The handshake is done: records may carry credentials from here on, so
 * OpenSSL wipes each one's plaintext once read (SSL_OP_CLEANSE_PLAINTEXT;
 * handshake records carry none, and wiping the ~17 KB record buffer each
 * time one is released cost ~10k instructions a record). */
void tls_established(SSL *ssl);
/* The session authenticated: no more credentials will cross, so stop
 * cleansing each record's plaintext. */
void tls_authed(SSL *ssl);

/* Backend side (tls: starttls, starttls-verify): a client context for
 * backends.servers[i], TLS 1.2 or later; with starttls-verify the chain is
 * checked against ca_file (or the system store).  NULL with err set. */
SSL_CTX *tls_backend_ctx_new(const struct config_backend *b, char *err,
			     size_t errlen);
/* A client SSL with memory BIOs; with starttls-verify it must present
 * name (or, without one, the server's IP address). */
SSL *tls_backend_ssl_new(SSL_CTX *ctx, const struct config_backend *b);

/* The OpenSSL error queue as one line, emptied. */
const char *tls_error_string(char *buf, size_t len);

#endif
