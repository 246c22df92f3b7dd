"""Tunes in the store: create (with idempotency), read, list, compare-and-set, delete.

A tune lives in its id's job shard (`{j<hex>}`), so the job scripts serve it as they are:
`CREATE_JOB`, `JOB_CAS` (which also enqueues the client webhook on the shard's delivery
stream) and `DELIVERY_CAS`. Each script's keys stay in one slot (Redis Cluster-safe); the
per-tenant listing index is written by single-key commands of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.ids import SHARDS, shard_of
from gateway.store import keys
from gateway.store.connect import Store
from gateway.store.jobs import Conflict, DeliveryAction, PollChange
from gateway.tunes.model import TuneRecord, TuneStatus

MAX_LIST = 100


@dataclass(frozen=True)
class VersionedTune:
    version: int
    record: TuneRecord


class TuneStore:
    def __init__(self, store: Store, *, retention: float, training_timeout: float) -> None:
        self._store = store
        self._retention = retention
        self._live_ttl = training_timeout + retention

    def _ttl_ms(self, record: TuneRecord) -> int:
        """Kept while it may train, then until it expires at the provider plus retention."""
        ttl = self._live_ttl
        if record.status.final:
            ttl = self._retention
            if record.status is TuneStatus.SUCCEEDED and record.expires_at is not None:
                ttl += max(0.0, record.expires_at.timestamp() - time.time())
        return int(ttl * 1000)

    async def create(
        self,
        record: TuneRecord,
        *,
        poll_due: float,
        idempotency: tuple[str, str] | None,
        ttl: float,
    ) -> str | None:
        """Store a new tune; with an idempotency (key, value) already taken, return its value."""
        shard = shard_of(record.id)
        idem_key, idem_value = idempotency or ("", "")
        existing = await self._store.run(
            "CREATE_JOB",
            [
                keys.tune(record.id),
                keys.idempotency(shard, record.tenant, f"tune:{idem_key}")
                if idempotency
                else keys.tune(record.id),
                keys.tune_polls(shard),
            ],
            [
                record.model_dump_json(),
                record.status.value,
                self._ttl_ms(record),
                "1" if idempotency else "0",
                idem_value,
                int(ttl * 1000),
                int(poll_due * 1000),
                record.id,
                record.tenant,
            ],
        )
        if existing:
            return str(existing.decode())
        index = keys.tune_index(record.tenant)
        await self._store.redis.zadd(index, {record.id: record.created_at.timestamp()})
        await self._prune(index)
        return None

    async def _prune(self, index: str, count: int = 8) -> None:
        """Drop a few of the oldest index entries whose tunes expired: the index stays
        bounded by the tunes that exist, even for a tenant that never lists them."""
        reply: Any = await self._store.redis.zrange(index, 0, count - 1)
        oldest: list[bytes] = reply
        if not oldest:
            return
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for member in oldest:
                pipe.exists(keys.tune(member.decode()))
            alive = await pipe.execute()
        await self._forget(index, [m for m, live in zip(oldest, alive, strict=True) if not live])

    async def get(self, tune_id: str) -> VersionedTune | None:
        version, doc = await self._store.command("HMGET", keys.tune(tune_id), "v", "doc")
        if version is None or doc is None:
            return None
        return VersionedTune(int(version), TuneRecord.model_validate_json(doc))

    async def page(
        self, tenant: str, *, before: float | None, limit: int
    ) -> tuple[list[TuneRecord], float | None]:
        """The tenant's tunes created before `before` (epoch seconds), newest first.

        Returns the page and the cursor of the next one (None at the end). Tunes that
        expired from the store leave the index as they are met.
        """
        index = keys.tune_index(tenant)
        top = "+inf" if before is None else f"({before!r}"
        found: list[TuneRecord] = []
        cursor = 0.0
        while True:
            reply: Any = await self._store.redis.zrevrangebyscore(
                index, top, "-inf", start=0, num=limit + 1, withscores=True
            )
            page: list[tuple[bytes, float]] = reply
            gone: list[bytes] = []
            for member, score in page:
                current = await self.get(member.decode())
                if current is None:
                    gone.append(member)
                    continue
                if len(found) == limit:
                    await self._forget(index, gone)
                    return found, cursor
                found.append(current.record)
                cursor = score
            await self._forget(index, gone)
            if len(page) < limit + 1:
                return found, None
            top = f"({page[-1][1]!r}"

    async def _forget(self, index: str, members: list[bytes]) -> None:
        if members:
            await self._store.redis.zrem(index, *members)

    async def save(
        self,
        current: VersionedTune,
        record: TuneRecord,
        *,
        poll: PollChange = "keep",
        delivery_body: bytes | None = None,
        channel: str = "",
    ) -> VersionedTune | None:
        """Write `record` if the tune is still at `current.version` (else `Conflict`)."""
        shard = shard_of(record.id)
        poll_arg = (
            {"keep": "", "remove": "-"}.get(poll, "")
            if isinstance(poll, str)
            else str(int(poll * 1000))
        )
        version = await self._store.run(
            "JOB_CAS",
            [keys.tune(record.id), keys.tune_polls(shard), keys.deliveries(shard)],
            [
                current.version,
                record.model_dump_json(),
                record.status.value,
                self._ttl_ms(record),
                poll_arg,
                record.id,
                channel,
                delivery_body or b"",
            ],
        )
        if version == 0:
            raise Conflict(record.id)
        if version < 0:
            return None
        return VersionedTune(int(version), record)

    async def delete(self, record: TuneRecord) -> None:
        shard = shard_of(record.id)
        await self._store.run(
            "DELETE_JOB", [keys.tune(record.id), keys.tune(record.id), keys.tune_polls(shard)],
            [record.id],
        )  # fmt: skip
        await self._store.redis.zrem(keys.tune_index(record.tenant), record.id)

    async def claim_polls(self, now: float, lease: float, limit: int) -> list[str]:
        """Claim due tunes across all shards, pushing each a lease ahead (one owner each)."""
        args = [int(now * 1000), int(lease * 1000), limit]
        replies = await self._store.run_each(
            "CLAIM_POLLS", [([keys.tune_polls(shard)], args) for shard in range(SHARDS)]
        )
        return [tune_id.decode() for reply in replies for tune_id in reply]

    async def schedule(self, tune_id: str, due: float) -> None:
        await self._store.redis.zadd(keys.tune_polls(shard_of(tune_id)), {tune_id: int(due * 1000)})

    async def unschedule(self, tune_id: str) -> None:
        await self._store.redis.zrem(keys.tune_polls(shard_of(tune_id)), tune_id)

    # -- the relay's side (see gateway/relay/sources.py) -------------------------------

    async def delivery_body(self, tune_id: str) -> bytes | None:
        body = await self._store.redis.hget(keys.tune(tune_id), "body")
        return body if isinstance(body, bytes) else None

    async def for_delivery(self, tune_id: str) -> tuple[VersionedTune | None, bytes | None]:
        """The tune and its webhook body, in one read (the relay needs both)."""
        version, doc, body = await self._store.command(
            "HMGET", keys.tune(tune_id), "v", "doc", "body"
        )
        if version is None or doc is None:
            return None, None
        found = VersionedTune(int(version), TuneRecord.model_validate_json(doc))
        return found, body if isinstance(body, bytes) else None

    async def save_delivery(
        self,
        current: VersionedTune,
        record: TuneRecord,
        *,
        entry_id: str,
        action: DeliveryAction,
        retry_due: float = 0.0,
    ) -> VersionedTune | None:
        """Record a delivery attempt and acknowledge its stream entry in one step."""
        shard = shard_of(record.id)
        version = await self._store.run(
            "DELIVERY_CAS",
            [
                keys.tune(record.id),
                keys.deliveries(shard),
                keys.retries(shard),
                keys.dead_letters(shard, record.tenant),
            ],
            [
                current.version, record.model_dump_json(), self._ttl_ms(record), entry_id,
                action, int(retry_due * 1000), record.id, int(time.time() * 1000),
                keys.DELIVERY_GROUP, int(self._retention * 1000),
            ],
        )  # fmt: skip
        if version == 0:
            raise Conflict(record.id)
        if version < 0:
            return None
        return VersionedTune(int(version), record)

    async def redeliver(
        self, current: VersionedTune, record: TuneRecord, body: bytes
    ) -> VersionedTune | None:
        saved = await self.save(current, record, delivery_body=body)
        await self._store.redis.zrem(
            keys.dead_letters(shard_of(record.id), record.tenant), record.id
        )
        return saved
