"""Apply a change to a job atomically: read, mutate, compare-and-set, retry on conflict."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.jobs.model import DeliveryState, JobRecord, JobStatus
from gateway.relay.events import render_event
from gateway.store.jobs import Conflict, JobStore, PollChange, Versioned
from gateway.store.keys import EVENTS_CHANNEL
from gateway.store.usage import UsageEntry


@dataclass(frozen=True)
class Change:
    """What a mutation wants done with the job's poll schedule."""

    poll: PollChange = "keep"


# A mutation edits the record in place and returns a Change, or None for "nothing to do".
Mutation = Callable[[JobRecord], Change | None]
FinalHook = Callable[[JobRecord], Awaitable[None]]
# What a job's end does that is safe to do twice (freeing its slots): started before its
# final save is awaited, so its store call shares the save's round trip, and run again if
# the save lost a race and the retried change ends the job again.
EndHook = Callable[[JobRecord], Awaitable[None]]
# Prices a job that just ended (and notes it on the record); None when nothing to record.
Accounting = Callable[[JobRecord], UsageEntry | None]


class JobChurn(Exception):
    """The job changed under us too many times in a row."""


class JobUpdater:
    def __init__(
        self,
        jobs: JobStore,
        on_final: FinalHook,
        *,
        on_end: EndHook | None = None,
        tries: int = 8,
        account: Accounting | None = None,
    ) -> None:
        self._jobs = jobs
        self._on_final = on_final  # once the job's end is saved
        self._on_end = on_end
        self._tries = tries
        self._account = account

    async def update(
        self,
        job_id: str,
        mutate: Mutation,
        *,
        current: Versioned | None = None,
        owned: bool = False,
    ) -> Versioned | None:
        """Returns the job as saved (or as found, when the mutation changed nothing).

        A record read here, or a `current` the caller hands over with `owned=True` (it
        keeps no use for it), is mutated in place: a deep copy of a job costs more than
        the rest of the update (issue 12's profile). Anything else is copied first.
        """
        for _ in range(self._tries):
            if current is None:
                current = await self._jobs.get(job_id)
                if current is None:
                    return None
                owned = True
            record = current.record if owned else current.record.model_copy(deep=True)
            was_final = record.status.final
            change = mutate(record)
            if change is None:
                return current
            became_final = record.status.final and not was_final
            body = None
            usage = self._account(record) if became_final and self._account else None
            if became_final and record.webhook_url and record.status is not JobStatus.CANCELED:
                record.delivery_state = DeliveryState.PENDING
                body = render_event(record)
            saving = self._jobs.save(
                current,
                record,
                poll="remove" if record.status.final else change.poll,
                delivery_body=body,
                channel=EVENTS_CHANNEL if became_final else "",
                usage=usage,
            )
            lost = False  # the job changed since `current` was read
            try:
                if became_final and self._on_end is not None:
                    await self._on_end(record)  # its store call joins the save's round trip
            finally:
                try:
                    saved = await saving
                except Conflict:
                    lost = True
            if lost:
                current = None
                continue
            if saved is not None and became_final:
                await self._on_final(record)
            return saved
        raise JobChurn(job_id)
