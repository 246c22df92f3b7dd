"""Job transitions: forward only, so whichever path arrives first decides, exactly once."""

from __future__ import annotations

from adapters.base import ProviderResult, ResultState
from gateway.jobs import transitions
from gateway.jobs.model import JobRecord, JobStatus, utcnow

NOW = utcnow()


def record() -> JobRecord:
    return JobRecord(id="gen_" + "0" * 24, status=JobStatus.QUEUED, tenant="acme", created_at=NOW,
                     updated_at=NOW, secret="s", request={"prompt": "x"})  # fmt: skip


def accepted(parts: int = 1) -> JobRecord:
    rec = record()
    transitions.accept(
        rec, backend="ml", adapter="modelslab", reserved=["m"], warnings=["w"], attempts=[],
        results=[
            (n, 4, ProviderResult(ResultState.PROCESSING, provider_id=str(n))) for n in range(parts)
        ],
        next_track=parts, now=NOW,
    )  # fmt: skip
    return rec


def done(*images: str) -> ProviderResult:
    return ProviderResult(ResultState.SUCCEEDED, images=images)


def test_accept_then_success_ends_once() -> None:
    rec = accepted()
    assert rec.status is JobStatus.PROCESSING
    assert transitions.merge_part(rec, 0, done("a"), NOW)
    assert transitions.settle(rec, NOW)
    assert rec.status is JobStatus.SUCCEEDED
    assert rec.images == ["a"]
    assert rec.request is None  # dropped once final
    assert not transitions.merge_part(rec, 0, done("b"), NOW)  # a duplicate changes nothing
    assert not transitions.settle(rec, NOW)
    assert rec.images == ["a"]


def test_split_job_waits_for_every_part_and_merges_in_order() -> None:
    rec = accepted(parts=2)
    transitions.merge_part(rec, 1, done("c", "d"), NOW)
    assert not transitions.settle(rec, NOW)
    transitions.merge_part(rec, 0, done("a", "b"), NOW)
    assert transitions.settle(rec, NOW)
    assert rec.images == ["a", "b", "c", "d"]


def test_partial_failure_keeps_images_and_warns() -> None:
    rec = accepted(parts=2)
    transitions.merge_part(rec, 0, done("a"), NOW)
    transitions.merge_part(rec, 1, ProviderResult(ResultState.FAILED, error_message="NSFW"), NOW)
    assert transitions.settle(rec, NOW)
    assert rec.status is JobStatus.SUCCEEDED
    assert any("NSFW" in w for w in rec.warnings)


def test_all_parts_failing_fails_the_job_with_the_provider_reason() -> None:
    rec = accepted()
    transitions.merge_part(
        rec, 0, ProviderResult(ResultState.FAILED, error_code="x", error_message="boom"), NOW
    )
    assert transitions.settle(rec, NOW)
    assert rec.status is JobStatus.FAILED
    assert rec.error is not None
    assert rec.error.message == "boom"


def test_a_part_never_yields_more_than_requested() -> None:
    rec = accepted()
    transitions.merge_part(rec, 0, done("1", "2", "3", "4", "5", "6"), NOW)
    transitions.settle(rec, NOW)
    assert rec.images == ["1", "2", "3", "4"]


def test_early_webhook_before_acceptance_is_kept_and_used() -> None:
    rec = record()
    transitions.merge_part(rec, 0, done("early"), NOW)  # arrived before the dispatcher recorded
    assert not transitions.settle(rec, NOW)
    assert rec.status is JobStatus.QUEUED
    transitions.accept(
        rec, backend="ml", adapter="modelslab", reserved=[], warnings=[], attempts=[],
        results=[(0, 1, ProviderResult(ResultState.PROCESSING, provider_id="9"))],
        next_track=1, now=NOW,
    )  # fmt: skip
    assert rec.status is JobStatus.SUCCEEDED
    assert rec.images == ["early"]


def test_states_only_move_forward() -> None:
    rec = accepted()
    transitions.merge_part(rec, 0, ProviderResult(ResultState.PENDING), NOW)  # stale poll answer
    assert rec.parts[0].state.value == "processing"
    assert transitions.cancel(rec, NOW)
    assert not transitions.fail(rec, "x", "y", NOW)
    assert rec.status is JobStatus.CANCELED
