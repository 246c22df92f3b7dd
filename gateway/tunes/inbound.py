"""Tune callbacks: authenticate the submission token, parse, apply exactly once.

The callback URL is `/webhooks/{backend}/{tune id}.{n}?token=...`, the token being
HMAC(tune secret, track id) as for generations, so any instance can check it and find the
tune's shard without a lookup. Duplicates change nothing; an unreadable body is ignored
(the poll schedule asks the provider instead).
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.base import ResultState, trainer_of
from adapters.errors import ProviderBadAnswer
from gateway import ids
from gateway.inbound import Received
from gateway.jobs.model import Attempt, utcnow
from gateway.store.jobs import PollChange
from gateway.tunes import transitions
from gateway.tunes.model import TuneRecord, TuneStatus
from gateway.tunes.store import TuneStore
from gateway.tunes.updater import TuneUpdater
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend

log = get_logger(__name__)


class TuneInbound:
    def __init__(
        self,
        *,
        tunes: TuneStore,
        updater: TuneUpdater,
        backends: Mapping[str, Backend],
        metrics: Metrics,
    ) -> None:
        self._tunes = tunes
        self._updater = updater
        self._backends = backends
        self._metrics = metrics

    async def receive(self, backend_name: str, track: str, token: str, body: bytes) -> Received:
        outcome = await self._receive(backend_name, track, token, body)
        label = backend_name if backend_name in self._backends else "unknown"
        self._metrics.webhooks_in.labels(label, outcome.value).inc()
        return outcome

    async def _receive(self, backend_name: str, track: str, token: str, body: bytes) -> Received:
        parsed = ids.parse_tune_track_id(track)
        backend = self._backends.get(backend_name)
        trainer = trainer_of(backend.adapter) if backend is not None else None
        if parsed is None or trainer is None:
            return Received.UNKNOWN
        tune_id, n = parsed
        current = await self._tunes.get(tune_id)
        if current is None:
            return Received.UNKNOWN
        if not ids.token_matches(current.record.secret, track, token):
            return Received.BAD_TOKEN
        record = current.record
        if record.backend not in (None, backend_name) or record.track not in (None, n):
            return Received.STRAY
        try:
            result = trainer.parse_tune_webhook(body)
        except ProviderBadAnswer as exc:
            log.warning("tune_callback_unreadable", tune_id=tune_id, error=exc.message)
            return Received.UNPARSABLE
        applied = False

        def apply(record: TuneRecord) -> PollChange | None:
            nonlocal applied
            now = utcnow()
            if record.status is TuneStatus.QUEUED and result.state is not ResultState.FAILED:
                # The callback overtook the dispatcher's record of the acceptance.
                attempt = Attempt(backend=backend_name, outcome="accepted", at=now)
                applied = transitions.accept(
                    record, backend=backend_name, track=n, result=result, warnings=(),
                    attempts=[attempt], now=now,
                )  # fmt: skip
            else:
                applied = transitions.apply(record, result, now)
            return "keep" if applied else None

        await self._updater.update(tune_id, apply, current=current)
        return Received.APPLIED if applied else Received.DUPLICATE
