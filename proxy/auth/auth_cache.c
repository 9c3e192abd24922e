/*
 * auth_cache.c - a bounded cache of recently verified logins
 * (auth.cache_ttl, auth.cache_size; see auth_cache.h for what an entry
 * holds and costs).
 *
 * One array of max_entries 64-byte slots, cut into buckets of CACHE_WAYS
 * consecutive slots (the last bucket may be shorter); a user's bucket is
 * its keyed tag modulo the bucket count.  A slot with expires_ms == 0 is
 * empty and all zero.  Each bucket is guarded by one of CACHE_STRIPES
 * mutexes; the HMACs are computed before taking it, so a lock is held for
 * a scan of at most CACHE_WAYS slots.
 *
 * Security stance: the cache key is 32 bytes from RAND_bytes, cleared as
 * soon as OpenSSL's HMAC context holds it; every HMAC input is
 * domain-separated and length-prefixed; a slot leaving use is cleared with
 * OPENSSL_cleanse; password MACs, and the user tags that find a slot, are
 * compared with CRYPTO_memcmp (a tag is a keyed hash too).  Nothing
 * here logs.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "auth/auth_cache.h"

#define CACHE_WAYS    16 /* slots per bucket */
#define CACHE_STRIPES 64 /* mutexes */
#define KEY_LEN	      32
#define MAC_LEN	      32 /* HMAC-SHA256 */
#define TAG_LEN	      16 /* user tag: truncated HMAC */
#define FP_LEN	      8	 /* stored-hash fingerprint: truncated HMAC */

struct slot {
	uint64_t expires_ms; /* CLOCK_MONOTONIC ms; 0: empty */
	unsigned char tag[TAG_LEN];
	unsigned char fp[FP_LEN];
	unsigned char mac[MAC_LEN];
};

_Static_assert(sizeof(struct slot) == 64, "an entry is one cache line");

/* Padded so that neighbouring mutexes do not share a cache line. */
struct stripe {
	pthread_mutex_t mu;
	char pad[64 - sizeof(pthread_mutex_t) % 64];
};

struct auth_cache {
	uint64_t ttl_ms;
	size_t nslots;	    /* max_entries; 0 when disabled */
	size_t nbuckets;    /* ceil(nslots / CACHE_WAYS) */
	struct slot *slots; /* NULL when disabled */
	EVP_MAC_CTX *hmac;  /* keyed, never updated: duplicated per use */
	struct stripe stripes[CACHE_STRIPES];
};

/* The three MACs of one login attempt, computed outside the lock. */
struct login {
	unsigned char tag[MAC_LEN]; /* first TAG_LEN bytes used */
	unsigned char fp[MAC_LEN];  /* first FP_LEN bytes used */
	unsigned char mac[MAC_LEN];
};

struct piece {
	const void *p;
	size_t n;
};

/* ---- keyed hashing ---- */

/* HMAC-SHA256 of the concatenated pieces under the cache key.  A copy of
 * the keyed template per call: no algorithm fetch (and its store lock) and
 * nothing shared is written, so pool threads do not contend. */
static bool
keyed_mac(struct auth_cache *c, unsigned char out[MAC_LEN],
	  const struct piece *pieces, size_t npieces)
{
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(c->hmac);
	size_t outlen = 0;
	bool ok = ctx != NULL;

	for (size_t i = 0; ok && i < npieces; i++)
		ok = EVP_MAC_update(ctx, pieces[i].p, pieces[i].n) == 1;
	ok = ok && EVP_MAC_final(ctx, out, &outlen, MAC_LEN) == 1 &&
	     outlen == MAC_LEN;
	EVP_MAC_CTX_free(ctx);
	return ok;
}

static void
put_be32(unsigned char b[4], size_t v)
{
	uint32_t x = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;

	b[0] = (unsigned char)(x >> 24);
	b[1] = (unsigned char)(x >> 16);
	b[2] = (unsigned char)(x >> 8);
	b[3] = (unsigned char)x;
}

/*
 * tag = HMAC(k, "U" user), fp = HMAC(k, "H" stored),
 * mac = HMAC(k, "P" be32(len user) user be32(len pass) pass).
 * The one-letter labels keep the three uses apart; the lengths make the
 * user/password split unambiguous ("ab"+"c" is not "a"+"bc").
 */
static bool
login_macs(struct auth_cache *c, const char *user, const char *pass,
	   const char *stored, struct login *l)
{
	size_t ulen = strlen(user), plen = strlen(pass);
	unsigned char ubuf[4], pbuf[4];
	bool ok;

	if (stored == NULL)
		stored = "";
	put_be32(ubuf, ulen);
	put_be32(pbuf, plen);
	ok = keyed_mac(c, l->tag,
		       (const struct piece[]){{"U", 1}, {user, ulen}}, 2) &&
	     keyed_mac(
		     c, l->fp,
		     (const struct piece[]){{"H", 1}, {stored, strlen(stored)}},
		     2) &&
	     keyed_mac(c, l->mac,
		       (const struct piece[]){{"P", 1},
					      {ubuf, 4},
					      {user, ulen},
					      {pbuf, 4},
					      {pass, plen}},
		       5);
	if (!ok)
		OPENSSL_cleanse(l, sizeof(*l));
	return ok;
}

/* ---- the table ---- */

static size_t
bucket_of(const struct auth_cache *c, const unsigned char *tag)
{
	uint64_t h;

	memcpy(&h, tag, sizeof(h));
	return (size_t)(h % c->nbuckets);
}

static pthread_mutex_t *
bucket_lock(struct auth_cache *c, size_t b)
{
	return &c->stripes[b % CACHE_STRIPES].mu;
}

static struct slot *
bucket_first(struct auth_cache *c, size_t b)
{
	return c->slots + b * CACHE_WAYS;
}

static struct slot *
bucket_end(struct auth_cache *c, size_t b)
{
	size_t end = (b + 1) * CACHE_WAYS;

	return c->slots + (end < c->nslots ? end : c->nslots);
}

static void
slot_clear(struct slot *s)
{
	OPENSSL_cleanse(s, sizeof(*s));
}

/* The user's slot in bucket b, or NULL.  Under the bucket's lock. */
static struct slot *
slot_find(struct auth_cache *c, size_t b, const unsigned char *tag)
{
	for (struct slot *s = bucket_first(c, b); s < bucket_end(c, b); s++)
		if (s->expires_ms != 0 &&
		    CRYPTO_memcmp(s->tag, tag, TAG_LEN) == 0)
			return s;
	return NULL;
}

/* Where to store the user: its own slot (at most one per user), else an
 * empty or expired one, else the oldest.  Under the bucket's lock. */
static struct slot *
slot_victim(struct auth_cache *c, size_t b, const unsigned char *tag,
	    uint64_t now_ms)
{
	struct slot *spare = NULL, *oldest = NULL;

	for (struct slot *s = bucket_first(c, b); s < bucket_end(c, b); s++) {
		if (s->expires_ms != 0 &&
		    CRYPTO_memcmp(s->tag, tag, TAG_LEN) == 0)
			return s;
		if (s->expires_ms == 0 || now_ms >= s->expires_ms) {
			if (spare == NULL)
				spare = s;
		} else if (oldest == NULL ||
			   s->expires_ms < oldest->expires_ms) {
			oldest = s;
		}
	}
	return spare != NULL ? spare : oldest;
}

static bool
enabled(const struct auth_cache *c)
{
	return c != NULL && c->slots != NULL;
}

/* ---- API ---- */

struct auth_cache *
auth_cache_new(uint64_t ttl_ms, size_t max_entries, char *err, size_t errlen)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						 (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	unsigned char key[KEY_LEN];
	struct auth_cache *c;
	EVP_MAC *mac = NULL;

	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "auth cache: out of memory");
		return NULL;
	}
	for (size_t i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_init(&c->stripes[i].mu, NULL);
	if (ttl_ms == 0 || max_entries == 0)
		return c; /* disabled */
	c->ttl_ms = ttl_ms;

	c->slots = calloc(max_entries, sizeof(*c->slots));
	if (c->slots == NULL) {
		snprintf(err, errlen,
			 "auth cache: out of memory for %zu entries",
			 max_entries);
		goto fail;
	}
	c->nslots = max_entries;
	c->nbuckets = (max_entries + CACHE_WAYS - 1) / CACHE_WAYS;

	if (RAND_bytes(key, sizeof(key)) != 1) {
		snprintf(err, errlen, "auth cache: RAND_bytes failed");
		goto fail;
	}
	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	c->hmac = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
	if (c->hmac == NULL ||
	    EVP_MAC_init(c->hmac, key, sizeof(key), params) != 1) {
		snprintf(err, errlen, "auth cache: HMAC-SHA256 unavailable");
		goto fail;
	}
	OPENSSL_cleanse(key, sizeof(key));
	EVP_MAC_free(mac); /* the context holds its own reference */
	return c;

fail:
	OPENSSL_cleanse(key, sizeof(key));
	EVP_MAC_free(mac);
	auth_cache_free(c);
	return NULL;
}

void
auth_cache_free(struct auth_cache *c)
{
	if (c == NULL)
		return;
	/* Only occupied slots: the others are zero already, and a large
	 * table's untouched pages stay untouched. */
	for (size_t i = 0; i < c->nslots; i++)
		if (c->slots[i].expires_ms != 0)
			slot_clear(&c->slots[i]);
	free(c->slots);
	EVP_MAC_CTX_free(c->hmac); /* clears its copy of the key */
	for (size_t i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_destroy(&c->stripes[i].mu);
	free(c);
}

bool
auth_cache_check(struct auth_cache *c, const char *user, const char *pass,
		 const char *stored, uint64_t now_ms)
{
	struct login l;
	struct slot *s;
	bool hit = false;
	size_t b;

	if (!enabled(c) || user == NULL || pass == NULL ||
	    !login_macs(c, user, pass, stored, &l))
		return false;
	b = bucket_of(c, l.tag);
	pthread_mutex_lock(bucket_lock(c, b));
	s = slot_find(c, b, l.tag);
	if (s != NULL) {
		if (now_ms >= s->expires_ms ||
		    CRYPTO_memcmp(s->fp, l.fp, FP_LEN) != 0)
			slot_clear(s); /* stale: never good again */
		else
			hit = CRYPTO_memcmp(s->mac, l.mac, MAC_LEN) == 0;
	}
	pthread_mutex_unlock(bucket_lock(c, b));
	OPENSSL_cleanse(&l, sizeof(l));
	return hit;
}

void
auth_cache_store(struct auth_cache *c, const char *user, const char *pass,
		 const char *stored, uint64_t now_ms)
{
	struct login l;
	struct slot *s;
	size_t b;

	if (!enabled(c) || user == NULL || pass == NULL ||
	    !login_macs(c, user, pass, stored, &l))
		return;
	b = bucket_of(c, l.tag);
	pthread_mutex_lock(bucket_lock(c, b));
	s = slot_victim(c, b, l.tag, now_ms);
	slot_clear(s);
	s->expires_ms = now_ms > UINT64_MAX - c->ttl_ms ? UINT64_MAX
							: now_ms + c->ttl_ms;
	memcpy(s->tag, l.tag, TAG_LEN);
	memcpy(s->fp, l.fp, FP_LEN);
	memcpy(s->mac, l.mac, MAC_LEN);
	pthread_mutex_unlock(bucket_lock(c, b));
	OPENSSL_cleanse(&l, sizeof(l));
}

size_t
auth_cache_count(struct auth_cache *c)
{
	size_t n = 0;

	if (!enabled(c))
		return 0;
	for (size_t b = 0; b < c->nbuckets; b++) {
		pthread_mutex_lock(bucket_lock(c, b));
		for (struct slot *s = bucket_first(c, b); s < bucket_end(c, b);
		     s++)
			n += s->expires_ms != 0;
		pthread_mutex_unlock(bucket_lock(c, b));
	}
	return n;
}

size_t
auth_cache_capacity(const struct auth_cache *c)
{
	return enabled(c) ? c->nslots : 0;
}
