"""Opening the store and running its scripts."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store import scripts
from gateway.store.batch import BACKOFF_BASE, BACKOFF_CAP, RETRIES, Batcher
from gateway.store.cluster import is_cluster_url, open_cluster
from gateway.store.cluster_wire import ClusterWire, slot_of
from gateway.store.timing import CommandTiming, TimedRedis
from gateway.store.wire import NAME as WIRE_NAME
from gateway.store.wire import Wire
from observability.metrics import Metrics

Arg = str | int | float | bytes

# Every script's keys share a hash slot (Redis Cluster's rule; keys.py). Checked on every
# call when GATEWAY_CHECK_SLOTS=1, as the test suite runs (tests/conftest.py): ~20 us per
# submit, so not in production, where a cluster refuses a cross-slot script itself
# (CROSSSLOT) and tests/unit/test_store_slots.py checks each script's key layout.
CHECK_SLOTS = os.environ.get("GATEWAY_CHECK_SLOTS") == "1"


class Store:
    """A Redis client plus the registered scripts; repositories build on it."""

    def __init__(self, client: redis.Redis, *, memory: bool, cluster: bool = False) -> None:
        self.redis = client
        self.memory = memory
        self.cluster = cluster  # redis+cluster://: the batch goes over a ClusterWire
        self._scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in dir(scripts)
            if name.isupper()
        }
        timing = getattr(client, "timing", None)
        if isinstance(timing, CommandTiming):
            timing.scripts.update({s.sha: name for name, s in self._scripts.items()})
        # A loop turn's scripts share a round trip (gateway/store/batch.py): to the one
        # Redis, or to each master of a cluster (gateway/store/cluster_wire.py).
        self._batcher = (
            None
            if memory
            else Batcher(
                ClusterWire(client) if cluster else self.wire(),  # type: ignore[arg-type]
                self._scripts,
                timing if isinstance(timing, CommandTiming) else None,
                overlap=cluster,
            )
        )

    def wire(self, name: str = WIRE_NAME) -> Wire:
        """A new multiplexed connection to this (single-node) Redis, named `name`."""
        pool = self.redis.connection_pool
        return Wire(pool.connection_kwargs, pool.connection_class, name=name)

    async def listener(self, name: str) -> Wire:
        """A connection of its own for a pub/sub subscriber: to the one Redis, or to any
        master of a cluster (a cluster's PUBLISH reaches every node); not on memory://."""
        if not self.cluster:
            return self.wire(name)
        cluster: Any = self.redis
        await cluster.initialize()
        node = random.choice(cluster.get_primaries())  # spread the fleet's listeners
        return Wire(node.connection_kwargs, node.connection_class, name=name)

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run one script; its keys must share a hash slot (Redis Cluster's rule)."""
        return await self.send(name, keys, args)

    def send(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Awaitable[Any]:
        """`run`, but the script joins this turn's batch now and its reply is awaited later
        (no task needed to overlap it with other work; on memory:// it runs as a task)."""
        if CHECK_SLOTS and len(keys) > 1 and len(set(map(slot_of, keys))) > 1:
            raise AssertionError(f"{name}: spans slots {keys}")
        if self._batcher is not None:
            return self._batcher.run(name, keys, args)
        return asyncio.ensure_future(self._scripts[name](keys=list(keys), args=list(args)))

    async def command(self, *words: Arg) -> Any:
        """One plain command (e.g. a read), batched with the turn's other calls on one Redis."""
        if self._batcher is not None:
            return await self._batcher.command(*words)
        return await self.redis.execute_command(*words)  # type: ignore[no-untyped-call]

    def script(self, name: str) -> Any:
        return self._scripts[name]

    async def run_each(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]
    ) -> list[Any]:
        """One script over many (keys, args), e.g. once per shard: one batch (the calls join
        the same loop turn's), one write per Redis or cluster master; a redis-py pipeline on
        memory://."""
        if self._batcher is not None:
            return list(await asyncio.gather(*(self.run(name, k, a) for k, a in calls)))
        script = self._scripts[name]
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await script(keys=list(keys), args=list(args), client=pipe)
            return list(await pipe.execute())

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return False

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        if self.cluster:
            await self.redis.aclose()
            return
        # The pool was passed in, so the client does not own it: close it explicitly.
        await self.redis.aclose(close_connection_pool=True)


async def open_store(url: str, metrics: Metrics | None = None) -> Store:
    """Connect; with `metrics`, every command's latency and errors are observed there."""
    if url.startswith("memory://"):
        import fakeredis

        class TimedFake(TimedRedis, fakeredis.FakeAsyncRedis):  # type: ignore[misc]
            pass

        fake = TimedFake()
        fake.timing = CommandTiming(metrics)
        return Store(fake, memory=True)
    if is_cluster_url(url):
        cluster = open_cluster(url, CommandTiming(metrics))
        return Store(cluster, memory=False, cluster=True)  # type: ignore[arg-type]
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=256,
        timeout=5,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
        # Ride out a Redis restart (~5 s of backoff) instead of failing the request; every
        # write is safe to retry (versioned compare-and-set, named reservation members).
        # Set on the pool: each connection takes its retry policy from there, not from
        # the client.
        retry=Retry(ExponentialBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE), retries=RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
    )
    client = TimedRedis(connection_pool=pool)
    client.timing = CommandTiming(metrics)
    return Store(client, memory=False)
