/*
 * fuzz_proxy_v2.c - libFuzzer target: the PROXY v2 writer (proxy_v2.c).
 *
 * The input picks the address families and bytes (first 37 bytes) and
 * gives the login, unique ID, SNI, TLS version and cipher as NUL-separated
 * strings (the rest).  The header is written, then read back by an
 * independent parser here.  Checked: it is refused exactly when a field is
 * over PROXY_V2_FIELD_MAX; otherwise the signature, command, family and
 * length field are right, the addresses are the input's (v4-mapped IPv6
 * unmapped, mixed families widened), the TLVs fill the rest exactly and
 * give every field back, and a buffer one byte short is refused.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "smtp/proxy_v2.h"

#define NFIELDS 5

static size_t
take_addr(const uint8_t *d, unsigned fam, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (fam == 0) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, d, 4);
		memcpy(&a->sin_port, d + 16, 2);
		return 4;
	}
	if (fam == 1) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, d, 16);
		memcpy(&a->sin6_port, d + 16, 2);
		return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) ? 4 : 16;
	}
	ss->ss_family = AF_UNIX; /* unknown: UNSPEC */
	return 0;
}

/* The address as the header must carry it, in len bytes. */
static void
expect_ip(const struct sockaddr_storage *ss, size_t len, uint8_t ip[16])
{
	uint8_t raw[16];
	bool is4 = ss->ss_family == AF_INET;

	if (is4)
		memcpy(raw, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	else
		memcpy(raw, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	if (!is4 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)raw)) {
		memmove(raw, raw + 12, 4);
		is4 = true;
	}
	if (len == 4 || !is4) {
		memcpy(ip, raw, len);
		return;
	}
	memset(ip, 0, 10);
	ip[10] = ip[11] = 0xff;
	memcpy(ip + 12, raw, 4);
}

static uint16_t
port_of(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET
		       ? ((const struct sockaddr_in *)ss)->sin_port
		       : ((const struct sockaddr_in6 *)ss)->sin6_port;
}

/* Check the TLV holding type t: present exactly when want is non-empty. */
static void
check_tlvs(const uint8_t *p, size_t len, const char *const *want)
{
	static const unsigned types[NFIELDS] = {PP2_TYPE_MSA_LOGIN,
						PP2_TYPE_UNIQUE_ID,
						PP2_TYPE_AUTHORITY, 0, 0};
	bool seen[NFIELDS] = {false}, ssl = false;

	while (len > 0) {
		CHECK(len >= 3, "truncated TLV");
		unsigned t = p[0];
		size_t l = (size_t)p[1] << 8 | p[2];
		CHECK(l <= len - 3, "TLV longer than the header");
		if (t == PP2_TYPE_SSL) {
			const uint8_t *q = p + 8;
			size_t ql = l - 5;
			CHECK(l >= 5 && p[3] == PP2_CLIENT_SSL, "SSL TLV head");
			CHECK(want[3] != NULL, "SSL TLV without TLS");
			ssl = true;
			while (ql > 0) {
				CHECK(ql >= 3, "truncated sub-TLV");
				size_t sl = (size_t)q[1] << 8 | q[2];
				int k = q[0] == PP2_SUBTYPE_SSL_VER    ? 3
					: q[0] == PP2_SUBTYPE_SSL_CIPH ? 4
								       : -1;
				CHECK(k >= 0 && sl <= ql - 3, "bad sub-TLV");
				CHECK(sl == strlen(want[k]) &&
					      memcmp(q + 3, want[k], sl) == 0,
				      "sub-TLV %d differs", k);
				seen[k] = true;
				q += 3 + sl;
				ql -= 3 + sl;
			}
		} else {
			int k = -1;
			for (int i = 0; i < 3; i++)
				if (types[i] == t)
					k = i;
			CHECK(k >= 0, "unknown TLV type 0x%02x", t);
			CHECK(!seen[k], "TLV 0x%02x twice", t);
			CHECK(l == strlen(want[k]) &&
				      memcmp(p + 3, want[k], l) == 0,
			      "TLV 0x%02x differs", t);
			seen[k] = true;
		}
		p += 3 + l;
		len -= 3 + l;
	}
	for (int k = 0; k < NFIELDS; k++) {
		bool expect = want[k] != NULL && want[k][0] != '\0';
		if (k >= 3)
			expect = expect && want[3] != NULL;
		CHECK(seen[k] == expect, "field %d present=%d", k, seen[k]);
	}
	CHECK(ssl == (want[3] != NULL), "SSL TLV presence");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage src, dst;
	char *fields[NFIELDS] = {NULL}, *text;
	const char *want[NFIELDS];
	uint8_t *out;
	bool too_long = false;
	size_t sl, dl, alen, pos = 0, start;
	ssize_t n;

	if (size < 37)
		return 0;
	sl = take_addr(data + 1, data[0] & 3, &src);
	dl = take_addr(data + 19, (data[0] >> 2) & 3, &dst);
	text = xmalloc(size - 37 + 1);
	memcpy(text, data + 37, size - 37);
	text[size - 37] = '\0';
	for (int k = 0; k < NFIELDS && pos <= size - 37; k++) {
		start = pos;
		while (pos < size - 37 && text[pos] != '\0')
			pos++;
		text[pos] = '\0';
		fields[k] = text + start;
		pos++;
	}
	/* bit 4: no TLS at all */
	if (data[0] & 0x10)
		fields[3] = fields[4] = NULL;
	for (int k = 0; k < NFIELDS; k++)
		want[k] = fields[k];

	struct proxy_v2_info info = {
		.src = (const struct sockaddr *)&src,
		.dst = (const struct sockaddr *)&dst,
		.login = fields[0],
		.unique_id = fields[1],
		.sni = fields[2],
		.tls_version = fields[3],
		.tls_cipher = fields[3] ? fields[4] : NULL,
	};
	out = xmalloc(PROXY_V2_MAX);
	n = proxy_v2_write(&info, out, PROXY_V2_MAX);
	for (int k = 0; k < NFIELDS; k++)
		if (k < 3 || fields[3] != NULL)
			too_long |= fields[k] != NULL &&
				    strlen(fields[k]) > PROXY_V2_FIELD_MAX;
	if (too_long) {
		CHECK(n == -1, "an over-long field was written");
		goto done;
	}
	CHECK(n >= PROXY_V2_HEADER_MIN, "refused a valid header: %zd", n);
	CHECK(memcmp(out, PROXY_V2_SIG, PROXY_V2_SIG_LEN) == 0, "signature");
	CHECK(out[12] == 0x21, "command 0x%02x", out[12]);
	CHECK(((size_t)out[14] << 8 | out[15]) == (size_t)n - 16, "length");
	alen = 0;
	if (sl == 0 || dl == 0) {
		CHECK(out[13] == 0x00, "family for unknown addresses");
	} else {
		size_t w = sl == 4 && dl == 4 ? 4 : 16;
		uint8_t ip[16];
		uint16_t port;
		CHECK(out[13] == (w == 4 ? 0x11 : 0x21), "family 0x%02x",
		      out[13]);
		alen = 2 * w + 4;
		CHECK((size_t)n >= 16 + alen, "addresses cut");
		expect_ip(&src, w, ip);
		CHECK(memcmp(out + 16, ip, w) == 0, "source address");
		expect_ip(&dst, w, ip);
		CHECK(memcmp(out + 16 + w, ip, w) == 0, "destination address");
		port = port_of(&src);
		CHECK(memcmp(out + 16 + 2 * w, &port, 2) == 0, "source port");
		port = port_of(&dst);
		CHECK(memcmp(out + 18 + 2 * w, &port, 2) == 0, "dest port");
	}
	check_tlvs(out + 16 + alen, (size_t)n - 16 - alen, want);
	free(out);
	out = xmalloc((size_t)n - 1);
	CHECK(proxy_v2_write(&info, out, (size_t)n - 1) == -1,
	      "wrote into a buffer one byte short");
done:
	free(out);
	free(text);
	return 0;
}
