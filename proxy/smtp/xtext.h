/*
 * xtext.h - xtext encoding (RFC 3461 4), as XCLIENT attribute values need.
 */
#ifndef MSAPROXY_XTEXT_H
#define MSAPROXY_XTEXT_H

#include <stddef.h>
#include <sys/types.h>

/* Bytes outside "!".."~", and "+" and "=", become "+HH" (uppercase hex).
 * Returns the length written (NUL-terminated), or -1 if out is too small. */
ssize_t xtext_encode(const char *in, size_t len, char *out, size_t outsize);
/* Inverse, for tests and tools; -1 on malformed input.  Strict: only
 * xchar and "+HH" with uppercase hex.  Returns the decoded length (the
 * output is NUL-terminated, so outsize must exceed it; "+00" decodes to a
 * NUL byte inside), or -1 with out[0] = NUL (bad input or out too small). */
ssize_t xtext_decode(const char *in, size_t len, char *out, size_t outsize);

#endif
