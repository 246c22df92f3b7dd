"""Every Redis key name, in one place.

Hash tags keep each Lua script's keys in one Cluster slot:
- `{j<hex>}`: one of 16 job shards; a job, its idempotency key, its shard's poll schedule,
  delivery stream, retry schedule and dead-letter sets live together, so finishing a job
  and enqueueing its webhook is one atomic script;
- `{fleet}`: backend reservations and health, so a reservation across candidates is one
  atomic script;
- `{queue}`: the gateway queue (fair across tenants) for jobs no backend can take yet;
- `{rl:<tenant>}`: a tenant's rate-limit bucket;
- tunes live in the job shards too (`{j<hex>}:tune:<id>`, with their own poll schedule),
  so their client webhooks go through the same delivery streams; `{tunes:<tenant>}`
  indexes a tenant's tunes by creation time for listing.
- `{t:<tenant>}`: a tenant's quota counters (jobs in flight, images today), so admission
  is one atomic script.

A job's usage is recorded in its own shard (`{j<hex>}:usage:...`) by the same script that
makes it final, so it is counted exactly once; reading usage sums the 16 shards.
"""

from __future__ import annotations

from gateway.ids import shard_of

PREFIX = "gw"
EVENTS_CHANNEL = f"{PREFIX}:events"
DELIVERY_GROUP = "relay"


def _shard(shard: int) -> str:
    return f"{PREFIX}:{{j{shard:x}}}"


def job(job_id: str) -> str:
    return f"{_shard(shard_of(job_id))}:job:{job_id}"


def idempotency(shard: int, tenant: str, key_digest: str) -> str:
    return f"{_shard(shard)}:idem:{tenant}:{key_digest}"


def polls(shard: int) -> str:
    return f"{_shard(shard)}:polls"


def deliveries(shard: int) -> str:
    return f"{_shard(shard)}:deliveries"


def retries(shard: int) -> str:
    return f"{_shard(shard)}:retries"


def dead_letters(shard: int, tenant: str) -> str:
    return f"{_shard(shard)}:dead:{tenant}"


def reservations(backend: str) -> str:
    return f"{PREFIX}:{{fleet}}:res:{backend}"


def reservation_starts(backend: str) -> str:
    """The same members scored by start time: the order the backend serves them in."""
    return f"{PREFIX}:{{fleet}}:start:{backend}"


def reservation_load(backend: str) -> str:
    """Aggregates of the reservations: version and total work."""
    return f"{PREFIX}:{{fleet}}:load:{backend}"


def service_times(backend: str) -> str:
    """Recent service intervals the backend reported, for its learned parallelism."""
    return f"{PREFIX}:{{fleet}}:service:{backend}"


def parallelism() -> str:
    return f"{PREFIX}:{{fleet}}:parallelism"


def health(backend: str) -> str:
    return f"{PREFIX}:{{fleet}}:health:{backend}"


def rate_bucket(tenant: str) -> str:
    return f"{PREFIX}:{{rl:{tenant}}}:bucket"


def speeds() -> str:
    return f"{PREFIX}:{{fleet}}:speed"


def queue() -> str:
    return f"{PREFIX}:{{queue}}:jobs"


def queue_tenants() -> str:
    """Each (class, tenant)'s last finish tag: field `<class index>:<tenant>`."""
    return f"{PREFIX}:{{queue}}:tenant-finish"


def tune(tune_id: str) -> str:
    return f"{_shard(shard_of(tune_id))}:tune:{tune_id}"


def tune_polls(shard: int) -> str:
    return f"{_shard(shard)}:tune-polls"


def tune_index(tenant: str) -> str:
    return f"{PREFIX}:{{tunes:{tenant}}}:index"


def tune_load() -> str:
    """Per backend: epoch seconds when the last training it accepted should be done."""
    return f"{PREFIX}:{{fleet}}:tune-load"


def queue_clocks() -> str:
    """Each priority class's virtual time: field `<class index>`."""
    return f"{PREFIX}:{{queue}}:virtual-times"


def tenant_inflight(tenant: str) -> str:
    return f"{PREFIX}:{{t:{tenant}}}:inflight"


def tenant_daily(tenant: str, window: int) -> str:
    return f"{PREFIX}:{{t:{tenant}}}:daily:{window}"


def usage_day(shard: int, tenant: str, day: str) -> str:
    return f"{_shard(shard)}:usage:{tenant}:{day}"


def spend_month(shard: int, month: str) -> str:
    return f"{_shard(shard)}:spend:{month}"
