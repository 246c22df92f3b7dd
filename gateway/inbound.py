"""Provider webhooks: authenticate the submission token, parse, apply exactly once."""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import StrEnum

from adapters.base import ProviderResult, ResultState
from adapters.errors import ProviderBadAnswer
from gateway import ids
from gateway.jobs import transitions
from gateway.jobs.model import JobRecord, utcnow
from gateway.jobs.updater import Change, JobUpdater
from gateway.store.jobs import JobStore
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend

log = get_logger(__name__)


class Received(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    BAD_TOKEN = "bad_token"  # noqa: S105 - an outcome name, not a secret
    UNKNOWN = "unknown"
    UNPARSABLE = "unparsable"
    STRAY = "stray"  # a callback for an attempt that was not the one accepted


class Inbound:
    def __init__(
        self,
        *,
        jobs: JobStore,
        updater: JobUpdater,
        backends: Mapping[str, Backend],
        metrics: Metrics,
    ) -> None:
        self._jobs = jobs
        self._updater = updater
        self._backends = backends
        self._metrics = metrics

    async def receive(self, backend_name: str, track: str, token: str, body: bytes) -> Received:
        outcome = await self._receive(backend_name, track, token, body)
        label = backend_name if backend_name in self._backends else "unknown"
        self._metrics.webhooks_in.labels(label, outcome.value).inc()
        return outcome

    async def _receive(self, backend_name: str, track: str, token: str, body: bytes) -> Received:
        parsed = ids.parse_track_id(track)
        backend = self._backends.get(backend_name)
        if parsed is None or backend is None:
            return Received.UNKNOWN
        job_id, n = parsed
        current = await self._jobs.get(job_id)
        if current is None:
            return Received.UNKNOWN
        record = current.record
        if not ids.token_matches(record.secret, track, token):
            return Received.BAD_TOKEN
        if record.backend not in (None, backend_name) or (
            record.parts_expected and record.part(n) not in record.current_parts()
        ):
            return Received.STRAY
        raw: bytes | None = None
        try:
            result = backend.adapter.parse_webhook(body)
        except ProviderBadAnswer as bad:
            raw = body
            result = _unreadable(backend_name, bad.message)
        except Exception as error:  # a hostile body must not crash the route: the job fails cleanly
            log.exception("provider_webhook_parser_error", backend=backend_name)
            raw = body
            result = _unreadable(backend_name, f"the parser failed ({type(error).__name__})")
        applied = False

        def apply(record: JobRecord) -> Change | None:
            nonlocal applied
            now = utcnow()
            applied = transitions.merge_part(record, n, result, now)
            if not applied:
                return None
            if raw is not None:
                transitions.keep_raw_body(record, raw)
            transitions.settle(record, now)
            return Change()

        await self._updater.update(job_id, apply, current=current, owned=True)
        if applied and result.finished_at is not None:
            lag = max(0.0, time.time() - result.finished_at)
            self._metrics.provider_webhook_lag.labels(backend_name).observe(lag)
        if raw is not None:
            log.warning(
                "provider_webhook_unreadable", job_id=job_id, track_id=track, backend=backend_name
            )
            return Received.UNPARSABLE
        return Received.APPLIED if applied else Received.DUPLICATE


def _unreadable(backend_name: str, why: str) -> ProviderResult:
    return ProviderResult(
        ResultState.FAILED,
        error_code="provider_bad_answer",
        error_message=f"{backend_name} sent an unreadable callback: {why}",
    )
