"""The shared poll schedule: one owner per due job across all instances.

A job is due when it waits for dispatch (queued), when its provider's webhook is late,
or when its result deadline passes. Whoever claims it (atomically, in Redis) acts on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import structlog

from adapters.base import ProviderResult, ResultState
from adapters.errors import ProviderBadAnswer, ProviderError
from adapters.httpclient import HttpClient
from gateway.background import Background
from gateway.config import Settings
from gateway.jobs import transitions
from gateway.jobs.model import JobRecord, JobStatus, utcnow
from gateway.jobs.updater import Change, JobUpdater, Mutation
from gateway.store.jobs import JobStore, Versioned
from gateway.store.queue import GatewayQueue
from gateway.store.schedules import Schedules
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend
from routing.router import Router

log = get_logger(__name__)

TICK = 0.2
MAX_CHECKS = 64


class Poller:
    def __init__(
        self,
        *,
        settings: Settings,
        jobs: JobStore,
        schedules: Schedules,
        updater: JobUpdater,
        queue: GatewayQueue,
        router: Router,
        backends: Mapping[str, Backend],
        session: HttpClient,
        metrics: Metrics,
        background: Background,
    ) -> None:
        self._settings = settings
        self._jobs = jobs
        self._schedules = schedules
        self._updater = updater
        self._queue = queue
        self._router = router
        self._backends = backends
        self._session = session
        self._metrics = metrics
        self._background = background
        self._running = 0
        self._stopping = False
        # A claim must outlast the slowest check: a full dispatch with every retry.
        self._lease = settings.jobs.dispatch_timeout

    def stop(self) -> None:
        """Claim no more due polls (checks under way finish): others take the schedule."""
        self._stopping = True

    async def run(self) -> None:
        while not self._stopping:
            free = MAX_CHECKS - self._running
            if free > 0:
                for job_id in await self._schedules.claim_polls(time.time(), self._lease, free):
                    self._running += 1
                    self._background.spawn(self._counted(job_id), name=f"poll-{job_id}")
            await asyncio.sleep(TICK)

    async def _counted(self, job_id: str) -> None:
        try:
            await self.check(job_id)
        finally:
            self._running -= 1

    async def check(self, job_id: str) -> None:
        # Each check runs in a task of its own, so what is bound here stays with this job.
        structlog.contextvars.bind_contextvars(job_id=job_id)
        current = await self._jobs.get(job_id)
        if current is None or current.record.status.final:
            await self._schedules.unschedule_poll(job_id)
            return
        record = current.record
        if time.time() > record.deadline:
            await self._expire(job_id, record)
            return
        if record.status is JobStatus.QUEUED:
            await self._queued(current)
            return
        backend = self._backends.get(record.backend or "")
        structlog.contextvars.bind_contextvars(
            tenant=record.tenant, backend=record.backend, track_id=record.track_id
        )
        if backend is None:
            await self._updater.update(
                job_id,
                _fail("backend_removed", f"backend {record.backend} is no longer configured"),
            )
            return
        results = await self._poll_parts(backend, record)
        if _all_lost(record, results) and (
            transitions.failed_attempts(record) < self._settings.routing.max_attempts
        ):
            await self._resubmit_lost(job_id, backend)
            return

        def apply(record: JobRecord) -> Change | None:
            now = utcnow()
            changed = [transitions.merge_part(record, n, res, now) for n, res in results]
            if not any(changed):
                return None
            transitions.settle(record, now)
            return Change(poll=time.time() + backend.adapter.options.poll_interval)

        saved = await self._updater.update(job_id, apply, current=current)
        if saved is not None and not saved.record.status.final and saved.version == current.version:
            await self._schedules.schedule_poll(
                job_id, time.time() + backend.adapter.options.poll_interval
            )

    async def _queued(self, current: Versioned) -> None:
        """A queued job is due: still in line, or it lost its place (a crash) and needs one.

        It is put back in line rather than dispatched here: a queue runner may hold it
        popped right now (it waits there for the backend that suits it), and two dispatches
        of one job would reserve twice. A stale entry for a job placed meanwhile is dropped
        by the runner when it sees the job is no longer queued.
        """
        job_id, tenant = current.record.id, current.record.tenant
        priority = current.record.priority
        if not await self._queue.contains(job_id):
            await self._queue.push(job_id, tenant, priority, force=True)
        await self._schedules.schedule_poll(job_id, time.time() + self._lease)

    async def _resubmit_lost(self, job_id: str, backend: Backend) -> None:
        """Polling proved the provider lost the job: free its slots and queue it again."""
        released: list[str] = []

        def requeue(record: JobRecord) -> Change | None:
            if record.status.final or record.backend != backend.name:
                return None
            released[:] = record.reserved
            transitions.lost(record, utcnow())
            return Change(poll=time.time() + self._settings.jobs.dispatch_timeout)

        saved = await self._updater.update(job_id, requeue)
        if saved is None or saved.record.status is not JobStatus.QUEUED:
            return
        await self._router.release(backend.name, released)
        await self._queue.push(job_id, saved.record.tenant, saved.record.priority, force=True)
        log.warning("job_lost_by_provider", job_id=job_id, backend=backend.name)

    async def _poll_parts(
        self, backend: Backend, record: JobRecord
    ) -> list[tuple[int, ProviderResult]]:
        results = []
        for part in record.current_parts():
            if part.state.final or part.provider_id is None:
                continue
            started = time.perf_counter()
            try:
                result = await backend.adapter.poll(self._session, part.provider_id)
                outcome = "finished" if result.state.final else "pending"
            except ProviderBadAnswer as exc:
                self._metrics.provider_error(backend.name, backend.kind, exc.outcome)
                result = ProviderResult(
                    ResultState.FAILED,
                    error_code="provider_bad_answer",
                    error_message=f"{backend.name} answered a poll unreadably: {exc.message}",
                )
                outcome = "bad_answer"
            except ProviderError as exc:
                # Transient: the next poll tries again, until the job's deadline.
                log.info("poll_failed", job_id=record.id, backend=backend.name, error=exc.message)
                self._metrics.polls.labels(backend.name, "error").inc()
                self._metrics.provider_error(backend.name, backend.kind, exc.outcome)
                continue
            finally:
                self._metrics.provider_duration.labels(backend.name, "poll").observe(
                    time.perf_counter() - started
                )
            self._metrics.polls.labels(backend.name, outcome).inc()
            results.append((part.n, result))
        return results

    async def _expire(self, job_id: str, record: JobRecord) -> None:
        if record.status is JobStatus.QUEUED:
            code, message = "not_dispatched", "no backend took the job before its deadline"
        else:
            code = "result_timeout"
            message = (
                f"no result from {record.backend} within {self._settings.jobs.result_timeout:g}s"
            )
        await self._updater.update(job_id, _fail(code, message))


def _all_lost(record: JobRecord, results: list[tuple[int, ProviderResult]]) -> bool:
    """Every unfinished part is unknown to the provider and nothing was delivered yet."""
    if not results or any(p.state.value == "succeeded" for p in record.current_parts()):
        return False
    return all(
        r.state is ResultState.FAILED and r.error_code == "provider_lost" for _, r in results
    )


def _fail(code: str, message: str) -> Mutation:
    def mutate(record: JobRecord) -> Change | None:
        return Change() if transitions.fail(record, code, message, utcnow()) else None

    return mutate
