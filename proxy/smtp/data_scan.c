/*
 * data_scan.c - find the end of an SMTP DATA stream and the bytes that make
 * SMTP smuggling possible (RFC 5321 4.1.1.4, 4.5.2, 2.3.8).
 *
 * Hostile input: the bytes are the client's message, streamed in chunks of
 * any size.  The scanner never reads past in[len), holds no buffer of its
 * own (a few states carry everything across chunks) and recognises exactly
 * one end of data: CRLF "." CRLF, where the stream starts as if just after
 * a CRLF.  "\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r" and the like are NOT the
 * end; their bare LF / bare CR is flagged in ds->bad (as is NUL), and the
 * caller refuses the message (reject mode) or forwards a rewritten stream
 * (normalize mode) in which the backend can only find the end we found.
 *
 * States (ds->state):
 *   BOL    just after CRLF or at the start: a '.' here may begin the marker
 *   TEXT   inside a line
 *   CR     after a CR whose fate is not known yet (chunk may end here)
 *   DOT    after BOL '.'
 *   DOTCR  after BOL '.' CR
 *   NBOL   normalize only: the output is at a line start that the rewrite
 *          made (after a bare LF or CR turned into CRLF, or after NULs
 *          dropped at a line start) but the input is not; a '.' here gets
 *          an extra '.' in front.  The reject scanner treats it as TEXT.
 *   DOTNUL normalize only: after BOL '.' and dropped NULs; the output line
 *          is "." so far, so ending it must add a '.'.  TEXT for the
 *          reject scanner.
 *   DONE   the marker was consumed
 *
 * Normalize rule, stated once: the output contains only CRLF line ends and
 * no NUL, and an output line is exactly "." only at the marker the scanner
 * found.  Any other output line that would start with '.' without the
 * client having put that '.' at the start of a real (CRLF-terminated) line
 * gets one more '.', and a line that would end up as "." alone (e.g. from
 * "\r\n.\n" or "\r\n.\0\r\n") is written as "..".  The backend's
 * dot-unstuffing then yields the text the client's bytes meant, minus the
 * NULs.
 *
 * Size (ds->size): input bytes as the client sent them, counted when they
 * are known to be message bytes.  The final ".\r\n" of the marker is never
 * counted; the CRLF before it is (it ends the last line of the message).
 * So "Hi\r\n.\r\n" counts 4 and a lone ".\r\n" counts 0.  While a BOL '.'
 * (and a CR after it) might still start the marker, those bytes are held
 * out of the count and added as soon as the next byte shows they are not
 * the marker, so ds->size never runs ahead of the message.  Dot-stuffing
 * dots and NULs are counted as sent (nothing is unstuffed).
 *
 * Speed: inside a line, whole 32-byte blocks of canonical text (CRLF line
 * ends, no line starting with '.', no NUL) are checked at once and
 * skipped (skip_canonical(): AVX2 where the CPU has it, 16-byte vectors
 * otherwise); elsewhere runs of ordinary bytes go sixteen at a time, with
 * no calls per byte.
 */
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(DATA_SCAN_PORTABLE)
#include <immintrin.h>
#endif

#include "smtp/data_scan.h"

enum {
	ST_BOL = 0,
	ST_TEXT,
	ST_CR,
	ST_DOT,
	ST_DOTCR,
	ST_NBOL,
	ST_DOTNUL,
	ST_DONE,
};

/* Bytes already consumed in a state but not yet counted in ds->size. */
static unsigned
uncounted(unsigned st)
{
	switch (st) {
	case ST_DOT:
		return 1; /* "." */
	case ST_DOTCR:
		return 2; /* ".\r" */
	case ST_DONE:
		return 3; /* ".\r\n", never counted */
	default:
		return 0;
	}
}

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Nonzero iff some byte of v is zero (exact for "any", which is all we
 * ask; the classic bit trick). */
static inline uint64_t
has_zero(uint64_t v)
{
	return (v - ONES) & ~v & HIGHS;
}

/* Sixteen bytes as one vector (GCC and clang vector extensions: SSE2 on
 * x86-64, NEON on arm64); a comparison gives 0xff in each byte where it
 * holds. */
typedef unsigned char u8x16 __attribute__((vector_size(16)));

/* Offset of the first CR, LF or NUL in 16 bytes at p, or 16. */
static inline unsigned
special16(const unsigned char *p)
{
	u8x16 v, m;
	uint64_t lo, hi;

	memcpy(&v, p, 16);
	m = (u8x16)((v == '\r') | (v == '\n') | (v == 0));
	memcpy(&lo, &m, 8);
	memcpy(&hi, (const unsigned char *)&m + 8, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (lo != 0)
		return (unsigned)__builtin_ctzll(lo) / 8;
	if (hi != 0)
		return 8 + (unsigned)__builtin_ctzll(hi) / 8;
	return 16;
#else
	for (unsigned i = 0; i < 16; i++) {
		if (((const unsigned char *)&m)[i] != 0)
			return i;
	}
	(void)lo, (void)hi;
	return 16;
#endif
}

/*
 * First byte in [p, end) that is CR, LF or NUL, or end.  Sixteen bytes per
 * step while there are sixteen (message text is ~76-byte lines: this loop
 * is most of what the relay spends per byte), then eight; memcpy() keeps
 * the loads free of alignment and aliasing trouble and compiles to single
 * moves.
 */
static inline const unsigned char *
skip_plain(const unsigned char *p, const unsigned char *end)
{
	uint64_t v, cr, lf;

	while ((size_t)(end - p) >= 16) {
		unsigned i = special16(p);

		if (i < 16)
			return p + i;
		p += 16;
	}
	while ((size_t)(end - p) >= 8) {
		memcpy(&v, p, 8);
		cr = v ^ (ONES * '\r');
		lf = v ^ (ONES * '\n');
		if (has_zero(v) | has_zero(cr) | has_zero(lf))
			break;
		p += 8;
	}
	while (p < end && *p != '\r' && *p != '\n' && *p != '\0')
		p++;
	return p;
}

/*
 * Canonical text, 32 bytes per step: lines ending in CRLF, none starting
 * with '.', no NUL.  Each byte is checked against its neighbours at once
 * (three overlapping loads): a LF whose previous byte is not CR, a CR
 * whose next byte is not LF, a '.' right after a LF, or a NUL, stops the
 * skip at that block, which the state machine then takes byte by byte.
 * Only called in ST_TEXT, where the byte before p is never a CR awaiting
 * its LF nor a line end before a '.' that matters: so a block that passes
 * leaves the scanner in ST_TEXT (after a block ending in LF the next line
 * start was checked not to be '.', and BOL and TEXT treat every other byte
 * alike); a block ending in CR is left at that CR, for the state machine
 * to take with its LF.  Needs p[-1] and p[32] readable.
 */
#define CANON_STEP 32

/* Nonzero where some lane of a comparison result is set. */
static inline uint64_t
any16(u8x16 m)
{
	uint64_t lo, hi;

	memcpy(&lo, &m, 8);
	memcpy(&hi, (const unsigned char *)&m + 8, 8);
	return lo | hi;
}

static inline u8x16
noncanon16(const unsigned char *p)
{
	u8x16 prev, v, next;

	memcpy(&prev, p - 1, 16);
	memcpy(&v, p, 16);
	memcpy(&next, p + 1, 16);
	return (u8x16)(((v == '\n') & (prev != '\r')) |
		       ((v == '\r') & (next != '\n')) |
		       ((v == '\n') & (next == '.')) | (v == 0));
}

static const unsigned char *
skip_canonical_16(const unsigned char *p, const unsigned char *end)
{
	while ((size_t)(end - p) > CANON_STEP) {
		if (any16(noncanon16(p) | noncanon16(p + 16)) != 0)
			break;
		if (p[CANON_STEP - 1] == '\r')
			return p + CANON_STEP - 1; /* not between CR and LF */
		p += CANON_STEP;
	}
	return p;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(DATA_SCAN_PORTABLE)
/* The same with AVX2 where the CPU has it: one 32-byte vector a step, in
 * intrinsics (and-not and one test instead of the extensions' negated
 * compares and lane copies: ~0.7 instructions a byte). */
__attribute__((target("avx2"))) static const unsigned char *
skip_canonical_avx2(const unsigned char *p, const unsigned char *end)
{
	const __m256i cr = _mm256_set1_epi8('\r'), lf = _mm256_set1_epi8('\n');
	const __m256i dot = _mm256_set1_epi8('.'), nul = _mm256_setzero_si256();

	while ((size_t)(end - p) > CANON_STEP) {
		__m256i prev = _mm256_loadu_si256((const __m256i *)(p - 1));
		__m256i v = _mm256_loadu_si256((const __m256i *)p);
		__m256i next = _mm256_loadu_si256((const __m256i *)(p + 1));
		__m256i is_lf = _mm256_cmpeq_epi8(v, lf);
		__m256i m = _mm256_or_si256(
			_mm256_andnot_si256(_mm256_cmpeq_epi8(prev, cr), is_lf),
			_mm256_andnot_si256(_mm256_cmpeq_epi8(next, lf),
					    _mm256_cmpeq_epi8(v, cr)));

		m = _mm256_or_si256(
			m, _mm256_or_si256(
				   _mm256_and_si256(
					   is_lf, _mm256_cmpeq_epi8(next, dot)),
				   _mm256_cmpeq_epi8(v, nul)));
		if (!_mm256_testz_si256(m, m))
			break;
		if (p[CANON_STEP - 1] == '\r')
			return p + CANON_STEP - 1; /* not between CR and LF */
		p += CANON_STEP;
	}
	return p;
}

static const unsigned char *
skip_canonical(const unsigned char *p, const unsigned char *end)
{
	/* Every worker may be first here: an atomic, so that two writing the
	 * same answer is not a data race (a relaxed load is a plain one). */
	static _Atomic int avx2 = -1;
	int have = atomic_load_explicit(&avx2, memory_order_relaxed);

	if (have < 0) {
		have = __builtin_cpu_supports("avx2") ? 1 : 0;
		atomic_store_explicit(&avx2, have, memory_order_relaxed);
	}
	return have ? skip_canonical_avx2(p, end) : skip_canonical_16(p, end);
}
#else
static const unsigned char *
skip_canonical(const unsigned char *p, const unsigned char *end)
{
	return skip_canonical_16(p, end);
}
#endif

/* A byte the plain-text skip stopped at in the middle of a line: CR
 * starts a line end; a bare LF or a NUL is marked bad and the line goes
 * on. */
static inline unsigned
stopper(int c, unsigned st, unsigned *bad)
{
	if (c == '\r')
		return ST_CR;
	*bad |= c == '\n' ? DATA_BAD_LF : DATA_BAD_NUL;
	return st;
}

static void
data_scan_finish(struct data_scan *ds, unsigned oldst, unsigned st,
		 unsigned bad, size_t used)
{
	ds->size += used + uncounted(oldst) - uncounted(st);
	ds->state = st;
	ds->bad = bad;
	if (st == ST_DONE)
		ds->done = true;
}

void
data_scan_init(struct data_scan *ds)
{
	memset(ds, 0, sizeof(*ds));
	ds->state = ST_BOL;
}

size_t
data_scan(struct data_scan *ds, const char *in, size_t len)
{
	const unsigned char *p = (const unsigned char *)in, *end = p + len;
	unsigned st = ds->state, oldst = st, bad = ds->bad;
	unsigned char c;

	if (ds->done || st == ST_DONE || len == 0)
		return 0;
	/* The normalize-only states mean "inside a line" here. */
	if (st == ST_NBOL || st == ST_DOTNUL)
		st = ST_TEXT;

	while (p < end) {
		switch (st) {
		case ST_BOL:
			c = *p++;
			if (c == '.') {
				st = ST_DOT;
				break;
			}
			if (c == '\r') {
				st = ST_CR;
				break;
			}
			if (c == '\n')
				bad |= DATA_BAD_LF;
			else if (c == '\0')
				bad |= DATA_BAD_NUL;
			st = ST_TEXT;
			break;
		case ST_DOT:
			c = *p++;
			if (c == '\r') {
				st = ST_DOTCR;
				break;
			}
			if (c == '\n')
				bad |= DATA_BAD_LF;
			else if (c == '\0')
				bad |= DATA_BAD_NUL;
			st = ST_TEXT;
			break;
		case ST_CR:
			if (*p == '\n') {
				p++;
				st = ST_BOL;
			} else {
				/* Bare CR: the byte is looked at again as
				 * text. */
				bad |= DATA_BAD_CR;
				st = ST_TEXT;
			}
			break;
		case ST_DOTCR:
			if (*p == '\n') {
				p++;
				st = ST_DONE;
				goto out;
			}
			bad |= DATA_BAD_CR;
			st = ST_TEXT;
			break;
		default: /* ST_TEXT */
			if (p > (const unsigned char *)in)
				p = skip_canonical(p, end);
			p = skip_plain(p, end);
			if (p == end)
				break;
			/* The usual line end, CRLF and a next line that starts
			 * with plain text: straight on in ST_TEXT. */
			if (end - p > 2 && p[0] == '\r' && p[1] == '\n' &&
			    p[2] != '.' && p[2] != '\r' && p[2] != '\n' &&
			    p[2] != '\0') {
				p += 3;
				break;
			}
			st = stopper(*p++, st, &bad);
			break;
		}
	}
out:
	data_scan_finish(ds, oldst, st, bad,
			 (size_t)(p - (const unsigned char *)in));
	return (size_t)(p - (const unsigned char *)in);
}

size_t
data_normalize(struct data_scan *ds, const char *in, size_t len, char *out,
	       size_t *outlen)
{
	const unsigned char *p = (const unsigned char *)in, *end = p + len;
	const unsigned char *q;
	unsigned char *o = (unsigned char *)out;
	unsigned st = ds->state, oldst = st, bad = ds->bad;
	unsigned char c;

	/*
	 * Output bound: per input byte at most 2 bytes, plus a carried debt
	 * of at most 3 from a state entered in an earlier call (DOTCR owes
	 * ".\r\n" before the next byte's own 2).  Hence 2 * len + 3.
	 */
	*outlen = 0;
	if (ds->done || st == ST_DONE || len == 0)
		return 0;

	while (p < end) {
		switch (st) {
		case ST_BOL:
		case ST_NBOL:
			c = *p++;
			switch (c) {
			case '.':
				if (st == ST_NBOL) {
					/* A line the rewrite started: the
					 * client did not stuff this dot. */
					*o++ = '.';
					*o++ = '.';
					st = ST_TEXT;
				} else {
					*o++ = '.';
					st = ST_DOT;
				}
				break;
			case '\r':
				st = ST_CR; /* held back */
				break;
			case '\n':
				bad |= DATA_BAD_LF;
				*o++ = '\r';
				*o++ = '\n';
				st = ST_NBOL;
				break;
			case '\0':
				bad |= DATA_BAD_NUL;
				st = ST_NBOL; /* output still at line start */
				break;
			default:
				*o++ = c;
				st = ST_TEXT;
				break;
			}
			break;
		case ST_DOT:
		case ST_DOTNUL:
			/* The output line is "." so far. */
			c = *p++;
			switch (c) {
			case '\r':
				if (st == ST_DOT) {
					st = ST_DOTCR; /* maybe the marker */
				} else {
					/* ".\0" then CR: not the marker,
					 * and the line ends either way. */
					*o++ = '.';
					st = ST_CR;
				}
				break;
			case '\n':
				bad |= DATA_BAD_LF;
				*o++ = '.';
				*o++ = '\r';
				*o++ = '\n';
				st = ST_NBOL;
				break;
			case '\0':
				bad |= DATA_BAD_NUL;
				st = ST_DOTNUL;
				break;
			default:
				*o++ = c;
				st = ST_TEXT;
				break;
			}
			break;
		case ST_CR:
			*o++ = '\r';
			*o++ = '\n';
			if (*p == '\n') {
				p++;
				st = ST_BOL;
			} else {
				/* Bare CR became CRLF; the byte is looked at
				 * again at the new line's start. */
				bad |= DATA_BAD_CR;
				st = ST_NBOL;
			}
			break;
		case ST_DOTCR:
			if (*p == '\n') {
				p++;
				*o++ = '\r';
				*o++ = '\n';
				st = ST_DONE;
				goto out;
			}
			/* ".\r" + other: not the marker, and the bare CR ends
			 * the line, which must not read as ".". */
			bad |= DATA_BAD_CR;
			*o++ = '.';
			*o++ = '\r';
			*o++ = '\n';
			st = ST_NBOL;
			break;
		default: /* ST_TEXT */
			q = skip_plain(p, end);
			memcpy(o, p, (size_t)(q - p));
			o += q - p;
			p = q;
			if (p == end)
				break;
			c = *p++;
			if (c == '\r') {
				st = ST_CR;
			} else if (c == '\n') {
				bad |= DATA_BAD_LF;
				*o++ = '\r';
				*o++ = '\n';
				st = ST_NBOL;
			} else {
				bad |= DATA_BAD_NUL; /* dropped */
			}
			break;
		}
	}
out:
	*outlen = (size_t)(o - (unsigned char *)out);
	data_scan_finish(ds, oldst, st, bad,
			 (size_t)(p - (const unsigned char *)in));
	return (size_t)(p - (const unsigned char *)in);
}

/*
 * BDAT chunks (RFC 3030) carry the message counted, not dot-stuffed and
 * without an end marker, so only the smuggling bytes matter: a CR is
 * held (ST_CR) until the next byte, in this chunk or the next, shows
 * whether an LF follows; at the message's end a held CR is bare.
 */
void
data_scan_chunk(struct data_scan *ds, const char *in, size_t len, bool end)
{
	const unsigned char *p = (const unsigned char *)in, *e = p + len;
	unsigned st = ds->state == ST_CR ? ST_CR : ST_TEXT, bad = ds->bad;

	while (p < e) {
		if (st == ST_CR) {
			st = ST_TEXT;
			if (*p == '\n') {
				p++;
				continue;
			}
			bad |= DATA_BAD_CR; /* the byte is looked at again */
		}
		p = skip_plain(p, e);
		if (p == e)
			break;
		st = stopper(*p++, st, &bad);
	}
	if (end && st == ST_CR) {
		bad |= DATA_BAD_CR;
		st = ST_TEXT;
	}
	ds->state = st;
	ds->bad = bad;
	ds->size += len;
	if (end)
		ds->done = true;
}
