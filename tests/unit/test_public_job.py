"""A record's public part dumped straight from it equals the public Job built from it."""

from __future__ import annotations

import json

from adapters.base import ProviderResult, ResultState
from gateway.api.generations import job_response
from gateway.jobs import transitions
from gateway.jobs.model import (
    Attempt,
    DeliveryAttempt,
    JobError,
    JobRecord,
    JobStatus,
    JobUsage,
    utcnow,
)
from gateway.relay.events import render_event

NOW = utcnow()


def rich() -> JobRecord:
    """Every public field set, and private ones (secret, parts, usage) that must not leak."""
    rec = JobRecord(
        id="gen_" + "1" * 24, status=JobStatus.QUEUED, tenant="acme", created_at=NOW,
        updated_at=NOW, secret="do-not-show", request={"prompt": "x"},
        metadata={"order": 7, "tags": ["a", "é"]}, webhook_url="https://example.com/hook",
    )  # fmt: skip
    transitions.accept(
        rec, backend="ml", adapter="modelslab", reserved=["m1", "m2"], warnings=["w1"],
        attempts=[Attempt(backend="other", outcome="server_error", detail="502", at=NOW)],
        results=[(0, 2, ProviderResult(ResultState.PROCESSING, provider_id="p0"))],
        next_track=1, now=NOW,
    )  # fmt: skip
    transitions.merge_part(rec, 0, ProviderResult(ResultState.SUCCEEDED, images=("u1", "u2")), NOW)
    transitions.settle(rec, NOW)
    rec.error = JobError(code="none", message="kept for the test")
    rec.usage = JobUsage(images=2, megapixel_steps=1.5, provider_seconds=2.0, cost=0.01)
    rec.deliveries.append(
        DeliveryAttempt(at=NOW, outcome="failed", status=500, detail="HTTP 500", duration_ms=3.2)
    )
    return rec


def test_public_data_is_the_public_job_dumped() -> None:
    rec = rich()
    assert rec.status is JobStatus.SUCCEEDED
    assert rec.public_data() == rec.public().model_dump(mode="json")
    assert list(rec.public_data()) == list(rec.public().model_dump(mode="json"))  # same order


def test_answers_and_webhooks_carry_the_public_fields_only() -> None:
    rec = rich()
    answer = job_response(rec)
    assert answer.body == rec.public().model_dump_json().encode()
    event = json.loads(render_event(rec))
    assert event == {"type": "generation.succeeded", "data": rec.public().model_dump(mode="json")}
    assert isinstance(answer.body, bytes)
    for text in (answer.body, render_event(rec)):
        for private in (b"do-not-show", b'"m1"', b"megapixel"):
            assert private not in text
