"""Redis Cluster: `redis+cluster://[user:password@]host:port[,host:port...]`; TLS: rediss+cluster.

One reachable node is enough; redis-py's `RedisCluster` discovers the rest and keeps the
slot map. The hot path's scripts and reads go through the Batcher over a ClusterWire
(cluster_wire.py: one multiplexed connection per master, redirections followed there);
what remains here (blocking reads, admin listings, transactions) uses this client, which
follows `MOVED` and `ASK` itself. Every script and multi-key command keeps its keys in one
hash slot (see keys.py), so nothing the gateway sends can be `CROSSSLOT`. Commands and
pipelines are timed like the single-node client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.store.timing import CommandTiming

SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in SCHEMES


def startup_nodes(url: str) -> list[tuple[str, int]]:
    """The host:port pairs of a cluster URL (default port 6379)."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    nodes = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":") if ":" in part else (part, "", "")
        nodes.append((host.strip("[]") or "127.0.0.1", int(port or 6379)))
    return nodes


# redis-py's cluster client answers a connection error on one node by closing the
# connections of every node (to rediscover the slots), under the feet of commands that
# other tasks are sending on them at that moment: those fail with an AttributeError on the
# dropped reader or writer instead of a connection error. Every command the gateway sends
# is safe to repeat (versioned compare-and-set, named reservation members), so such a
# command is sent again, and reported as the connection error it is if that keeps failing.
_DROPPED_TRIES = 4


async def _resend_if_dropped(send: Callable[[], Awaitable[Any]]) -> Any:
    for attempt in range(_DROPPED_TRIES):
        try:
            return await send()
        except AttributeError as exc:
            if attempt == _DROPPED_TRIES - 1:
                raise RedisConnectionError("cluster connection dropped mid-command") from exc
            await asyncio.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


class TimedClusterPipeline(ClusterPipeline):
    timing: CommandTiming

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        return await self.timing.observe(
            "PIPELINE", super().execute(raise_on_error, allow_redirections)
        )


class TimedRedisCluster(RedisCluster):
    timing = CommandTiming(None)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        call = _resend_if_dropped(
            lambda: super(TimedRedisCluster, self).execute_command(*args, **kwargs)
        )
        timed = not self.timing.blocking(args)
        return await self.timing.observe(self.timing.operation(args), call, timed=timed)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        pipe = TimedClusterPipeline(self, transaction)  # type: ignore[abstract]
        pipe.timing = self.timing
        return pipe


def open_cluster(url: str, timing: CommandTiming) -> TimedRedisCluster:
    parts = urlsplit(url)
    client = TimedRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in startup_nodes(url)],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss+cluster",
        max_connections=256,
        # As the single-node pool: ride out a node restart or failover (~5 s of backoff);
        # every write is safe to retry. redis-py refreshes the slot map between tries.
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
    )
    client.timing = timing
    return client
