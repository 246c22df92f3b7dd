"""Per-shard schedules: job polls, delivery retries, and the delivery stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Set
from typing import Any

from redis.exceptions import ResponseError

from gateway.ids import SHARDS, shard_of
from gateway.store import keys
from gateway.store.connect import Store

DeliveryEntry = tuple[int, str, str]  # shard, stream entry id, job id


class Schedules:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._streams = {keys.deliveries(s): s for s in range(SHARDS)}

    # -- polls -----------------------------------------------------------------------

    async def claim_polls(self, now: float, lease: float, limit: int) -> list[str]:
        """Claim due jobs across all shards, pushing each a lease ahead (one owner each)."""
        args = [int(now * 1000), int(lease * 1000), limit]
        replies = await self._store.run_each(
            "CLAIM_POLLS", [([keys.polls(shard)], args) for shard in range(SHARDS)]
        )
        return [job_id.decode() for reply in replies for job_id in reply]

    async def schedule_poll(self, job_id: str, due: float) -> None:
        await self._store.redis.zadd(keys.polls(shard_of(job_id)), {job_id: int(due * 1000)})

    async def unschedule_poll(self, job_id: str) -> None:
        await self._store.redis.zrem(keys.polls(shard_of(job_id)), job_id)

    # -- deliveries --------------------------------------------------------------------

    async def ensure_groups(self) -> None:
        for stream in self._streams:
            with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
                await self._store.redis.xgroup_create(
                    stream, keys.DELIVERY_GROUP, id="0", mkstream=True
                )

    async def read_deliveries(
        self, consumer: str, count: int, block_ms: int, shards: Set[int] | None = None
    ) -> list[DeliveryEntry]:
        """New deliveries for `consumer`; on a cluster only from `shards` when given."""
        if self._store.cluster:
            # Streams in different slots cannot be read in one XREADGROUP on a cluster:
            # one non-blocking read per stream, in one batch (a write per master); the
            # reader pauses between reads.
            replies = await asyncio.gather(
                *(
                    self._store.command("XREADGROUP", "GROUP", keys.DELIVERY_GROUP, consumer,
                                        "COUNT", count, "STREAMS", stream, ">")
                    for stream, shard in self._streams.items()
                    if shards is None or shard in shards
                )
            )  # fmt: skip
            return [e for reply in replies for e in self._entries(reply)]
        reply = await self._store.redis.xreadgroup(
            keys.DELIVERY_GROUP,
            consumer,
            dict.fromkeys(self._streams, ">"),
            count=count,
            block=None if self._store.memory else block_ms,
        )
        return self._entries(reply)

    async def reclaim_deliveries(
        self, consumer: str, min_idle: float, count: int
    ) -> list[DeliveryEntry]:
        """Take over deliveries another worker read but never finished (it died)."""
        entries: list[DeliveryEntry] = []
        for stream, shard in self._streams.items():
            reply = await self._store.redis.xautoclaim(
                stream, keys.DELIVERY_GROUP, consumer, int(min_idle * 1000), "0-0", count=count
            )
            for entry_id, fields in reply[1]:
                if fields:  # a deleted entry comes back empty
                    entries.append((shard, entry_id.decode(), fields[b"job"].decode()))
        return entries

    async def promote_retries(self, now: float, limits: Mapping[int, int]) -> dict[int, int]:
        """Move due retries onto their streams, at most `limits[shard]` from each shard
        named; how many each moved (one that moved its limit may have more due)."""
        shards = [shard for shard, limit in limits.items() if limit > 0]
        replies = await self._store.run_each(
            "PROMOTE_RETRIES",
            [([keys.retries(s), keys.deliveries(s)], [int(now * 1000), limits[s]]) for s in shards],
        )
        return {shard: int(moved) for shard, moved in zip(shards, replies, strict=True)}

    async def retries_waiting(self, now: float) -> tuple[int, int]:
        """(scheduled, due): retries waiting across every shard, not yet due and due."""
        due_ms = int(now * 1000)
        counts = await asyncio.gather(
            *(self._store.command("ZCARD", keys.retries(s)) for s in range(SHARDS)),
            *(self._store.command("ZCOUNT", keys.retries(s), "-inf", due_ms)
              for s in range(SHARDS)),
        )  # fmt: skip
        waiting, due = sum(counts[:SHARDS]), sum(counts[SHARDS:])
        return waiting - due, due

    @property
    def blocking_reads(self) -> bool:
        """memory:// cannot block on XREADGROUP, a cluster not across streams: readers pause."""
        return not self._store.memory and not self._store.cluster

    async def drop_delivery(self, entry: DeliveryEntry, *, again_at: float | None = None) -> None:
        """Off the stream; with `again_at` (epoch s), back as a retry due then, no attempt
        made (a delivery put off)."""
        shard, entry_id, job_id = entry
        stream = keys.deliveries(shard)
        async with self._store.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, keys.DELIVERY_GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            if again_at is not None:
                pipe.zadd(keys.retries(shard), {job_id: int(again_at * 1000)})
            await pipe.execute()

    async def forget_idle_consumers(self, idle: float) -> int:
        """Drop consumers (instances long gone) that hold no deliveries, from every stream."""
        removed = 0
        for stream in self._streams:
            try:
                consumers = await self._store.redis.xinfo_consumers(stream, keys.DELIVERY_GROUP)
            except ResponseError:
                continue  # no group yet
            for consumer in consumers:
                if consumer["pending"] == 0 and consumer["idle"] > idle * 1000:
                    await self._store.redis.xgroup_delconsumer(
                        stream, keys.DELIVERY_GROUP, consumer["name"]
                    )
                    removed += 1
        return removed

    async def trim_dead_letters(self, tenants: list[str], older_than: float) -> None:
        """Dead letters past the retention go even when no new ones arrive to trim them."""
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                for tenant in tenants:
                    pipe.zremrangebyscore(
                        keys.dead_letters(shard, tenant), "-inf", int(older_than * 1000)
                    )
            await pipe.execute()

    def _entries(self, reply: Any) -> list[DeliveryEntry]:
        entries: list[DeliveryEntry] = []
        for stream, items in reply or []:
            shard = self._streams[stream.decode()]
            for entry_id, fields in items:
                entries.append((shard, entry_id.decode(), fields[b"job"].decode()))
        return entries
