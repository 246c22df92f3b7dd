"""The fleet's Lua scripts: reservations on the ledger, health, rate limits, learned speed.

Each is atomic and keeps its KEYS in one hash slot (`{fleet}` or a tenant's, see keys.py);
gateway/store/scripts.py re-exports them with the job, queue and quota scripts.
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# A backend's reservations live in three keys: `res` (member -> lease expiry), `start`
# (member -> start ms: the order they are served in) and `load` (hash: `v` version, bumped by
# every change, and `w` total work), so routing reads aggregates and the first few members
# in start order: O(parallelism) per backend, never O(jobs in flight). A member is
# `track~work~started_ms~expected_end_ms` (routing.router.member).
_LOAD = """
local function work_of(m)
  return tonumber(string.match(m, '^[^~]*~([^~]*)~')) or 0
end
local function started_of(m)
  return tonumber(string.match(m, '^[^~]*~[^~]*~([^~]*)~')) or 0
end
local function expire(res, start, load)
  local gone = redis.call('ZRANGEBYSCORE', res, '-inf', now)
  if #gone == 0 then return end
  local w = 0
  for _, m in ipairs(gone) do
    redis.call('ZREM', start, m)
    w = w + work_of(m)
  end
  redis.call('ZREMRANGEBYSCORE', res, '-inf', now)
  redis.call('HINCRBYFLOAT', load, 'w', -w)
  redis.call('HINCRBY', load, 'v', 1)
end
local function settle(res, load)
  if redis.call('ZCARD', res) == 0 then redis.call('HSET', load, 'w', 0) end
end
local function state(res, start, load, k)
  local h = redis.call('HMGET', load, 'v', 'w')
  local head = {}
  if k > 0 then head = redis.call('ZRANGE', start, 0, k - 1) end
  return {redis.call('ZCARD', res), h[2] or '0', tonumber(h[1] or '0'), head}
end
"""

# KEYS: per candidate (preference order) its res, start and load keys. ARGV: lease_ms, then
# per candidate: cap, need, version (-1: do not check), the work seen with that version,
# head (members to read back), and `need` members. Stops at a candidate whose load grew
# since the version the choice was made on (another decider reserved there: the caller
# re-decides on the fresh state); a load that only shrank (releases, expired leases) leaves
# the choice at least as good, so it stands. Else reserves on the first with room.
# Returns {status (1 reserved, 2 changed, 0 none had room), index, then per candidate
# looked at: {count, work, version, head}}.
RESERVE = (
    _NOW
    + _LOAD
    + """
local expires = now + tonumber(ARGV[1])
local pos = 2
local out = {0, 0}
for i = 1, #KEYS / 3 do
  local res, start, load = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local cap, need = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1])
  local version, seen, k = tonumber(ARGV[pos + 2]), tonumber(ARGV[pos + 3]), tonumber(ARGV[pos + 4])
  expire(res, start, load)
  settle(res, load)
  local h = redis.call('HMGET', load, 'v', 'w')
  local grew = tonumber(h[2] or '0') > seen + 1e-9
  if version >= 0 and version ~= tonumber(h[1] or '0') and grew then
    out[1], out[2] = 2, i
    out[#out + 1] = state(res, start, load, k)
    return out
  end
  if redis.call('ZCARD', res) + need <= cap then
    local w = 0
    for j = 1, need do
      local m = ARGV[pos + 4 + j]
      redis.call('ZADD', res, expires, m)
      redis.call('ZADD', start, started_of(m), m)
      w = w + work_of(m)
    end
    redis.call('HINCRBYFLOAT', load, 'w', w)
    redis.call('HINCRBY', load, 'v', 1)
    out[1], out[2] = 1, i
    out[#out + 1] = state(res, start, load, k)
    return out
  end
  out[#out + 1] = state(res, start, load, k)
  pos = pos + 5 + need
end
return out
"""
)

_RELEASE = """
local function release_members(res, start, load, first)
  local w, removed = 0, 0
  for i = first, #ARGV do
    if redis.call('ZREM', res, ARGV[i]) == 1 then
      redis.call('ZREM', start, ARGV[i])
      w = w + work_of(ARGV[i])
      removed = removed + 1
    end
  end
  if removed > 0 then
    redis.call('HINCRBYFLOAT', load, 'w', -w)
    redis.call('HINCRBY', load, 'v', 1)
    settle(res, load)
  end
  return removed
end
"""

# KEYS: res, start, load of one backend. ARGV: head, then members. Returns its state.
RELEASE = (
    _NOW
    + _LOAD
    + _RELEASE
    + """
release_members(KEYS[1], KEYS[2], KEYS[3], 2)
return state(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]))
"""
)

# KEYS: per backend res, start, load, health; then the speed hash and the learned
# parallelism hash. ARGV: per backend, how many members to read in start order.
# Returns {server_now_ms, speeds (flat), parallelism (flat), then per backend:
# {count, work, version, head}, health (flat)}.
SNAPSHOT = (
    _NOW
    + _LOAD
    + """
local n = (#KEYS - 2) / 4
local out = {now, redis.call('HGETALL', KEYS[#KEYS - 1]), redis.call('HGETALL', KEYS[#KEYS])}
for i = 1, n do
  local res, start, load = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1]
  expire(res, start, load)
  settle(res, load)
  out[#out + 1] = state(res, start, load, tonumber(ARGV[i]))
  out[#out + 1] = redis.call('HGETALL', KEYS[4 * i])
end
return out
"""
)

# KEYS: reservation sets. ARGV: lease_ms, then per key a count followed by members.
# Extends leases of members that still exist (XX: a released member stays released) and
# returns, per key, the members that no longer exist.
RENEW = (
    _NOW
    + """
local expires = now + tonumber(ARGV[1])
local pos = 2
local out = {}
for i, key in ipairs(KEYS) do
  local count = tonumber(ARGV[pos])
  local missing = {}
  for j = 1, count do
    if redis.call('ZADD', key, 'XX', 'CH', expires, ARGV[pos + j]) == 0 then
      missing[#missing + 1] = ARGV[pos + j]
    end
  end
  out[i] = missing
  pos = pos + count + 1
end
return out
"""
)

# KEYS: the failing backend's health hash, then every backend's health hash (the pool).
# ARGV: threshold, base_ms, max_ms, max_share. Returns {ejected (0/1), until_ms or failures}.
RECORD_FAILURE = (
    _NOW
    + """
local h = KEYS[1]
local failures = redis.call('HINCRBY', h, 'failures', 1)
local ejected_until = tonumber(redis.call('HGET', h, 'ejected_until') or '0')
if failures < tonumber(ARGV[1]) or ejected_until > now then return {0, failures} end
local ejected = 0
for i = 2, #KEYS do
  if tonumber(redis.call('HGET', KEYS[i], 'ejected_until') or '0') > now then
    ejected = ejected + 1
  end
end
if ejected + 1 > tonumber(ARGV[4]) * (#KEYS - 1) then return {0, failures} end
local count = redis.call('HINCRBY', h, 'ejections', 1)
local duration = math.min(tonumber(ARGV[2]) * 2 ^ (count - 1), tonumber(ARGV[3]))
local until_ms = now + duration
-- Half-open once the time is up: the next failure ejects again, a success clears it.
redis.call('HSET', h, 'ejected_until', until_ms, 'failures', tonumber(ARGV[1]) - 1)
return {1, until_ms}
"""
)

# KEYS: bucket. ARGV: interval_ms (1/rate), tolerance_ms ((burst-1) * interval), and
# optionally how many tokens are wanted (default 1) and how many unused ones of an expired
# lease go back (default 0). GCRA over a run of tokens: grants as many of those wanted as
# the bucket allows now (at least one, or none). Returns {wait_ms, granted}: wait_ms 0
# when granted, else milliseconds until one token would be.
RATE_LIMIT = (
    _NOW
    + """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3] or '1')
local refund = tonumber(ARGV[4] or '0')
local tat = tonumber(redis.call('GET', KEYS[1]) or now) - refund * interval
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  if refund > 0 then
    redis.call('SET', KEYS[1], tat, 'PX', math.ceil(tat - now + interval))
  end
  return {math.ceil(allow_at - now), 0}
end
local granted = math.min(want, math.floor((now - allow_at) / interval) + 1)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now + interval))
return {0, granted}
"""
)

# KEYS: the backend's health hash. ARGV: max_ms. A success closes the half-open state; a
# long healthy spell since the last ejection forgets how often it was ejected.
RECORD_SUCCESS = (
    _NOW
    + """
redis.call('HSET', KEYS[1], 'failures', 0)
local ejected_until = tonumber(redis.call('HGET', KEYS[1], 'ejected_until') or '0')
if ejected_until > 0 and now - ejected_until > tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'ejections', 0)
end
return 1
"""
)

# KEYS: the backend's health hash. ARGV: ms. Extends (never shortens) a 429 cool-down.
COOL_DOWN = (
    _NOW
    + """
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'cooldown_until') or '0')
if until_ms > current then redis.call('HSET', KEYS[1], 'cooldown_until', until_ms) end
return until_ms
"""
)

# KEYS: the speed hash, the learned parallelism hash, the backend's recent service
# intervals. ARGV: backend, observed seconds per unit ('' if none), alpha, service start and
# end ms ('' if the provider did not say), window (intervals kept), a unique tag. Speed is
# a bounded EWMA; parallelism is how many of the recent intervals run at once, counted at
# each interval's midpoint, upper quartile (routing.load.peak_overlap). Counted by a sweep,
# not pair by pair: at a midpoint, the intervals running are those started by then less
# those ended by then, two binary searches in sorted starts and ends. The same counts in
# O(n log n); the pairwise count cost ~300 us of Redis per finished job at a window of 48.
# Returns {speed or false, parallelism or false}.
_LEARN = """
local function at_most(sorted, x)
  local lo, hi = 0, #sorted
  while lo < hi do
    local m = math.floor((lo + hi + 1) / 2)
    if sorted[m] <= x then lo = m else hi = m - 1 end
  end
  return lo
end
local function learn(speeds, par, service, o)
  local out = {false, false}
  local seen = tonumber(ARGV[o + 2])
  if seen then
    local old = tonumber(redis.call('HGET', speeds, ARGV[o + 1]) or '')
    local alpha = tonumber(ARGV[o + 3])
    local value = seen
    if old then
      value = (1 - alpha) * old + alpha * math.min(math.max(seen, old / 4), old * 4)
    end
    redis.call('HSET', speeds, ARGV[o + 1], value)
    out[1] = tostring(value)
  end
  local s, e = tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5])
  if s and e and e > s then
    redis.call('ZADD', service, e, s .. ':' .. e .. ':' .. ARGV[o + 7])
    redis.call('ZREMRANGEBYRANK', service, 0, -tonumber(ARGV[o + 6]) - 1)
    local starts, ends, mids = {}, {}, {}
    for _, m in ipairs(redis.call('ZRANGE', service, 0, -1)) do  -- in order of their ends
      local a, b = string.match(m, '^([^:]+):([^:]+):')
      a, b = tonumber(a), tonumber(b)
      starts[#starts + 1], ends[#ends + 1], mids[#mids + 1] = a, b, (a + b) / 2
    end
    table.sort(starts)
    table.sort(ends)
    local counts = {}
    for i, mid in ipairs(mids) do
      counts[i] = at_most(starts, mid) - at_most(ends, mid)  -- start <= mid < end
    end
    table.sort(counts)
    local best = counts[#counts - math.floor(#counts / 4)]  -- the upper quartile
    redis.call('HSET', par, ARGV[o + 1], best)
    out[2] = best
  end
  return out
end
"""

LEARN = (
    _LEARN
    + """
return learn(KEYS[1], KEYS[2], KEYS[3], 0)
"""
)

# A job's end in one round trip: RELEASE then LEARN (every key is the fleet's). Safe to run
# twice: the job is learned from only by the call that released its members (the gateway
# sends it with the job's final save, before knowing the save landed; a save that lost a
# race is retried, and the winner ends the job too). A job whose members had already
# lapsed (their lease ran out) is not learned from.
# KEYS: res, start, load of the backend, then LEARN's three keys. ARGV: head, LEARN's seven
# arguments, then the members. Returns {state, speed or false, parallelism or false}.
FINISH = (
    _NOW
    + _LOAD
    + _RELEASE
    + _LEARN
    + """
local learned = {false, false}
if release_members(KEYS[1], KEYS[2], KEYS[3], 9) > 0 then
  learned = learn(KEYS[4], KEYS[5], KEYS[6], 1)
end
return {state(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1])), learned[1], learned[2]}
"""
)
