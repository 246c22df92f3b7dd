"""The tunes' poll schedule: dispatch a tune an instance died holding, poll a late callback.

A tune is due when it waits for dispatch (the instance that took the request died before
a backend accepted it), when its provider's callback is late (its eta plus the backend's
`webhook_deadline`), or when its training deadline passes. Whoever claims it (atomically,
in Redis) acts on it; every instance runs this loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from adapters.base import trainer_of
from adapters.errors import ProviderError
from adapters.httpclient import HttpClient
from gateway.background import Background
from gateway.jobs.model import utcnow
from gateway.store.jobs import PollChange
from gateway.tunes import transitions
from gateway.tunes.dispatch import TuneDispatcher
from gateway.tunes.model import TuneRecord, TuneStatus
from gateway.tunes.store import TuneStore
from gateway.tunes.updater import TuneMutation, TuneUpdater
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend

log = get_logger(__name__)

TICK = 0.5
MAX_CHECKS = 16


class TunePoller:
    def __init__(
        self,
        *,
        tunes: TuneStore,
        updater: TuneUpdater,
        dispatcher: TuneDispatcher,
        backends: Mapping[str, Backend],
        session: HttpClient,
        metrics: Metrics,
        background: Background,
        lease: float,
    ) -> None:
        self._tunes = tunes
        self._updater = updater
        self._dispatcher = dispatcher
        self._backends = backends
        self._session = session
        self._metrics = metrics
        self._background = background
        self._lease = lease  # a claim outlasts a full dispatch with every retry
        self._running = 0
        self._stopping = False

    def stop(self) -> None:
        """Claim no more due tunes (checks under way finish): others take the schedule."""
        self._stopping = True

    async def run(self) -> None:
        while not self._stopping:
            free = MAX_CHECKS - self._running
            if free > 0:
                for tune_id in await self._tunes.claim_polls(time.time(), self._lease, free):
                    self._running += 1
                    self._background.spawn(self._counted(tune_id), name=f"poll-{tune_id}")
            await asyncio.sleep(TICK)

    async def _counted(self, tune_id: str) -> None:
        try:
            await self.check(tune_id)
        finally:
            self._running -= 1

    async def check(self, tune_id: str) -> None:
        current = await self._tunes.get(tune_id)
        if current is None or current.record.status.final:
            await self._tunes.unschedule(tune_id)
            return
        record = current.record
        if time.time() > record.deadline:
            await self._updater.update(tune_id, _expire)
            return
        if record.status is TuneStatus.QUEUED:
            await self._dispatcher.dispatch(current)
            return
        backend = self._backends.get(record.backend or "")
        trainer = trainer_of(backend.adapter) if backend is not None else None
        if backend is None or trainer is None:
            message = f"backend {record.backend} can no longer be asked about this tune"
            await self._updater.update(tune_id, _fail("backend_removed", message))
            return
        if record.provider_tune_id is None:
            # Maybe accepted, never answered: nothing to ask about; its callback or the
            # training deadline ends it.
            await self._tunes.schedule(tune_id, record.deadline + 1)
            return
        interval = backend.adapter.options.poll_interval
        try:
            result = await trainer.poll_tune(self._session, record.provider_tune_id)
        except ProviderError as exc:
            # Transient (or unreadable): the next poll tries again, until the deadline.
            log.info("tune_poll_failed", tune_id=tune_id, error=exc.message)
            self._metrics.polls.labels(backend.name, "error").inc()
            await self._tunes.schedule(tune_id, time.time() + interval)
            return
        self._metrics.polls.labels(
            backend.name, "finished" if result.state.final else "pending"
        ).inc()
        next_due = time.time() + interval
        if result.eta is not None:
            next_due = max(next_due, result.eta.timestamp())

        def apply(record: TuneRecord) -> PollChange | None:
            return next_due if transitions.apply(record, result, utcnow()) else None

        saved = await self._updater.update(tune_id, apply, current=current)
        if saved is not None and saved.version == current.version:
            await self._tunes.schedule(tune_id, next_due)


def _fail(code: str, message: str) -> TuneMutation:
    def mutate(record: TuneRecord) -> PollChange | None:
        return "remove" if transitions.fail(record, code, message, utcnow()) else None

    return mutate


def _expire(record: TuneRecord) -> PollChange | None:
    if record.status is TuneStatus.QUEUED:
        code, message = "not_dispatched", "no backend took the tune before its deadline"
    else:
        code, message = "training_timeout", f"{record.backend} did not finish training in time"
    return "remove" if transitions.fail(record, code, message, utcnow()) else None
