"""The gateway queue: jobs no backend can take yet; priority classes first, then weighted
fair shares across tenants within a class (see QUEUE_PUSH), bounded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from adapters.normalized import PRIORITY_CLASSES, Priority
from gateway.store import keys
from gateway.store.connect import Store
from gateway.store.scripts import queue_class_span


class GatewayQueue:
    def __init__(
        self, store: Store, bound: int, weights: Mapping[str, float] | None = None
    ) -> None:
        self._store = store
        self.bound = bound
        self._weights = dict(weights or {})
        # Jobs waiting per class, as last counted (`count_classes`): a new job does not
        # overtake jobs of its class or a higher one that already wait.
        self.waiting: dict[Priority, int] = dict.fromkeys(PRIORITY_CLASSES, 0)

    async def push(
        self, job_id: str, tenant: str, priority: Priority = "interactive", *, force: bool = False
    ) -> bool:
        """Add a job at its fair place in its class; False when the queue is full.

        `force` ignores the bound: for jobs already accepted with a 202 that must not drop.
        """
        added = await self._store.run(
            "QUEUE_PUSH",
            [keys.queue(), keys.queue_tenants(), keys.queue_clocks()],
            [
                job_id,
                tenant,
                2**62 if force else self.bound,
                PRIORITY_CLASSES.index(priority),
                self._weights.get(tenant, 1.0),
            ],
        )
        if added:
            self.waiting[priority] += 1
        return bool(added)

    async def pop(self, count: int) -> list[tuple[str, float]]:
        """Take the first `count` jobs in line, with their scores (to put back unchanged)."""
        flat = await self._store.run("QUEUE_POP", [keys.queue(), keys.queue_clocks()], [count])
        popped = [(flat[i].decode(), float(flat[i + 1])) for i in range(0, len(flat), 2)]
        self._note(popped, -1)
        return popped

    async def peek(self, count: int) -> list[tuple[str, float]]:
        """The first `count` jobs in line, with their scores, left in line."""
        found = await self._store.redis.zrange(keys.queue(), 0, count - 1, withscores=True)
        if not found:
            self.waiting = dict.fromkeys(PRIORITY_CLASSES, 0)  # the line is empty: none wait
        return [
            (m.decode() if isinstance(m, bytes) else str(m), float(s))
            for m, s in cast(list[tuple[bytes | str, float]], found)
        ]

    async def take(self, job_id: str) -> float | None:
        """Take one job out of line (as `pop` would); None when another instance took it."""
        score = await self._store.run("QUEUE_TAKE", [keys.queue(), keys.queue_clocks()], [job_id])
        if score is None:
            return None
        self._note([(job_id, float(score))], -1)
        return float(score)

    async def put_back(self, jobs: list[tuple[str, float]]) -> None:
        """Return popped jobs that could not start, at their old place in line."""
        if jobs:
            await self._store.redis.zadd(keys.queue(), {job_id: score for job_id, score in jobs})
            self._note(jobs, +1)

    def _note(self, jobs: list[tuple[str, float]], sign: int) -> None:
        for _, score in jobs:
            klass = PRIORITY_CLASSES[min(int(score // queue_class_span), len(PRIORITY_CLASSES) - 1)]
            self.waiting[klass] = max(0, self.waiting[klass] + sign)

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

    async def count_classes(self) -> dict[Priority, int]:
        """Jobs waiting per priority class (one round trip); refreshes `waiting`."""
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for i, _ in enumerate(PRIORITY_CLASSES):
                pipe.zcount(keys.queue(), i * queue_class_span, f"({(i + 1) * queue_class_span}")
            counts = await pipe.execute()
        self.waiting = {c: int(n) for c, n in zip(PRIORITY_CLASSES, counts, strict=True)}
        return dict(self.waiting)

    def behind(self, priority: Priority) -> bool:
        """True when jobs of this class or a higher one wait: a new job joins the line."""
        return any(
            self.waiting[c] for c in PRIORITY_CLASSES[: PRIORITY_CLASSES.index(priority) + 1]
        )
