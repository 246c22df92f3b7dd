"""Moves jobs from the gateway queue onto backends as capacity frees up, on every instance.

Woken when any instance finishes a job (slots free up), and every tick as a safety net
(leases that ran out, backends coming back). Which job goes next is the queue's order
(gateway/store/queue.py); which slot it takes is routing's, and it is decided late: jobs
in line are looked at in order (left in line meanwhile), each goes where it would finish
soonest, and one whose best backend is still full keeps its place (its work counted ahead
of the jobs behind it there); only a job that goes is taken out. So a slow server's free
slot goes to a small job that finishes soonest there, not to the large job at the head
that a fast server will take shortly. While slots stay free the look goes further down the
line: the work held for the fast servers grows with every job that waits for them, until
one finds the free slow slot sooner (as the free oracle, placing every job on arrival,
would have sent it there). Stopping after a fixed few left slow slots idle behind a line
of jobs that all waited for fast ones: at 95% load the fleet then ran under its arrivals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Mapping

import structlog

from gateway.dispatch import Dispatched, Dispatcher
from gateway.jobs.model import JobStatus
from gateway.store.jobs import JobStore, Versioned
from gateway.store.queue import GatewayQueue
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend
from routing.eligibility import Eligible
from routing.router import Router
from routing.view import FleetView

log = get_logger(__name__)

TICK = 0.25
# While jobs wait for a backend that is full, look again this often: a slot can free on
# another instance before its release is visible here (the job's end is published first).
HOLD_TICK = 0.05
LOOK_AHEAD = 8  # queued jobs read from the line at a time
# At most this many looked at in one pass while slots stay free. What it takes: with a 4:1
# fleet, a job waits for a fast worker until ~3 of its own service times of work are held
# ahead there, so a slow slot is wanted after ~3 x the fast workers' count of jobs (the
# model's ten-server fleet needs ~16). Bounded because a pass reads every job it looks at,
# and a slot no job wants (a much slower server) would otherwise cost a read of the line.
MAX_LOOK_AHEAD = 64
KNOWN = 4096  # eligibility remembered per queued job (its request does not change)


class QueueRunner:
    def __init__(
        self,
        *,
        queue: GatewayQueue,
        jobs: JobStore,
        dispatcher: Dispatcher,
        router: Router,
        backends: Mapping[str, Backend],
        view: FleetView,
        metrics: Metrics,
        interactive_reserve: float = 0.0,
    ) -> None:
        self._queue = queue
        self._reserve = interactive_reserve
        self._counted = 0.0
        self._jobs = jobs
        self._dispatcher = dispatcher
        self._router = router
        self._backends = backends
        self._view = view
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._stopping = False
        self._known: OrderedDict[str, Eligible] = OrderedDict()
        self._holding = False

    def wake(self) -> None:
        """A slot may have freed up, or a job joined the line. With no line (as last
        counted, each tick, or pushed here since) there is nothing to look at: a job's end
        wakes every instance, and most of the time it would be a turn for nothing."""
        if any(self._queue.waiting.values()):
            self._wake.set()

    def stop(self) -> None:
        """Finish the batch in hand, then stop: the rest of the queue is for other instances."""
        self._stopping = True
        self._wake.set()

    def _room(self) -> int:
        """Free slots on routable backends, as this instance last saw them.

        With only batch work waiting, the slots it may not take are not room for it.
        """
        share = 0.0 if self._queue.waiting["interactive"] else self._reserve
        return sum(
            max(
                0,
                self._view.capacity(name)
                - int(self._view.capacity(name) * share)
                - self._view.states[name].in_flight,
            )
            for name in self._backends
            if self._view.routable(name)
        )

    async def run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HOLD_TICK if self._holding else TICK):  # no task
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if time.monotonic() >= self._counted + TICK:
                # How many wait per class (a new job does not overtake them), once a tick
                # however often submissions wake the runner.
                self._counted = time.monotonic()
                await self._queue.count_classes()
            await self.drain()

    async def drain(self) -> int:
        """Dispatch queued jobs while there is room; returns how many were placed."""
        placed = 0
        self._holding = False
        if not any(self._queue.waiting.values()):
            # Nothing in line as last counted (each tick) or pushed here since: a job's end
            # wakes every instance, and most of the time there is no line to look at.
            return placed
        while self._room() > 0 and not self._stopping:
            went, looked, cut = await self._look()
            placed += went
            if went < looked:
                self._holding = True
            if not went or not cut:
                # Nothing could go (wait for the next slot to free up), or every job in
                # line was looked at with the slots as they are now.
                break
        return placed

    async def _look(self) -> tuple[int, int, bool]:
        """One pass down the line: (jobs that went, jobs looked at, whether the pass stopped
        at MAX_LOOK_AHEAD with jobs and room left)."""
        # Work held for each backend is recounted from the head of the line each pass.
        self._view.ahead = {}
        seen: set[str] = set()
        went = 0
        while len(seen) < MAX_LOOK_AHEAD and not self._stopping:
            # The next few in line, left in line while they are looked at: only a job that
            # goes now is taken out (so the queue's fair clock moves as it would). Those
            # that stayed are still at the front, so the next read asks for them too.
            want = min(LOOK_AHEAD, MAX_LOOK_AHEAD - len(seen))
            line = await self._queue.peek(len(seen) - went + want)
            batch = [(job_id, score) for job_id, score in line if job_id not in seen]
            if not batch:
                return went, len(seen), False
            records = await asyncio.gather(*(self._jobs.get(job_id) for job_id, _ in batch))
            for (job_id, _), current in zip(batch, records, strict=True):
                # In line order, one at a time: each decision sees the ones before it.
                seen.add(job_id)
                went += await self._place(job_id, current)
            if len(batch) < want or self._room() <= 0:
                return went, len(seen), False  # the line ended, or the room is taken
        return went, len(seen), len(seen) >= MAX_LOOK_AHEAD

    async def _place(self, job_id: str, current: Versioned | None) -> bool:
        """True when the job left the line (placed, ended, or gone)."""
        if current is None or current.record.status is not JobStatus.QUEUED:
            self._known.pop(job_id, None)
            await self._queue.remove(job_id)  # a stale entry
            return True
        eligible = await self._eligible(current)
        if eligible is not None and self._router.waits(eligible.candidates):
            return False  # its backend is full: it keeps its place in line
        score = await self._queue.take(job_id)
        if score is None:
            return False  # another instance took it
        try:
            with structlog.contextvars.bound_contextvars(
                job_id=job_id, tenant=current.record.tenant
            ):
                dispatched = await self._dispatcher.dispatch(current, eligible)
        except Exception:
            log.exception("queued_dispatch_failed", job_id=job_id)
            dispatched = Dispatched(current, placed=False)
        if not dispatched.placed:
            await self._queue.put_back([(job_id, score)])  # the view was stale
            return False
        self._known.pop(job_id, None)
        return True

    async def _eligible(self, current: Versioned) -> Eligible | None:
        record = current.record
        known = self._known.get(record.id)
        if known is None and record.request is not None:
            known = await self._dispatcher.eligible(record)
            self._known[record.id] = known
            while len(self._known) > KNOWN:
                self._known.popitem(last=False)
        return known
