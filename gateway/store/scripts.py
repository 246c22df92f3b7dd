"""The Lua scripts: each one atomic, each one's KEYS in a single hash slot (see keys.py).

Python owns the job logic; scripts only guard atomicity (compare-and-set on a version)
and perform the side effects that must happen in the same step.
"""

from __future__ import annotations

# The fleet's scripts live beside these; every script is registered from this module.
from gateway.store.fleet_scripts import (  # noqa: F401
    COOL_DOWN,
    FINISH,
    LEARN,
    RATE_LIMIT,
    RECORD_FAILURE,
    RECORD_SUCCESS,
    RELEASE,
    RENEW,
    RESERVE,
    SNAPSHOT,
)

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
