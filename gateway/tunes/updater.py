"""Apply a change to a tune atomically: read, mutate, compare-and-set, retry on conflict.

When a tune ends `succeeded` or `failed` and has a `webhook_url`, the same write renders
its `tune.*` event and puts it on the shard's delivery stream: from there the relay
delivers it like a generation's (signed, retried, dead-lettered, replayable).
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.normalized import dump_json
from gateway.jobs.model import DeliveryState
from gateway.store.jobs import Conflict, PollChange
from gateway.store.keys import EVENTS_CHANNEL
from gateway.tunes.model import TuneRecord, TuneStatus
from gateway.tunes.store import TuneStore, VersionedTune
from observability.metrics import Metrics

EVENT_TYPES = {TuneStatus.SUCCEEDED: "tune.succeeded", TuneStatus.FAILED: "tune.failed"}

# A mutation edits the record in place and returns the poll change, or None for "nothing".
TuneMutation = Callable[[TuneRecord], PollChange | None]


class TuneChurn(Exception):
    """The tune changed under us too many times in a row."""


def render_event(record: TuneRecord) -> bytes:
    data = record.public().model_dump(mode="json")
    return dump_json({"type": EVENT_TYPES[record.status], "data": data})


class TuneUpdater:
    def __init__(self, tunes: TuneStore, metrics: Metrics, *, tries: int = 8) -> None:
        self._tunes = tunes
        self._metrics = metrics
        self._tries = tries

    async def update(
        self, tune_id: str, mutate: TuneMutation, *, current: VersionedTune | None = None
    ) -> VersionedTune | None:
        """The tune as saved (or as found, when the mutation changed nothing)."""
        for _ in range(self._tries):
            if current is None:
                current = await self._tunes.get(tune_id)
                if current is None:
                    return None
            record = current.record.model_copy(deep=True)
            was_final = record.status.final
            poll = mutate(record)
            if poll is None:
                return current
            became_final = record.status.final and not was_final
            body = None
            if became_final and record.webhook_url and record.status in EVENT_TYPES:
                record.delivery_state = DeliveryState.PENDING
                body = render_event(record)
            try:
                saved = await self._tunes.save(
                    current,
                    record,
                    poll="remove" if record.status.final else poll,
                    delivery_body=body,
                    channel=EVENTS_CHANNEL if became_final else "",
                )
            except Conflict:
                current = None
                continue
            if saved is not None and became_final:
                self._metrics.tunes.labels(record.tenant, record.status.value).inc()
            return saved
        raise TuneChurn(tune_id)
