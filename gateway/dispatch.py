"""Hand a job to a backend: reserve a slot, submit, fail over before acceptance, record.

Failover happens only while no backend has accepted the job (connection errors, 5xx,
429, timeouts on submit), bounded by `routing.max_attempts` per job and by the retry
budget. Once a provider returned an id, the job stays there: its webhook or a poll
finishes it. A job no backend can take yet is not placed; the caller queues it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from adapters.base import ResultMode
from adapters.errors import ProviderError
from adapters.httpclient import HttpClient
from adapters.normalized import GenerationRequest
from gateway import ids
from gateway.config import Settings
from gateway.held import HeldReservations
from gateway.jobs import transitions
from gateway.jobs.model import Attempt, JobRecord, JobStatus, utcnow
from gateway.jobs.updater import Change, JobUpdater
from gateway.store.jobs import Versioned
from gateway.submission import Submitted, Submitter
from observability.logging import get_logger, log_sampled
from observability.metrics import FAILOVER_REASONS, Metrics, provider_call
from routing.backends import Backend
from routing.eligibility import Eligibility, Eligible
from routing.router import AllFull, NoRoutableBackend, Reservation, RetryBudget, Router

log = get_logger(__name__)
DISPATCH_LOG_SAMPLE = 1000  # one info line per this many dispatches (the rest at debug)


@dataclass(frozen=True)
class Unsettled:
    """Slots reserved for a job no provider has accepted yet (see `Dispatcher.unsettled`)."""

    backend: str
    members: tuple[str, ...]
    job_id: str
    tenant: str


@dataclass(frozen=True)
class Dispatched:
    """What a dispatch did: `placed` is False when no backend could take the job yet."""

    job: Versioned | None
    placed: bool


class Dispatcher:
    def __init__(
        self,
        *,
        settings: Settings,
        router: Router,
        eligibility: Eligibility,
        backends: Mapping[str, Backend],
        updater: JobUpdater,
        session: HttpClient,
        held: HeldReservations,
        metrics: Metrics,
        evaluate: Callable[[str, GenerationRequest], Awaitable[Eligible]] | None = None,
    ) -> None:
        self._settings = settings
        self._router = router
        self._eligibility = eligibility
        self._backends = backends
        self._updater = updater
        self._session = session
        self._held = held
        self._metrics = metrics
        self._submitter = Submitter(settings, session, metrics)
        self._evaluate = evaluate  # eligibility that needs the store (e.g. tune models)
        budget = settings.routing.retry_budget
        self.budget = RetryBudget(budget.ratio, budget.min_retries)
        # Reservations between reserve and the provider's answer, by first track id. What a
        # cancelled dispatch leaves here is handed back when the instance stops.
        self.unsettled: dict[str, Unsettled] = {}
        self.dispatched = 0

    async def eligible(self, record: JobRecord) -> Eligible:
        """Which backends could serve the job's stored request (and with which plan)."""
        request = GenerationRequest.model_validate(
            record.request, context={"allow_http": self._settings.outbound.allow_http}
        )
        if self._evaluate is not None:
            return await self._evaluate(record.tenant, request)
        return self._eligibility.evaluate(record.tenant, request)

    async def dispatch(
        self,
        current: Versioned,
        eligible: Eligible | None = None,
        *,
        stored: Awaitable[object] | None = None,
    ) -> Dispatched:
        """Reserve a backend and submit the job there, failing over within the budget.

        `stored` is the job's creation still in flight (a new job's write, sent in the same
        round trip as its first reservation): it is awaited before any provider hears of
        the job or the job is written again, so a job is always in the store first.
        The caller has bound the job's `job_id` and `tenant` to the log context (binding
        them again here cost more than the rest of the log context per submit).
        """
        record = current.record
        if record.status is not JobStatus.QUEUED or record.request is None:
            return Dispatched(current, placed=True)
        if eligible is None:
            eligible = await self.eligible(record)
        if not eligible.candidates:
            if stored is not None:
                await stored
            saved = await self._give_up(
                record.id, [], record.next_track, "no_eligible_backend",
                "no backend can serve this request any more",
            )  # fmt: skip
            return Dispatched(saved, placed=True)
        self.budget.active += 1
        try:
            return await self._attempts(current, eligible, stored)
        finally:
            self.budget.active -= 1

    async def _attempts(
        self, current: Versioned, eligible: Eligible, stored: Awaitable[object] | None
    ) -> Dispatched:
        record = current.record
        attempts: list[Attempt] = []
        next_track = record.next_track
        # A backend that lost this job is tried again only when no other can take it.
        lost = {a.backend for a in record.attempts if a.outcome == "lost"}
        others = any(c.backend.name not in lost for c in eligible.candidates)
        tried: set[str] = set(lost) if others else set()
        last_error: ProviderError | None = None
        need = max(c.need for c in eligible.candidates)
        left = self._settings.routing.max_attempts - transitions.failed_attempts(record)
        retrying = False
        stopped = "no routable backend" if left > 0 else "max_attempts reached"
        try:
            while left > 0:
                if attempts and not self.budget.allows_retry():
                    self._metrics.retries_denied.inc()
                    stopped = "retry budget exhausted"
                    break
                if attempts and not retrying:
                    retrying = True
                    self.budget.retrying += 1
                tracks = [ids.track_id(record.id, next_track + i) for i in range(need)]
                try:
                    reservation = await self._router.reserve(
                        eligible.candidates, tracks, tried, held_back=self._held_back(record)
                    )
                except (AllFull, NoRoutableBackend) as full:
                    if isinstance(full, NoRoutableBackend) and attempts:
                        stopped = "no other routable backend"
                        break
                    # Nothing free now: the job waits in the gateway queue (the caller's).
                    if not attempts:
                        return Dispatched(current, False)  # nothing new to keep
                    return Dispatched(
                        await self._record_attempts(record.id, attempts, next_track), False
                    )
                if stored is not None:
                    await self._stored(stored, reservation)
                    stored = None
                left -= 1
                stopped = "max_attempts reached"
                backend = reservation.backend
                self._metrics.routing_decisions.labels(
                    self._settings.routing.strategy, backend
                ).inc()
                if last_error is not None:
                    reason = FAILOVER_REASONS.get(last_error.outcome, "unavailable")
                    self._metrics.failovers.labels(reason).inc()
                structlog.contextvars.bind_contextvars(
                    backend=backend, track_id=ids.track_id(record.id, next_track)
                )
                tried.add(backend)
                self.unsettled[tracks[0]] = Unsettled(
                    backend, reservation.members, record.id, record.tenant
                )
                try:
                    with provider_call():
                        submitted = await self._submitter.submit_all(
                            record, reservation, next_track
                        )
                except ProviderError as exc:
                    next_track += 1
                    last_error = exc
                    attempts.append(
                        Attempt(
                            backend=backend, outcome=exc.outcome, at=utcnow(), detail=exc.message
                        )
                    )
                    await self._router.release(backend, reservation.members)
                    del self.unsettled[tracks[0]]
                    if await self._router.report_failure(backend, exc) is not None:
                        self._metrics.backend_ejections.labels(backend).inc()
                    if not exc.retryable:
                        break
                    continue
                next_track += len(submitted)
                saved = await self._accepted(current, reservation, submitted, attempts, next_track)
                del self.unsettled[tracks[0]]
                return Dispatched(saved, placed=True)
        finally:
            if retrying:
                self.budget.retrying -= 1
        code = "no_backend_accepted"
        if last_error is not None and not last_error.retryable:
            code = (
                "provider_bad_answer" if last_error.outcome == "bad_answer" else "provider_rejected"
            )
        tried_text = "; ".join(f"{a.backend}: {a.outcome} ({a.detail})" for a in attempts)
        summary = f"{tried_text}; {stopped}" if tried_text else stopped
        saved = await self._give_up(record.id, attempts, next_track, code, summary)
        return Dispatched(saved, placed=True)

    async def _stored(self, stored: Awaitable[object], reservation: Reservation) -> None:
        """The job's creation has landed; if it failed, the reservation is given back."""
        try:
            await stored
        except BaseException:
            try:
                await self._router.release(reservation.backend, reservation.members)
            except Exception:  # the store is away: the reservation's lease runs out instead
                log.warning("reservation_not_released", backend=reservation.backend)
            raise

    def _held_back(self, record: JobRecord) -> float:
        """Batch work leaves `interactive_reserve` of every backend to interactive work."""
        return self._settings.routing.interactive_reserve if record.priority == "batch" else 0.0

    async def _accepted(
        self,
        current: Versioned,
        reservation: Reservation,
        submitted: list[Submitted],
        attempts: list[Attempt],
        next_track: int,
    ) -> Versioned | None:
        job_id = current.record.id
        candidate = reservation.candidate
        backend, adapter = candidate.backend, candidate.backend.adapter
        await self._router.report_success(backend.name)
        head = submitted[0].result
        if head.eta is not None:
            # The provider's eta covers our own work queued there too; only the rest is
            # others' work the ledger cannot see.
            view = self._router.view
            own = reservation.expected  # what the gateway's own reservations there explain
            view.note_reported_wait(backend.name, head.eta - own)
        attempts.append(
            Attempt(
                backend=backend.name,
                outcome="completed" if head.state.final else "accepted",
                at=utcnow(),
            )
        )
        wait = (
            adapter.options.webhook_deadline
            if adapter.result_mode is ResultMode.WEBHOOK
            else adapter.options.poll_interval
        )
        self._held.add(
            backend.name, reservation.members, time.time() + self._settings.jobs.result_timeout
        )
        if candidate.plan.warnings:
            self._metrics.conversion_warnings.labels(backend.kind).inc(len(candidate.plan.warnings))

        ended_before = False  # e.g. canceled during submit: the end hook will not run

        def accept(record: JobRecord) -> Change:
            nonlocal ended_before
            ended_before = record.status.final
            self._metrics.queue_wait.observe((utcnow() - record.created_at).total_seconds())
            transitions.accept(
                record,
                backend=backend.name,
                adapter=backend.kind,
                reserved=reservation.members,
                results=[(s.n, s.images, s.result) for s in submitted],
                warnings=candidate.plan.warnings,
                attempts=attempts,
                next_track=next_track,
                now=utcnow(),
            )
            record.work_per_slot = candidate.work_per_slot
            record.backlog = reservation.backlog
            return Change(poll=time.time() + wait)

        # The version we hold is usually still current: no read before the write. If a
        # callback got there first, the compare-and-set fails and the update re-reads.
        # Dispatch's callers hand the job over (they keep only its id and tenant).
        saved = await self._updater.update(job_id, accept, current=current, owned=True)
        if saved is None or (saved.record.status.final and ended_before):
            # Gone, or ended before it took these slots (e.g. canceled during submit): free
            # them. A job that ended *with* them (an instant result) was released by the
            # updater's end hook already: one ZREM, not two.
            await self._router.release(backend.name, reservation.members)
            self._held.drop(backend.name, reservation.members)
        # Per job at debug; info only for a sample, so the log costs little at 1,000s/s.
        self.dispatched += 1
        sampled = self.dispatched % DISPATCH_LOG_SAMPLE == 1
        log_sampled(
            log,
            sampled,
            "job_dispatched",
            job_id=job_id,
            backend=backend.name,
            track_id=ids.track_id(job_id, submitted[0].n),
            dispatched=self.dispatched,
        )
        return saved

    async def _record_attempts(
        self, job_id: str, attempts: list[Attempt], next_track: int
    ) -> Versioned | None:
        """Keep what was tried; the job stays queued, its poll a safety net behind the queue."""

        def keep(record: JobRecord) -> Change:
            record.attempts.extend(attempts)
            record.next_track = max(record.next_track, next_track)
            transitions.touch(record, utcnow())
            return Change(poll=time.time() + self._settings.jobs.dispatch_timeout)

        return await self._updater.update(job_id, keep)

    async def _give_up(
        self, job_id: str, attempts: list[Attempt], next_track: int, code: str, message: str
    ) -> Versioned | None:
        def give_up(record: JobRecord) -> Change | None:
            record.attempts.extend(attempts)
            record.next_track = max(record.next_track, next_track)
            if not transitions.fail(record, code, message, utcnow()):
                return None
            return Change()

        log.info("job_not_accepted", job_id=job_id, code=code)
        return await self._updater.update(job_id, give_up)
