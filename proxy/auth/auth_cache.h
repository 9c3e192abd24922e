/*
 * auth_cache.h - a bounded cache of recently verified logins.
 *
 * A yescrypt check costs ~66 ms of CPU by design, and mail clients log in
 * on every connection.  The auth pool asks this cache first: a user whose
 * password was verified against the passwd file less than auth.cache_ttl
 * ago, with the same password and the same stored hash, is answered
 * without crypt(3).  Anything else (unknown, expired, other password,
 * changed stored hash) is a miss and pays the full check; only successful
 * checks are stored, so a wrong password always costs the full hash and
 * the failure delay, and can neither fill nor poison the cache.
 *
 * What is kept: no user name, no password.  Per entry
 *   user tag     HMAC-SHA256(k, "U" user), first 16 bytes (the key)
 *   password     HMAC-SHA256(k, "P" len user len pass), 32 bytes
 *   stored hash  HMAC-SHA256(k, "H" hash), first 8 bytes (fingerprint)
 *   expiry       CLOCK_MONOTONIC ms, 8 bytes
 * = 64 bytes per entry, one cache line; the table is allocated whole at
 * creation (max_entries * 64 bytes: 640 KB for the default 10000, 640 MB
 * for the largest allowed 10000000) plus 64 striped mutexes.  k is 32
 * bytes from RAND_bytes, made at creation, held only inside OpenSSL's HMAC
 * context and never written anywhere.  The user name is bound into the
 * password MAC, so an entry can only ever vouch for its own user.
 *
 * Layout: set-associative, 16 slots per bucket, bucket = keyed tag mod
 * buckets (so bucket collisions cannot be chosen), one of 64 mutexes per
 * bucket.  Insert replaces the user's own slot, else an empty or expired
 * one, else the oldest in the bucket: O(1), never more than max_entries
 * entries.  With as many active users as max_entries about 90% stay cached
 * (the others land in full buckets); size it ~1.2x the active users.
 * Evicted, voided and freed entries are cleared with OPENSSL_cleanse.
 *
 * Security stance: a hit needs a constant-time match (CRYPTO_memcmp) of
 * the password MAC; expiry is absolute (a hit does not extend it), so a
 * password changed in the file takes effect after ttl at most.  Whoever
 * can read this process's memory can test guesses for a cached user at
 * HMAC speed instead of yescrypt speed: keep core dumps off.  Pure: no
 * clock (callers pass now_ms), no logging.  Thread-safe.
 */
#ifndef MSAPROXY_AUTH_AUTH_CACHE_H
#define MSAPROXY_AUTH_AUTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth_cache;

/* ttl_ms == 0 or max_entries == 0 gives a disabled cache (every check
 * misses, stores are ignored, no table).  NULL with err set on failure. */
struct auth_cache *auth_cache_new(uint64_t ttl_ms, size_t max_entries,
				  char *err, size_t errlen);
/* Clears every entry and the key.  NULL is fine. */
void auth_cache_free(struct auth_cache *cache);

/*
 * true when user logged in with exactly pass less than ttl before now_ms
 * while its stored hash was stored (NULL: none known, same as "").  A
 * stale entry (expired, or stored hash changed) is dropped; one with
 * another password is kept: the caller runs the full check, which may
 * store the new one.  A NULL or disabled cache always misses.
 */
bool auth_cache_check(struct auth_cache *cache, const char *user,
		      const char *pass, const char *stored, uint64_t now_ms);
/* Remember a successful full check made at now_ms, for ttl. */
void auth_cache_store(struct auth_cache *cache, const char *user,
		      const char *pass, const char *stored, uint64_t now_ms);

/* Entries held (expired ones included until replaced): for tests and
 * stats, O(max_entries). */
size_t auth_cache_count(struct auth_cache *cache);
/* The bound given at creation, 0 when disabled. */
size_t auth_cache_capacity(const struct auth_cache *cache);

#endif
