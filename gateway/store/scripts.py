"""The Lua scripts: each one atomic, each one's KEYS in a single hash slot (see keys.py).

Python owns the job logic; scripts only guard atomicity (compare-and-set on a version)
and perform the side effects that must happen in the same step.
"""

from __future__ import annotations

# KEYS: job, idempotency, polls. ARGV: doc, status, ttl_ms, has_idem, idem_value,
# idem_ttl_ms, poll_due_ms, job_id, tenant. Returns the existing idempotency value or nil.
# The tenant gets a field of its own so metrics can count queued jobs without the doc.
CREATE_JOB = """
if ARGV[4] == '1' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return existing end
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
end
redis.call('HSET', KEYS[1], 'v', 1, 's', ARGV[2], 'doc', ARGV[1], 't', ARGV[9])
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
# action ('done', 'retry', 'dead'), retry_due_ms, job_id, now_ms, group, retention_ms.
# Dead letters older than the retention go as new ones arrive: the set never outgrows it.
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
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[8]) - tonumber(ARGV[10]))
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
# per candidate: cap, need, version (-1: do not check), head (members to read back), and
# `need` members. Stops at a candidate whose version differs from the one the choice was
# made on (its load changed since: the caller re-decides on the fresh state), else reserves
# on the first with room. Returns {status (1 reserved, 2 changed, 0 none had room), index,
# then per candidate looked at: {count, work, version, head}}.
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
  local version, k = tonumber(ARGV[pos + 2]), tonumber(ARGV[pos + 3])
  expire(res, start, load)
  settle(res, load)
  local v = tonumber(redis.call('HGET', load, 'v') or '0')
  if version >= 0 and version ~= v then
    out[1], out[2] = 2, i
    out[#out + 1] = state(res, start, load, k)
    return out
  end
  if redis.call('ZCARD', res) + need <= cap then
    local w = 0
    for j = 1, need do
      local m = ARGV[pos + 3 + j]
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
  pos = pos + 4 + need
end
return out
"""
)

# KEYS: res, start, load of one backend. ARGV: head, then members. Returns its state.
RELEASE = (
    _NOW
    + _LOAD
    + """
local w, removed = 0, 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
    w = w + work_of(ARGV[i])
    removed = removed + 1
  end
end
if removed > 0 then
  redis.call('HINCRBYFLOAT', KEYS[3], 'w', -w)
  redis.call('HINCRBY', KEYS[3], 'v', 1)
  settle(KEYS[1], KEYS[3])
end
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

# KEYS: bucket. ARGV: interval_ms (1/rate), tolerance_ms ((burst-1) * interval).
# GCRA: returns 0 when allowed, else milliseconds until a request would be.
RATE_LIMIT = (
    _NOW
    + """
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
# each interval's midpoint, upper quartile (routing.load.peak_overlap).
# Returns {speed or false, parallelism or false}.
LEARN = """
local out = {false, false}
local seen = tonumber(ARGV[2])
if seen then
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '')
  local alpha = tonumber(ARGV[3])
  local value = seen
  if old then
    value = (1 - alpha) * old + alpha * math.min(math.max(seen, old / 4), old * 4)
  end
  redis.call('HSET', KEYS[1], ARGV[1], value)
  out[1] = tostring(value)
end
local s, e = tonumber(ARGV[4]), tonumber(ARGV[5])
if s and e and e > s then
  redis.call('ZADD', KEYS[3], e, s .. ':' .. e .. ':' .. ARGV[7])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[6]) - 1)
  local spans = {}
  for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local a, b = string.match(m, '^([^:]+):([^:]+):')
    spans[#spans + 1] = {tonumber(a), tonumber(b)}
  end
  local counts = {}
  for _, x in ipairs(spans) do
    local mid = (x[1] + x[2]) / 2
    local count = 0
    for _, y in ipairs(spans) do
      if y[1] <= mid and mid < y[2] then count = count + 1 end
    end
    counts[#counts + 1] = count
  end
  table.sort(counts, function(a, b) return a > b end)
  local best = counts[math.floor(#counts / 4) + 1]
  redis.call('HSET', KEYS[2], ARGV[1], best)
  out[2] = best
end
return out
"""

# The gateway queue: priority classes, then weighted start-time fair queuing (SFQ) across
# tenants within a class, in one sorted set. A job's start tag is the later of its class's
# virtual time and its tenant's last finish tag; its finish tag is start + 1/weight, so a
# tenant of weight 3 gets three places in line for every one of a tenant of weight 1, and a
# burst interleaves with everyone else instead of going first. The score is
# class * queue_class_span + start: every job of a higher class (lower index) pops first.
# KEYS: queue zset, tenant finish tags, class virtual times.
# ARGV: job_id, tenant, bound, class index, weight.
queue_class_span = 10**12  # lowercase: not a script
QUEUE_PUSH = f"""
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
local field = ARGV[4] .. ':' .. ARGV[2]
local vnow = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
local finish = tonumber(redis.call('HGET', KEYS[2], field) or '0')
local start = math.max(vnow, finish)
redis.call('HSET', KEYS[2], field, start + 1 / tonumber(ARGV[5]))
redis.call('ZADD', KEYS[1], tonumber(ARGV[4]) * {queue_class_span} + start, ARGV[1])
return 1
"""

_SERVED = f"""
local function served(score)
  local class = math.floor(score / {queue_class_span})
  local start = score - class * {queue_class_span}
  local field = string.format('%d', class)
  if start > tonumber(redis.call('HGET', KEYS[2], field) or '0') then
    redis.call('HSET', KEYS[2], field, start)
  end
end
"""

# KEYS: queue zset, class virtual times. ARGV: count. Pops the first jobs in line, with
# their scores; each class's virtual time moves forward to the start tag it served.
QUEUE_POP = (
    _SERVED
    + """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
for i = 2, #popped, 2 do served(tonumber(popped[i])) end
return popped
"""
)

# KEYS: queue zset, class clocks. ARGV: job_id. Takes one job out of line (the queue
# runner chose it among the first few, see gateway/queue_runner.py); its class's virtual
# time moves as QUEUE_POP's would. Returns its score, or false if another instance took it.
QUEUE_TAKE = (
    _SERVED
    + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return false end
redis.call('ZREM', KEYS[1], ARGV[1])
served(tonumber(score))
return score
"""
)

# KEYS: job, idempotency (or the job key again), polls. ARGV: job_id. Forgets a job that
# was never accepted (the gateway queue was full): the client got a 429, not a 202.
DELETE_JOB = """
redis.call('DEL', KEYS[1])
if KEYS[2] ~= KEYS[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS: the tune-load hash. ARGV: backend, epoch ms when its newest training should end.
# Keeps the later of the stored and the given time.
TUNE_LOAD = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""

# KEYS: the tenant's in-flight set, its daily image counter (both `{t:<tenant>}`).
# ARGV: now_ms, job_id, expiry_ms, concurrency (0: none), images, daily limit (0: none),
# daily ttl_ms. A member expires at its job's deadline, when the job ends by then anyway:
# a crash between admission and the job's end cannot hold a slot for ever.
# Returns {0, 0} when admitted, {1, in flight} over concurrency, {2, images used} over daily.
QUOTA_ADMIT = """
local cap = tonumber(ARGV[4])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  local used = redis.call('ZCARD', KEYS[1])
  if used >= cap then return {1, used} end
end
local daily = tonumber(ARGV[6])
if daily > 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used + tonumber(ARGV[5]) > daily then return {2, used} end
  redis.call('INCRBY', KEYS[2], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
if cap > 0 then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2]) end
return {0, 0}
"""

# KEYS: the tenant's in-flight set, its daily image counter. ARGV: job_id, images to give
# back (0: none). Undoes an admission whose job was refused after all (queue full, replay).
QUOTA_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('DECRBY', KEYS[2], ARGV[2]) < 0 then redis.call('SET', KEYS[2], 0, 'KEEPTTL') end
end
return 1
"""

# JOB_CAS that also records the job's usage, for the change that makes a job succeed: the
# usage lands exactly once, with the transition (a duplicate webhook or a retried finish
# loses the compare-and-set and records nothing).
# Extra KEYS: the shard's usage hash for (tenant, day), its spend hash for the month.
# Extra ARGV: backend, images, megapixel-steps (millionths), provider ms, cost (millionths),
# usage ttl_ms, tenant.
_RECORD_USAGE = """
local b = ARGV[9]
redis.call('HINCRBY', KEYS[4], b .. '|jobs', 1)
redis.call('HINCRBY', KEYS[4], b .. '|images', ARGV[10])
redis.call('HINCRBY', KEYS[4], b .. '|mps', ARGV[11])
redis.call('HINCRBY', KEYS[4], b .. '|ms', ARGV[12])
redis.call('HINCRBY', KEYS[4], b .. '|cost', ARGV[13])
redis.call('PEXPIRE', KEYS[4], ARGV[14])
redis.call('HINCRBY', KEYS[5], ARGV[15], ARGV[13])
redis.call('PEXPIRE', KEYS[5], ARGV[14])
"""
assert JOB_CAS.endswith("return nv\n")
JOB_CAS_USAGE = JOB_CAS.removesuffix("return nv\n") + _RECORD_USAGE + "return nv\n"
