"""Response models that are not jobs: errors, backends, readiness, the client webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gateway.jobs.model import DeliveryAttempt, Job


class ErrorObject(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = []


class ErrorBody(BaseModel):
    error: ErrorObject


class Probe(BaseModel):
    ok: bool | None
    detail: str
    at: str | None


class BackendStatus(BaseModel):
    name: str
    adapter: str
    health: Literal["healthy", "probe_failing", "cooling_down", "ejected", "drained"]
    routable: bool
    drained: bool
    ejected_until: str | None
    cooldown_until: str | None
    ejections: int
    consecutive_failures: int
    in_flight: int
    reserved_work: float
    capacity: int
    parallelism: int
    # Where neither the config nor the adapter says: what the service times showed.
    parallelism_learned: int | None = None
    reported_queue: int | None
    reported_wait: float
    seconds_per_unit: float | None
    expected_wait: float
    last_probe: Probe
    weight: float
    tags: list[str]
    models: list[str]


class BackendList(BaseModel):
    backends: list[BackendStatus]
    queued: int
    as_of: str | None


class Health(BaseModel):
    status: str


class WebhookAck(BaseModel):
    """What a provider callback gets back when it was accepted (even if not applied)."""

    status: Literal["applied", "duplicate", "unparsable", "stray"]


class Readiness(BaseModel):
    ready: bool
    store: Literal["ok", "unreachable"]
    routable_backends: int
    draining: bool  # true from SIGTERM until exit (README "Metrics and draining")


class WebhookEvent(BaseModel):
    """The body of the client webhook, signed per Standard Webhooks."""

    type: Literal["generation.succeeded", "generation.failed"]
    data: Job


class DeadLetterView(BaseModel):
    job_id: str
    tenant: str
    webhook_id: str
    webhook_url: str | None
    dead_at: datetime
    attempts: list[DeliveryAttempt]


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterView]


class ReplayRequest(BaseModel):
    """Replay every dead-lettered delivery since a time (for one tenant)."""

    model_config = ConfigDict(extra="forbid")

    since: datetime
    tenant: str | None = None


class ReplayResult(BaseModel):
    replayed: int
