"""Tenant rate limits: fleet-wide on a real Redis, with busy tenants' tokens taken in leases."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.store import open_store
from gateway.store.connect import Store
from gateway.store.ratelimit import LEASE_TTL, RateLimiter, lease_size


def _counting(store: Store) -> list[int]:
    """Counts the rate-limit scripts the store runs (one Redis call each)."""
    calls = [0]
    real_run = store.run

    async def run(name: str, keys: Any, args: Any) -> Any:
        calls[0] += name == "RATE_LIMIT"
        return await real_run(name, keys, args)

    store.run = run  # type: ignore[method-assign]
    return calls


async def test_two_instances_admit_the_fleet_rate_within_ten_percent(redis_url: str) -> None:
    """Two instances, each asking as fast as it can: together they get the tenant's burst
    plus its rate, not twice that (and not much less, leases notwithstanding)."""
    per_second, burst, seconds = 500.0, 25, 1.5
    stores = [await open_store(redis_url) for _ in range(2)]
    admitted = [0, 0]

    async def instance(i: int, limiter: RateLimiter, until: float) -> None:
        for _ in range(200_000):  # bounded; the clock ends it first
            if time.monotonic() >= until:
                return
            wait = await limiter.acquire("acme", per_second, burst)
            if wait == 0:
                admitted[i] += 1
            else:
                await asyncio.sleep(min(wait, 0.002))

    try:
        limiters = [RateLimiter(store) for store in stores]
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(*(instance(i, lim, until) for i, lim in enumerate(limiters)))
        elapsed = time.monotonic() - started
    finally:
        for store in stores:
            await store.close()
    expected = burst + per_second * elapsed
    assert abs(sum(admitted) - expected) <= 0.1 * expected, (admitted, expected)
    assert min(admitted) > 0.2 * expected  # both instances were served


async def test_a_busy_tenant_takes_tokens_in_leases_and_a_slow_one_asks_each_time(
    store_url: str,
) -> None:
    store = await open_store(store_url)
    calls = _counting(store)
    limiter = RateLimiter(store)
    try:
        busy = lease_size(1_000_000)
        assert busy > 1
        waits = [await limiter.acquire("busy", 1_000_000, 1_000_000) for _ in range(10 * busy)]
        assert waits == [0] * (10 * busy)
        assert calls[0] == 10  # one Redis call per lease

        calls[0] = 0
        assert lease_size(20) == 1
        waits = [await limiter.acquire("slow", 20, 5) for _ in range(6)]
        assert waits[:5] == [0] * 5  # exact: the burst, then a wait
        assert waits[5] > 0
        assert calls[0] == 6
    finally:
        await store.close()


async def test_tokens_left_in_an_expired_lease_go_back(redis_url: str) -> None:
    per_second, burst = 1000.0, 20
    size = lease_size(per_second)
    assert size == burst  # one lease can take the whole burst
    now = [0.0]
    stores = [await open_store(redis_url) for _ in range(2)]
    a = RateLimiter(stores[0], clock=lambda: now[0])
    b = RateLimiter(stores[1])
    try:
        assert await a.acquire("acme", per_second, burst) == 0  # leases the burst, uses one
        for _ in range(100):  # the other instance finds the bucket empty soon
            if await b.acquire("acme", per_second, burst) > 0:
                break
        else:
            raise AssertionError("the bucket never ran out")
        now[0] += LEASE_TTL + 0.1  # a's lease expires with size - 1 tokens unused
        # Its next call gives them back and leases again: they are there to take (without
        # the refund only the few milliseconds' refill since would be).
        waits = [await a.acquire("acme", per_second, burst) for _ in range(size - 1)]
        assert waits == [0] * (size - 1)
    finally:
        for store in stores:
            await store.close()
