"""Shared-state gauges: read from Redis on a timer, so every instance exports the same value.

Dashboards take `max by (tenant)` of these (see observability/metrics.py). Reading them on
a timer, not per scrape and never per request, keeps their cost fixed: a few pipelined
round trips every `INTERVAL` seconds per instance, whatever the scrape rate or traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from gateway.store.jobs import JobStore
from gateway.store.queue import GatewayQueue
from gateway.store.schedules import Schedules
from observability.logging import get_logger
from observability.metrics import Metrics

log = get_logger(__name__)

INTERVAL = 5.0
# Past this many queued jobs the per-tenant split is read from the fairest ones only; the
# total is still exact. Keeps one refresh bounded when the queue is very long.
SAMPLE = 5_000


class SharedGauges:
    def __init__(
        self,
        *,
        jobs: JobStore,
        queue: GatewayQueue,
        schedules: Schedules,
        tenants: list[str],
        metrics: Metrics,
    ) -> None:
        self._jobs = jobs
        self._queue = queue
        self._schedules = schedules
        self._tenants = tenants
        self._metrics = metrics

    async def refresh(self) -> None:
        dead = await self._jobs.dead_letter_counts(self._tenants)
        for tenant, count in dead.items():
            self._metrics.dead_letters.labels(tenant).set(count)
        scheduled, due = await self._schedules.retries_waiting(time.time())
        self._metrics.retries_waiting.labels("scheduled").set(scheduled)
        self._metrics.retries_waiting.labels("due").set(due)
        queued = await self._queue.members(SAMPLE)
        owners = Counter(t for t in await self._jobs.tenants_of(queued) if t is not None)
        scale = 1.0
        if len(queued) >= SAMPLE:
            scale = await self._queue.size() / max(1, sum(owners.values()))
        for tenant in self._tenants:
            self._metrics.queue_depth.labels(tenant).set(round(owners[tenant] * scale))

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("shared_gauges_refresh_failed", error=type(exc).__name__)
            await asyncio.sleep(INTERVAL)
