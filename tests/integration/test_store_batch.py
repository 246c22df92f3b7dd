"""Auto-pipelining (gateway/store/batch.py) on a real Redis: scripts started in one loop turn
share a round trip, and each caller still gets its own reply or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from gateway.store import keys, open_store
from observability.metrics import Metrics


def observed(metrics: Metrics) -> dict[str, float]:
    return {
        s.labels["operation"]: s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "gateway_store_command_duration_seconds_count"
    }


async def test_one_turns_scripts_share_one_round_trip(redis_url: str) -> None:
    metrics = Metrics(CollectorRegistry())
    store = await open_store(redis_url, metrics)
    pool = store.redis.connection_pool
    taken: list[object] = []
    real_get = pool.get_connection

    async def counting_get(*args: Any, **kwargs: Any) -> Any:
        taken.append(args)
        return await real_get(*args, **kwargs)

    pool.get_connection = counting_get  # type: ignore[method-assign]
    try:
        await store.run("RATE_LIMIT", [keys.rate_bucket("warm")], [1000, 0])  # loads it
        warm = observed(metrics).get("RATE_LIMIT", 0)
        taken.clear()
        # Twenty rate-limit checks started in one turn: one connection taken, one pipeline.
        waits = await asyncio.gather(
            *(store.run("RATE_LIMIT", [keys.rate_bucket(f"t{i}")], [1000, 0]) for i in range(20))
        )
        assert waits == [0] * 20
        assert len(taken) == 1
        # Two turns apart: two round trips.
        taken.clear()
        await store.run("RATE_LIMIT", [keys.rate_bucket("u")], [1000, 0])
        await store.run("RATE_LIMIT", [keys.rate_bucket("v")], [1000, 0])
        assert len(taken) == 2
        # Every script's latency is still observed under its own name.
        assert observed(metrics)["RATE_LIMIT"] == warm + 22
    finally:
        pool.get_connection = real_get  # type: ignore[method-assign]
        await store.close()


async def test_an_error_fails_only_its_own_caller(redis_url: str) -> None:
    store = await open_store(redis_url)
    try:
        good = store.run("RATE_LIMIT", [keys.rate_bucket("a")], [1000, 0])
        bad = store.run("RATE_LIMIT", [keys.rate_bucket("b")], ["not a number", 0])
        also_good = store.run("RATE_LIMIT", [keys.rate_bucket("c")], [1000, 0])
        results = await asyncio.gather(good, bad, also_good, return_exceptions=True)
        assert results[0] == 0
        assert results[2] == 0
        assert isinstance(results[1], Exception)
    finally:
        await store.close()


async def test_scripts_redis_forgot_are_loaded_again(redis_url: str) -> None:
    store = await open_store(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await store.run("RATE_LIMIT", [keys.rate_bucket("x")], [1000, 0])
        await admin.script_flush()  # as after a restart without persistence
        waits = await asyncio.gather(
            *(store.run("RATE_LIMIT", [keys.rate_bucket(f"y{i}")], [1000, 0]) for i in range(5))
        )
        assert waits == [0] * 5
    finally:
        await admin.aclose()
        await store.close()


async def test_a_cancelled_caller_does_not_break_the_batch(redis_url: str) -> None:
    store = await open_store(redis_url)
    try:
        first = asyncio.ensure_future(store.run("RATE_LIMIT", [keys.rate_bucket("p")], [1000, 0]))
        second = asyncio.ensure_future(store.run("RATE_LIMIT", [keys.rate_bucket("q")], [1000, 0]))
        await asyncio.sleep(0)  # both are in the turn's batch
        first.cancel()
        assert await second == 0
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        await store.close()


async def test_reads_join_the_batch_and_come_back_parsed(redis_url: str) -> None:
    store = await open_store(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await admin.hset("gw:{j0}:job:x", mapping={"v": "3", "doc": "{}"})
        await store.run("RATE_LIMIT", [keys.rate_bucket("warm")], [1000, 0])  # loads it
        read, limited, missing = await asyncio.gather(
            store.command("HMGET", "gw:{j0}:job:x", "v", "doc", "body"),
            store.run("RATE_LIMIT", [keys.rate_bucket("r")], [1000, 0]),
            store.command("HMGET", "gw:{j0}:job:none", "v"),
        )
        assert read == [b"3", b"{}", None]
        assert limited == 0
        assert missing == [None]
    finally:
        await admin.aclose()
        await store.close()
