"""Graceful drain: what an instance does between SIGTERM and exit.

1. At once: `/readyz` answers 503 and new work (`POST /v1/...`) gets 503 + Retry-After,
   so a load balancer retries elsewhere; long-polls return what they have.
2. It stops taking shared work: the queue runner, the poller and the delivery reader finish
   the step they are in and stop, so queued jobs, due polls and new deliveries stay in
   Redis for the other instances.
3. After `shutdown.unready_seconds` the listener closes and in-flight requests finish.
4. Background loops stop; deliveries still being sent get a short grace, then are left
   un-acknowledged for another instance to reclaim; reservations taken for jobs no provider
   accepted yet are released and those jobs go back to the gateway queue.

Everything is bounded by `shutdown.drain_seconds` (a watchdog exits the process if a step
overruns); reservations of accepted jobs are not released (the backend still runs them):
their leases lapse within `routing.reservation_lease`, or the job's end frees them first.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gateway.jobs.model import JobStatus
from observability.logging import get_logger

if TYPE_CHECKING:
    from gateway.services import Services

log = get_logger(__name__)

# Loops that take shared work; stopped cooperatively so none is cut mid-dispatch.
WORK_LOOPS = ("queue", "poller", "relay-read", "tune-poller")


class Drain:
    """Whether this instance is draining: set once, read by readiness, handlers and loops."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self._event.is_set()

    def begin(self) -> None:
        if not self.draining:
            log.info("drain_started")
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True once draining; False after `timeout` seconds without."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def stop_taking_work(services: Services, timeout: float) -> None:
    """Step 2: the work loops finish the step in hand and stop (up to `timeout` seconds)."""
    services.runner.stop()
    services.poller.stop()
    services.relay.stop_reading()
    services.tunes.poller.stop()
    await services.background.finish(WORK_LOOPS, timeout)


async def hand_back(services: Services) -> int:
    """Step 4: release reservations of jobs no provider accepted; put those jobs back in line.

    Only what a cancelled dispatch left behind is here. A job that got accepted meanwhile
    keeps its slots (its provider is working on it). Returns how many were handed back.
    """
    handed = 0
    for key, left in list(services.dispatcher.unsettled.items()):
        del services.dispatcher.unsettled[key]
        try:
            current = await services.jobs.get(left.job_id)
            if current is not None and tuple(current.record.reserved) == left.members:
                continue  # accepted after all: its slots are the job's now
            await services.router.release(left.backend, left.members)
            services.held.drop(left.backend, left.members)
            if current is not None and current.record.status is JobStatus.QUEUED:
                await services.queue.push(left.job_id, left.tenant, force=True)
            handed += 1
        except Exception as exc:  # the lease frees the slots anyway
            log.warning("hand_back_failed", job_id=left.job_id, error=type(exc).__name__)
    if handed:
        log.info("handed_back", reservations=handed)
    # Accepted jobs' slots stay taken while their provider works; without renewals they
    # lapse within the lease (or free up when the job ends, whoever sees that).
    for backend, members in services.held.to_renew().items():
        log.info("leases_left_to_lapse", backend=backend, members=members)
    return handed
