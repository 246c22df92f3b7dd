"""Hand a job to a backend: reserve a slot, submit, fail over before acceptance, record.

Failover happens only while no backend has accepted the job (connection errors, 5xx,
429, timeouts on submit), bounded by `routing.max_attempts`. Once a provider returned an
id, the job stays there: the webhook or a poll finishes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from adapters.base import Callback, ProviderResult, ResultMode, ResultState, Submission
from adapters.errors import ProviderError, ProviderMaybeAccepted
from adapters.normalized import GenerationRequest
from gateway import ids
from gateway.config import Settings
from gateway.held import HeldReservations
from gateway.jobs import transitions
from gateway.jobs.model import Attempt, JobRecord, JobStatus, utcnow
from gateway.jobs.updater import Change, JobUpdater
from gateway.store.jobs import Versioned
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend
from routing.eligibility import Eligibility, Eligible
from routing.router import AllFull, NoRoutableBackend, Reservation, Router

log = get_logger(__name__)

REQUEUE_DELAY = 0.5  # seconds before a job that found every backend full tries again


@dataclass(frozen=True)
class Submitted:
    n: int
    images: int
    result: ProviderResult


class Dispatcher:
    def __init__(
        self,
        *,
        settings: Settings,
        router: Router,
        eligibility: Eligibility,
        backends: Mapping[str, Backend],
        updater: JobUpdater,
        session: aiohttp.ClientSession,
        held: HeldReservations,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._router = router
        self._eligibility = eligibility
        self._backends = backends
        self._updater = updater
        self._session = session
        self._held = held
        self._metrics = metrics

    def callback_url(self, backend: str, record: JobRecord, n: int) -> Callback:
        track = ids.track_id(record.id, n)
        token = ids.submission_token(record.secret, track)
        return Callback(
            url=f"{self._settings.public_base}/webhooks/{backend}/{track}?token={token}",
            track_id=track,
        )

    async def dispatch(
        self, current: Versioned, eligible: Eligible | None = None
    ) -> Versioned | None:
        record = current.record
        if record.status is not JobStatus.QUEUED or record.request is None:
            return current
        if eligible is None:
            request = GenerationRequest.model_validate(
                record.request, context={"allow_http": self._settings.outbound.allow_http}
            )
            eligible = self._eligibility.evaluate(record.tenant, request)
        if not eligible.candidates:
            return await self._give_up(
                record.id,
                [],
                record.next_track,
                "no_eligible_backend",
                "no backend can serve this request any more",
            )
        attempts: list[Attempt] = []
        next_track = record.next_track
        tried: set[str] = set()
        last_error: ProviderError | None = None
        need = max(c.need for c in eligible.candidates)
        for _ in range(self._settings.routing.max_attempts):
            members = [ids.track_id(record.id, next_track + i) for i in range(need)]
            try:
                reservation = await self._router.reserve(eligible.candidates, members, tried)
            except AllFull:
                return await self._requeue(record.id, attempts, next_track)
            except NoRoutableBackend:
                if not attempts:
                    return await self._requeue(record.id, attempts, next_track)
                break
            backend = reservation.backend
            tried.add(backend)
            try:
                submitted = await self._submit_all(record, reservation, next_track)
            except ProviderError as exc:
                next_track += 1
                last_error = exc
                attempts.append(
                    Attempt(backend=backend, outcome=exc.outcome, at=utcnow(), detail=exc.message)
                )
                await self._router.release(backend, reservation.members)
                await self._router.report_failure(backend, exc)
                if not exc.retryable:
                    break
                continue
            next_track += len(submitted)
            return await self._accepted(record.id, reservation, submitted, attempts, next_track)
        code = (
            "provider_rejected"
            if last_error and not last_error.retryable
            else "no_backend_accepted"
        )
        if last_error and last_error.outcome == "bad_answer":
            code = "provider_bad_answer"
        summary = "; ".join(f"{a.backend}: {a.outcome} ({a.detail})" for a in attempts)
        return await self._give_up(
            record.id, attempts, next_track, code, summary or "no routable backend"
        )

    async def _submit_all(
        self, record: JobRecord, reservation: Reservation, first: int
    ) -> list[Submitted]:
        """Submit every part; the first decides acceptance, later failures cost only images."""
        backend = reservation.candidate.backend
        subs = reservation.candidate.plan.submissions
        head = await self._submit(backend, subs[0], self.callback_url(backend.name, record, first))
        tail = await asyncio.gather(
            *(
                self._submit_part(backend, sub, self.callback_url(backend.name, record, first + i))
                for i, sub in enumerate(subs[1:], start=1)
            )
        )
        results = [head, *tail]
        return [
            Submitted(first + i, sub.images, res)
            for i, (sub, res) in enumerate(zip(subs, results, strict=True))
        ]

    async def _submit(
        self, backend: Backend, sub: Submission, callback: Callback
    ) -> ProviderResult:
        started = time.perf_counter()
        try:
            result = await backend.adapter.submit(self._session, sub, callback)
        except ProviderMaybeAccepted as exc:
            # Possibly taken: resubmitting elsewhere could bill twice. Wait for its callback.
            self._metrics.attempts.labels(backend.name, backend.kind, exc.outcome).inc()
            log.warning(
                "submission_maybe_accepted", backend=backend.name, track_id=callback.track_id
            )
            return ProviderResult(ResultState.PENDING)
        except ProviderError as exc:
            self._metrics.attempts.labels(backend.name, backend.kind, exc.outcome).inc()
            raise
        finally:
            self._metrics.provider_duration.labels(backend.name, "submit").observe(
                time.perf_counter() - started
            )
        outcome = "completed" if result.state.final else "accepted"
        self._metrics.attempts.labels(backend.name, backend.kind, outcome).inc()
        return result

    async def _submit_part(
        self, backend: Backend, sub: Submission, callback: Callback
    ) -> ProviderResult:
        try:
            return await self._submit(backend, sub, callback)
        except ProviderError as exc:
            return ProviderResult(
                ResultState.FAILED, error_code=exc.outcome, error_message=exc.message
            )

    async def _accepted(
        self,
        job_id: str,
        reservation: Reservation,
        submitted: list[Submitted],
        attempts: list[Attempt],
        next_track: int,
    ) -> Versioned | None:
        candidate = reservation.candidate
        backend, adapter = candidate.backend, candidate.backend.adapter
        await self._router.report_success(backend.name)
        head = submitted[0].result
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

        def accept(record: JobRecord) -> Change:
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
            return Change(poll=time.time() + wait)

        saved = await self._updater.update(job_id, accept)
        if saved is None or saved.record.status.final:
            # Ended here or meanwhile (e.g. canceled during submit): the slots are free again.
            await self._router.release(backend.name, reservation.members)
            self._held.drop(backend.name, reservation.members)
        log.info(
            "job_dispatched",
            job_id=job_id,
            backend=backend.name,
            track_id=ids.track_id(job_id, submitted[0].n),
        )
        return saved

    async def _requeue(
        self, job_id: str, attempts: list[Attempt], next_track: int
    ) -> Versioned | None:
        def requeue(record: JobRecord) -> Change:
            record.attempts.extend(attempts)
            record.next_track = max(record.next_track, next_track)
            transitions.touch(record, utcnow())
            return Change(poll=time.time() + REQUEUE_DELAY)

        return await self._updater.update(job_id, requeue)

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
