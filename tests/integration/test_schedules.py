"""Delivery retries in the per-shard schedules: counted while they wait, promoted per limit."""

from __future__ import annotations

import time

from gateway import ids
from gateway.store import keys, open_store
from gateway.store.schedules import Schedules


async def test_retries_are_counted_and_promoted_no_more_than_each_shards_limit(
    store_url: str,
) -> None:
    store = await open_store(store_url)
    schedules = Schedules(store)
    try:
        now = time.time()
        shard_a, shard_b = 3, 11
        for n in range(5):  # five due on one shard, two due and one later on another
            await store.redis.zadd(
                keys.retries(shard_a), {ids.new_job_id(shard_a): int((now - n) * 1000)}
            )
        for offset in (-2, -1, 60):
            await store.redis.zadd(
                keys.retries(shard_b), {ids.new_job_id(shard_b): int((now + offset) * 1000)}
            )
        assert await schedules.retries_waiting(now) == (1, 7)

        moved = await schedules.promote_retries(now, {shard_a: 2, shard_b: 0, 0: 1})
        assert moved == {shard_a: 2, 0: 0}  # a shard given no room is not asked
        assert await store.redis.xlen(keys.deliveries(shard_a)) == 2
        assert await store.redis.xlen(keys.deliveries(shard_b)) == 0
        assert await schedules.retries_waiting(now) == (1, 5)

        moved = await schedules.promote_retries(now, {shard_a: 16, shard_b: 16})
        assert moved == {shard_a: 3, shard_b: 2}  # the later one stays scheduled
        assert await schedules.retries_waiting(now) == (1, 0)
    finally:
        await store.close()
