"""Jobs in the store: create (with idempotency), read, and versioned compare-and-set."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from gateway.ids import SHARDS, shard_of
from gateway.jobs.model import JobRecord
from gateway.store import keys
from gateway.store.connect import Store
from gateway.store.usage import UsageEntry

DeliveryAction = Literal["done", "retry", "dead"]

# What a save does to the job's poll schedule: keep it, remove it, or set a due time.
PollChange = Literal["keep", "remove"] | float


@dataclass(frozen=True)
class Versioned:
    version: int
    record: JobRecord


class Conflict(Exception):
    """Someone else changed the job between our read and our write."""


class JobStore:
    def __init__(self, store: Store, *, retention: float, live_ttl: float) -> None:
        self._store = store
        self._retention_ms = int(retention * 1000)
        self._live_ttl_ms = int((live_ttl + retention) * 1000)

    def _ttl_ms(self, record: JobRecord) -> int:
        return self._retention_ms if record.status.final else self._live_ttl_ms

    def create(
        self,
        record: JobRecord,
        *,
        poll_due: float,
        idempotency: tuple[str, str] | None = None,
        idempotency_ttl: float = 0,
    ) -> Awaitable[bytes | None]:
        """Store a new job; with an idempotency (key, value) already taken, the reply is that
        value. Sent at once (this turn's batch), so the caller can go on before awaiting it."""
        shard = shard_of(record.id)
        idem_key, idem_value = idempotency or ("", "")
        return self._store.send(
            "CREATE_JOB",
            [
                keys.job(record.id),
                keys.idempotency(shard, record.tenant, idem_key)
                if idempotency
                else keys.job(record.id),
                keys.polls(shard),
            ],
            [
                record.model_dump_json(),
                record.status.value,
                self._ttl_ms(record),
                "1" if idempotency else "0",
                idem_value,
                int(idempotency_ttl * 1000),
                int(poll_due * 1000),
                record.id,
                record.tenant,
            ],
        )

    async def idempotent(self, shard: int | None, tenant: str, key_digest: str) -> str | None:
        """The value stored under a tenant's idempotency key, if any."""
        if shard is None:
            return None
        found = await self._store.redis.get(keys.idempotency(shard, tenant, key_digest))
        return found.decode() if isinstance(found, bytes) else None

    async def forget(self, job_id: str, tenant: str, idempotency_key: str | None) -> None:
        """Remove a job that was refused before acceptance, with its idempotency key."""
        shard = shard_of(job_id)
        idem = (
            keys.idempotency(shard, tenant, idempotency_key)
            if idempotency_key
            else keys.job(job_id)
        )
        await self._store.run("DELETE_JOB", [keys.job(job_id), idem, keys.polls(shard)], [job_id])

    async def get(self, job_id: str) -> Versioned | None:
        version, doc = await self._store.command("HMGET", keys.job(job_id), "v", "doc")
        if version is None or doc is None:
            return None
        return Versioned(int(version), JobRecord.model_validate_json(doc))

    async def delivery_body(self, job_id: str) -> bytes | None:
        body = await self._store.redis.hget(keys.job(job_id), "body")
        return body if isinstance(body, bytes) else None

    async def for_delivery(self, job_id: str) -> tuple[Versioned | None, bytes | None]:
        """The job and its webhook body, in one read (the relay needs both)."""
        version, doc, body = await self._store.command(
            "HMGET", keys.job(job_id), "v", "doc", "body"
        )
        if version is None or doc is None:
            return None, None
        found = Versioned(int(version), JobRecord.model_validate_json(doc))
        return found, body if isinstance(body, bytes) else None

    def save(
        self,
        current: Versioned,
        record: JobRecord,
        *,
        poll: PollChange = "keep",
        delivery_body: bytes | None = None,
        channel: str = "",
        usage: UsageEntry | None = None,
    ) -> Coroutine[Any, Any, Versioned | None]:
        """Write `record` if the job is still at `current.version`.

        With `usage`, the same step records it in the tenant's usage (exactly once).
        Awaited, raises `Conflict` when it changed meanwhile; returns None when the job is
        gone. Sent at once (it joins this turn's batch): what the caller sends before
        awaiting the answer shares its round trip.
        """
        shard = shard_of(record.id)
        poll_arg = (
            {"keep": "", "remove": "-"}.get(poll, "")
            if isinstance(poll, str)
            else str(int(poll * 1000))
        )
        script_keys = [keys.job(record.id), keys.polls(shard), keys.deliveries(shard)]
        args: list[str | int | bytes] = [
            current.version,
            record.model_dump_json(),
            record.status.value,
            self._ttl_ms(record),
            poll_arg,
            record.id,
            channel,
            delivery_body or b"",
        ]
        if usage is not None:
            script_keys += usage.keys(shard)
            args += usage.args()
        reply = self._store.send("JOB_CAS" if usage is None else "JOB_CAS_USAGE", script_keys, args)
        return _saved(reply, record)

    async def redeliver(
        self, current: Versioned, record: JobRecord, body: bytes
    ) -> Versioned | None:
        """Enqueue the job's webhook again (same id, same body) and take it off dead letters."""
        saved = await self.save(current, record, delivery_body=body)
        await self._store.redis.zrem(
            keys.dead_letters(shard_of(record.id), record.tenant), record.id
        )
        return saved

    async def dead_letters(self, tenant: str, since: float, limit: int) -> list[tuple[str, float]]:
        """(job id, dead-lettered at) for a tenant, oldest first, across every shard."""
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.zrangebyscore(
                    keys.dead_letters(shard, tenant), int(since * 1000), "+inf",
                    start=0, num=limit, withscores=True,
                )  # fmt: skip
            replies = await pipe.execute()
        found = [(m.decode(), score / 1000) for reply in replies for m, score in reply]
        return sorted(found, key=lambda item: item[1])[:limit]

    async def tenants_of(self, job_ids: list[str]) -> list[str | None]:
        """The tenant of each job (None when gone), in one pipelined round trip."""
        if not job_ids:
            return []
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job(job_id), "t")
            replies = await pipe.execute()
        return [r.decode() if isinstance(r, bytes) else None for r in replies]

    async def dead_letter_counts(self, tenants: list[str]) -> dict[str, int]:
        """Dead letters per tenant across every shard, in one pipelined round trip."""
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                for shard in range(SHARDS):
                    pipe.zcard(keys.dead_letters(shard, tenant))
            replies = await pipe.execute()
        return {
            tenant: sum(replies[i * SHARDS : (i + 1) * SHARDS]) for i, tenant in enumerate(tenants)
        }

    async def save_delivery(
        self,
        current: Versioned,
        record: JobRecord,
        *,
        entry_id: str,
        action: DeliveryAction,
        retry_due: float = 0.0,
    ) -> Versioned | None:
        """Record a delivery attempt and acknowledge its stream entry in one step.

        `retry` schedules the next attempt; `dead` adds the job to its tenant's
        dead letters. Raises `Conflict` like `save`.
        """
        shard = shard_of(record.id)
        reply = self._store.send(
            "DELIVERY_CAS",
            [
                keys.job(record.id),
                keys.deliveries(shard),
                keys.retries(shard),
                keys.dead_letters(shard, record.tenant),
            ],
            [
                current.version,
                record.model_dump_json(),
                self._ttl_ms(record),
                entry_id,
                action,
                int(retry_due * 1000),
                record.id,
                int(time.time() * 1000),
                keys.DELIVERY_GROUP,
                self._retention_ms,
            ],
        )
        return await _saved(reply, record)


async def _saved(reply: Awaitable[int], record: JobRecord) -> Versioned | None:
    """A compare-and-set's answer: the new version, 0 (it changed meanwhile) or < 0 (gone)."""
    version = await reply
    if version == 0:
        raise Conflict(record.id)
    if version < 0:
        return None
    return Versioned(int(version), record)
