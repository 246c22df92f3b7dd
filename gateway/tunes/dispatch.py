"""Hand a tune to a backend that can train: submit, fail over before acceptance, record.

As for generations, failover happens only while no backend has taken the tune
(connection errors, 5xx, 429, timeouts); a refusal of the request itself (422) fails it.
Astria's 504 means "probably created": the tune is sent again to the same backend only,
with the same title, which Astria treats as the same tune (seeds/002: "title ... see
idempotency"); if that never answers, the tune stays on that backend without a provider
id and its callback finishes it (or its training deadline fails it), so nothing trains
twice.
"""

from __future__ import annotations

import asyncio
import time

from adapters.base import Callback, ResultState, TuneResult
from adapters.errors import ProviderError, ProviderMaybeAccepted
from adapters.httpclient import HttpClient
from adapters.normalized_tune import TuneRequest
from gateway.config import Settings
from gateway.jobs.model import Attempt, utcnow
from gateway.store.jobs import PollChange
from gateway.submission import callback
from gateway.tunes import transitions
from gateway.tunes.model import TuneRecord, TuneStatus
from gateway.tunes.placement import NoTrainer, Placement, TrainingCandidate
from gateway.tunes.store import VersionedTune
from gateway.tunes.updater import TuneUpdater
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.eligibility import NotAllowed
from routing.router import Router

log = get_logger(__name__)

MAYBE_ACCEPTED_RETRIES = 2


class TuneDispatcher:
    def __init__(
        self,
        *,
        settings: Settings,
        placement: Placement,
        updater: TuneUpdater,
        router: Router,
        session: HttpClient,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._placement = placement
        self._updater = updater
        self._router = router
        self._session = session
        self._metrics = metrics

    def callback(self, backend: str, record: TuneRecord, n: int) -> Callback:
        return callback(self._settings.public_base, backend, record.id, record.secret, n)

    def next_poll(self, eta: float | None, backend: TrainingCandidate | None = None) -> float:
        """When to ask the provider if no callback came: after its eta plus the grace."""
        grace = backend.backend.adapter.options.webhook_deadline if backend else 60.0
        return max(eta or 0.0, time.time()) + grace

    async def dispatch(self, current: VersionedTune) -> VersionedTune | None:
        record = current.record
        if record.status is not TuneStatus.QUEUED or record.request is None:
            return current
        request = TuneRequest.model_validate(
            record.request, context={"allow_http": self._settings.outbound.allow_http}
        )
        try:
            candidates = self._placement.candidates(record.tenant, request)
        except (NoTrainer, NotAllowed) as exc:
            return await self._give_up(record.id, [], "no_eligible_backend", str(exc))
        ordered = await self._placement.order(candidates)
        attempts: list[Attempt] = []
        n = record.next_track
        for candidate in ordered[: self._settings.routing.max_attempts]:
            name = candidate.backend.name
            try:
                result = await self._submit(candidate, self.callback(name, record, n))
            except ProviderError as exc:
                attempts.append(
                    Attempt(backend=name, outcome=exc.outcome, at=utcnow(), detail=exc.message)
                )
                self._metrics.attempts.labels(name, candidate.backend.kind, exc.outcome).inc()
                if isinstance(exc, ProviderMaybeAccepted):
                    # Possibly training there (Astria's 504): it stays on this backend, as a
                    # generation would, and this track's callback finishes it. Sending it
                    # elsewhere could train (and bill) twice.
                    pending = TuneResult(ResultState.PENDING)
                    return await self._accepted(record.id, candidate, n, pending, attempts)
                n += 1
                await self._router.report_failure(name, exc)
                if not exc.retryable:
                    return await self._give_up(
                        record.id, attempts, "provider_rejected", exc.message
                    )
                continue
            self._metrics.attempts.labels(name, candidate.backend.kind, "accepted").inc()
            await self._router.report_success(name)
            await self._placement.note_accepted(name, result)
            return await self._accepted(record.id, candidate, n, result, attempts)
        if not attempts:
            return await self._keep_waiting(record.id)
        tried = "; ".join(f"{a.backend}: {a.outcome} ({a.detail})" for a in attempts)
        return await self._give_up(record.id, attempts, "no_backend_accepted", tried)

    async def _submit(self, candidate: TrainingCandidate, callback: Callback) -> TuneResult:
        """Submit; after a "maybe accepted" only this backend is asked again (same title)."""
        maybe: ProviderMaybeAccepted | None = None
        for retry in range(MAYBE_ACCEPTED_RETRIES + 1):
            try:
                return await candidate.trainer.submit_tune(self._session, candidate.plan, callback)
            except ProviderMaybeAccepted as exc:
                maybe = exc
            except ProviderError as exc:
                # Once it may have taken the tune, failing over could train (and bill) twice.
                if maybe is None or not exc.retryable:
                    raise
            await asyncio.sleep(0.2 * (retry + 1))
        assert maybe is not None
        raise maybe

    async def _accepted(
        self,
        tune_id: str,
        candidate: TrainingCandidate,
        n: int,
        result: TuneResult,
        attempts: list[Attempt],
    ) -> VersionedTune | None:
        name = candidate.backend.name
        if result.provider_id is not None:
            attempts.append(Attempt(backend=name, outcome="accepted", at=utcnow()))
        due = self.next_poll(result.eta.timestamp() if result.eta else None, candidate)

        def accept(record: TuneRecord) -> PollChange | None:
            taken = transitions.accept(
                record, backend=name, track=n, result=result,
                warnings=candidate.plan.warnings, attempts=attempts, now=utcnow(),
            )  # fmt: skip
            if not taken:
                return None
            record.deadline = time.time() + self._settings.tunes.training_timeout
            return due

        saved = await self._updater.update(tune_id, accept)
        if saved is not None and saved.record.status is TuneStatus.CANCELED and result.provider_id:
            # Canceled while we were submitting: stop the training we just started.
            try:
                await candidate.trainer.delete_tune(self._session, result.provider_id)
            except ProviderError as exc:
                log.warning("tune_cancel_failed", tune_id=tune_id, error=exc.message)
        log.info("tune_dispatched", tune_id=tune_id, backend=name)
        return saved

    async def _keep_waiting(self, tune_id: str) -> VersionedTune | None:
        """Every backend that can train it is ejected or cooling down: try again later."""

        def later(record: TuneRecord) -> PollChange | None:
            return time.time() + self._settings.routing.ejection.base_time

        return await self._updater.update(tune_id, later)

    async def _give_up(
        self, tune_id: str, attempts: list[Attempt], code: str, message: str
    ) -> VersionedTune | None:
        def give_up(record: TuneRecord) -> PollChange | None:
            record.attempts.extend(attempts)
            return "remove" if transitions.fail(record, code, message, utcnow()) else None

        log.info("tune_not_accepted", tune_id=tune_id, code=code)
        return await self._updater.update(tune_id, give_up)
