"""The gateway queue: jobs no backend can take yet, fair across tenants, bounded."""

from __future__ import annotations

from gateway.store import keys
from gateway.store.connect import Store


class GatewayQueue:
    def __init__(self, store: Store, bound: int) -> None:
        self._store = store
        self.bound = bound

    async def push(self, job_id: str, tenant: str, *, force: bool = False) -> bool:
        """Add a job at its tenant's fair position; False when the queue is full.

        `force` ignores the bound: for jobs already accepted with a 202 that must not drop.
        """
        added = await self._store.run(
            "QUEUE_PUSH",
            [keys.queue(), keys.queue_tenants(), keys.queue_clock()],
            [job_id, tenant, 2**62 if force else self.bound],
        )
        return bool(added)

    async def pop(self, count: int) -> list[tuple[str, float]]:
        """Take the `count` fairest jobs, with their scores (to put back unchanged)."""
        flat = await self._store.run("QUEUE_POP", [keys.queue(), keys.queue_clock()], [count])
        return [(flat[i].decode(), float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def put_back(self, jobs: list[tuple[str, float]]) -> None:
        """Return popped jobs that could not start, at their old place in line."""
        if jobs:
            await self._store.redis.zadd(keys.queue(), {job_id: score for job_id, score in jobs})

    async def remove(self, job_id: str) -> bool:
        return bool(await self._store.redis.zrem(keys.queue(), job_id))

    async def contains(self, job_id: str) -> bool:
        return await self._store.redis.zscore(keys.queue(), job_id) is not None

    async def size(self) -> int:
        return int(await self._store.redis.zcard(keys.queue()))

    async def members(self, limit: int) -> list[str]:
        """The ids of up to `limit` queued jobs, fairest first (for metrics)."""
        found = await self._store.redis.zrange(keys.queue(), 0, limit - 1)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in found]
