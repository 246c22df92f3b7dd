"""How a job moves between states. Pure functions on the record; the store makes them atomic.

Every path that learns something (the dispatcher, a provider webhook, a poll, a cancel)
goes through here, and transitions only move forward, so whichever path arrives first
decides the final state and later arrivals change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapters.base import ProviderResult, ResultState
from gateway.ids import track_id
from gateway.jobs.model import Attempt, JobError, JobRecord, JobStatus, Part, PartState

_PART_STATE = {
    ResultState.PENDING: PartState.SUBMITTED,
    ResultState.PROCESSING: PartState.PROCESSING,
    ResultState.SUCCEEDED: PartState.SUCCEEDED,
    ResultState.FAILED: PartState.FAILED,
}

MAX_RAW_BODY = 2048


def touch(record: JobRecord, now: datetime) -> None:
    record.updated_at = now


def merge_part(
    record: JobRecord,
    n: int,
    result: ProviderResult,
    now: datetime,
    *,
    images_requested: int | None = None,
) -> bool:
    """Apply what a provider said about submission `n`; False when it changes nothing."""
    part = record.part(n)
    if part is None:
        part = Part(n=n, submitted_at=now)
        record.parts.append(part)
        record.parts.sort(key=lambda p: p.n)
    changed = False
    if images_requested is not None and part.images_requested != images_requested:
        part.images_requested, changed = images_requested, True
    if result.provider_id and part.provider_id is None:
        part.provider_id, changed = result.provider_id, True
    new_state = _PART_STATE[result.state]
    if part.state.final or new_state.rank < part.state.rank or new_state == part.state:
        return changed
    part.state = new_state
    if new_state is PartState.SUCCEEDED:
        part.images = list(result.images)
        part.service = result.service
    elif new_state is PartState.FAILED:
        part.error = JobError(
            code=result.error_code or "provider_error",
            message=result.error_message or "the provider reported a failure",
        )
    return True


def accept(
    record: JobRecord,
    *,
    backend: str,
    adapter: str,
    reserved: Sequence[str],
    results: Sequence[tuple[int, int, ProviderResult]],
    warnings: Sequence[str],
    attempts: Sequence[Attempt],
    next_track: int,
    now: datetime,
) -> None:
    """A backend took the job: (track number, images requested, first answer) per part."""
    record.backend, record.adapter = backend, adapter
    record.reserved = list(reserved)
    record.parts_expected = len(results)
    record.first_track = results[0][0]
    record.track_id = track_id(record.id, results[0][0])
    record.next_track = max(record.next_track, next_track)
    record.warnings.extend(w for w in warnings if w not in record.warnings)
    record.attempts.extend(attempts)
    for n, requested, result in results:
        merge_part(record, n, result, now, images_requested=requested)
    settle(record, now)


def settle(record: JobRecord, now: datetime) -> bool:
    """Derive the job's status from its parts; True when this made the job final."""
    touch(record, now)
    if record.status.final or record.parts_expected == 0:
        return False
    parts = record.current_parts()
    if len(parts) < record.parts_expected or not all(p.state.final for p in parts):
        processing = any(p.state is PartState.PROCESSING for p in parts)
        record.status = JobStatus.PROCESSING if processing else JobStatus.SUBMITTED
        return False
    succeeded = [p for p in parts if p.state is PartState.SUCCEEDED]
    failed = [p for p in parts if p.state is PartState.FAILED]
    if succeeded:
        # A part never yields more images than it asked for (some providers return extras).
        record.images = [
            url for p in succeeded for url in p.images[: p.images_requested or len(p.images)]
        ]
        for part in failed:
            assert part.error is not None
            record.warnings.append(
                f"num_images: {part.images_requested or '?'} image(s) of submission "
                f"{part.n} missing ({part.error.message})"
            )
        _finish(record, JobStatus.SUCCEEDED, None, now)
    else:
        _finish(record, JobStatus.FAILED, failed[0].error, now)
    return True


def fail(record: JobRecord, code: str, message: str, now: datetime) -> bool:
    """End the job as failed unless it already ended; True when this ended it."""
    if record.status.final:
        return False
    _finish(record, JobStatus.FAILED, JobError(code=code, message=message), now)
    return True


def cancel(record: JobRecord, now: datetime) -> bool:
    if record.status.final:
        return False
    _finish(record, JobStatus.CANCELED, None, now)
    return True


def lost(record: JobRecord, now: datetime) -> None:
    """The provider no longer knows the job (polling proved it): back to the queue.

    Only then may the job go elsewhere; an accepted job is never resubmitted on a guess.
    """
    assert record.backend is not None
    record.attempts.append(
        Attempt(backend=record.backend, outcome="lost", at=now, detail="the provider lost it")
    )
    record.status = JobStatus.QUEUED
    record.backend = record.adapter = record.track_id = None
    record.parts_expected = 0
    record.reserved = []
    touch(record, now)


def failed_attempts(record: JobRecord) -> int:
    return sum(1 for a in record.attempts if a.outcome not in ("accepted", "completed"))


def keep_raw_body(record: JobRecord, body: bytes) -> None:
    """Keep a size-limited copy of an unreadable provider body for debugging."""
    record.provider_error_body = body[:MAX_RAW_BODY].decode("utf-8", "replace")


def _finish(record: JobRecord, status: JobStatus, error: JobError | None, now: datetime) -> None:
    record.status = status
    record.error = error
    record.completed_at = now
    record.updated_at = now
    record.request = None  # only needed to dispatch; not worth keeping for retention
