"""The Lua scripts: each one atomic, each one's KEYS in a single hash slot (see keys.py).

Python owns the job logic; scripts only guard atomicity (compare-and-set on a version)
and perform the side effects that must happen in the same step.
"""

from __future__ import annotations

# KEYS: job, idempotency, polls. ARGV: doc, status, ttl_ms, has_idem, idem_value,
# idem_ttl_ms, poll_due_ms, job_id. Returns the existing idempotency value or nil.
CREATE_JOB = """
if ARGV[4] == '1' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return existing end
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
end
redis.call('HSET', KEYS[1], 'v', 1, 's', ARGV[2], 'doc', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[8])
return false
"""

# KEYS: job, polls, deliveries. ARGV: expected_v, doc, status, ttl_ms, poll ('' keep,
# '-' remove, else due ms), job_id, events channel ('' for none), delivery body ('' for none).
# Returns the new version, 0 on a version conflict, -1 when the job is gone.
JOB_CAS = """
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
local nv = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'v', nv, 's', ARGV[3], 'doc', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[5] == '-' then
  redis.call('ZREM', KEYS[2], ARGV[6])
elseif ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'body', ARGV[8])
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[6])
end
if ARGV[7] ~= '' then
  redis.call('PUBLISH', ARGV[7], ARGV[6] .. ' ' .. ARGV[3])
end
return nv
"""

# KEYS: job, deliveries, retries, dead letters. ARGV: expected_v, doc, ttl_ms, entry_id,
# action ('done', 'retry', 'dead'), retry_due_ms, job_id, now_ms, group.
DELIVERY_CAS = """
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[4] ~= '' and (not v or v == ARGV[1]) then
  redis.call('XACK', KEYS[2], ARGV[9], ARGV[4])
  redis.call('XDEL', KEYS[2], ARGV[4])
end
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
local nv = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'v', nv, 'doc', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[5] == 'retry' then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[7])
elseif ARGV[5] == 'dead' then
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
end
return nv
"""

# KEYS: retries, deliveries. ARGV: now_ms, limit. Moves due retries onto the stream.
PROMOTE_RETRIES = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'job', id)
end
return #due
"""

# KEYS: polls. ARGV: now_ms, lease_ms, limit. Claims due jobs by pushing them a lease ahead.
CLAIM_POLLS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], until_ms, id) end
return due
"""

# KEYS: reservation sets of the candidates, in preference order. ARGV: lease_ms, k,
# member_1..member_k, then (cap, need) per candidate. Expired leases are dropped first.
# Returns {index (1-based, 0 if none had room), in-flight per candidate checked...}.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[1])
local k = tonumber(ARGV[2])
local out = {0}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local used = redis.call('ZCARD', key)
  local cap = tonumber(ARGV[2 + k + 2 * i - 1])
  local need = tonumber(ARGV[2 + k + 2 * i])
  if used + need <= cap then
    for j = 1, need do redis.call('ZADD', key, expires, ARGV[2 + j]) end
    out[1] = i
    out[#out + 1] = used + need
    return out
  end
  out[#out + 1] = used
end
return out
"""

# KEYS: reservation sets, then health hashes, one per backend in the same order.
# Returns {server_now_ms, then per backend: in_flight, health hash as a flat list}.
SNAPSHOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS / 2
local out = {now}
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  out[#out + 1] = redis.call('ZCARD', KEYS[i])
  out[#out + 1] = redis.call('HGETALL', KEYS[n + i])
end
return out
"""

# KEYS: reservation sets. ARGV: lease_ms, then per key a count followed by members.
# Extends leases of members that still exist (XX: a released member stays released) and
# returns, per key, the members that no longer exist.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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

# KEYS: the failing backend's health hash, then every backend's health hash (the pool).
# ARGV: threshold, base_ms, max_ms, max_share. Returns {ejected (0/1), until_ms or failures}.
RECORD_FAILURE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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

# KEYS: bucket. ARGV: interval_ms (1/rate), tolerance_ms ((burst-1) * interval).
# GCRA: returns 0 when allowed, else milliseconds until a request would be.
RATE_LIMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return math.ceil(allow_at - now) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now + interval))
return 0
"""
