"""Sending a placed job's submissions to its backend: each part with its own track id and
signed callback URL, every outcome counted. The first part decides acceptance; a later
part's failure costs only its images."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from adapters.base import Callback, ProviderResult, ResultState, Submission
from adapters.errors import ProviderError, ProviderMaybeAccepted
from adapters.httpclient import HttpClient
from gateway import ids
from gateway.config import Settings
from gateway.jobs.model import JobRecord
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend
from routing.router import Reservation

log = get_logger(__name__)


@dataclass(frozen=True)
class Submitted:
    n: int
    images: int
    result: ProviderResult


def callback(public_base: str, backend: str, owner: str, secret: str, n: int) -> Callback:
    """Where a provider reports on part `n` of a job or tune (`owner`): its track id and a
    token derived from the owner's secret, so nothing extra is stored."""
    track = ids.track_id(owner, n)
    token = ids.submission_token(secret, track)
    return Callback(url=f"{public_base}/webhooks/{backend}/{track}?token={token}", track_id=track)


class Submitter:
    def __init__(self, settings: Settings, session: HttpClient, metrics: Metrics):
        self._settings = settings
        self._session = session
        self._metrics = metrics

    def callback_url(self, backend: str, record: JobRecord, n: int) -> Callback:
        return callback(self._settings.public_base, backend, record.id, record.secret, n)

    async def submit_all(
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
        except ProviderMaybeAccepted as maybe:
            # Possibly taken: resubmitting elsewhere could bill twice. Wait for its callback.
            self._metrics.attempts.labels(backend.name, backend.kind, maybe.outcome).inc()
            self._metrics.provider_error(backend.name, backend.kind, maybe.outcome)
            log.warning(
                "submission_maybe_accepted", backend=backend.name, track_id=callback.track_id
            )
            return ProviderResult(ResultState.PENDING)
        except ProviderError as failure:
            self._metrics.attempts.labels(backend.name, backend.kind, failure.outcome).inc()
            self._metrics.provider_error(backend.name, backend.kind, failure.outcome)
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
