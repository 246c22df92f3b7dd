"""Moves jobs from the gateway queue onto backends as capacity frees up, on every instance.

Woken when any instance finishes a job (slots free up), and every tick as a safety net
(leases that ran out, backends coming back). Pops the fairest jobs and dispatches them;
those that still find no room go back to their place in line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import structlog

from gateway.dispatch import Dispatcher
from gateway.jobs.model import JobStatus
from gateway.store.jobs import JobStore
from gateway.store.queue import GatewayQueue
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend
from routing.view import FleetView

log = get_logger(__name__)

TICK = 0.25
BATCH = 16


class QueueRunner:
    def __init__(
        self,
        *,
        queue: GatewayQueue,
        jobs: JobStore,
        dispatcher: Dispatcher,
        backends: Mapping[str, Backend],
        view: FleetView,
        metrics: Metrics,
    ) -> None:
        self._queue = queue
        self._jobs = jobs
        self._dispatcher = dispatcher
        self._backends = backends
        self._view = view
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch in hand, then stop: the rest of the queue is for other instances."""
        self._stopping = True
        self._wake.set()

    def _room(self) -> int:
        """Free slots on routable backends, as this instance last saw them."""
        return sum(
            max(0, b.max_concurrency - self._view.states[name].in_flight)
            for name, b in self._backends.items()
            if self._view.routable(name)
        )

    async def run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK)
            self._wake.clear()
            if self._stopping:
                return
            # Refreshes how many wait per class: a new job does not overtake them.
            await self._queue.count_classes()
            await self.drain()

    async def drain(self) -> int:
        """Dispatch queued jobs while there is room; returns how many were placed."""
        placed = 0
        while self._room() > 0 and not self._stopping:
            batch = await self._queue.pop(min(BATCH, self._room()))
            if not batch:
                break
            outcomes = await asyncio.gather(*(self._place(job_id) for job_id, _ in batch))
            waiting = [item for item, ok in zip(batch, outcomes, strict=True) if not ok]
            await self._queue.put_back(waiting)
            placed += len(batch) - len(waiting)
            if waiting:
                break  # the rest would find the same backends full
        return placed

    async def _place(self, job_id: str) -> bool:
        """True when the job left the queue for good (placed, ended, or gone)."""
        current = await self._jobs.get(job_id)
        if current is None or current.record.status is not JobStatus.QUEUED:
            return True
        try:
            with structlog.contextvars.bound_contextvars(job_id=job_id):
                dispatched = await self._dispatcher.dispatch(current)
        except Exception:
            log.exception("queued_dispatch_failed", job_id=job_id)
            return False
        return dispatched.placed
