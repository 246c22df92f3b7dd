"""How a tune moves between states: pure functions on the record, forward only.

The dispatcher, a provider callback, a poll and a cancel all go through here; whichever
arrives first decides the final state and later arrivals change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapters.base import ResultState, TuneResult
from gateway.jobs.model import Attempt, JobError
from gateway.tunes.model import TuneRecord, TuneStatus


def accept(
    record: TuneRecord,
    *,
    backend: str,
    track: int,
    result: TuneResult,
    warnings: Sequence[str],
    attempts: Sequence[Attempt],
    now: datetime,
) -> bool:
    """A backend took the tune; False when it ended or was accepted meanwhile.

    (A fast training's callback can arrive before the dispatcher records the acceptance;
    the callback then accepts it itself.)
    """
    if record.status is not TuneStatus.QUEUED:
        return False
    record.attempts.extend(attempts)
    record.next_track = max(record.next_track, track + 1)
    record.backend, record.track = backend, track
    record.provider_tune_id = result.provider_id
    record.warnings = [*record.warnings, *warnings]
    record.status = TuneStatus.TRAINING
    record.request = None  # nothing dispatches it again
    apply(record, result, now)
    record.updated_at = now
    return True


def apply(record: TuneRecord, result: TuneResult, now: datetime) -> bool:
    """What a provider said about the tune (callback or poll); False when nothing changed."""
    if record.status is not TuneStatus.TRAINING:
        return False
    before = (record.eta, record.token, record.provider_tune_id)
    record.eta = result.eta or record.eta
    record.token = result.token or record.token
    record.provider_tune_id = record.provider_tune_id or result.provider_id
    if result.state is ResultState.SUCCEEDED:
        record.status = TuneStatus.SUCCEEDED
        record.trained_at = result.trained_at or now
        record.expires_at = result.expires_at
    elif result.state is ResultState.FAILED:
        record.status = TuneStatus.FAILED
        record.error = JobError(
            code="provider_error", message=result.error_message or "the provider failed the tune"
        )
    elif before == (record.eta, record.token, record.provider_tune_id):
        return False
    record.updated_at = now
    if record.status.final:
        record.completed_at = now
    return True


def fail(record: TuneRecord, code: str, message: str, now: datetime) -> bool:
    if record.status.final:
        return False
    record.status = TuneStatus.FAILED
    record.error = JobError(code=code, message=message)
    record.request = None
    record.updated_at = record.completed_at = now
    return True


def cancel(record: TuneRecord, now: datetime) -> bool:
    if record.status.final:
        return False
    record.status = TuneStatus.CANCELED
    record.request = None
    record.updated_at = record.completed_at = now
    return True
