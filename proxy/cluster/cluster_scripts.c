/*
 * cluster_scripts.c - the server-side scripts behind every cluster call.
 * Each runs atomically inside Redis, so a take on one node and a take on
 * another never both see the same tokens.  They mirror limits/ratelimit.c:
 * buckets are GCRA times ("tat"), here in microseconds of Redis's own
 * clock (TIME), so the nodes' clocks do not matter; the quota is a fixed
 * window (a hash of its end and the units used).
 *
 * Keys (docs/CLUSTER.md): <prefix>u:{<user>}:buckets (a hash: every
 * bucket of the user and the quota window), <prefix>u:{<user>}:login and
 * <prefix>n:{<network>}:auth.  Every key expires when what it holds is
 * back to nothing, so an idle user costs nothing.
 */
#include "cluster/cluster_scripts.h"

/* Common head: the time, a number formatter and the rates of kind i (1..4)
 * from ARGV (amount, count, period_ms, burst from ARGV[2 + 4 (i - 1)]). */
#define SCRIPT_HEAD                                                            \
	"if redis.replicate_commands then redis.replicate_commands() end\n"    \
	"local t = redis.call('TIME')\n"                                       \
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"              \
	"local function num(v) if v then return tonumber(v) end "              \
	"return nil end\n"                                                     \
	"local function fmt(x) return string.format('%.0f', x) end\n"          \
	"local function ttl(x) return math.ceil((x - now) / 1000) + 1000 "     \
	"end\n"                                                                \
	"local function rate(i)\n"                                             \
	"  local b = 2 + 4 * (i - 1)\n"                                        \
	"  return tonumber(ARGV[b]), tonumber(ARGV[b + 1]),\n"                 \
	"         tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])\n"              \
	"end\n"

/*
 * A user's buckets, one hash: fields m, r, b (the GCRA times of
 * messages, recipients, bytes) and qe, qu (the quota window's end and the
 * units used in it), so a call is one HMGET and at most one HSET and one
 * PEXPIRE, whatever it touches.  KEYS[1]: the hash.  ARGV[1]: take, give,
 * charge or peek; then the four kinds' rates.  take returns {kind,
 * retry_ms}: kind 4 when everything was taken, else the kind (0..3) that
 * refused and the time until it could succeed (-1: never).  A kind asked
 * for 0 units still refuses while it is in debt (bytes charged after the
 * fact).  peek returns what each kind could take now (-1: not limited).
 * The hash expires when its last bucket is full again and its window
 * over.
 */
const char cluster_script_bucket[] = SCRIPT_HEAD
	"local mode = ARGV[1]\n"
	"local f = redis.call('HMGET', KEYS[1], 'm', 'r', 'b', 'qe', 'qu')\n"
	"local tats = {num(f[1]) or 0, num(f[2]) or 0, num(f[3]) or 0}\n"
	"local qend, used = num(f[4]) or 0, num(f[5]) or 0\n"
	"local names = {'m', 'r', 'b'}\n"
	"local set, out, changed = {}, {}, false\n"
	"for i = 1, 4 do\n"
	"  local n, count, period, burst = rate(i)\n"
	"  if count > 0 and i == 4 then\n"
	"    if qend <= now then qend = now + period * 1000; used = 0 end\n"
	"    if mode == 'take' and n > 0 then\n"
	"      if n > count then return {3, -1} end\n"
	"      if used + n > count then\n"
	"        return {3, math.ceil((qend - now) / 1000)}\n"
	"      end\n"
	"      used = used + n; changed = true\n"
	"    elseif mode == 'give' and n > 0 and f[5] then\n"
	"      used = math.max(used - n, 0); changed = true\n"
	"    end\n"
	"    out[4] = count - used\n"
	"  elseif count > 0 then\n"
	"    local one = period * 1000 / count\n"
	"    local tol = burst * one\n"
	"    local tat = tats[i]\n"
	"    if mode == 'take' then\n"
	"      if n > burst then return {i - 1, -1} end\n"
	"      local nxt = math.max(tat, now) + math.floor(n * one)\n"
	"      if nxt - now > tol then\n"
	"        return {i - 1, math.ceil((nxt - now - tol) / 1000)}\n"
	"      end\n"
	"      if n > 0 then tats[i] = nxt; changed = true end\n"
	"    elseif mode == 'give' and n > 0 and tat > now then\n"
	"      tats[i] = math.max(tat - math.floor(n * one), now)\n"
	"      changed = true\n"
	"    elseif mode == 'charge' and n > 0 then\n"
	"      tats[i] = math.max(tat, now) + math.floor(n * one)\n"
	"      changed = true\n"
	"    end\n"
	"    local owed = math.max(tats[i] - now, 0)\n"
	"    out[i] = math.max(math.floor((tol - owed) / one), 0)\n"
	"  else\n"
	"    out[i] = -1\n"
	"  end\n"
	"end\n"
	"if mode == 'peek' then return out end\n"
	"if changed then\n"
	"  local last = math.max(tats[1], tats[2], tats[3])\n"
	"  if used > 0 then last = math.max(last, qend) end\n"
	"  if last <= now then\n"
	"    redis.call('DEL', KEYS[1])\n"
	"  else\n"
	"    redis.call('HSET', KEYS[1], 'm', fmt(tats[1]), 'r', fmt(tats[2]), "
	"'b', fmt(tats[3]), 'qe', fmt(qend), 'qu', used)\n"
	"    redis.call('PEXPIRE', KEYS[1], ttl(last))\n"
	"  end\n"
	"end\n"
	"return {4, 0}\n";

/*
 * Delivered messages' bytes for many users at once.  KEYS: the users'
 * hashes.  ARGV: per user its bytes, count, period_ms and burst (the
 * bytes rate).  Charged without a check, as the bucket script's charge;
 * each hash's expiry moves with it.  Returns how many were charged.
 */
const char cluster_script_charges[] = SCRIPT_HEAD
	"local done = 0\n"
	"for i = 1, #KEYS do\n"
	"  local b0 = 4 * (i - 1)\n"
	"  local n, count, period = tonumber(ARGV[b0 + 1]), "
	"tonumber(ARGV[b0 + 2]), tonumber(ARGV[b0 + 3])\n"
	"  if count > 0 and n > 0 then\n"
	"    local f = redis.call('HMGET', KEYS[i], 'm', 'r', 'b', 'qe', "
	"'qu')\n"
	"    local one = period * 1000 / count\n"
	"    local b = math.max(num(f[3]) or 0, now) + math.floor(n * one)\n"
	"    local last = math.max(num(f[1]) or 0, num(f[2]) or 0, b)\n"
	"    if (num(f[5]) or 0) > 0 then last = math.max(last, num(f[4]) or "
	"0) "
	"end\n"
	"    redis.call('HSET', KEYS[i], 'b', fmt(b))\n"
	"    redis.call('PEXPIRE', KEYS[i], ttl(last))\n"
	"    done = done + 1\n"
	"  end\n"
	"end\n"
	"return done\n";

/*
 * A password check's verdict.  KEYS: the login's score, the network's
 * failures.  ARGV: ok (1/0); the login allowance (count, period_ms, burst),
 * the base and the most delay (ms); the network allowance (count,
 * period_ms, burst), its ban (ms), and whether the network is tracked.
 * Returns {delay_ms, ban_ms}: how long to hold this answer (from the score
 * before this attempt), and the ban the failure earned (0: none).
 */
const char cluster_script_login[] =
	"if redis.replicate_commands then redis.replicate_commands() end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local function fmt(x) return string.format('%.0f', x) end\n"
	"local function ttl(x) return math.ceil((x - now) / 1000) + 1000 "
	"end\n"
	"local a = {}\n"
	"for i = 1, #ARGV do a[i] = tonumber(ARGV[i]) end\n"
	"local ok, lcount, lperiod, lburst, base, maxd = a[1], a[2], a[3], "
	"a[4], a[5], a[6]\n"
	"local icount, iperiod, iburst, banms, tracked = a[7], a[8], a[9], "
	"a[10], a[11]\n"
	"local delay, ban = 0, 0\n"
	"if lcount > 0 then\n"
	"  local one = lperiod * 1000 / lcount\n"
	"  local tol = lburst * one\n"
	"  local v = redis.call('GET', KEYS[1])\n"
	"  local tat = v and tonumber(v) or 0\n"
	"  if tat > now and tat + one > now + tol then\n"
	"    local excess = math.ceil((tat + one - now - tol) / one)\n"
	"    if base == 0 then base = 1000 end\n"
	"    if excess > 20 then delay = maxd\n"
	"    else delay = math.min(base * 2 ^ (excess - 1), maxd) end\n"
	"  end\n"
	"  if ok == 0 then\n"
	"    local cap = now + tol + 64 * one\n"
	"    local nt = math.min(math.max(tat, now) + one, cap)\n"
	"    redis.call('SET', KEYS[1], fmt(nt), 'PX', ttl(nt))\n"
	"  end\n"
	"end\n"
	"if ok == 0 and tracked == 1 and icount > 0 then\n"
	"  local one = iperiod * 1000 / icount\n"
	"  local tol = iburst * one\n"
	"  local v = redis.call('GET', KEYS[2])\n"
	"  local tat = math.max(v and tonumber(v) or 0, now)\n"
	"  if tat + one - now <= tol then tat = tat + one end\n"
	"  if tat > now and tat - now + one > tol then\n"
	"    ban = banms\n"
	"    redis.call('DEL', KEYS[2])\n"
	"  else\n"
	"    redis.call('SET', KEYS[2], fmt(tat), 'PX', ttl(tat))\n"
	"  end\n"
	"end\n"
	"return {math.floor(delay), ban}\n";

/*
 * Bans.  KEYS[1]: the hash of bans (field: the prefix, value: "<expiry>
 * <reason>", expiry in Redis's ms, 0 for none).  ARGV: add or del, the
 * prefix, the TTL (ms, 0: none), the reason (1 manual, 2 auto), the node,
 * the channel, and for del the key of the network's failed logins.
 * A ban is never shortened (as bans.h); every change is published as
 * "add <prefix> <ttl_ms> <reason> <node>" or "del <prefix> <node>".
 * Returns the TTL that holds now (add) or 1/0 (del: was there one).
 */
const char cluster_script_ban[] =
	"if redis.replicate_commands then redis.replicate_commands() end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / "
	"1000)\n"
	"local op, net, ttl, reason, node, chan = ARGV[1], ARGV[2], "
	"tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]\n"
	"if op == 'del' then\n"
	"  local n = redis.call('HDEL', KEYS[1], net)\n"
	"  if ARGV[7] then redis.call('DEL', ARGV[7]) end\n"
	"  redis.call('PUBLISH', chan, 'del ' .. net .. ' ' .. node)\n"
	"  return n\n"
	"end\n"
	"local expiry = 0\n"
	"if ttl > 0 then expiry = now + ttl end\n"
	"local old = redis.call('HGET', KEYS[1], net)\n"
	"if old then\n"
	"  local oe = tonumber(string.match(old, '^(%d+)'))\n"
	"  if oe == 0 or (expiry ~= 0 and oe > expiry) then\n"
	"    if oe == 0 then return 0 end\n"
	"    return oe - now\n"
	"  end\n"
	"end\n"
	"redis.call('HSET', KEYS[1], net, string.format('%d %s', expiry, "
	"reason))\n"
	"redis.call('PUBLISH', chan, string.format('add %s %d %s %s', net, "
	"ttl, reason, node))\n"
	"return ttl\n";

/*
 * Every live ban, for a node that (re)connects: KEYS[1] the hash.
 * Returns {prefix, ttl_ms, reason, ...} (ttl 0: none); expired ones are
 * dropped on the way.
 */
const char cluster_script_banlist[] =
	"if redis.replicate_commands then redis.replicate_commands() end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / "
	"1000)\n"
	"local all = redis.call('HGETALL', KEYS[1])\n"
	"local out, gone = {}, {}\n"
	"for i = 1, #all, 2 do\n"
	"  local e, r = string.match(all[i + 1], '^(%d+) (%d+)$')\n"
	"  e = tonumber(e)\n"
	"  if e == nil or (e ~= 0 and e <= now) then\n"
	"    gone[#gone + 1] = all[i]\n"
	"  else\n"
	"    local ttl = 0\n"
	"    if e ~= 0 then ttl = e - now end\n"
	"    out[#out + 1] = all[i]\n"
	"    out[#out + 1] = ttl\n"
	"    out[#out + 1] = tonumber(r)\n"
	"  end\n"
	"end\n"
	"if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end\n"
	"return out\n";

/* An operator's reset: KEYS are all of a login's; returns how many went. */
const char cluster_script_reset[] =
	"local n = 0\n"
	"for i = 1, #KEYS do n = n + redis.call('DEL', KEYS[i]) end\n"
	"return n\n";

/*
 * A node's blocklist files (cluster_files.c).  KEYS[1]: the node's staging
 * set, KEYS[2]: its live set, KEYS[3]: the index hash (node -> digest).
 * ARGV: the node, the digest, the set's TTL (ms), the channel, the origin.
 * The staging set (absent when the node lists nothing) becomes the live
 * one at once, and every node hears of it.
 */
const char cluster_script_files_commit[] =
	"if redis.call('EXISTS', KEYS[1]) == 1 then\n"
	"  redis.call('RENAME', KEYS[1], KEYS[2])\n"
	"  redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
	"  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])\n"
	"else\n"
	"  redis.call('DEL', KEYS[2])\n"
	"  redis.call('HDEL', KEYS[3], ARGV[1])\n"
	"end\n"
	"redis.call('PUBLISH', ARGV[4], 'files ' .. ARGV[5])\n"
	"return 1\n";

/*
 * The nodes whose sets live: KEYS[1] the index, ARGV[1] the sets' names
 * up to the node ("<prefix>files:{").  Returns {node, digest, ...}; the
 * index loses the nodes whose set expired.
 */
const char cluster_script_files_index[] =
	"local all = redis.call('HGETALL', KEYS[1])\n"
	"local out = {}\n"
	"for i = 1, #all, 2 do\n"
	"  if redis.call('EXISTS', ARGV[1] .. all[i] .. '}') == 1 then\n"
	"    out[#out + 1] = all[i]\n"
	"    out[#out + 1] = all[i + 1]\n"
	"  else\n"
	"    redis.call('HDEL', KEYS[1], all[i])\n"
	"  end\n"
	"end\n"
	"return out\n";
