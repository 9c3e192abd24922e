/*
 * data_scan.h - the DATA stream scanner (RFC 5321 4.1.1.4, 2.3.8).
 *
 * Reads the client's message bytes after "354" as they stream, finds the
 * one true end of data (CRLF "." CRLF; the DATA stream starts as if just
 * after a CRLF, so ".\r\n" as the very first line also ends it) and notices
 * the bytes that make SMTP smuggling possible: a bare LF, a bare CR (a CR
 * not followed by LF) and NUL.
 *
 * A proxy does not dot-unstuff: in the canonical case the bytes are
 * forwarded exactly as received, so client DKIM signatures survive.  The
 * caller feeds chunks of any size; state carries across calls, so a marker
 * split over chunk boundaries ("\r\n." | "\r\n") is found.
 *
 * Two modes for DATA, and one for BDAT:
 *  - data_scan():      reject mode.  Forward the input as it is (the
 *                      consumed prefix), unless ds->bad was set, in which
 *                      case nothing more may be forwarded and the message
 *                      must be refused after its end.
 *  - data_normalize(): rewrite bare LF and bare CR to CRLF, drop NUL, and
 *                      dot-stuff any line that the rewrite starts (so the
 *                      backend finds the same end of data we do).
 *  - data_scan_chunk(): BDAT chunks, which are counted, not marked: bare
 *                      LF, bare CR and NUL only (the caller refuses the
 *                      message; a chunk's size was sent ahead of it, so
 *                      its bytes cannot be rewritten).
 */
#ifndef MSAPROXY_DATA_SCAN_H
#define MSAPROXY_DATA_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DATA_BAD_LF  0x1u /* LF not preceded by CR */
#define DATA_BAD_CR  0x2u /* CR not followed by LF */
#define DATA_BAD_NUL 0x4u

struct data_scan {
	unsigned state; /* private */
	unsigned bad;	/* DATA_BAD_* seen so far (also in normalize mode) */
	bool done;	/* the end-of-data marker was consumed */
	uint64_t size;	/* message bytes so far, marker excluded, as sent
			   (before normalization) */
};

/* ds->size counts input bytes as received (dot-stuffing dots, bare CR/LF
 * and NUL included, nothing unstuffed).  The final ".\r\n" of the marker
 * is not counted, the CRLF before it is: "Hi\r\n.\r\n" counts 4, a lone
 * ".\r\n" 0.  A '.' at a line start (and a CR after it) is counted only
 * once the next byte shows it is not the marker, so size never includes
 * bytes of the marker, even while it is split over chunks. */

void data_scan_init(struct data_scan *ds);

/* Scan in[0..len).  Returns the number of bytes consumed: all of them, or
 * fewer when the end-of-data marker ends inside the chunk (the rest is the
 * client's next pipelined command).  Sets ds->done at the marker. */
size_t data_scan(struct data_scan *ds, const char *in, size_t len);

/* Like data_scan() but writes the canonical stream to out, which must hold
 * 2 * len + 3 bytes.  *outlen receives the bytes written (the marker
 * included when found).  Returns the input bytes consumed. */
size_t data_normalize(struct data_scan *ds, const char *in, size_t len,
		      char *out, size_t *outlen);

/* BDAT (RFC 3030): in[0..len) is chunk data, all of it message bytes (no
 * marker, no dot-stuffing); only bare LF, bare CR and NUL are flagged in
 * ds->bad, a CR at a chunk's end waiting for the next chunk's first byte.
 * end: these bytes end the message (a CR held then is bare); sets
 * ds->done.  ds->size counts every byte.  Start each message with
 * data_scan_init(); do not mix with data_scan() on one message. */
void data_scan_chunk(struct data_scan *ds, const char *in, size_t len,
		     bool end);

#endif
