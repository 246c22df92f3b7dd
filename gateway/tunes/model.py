"""The tune as tenants see it (PRODUCT.md, "Fine-tunes") and the record the store keeps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.jobs.model import Attempt, DeliveryAttempt, DeliveryState, JobError

MODEL_PREFIX = "tune:"


class TuneStatus(StrEnum):
    QUEUED = "queued"  # no backend has accepted it yet
    TRAINING = "training"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in (TuneStatus.SUCCEEDED, TuneStatus.FAILED, TuneStatus.CANCELED)


class Tune(BaseModel):
    """The public tune: the body of every tune answer and of the `tune.*` webhooks' `data`."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: TuneStatus
    tenant: str
    name: str
    title: str
    backend: str | None = None
    provider_tune_id: str | None = None
    model: str  # what to put in a generation's `model` to use it: `tune:<id>`
    token: str | None = None
    eta: datetime | None = None
    trained_at: datetime | None = None
    expires_at: datetime | None = None
    warnings: list[str] = Field(default_factory=list)
    error: JobError | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    webhook_url: str | None = None
    deliveries: list[DeliveryAttempt] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


PUBLIC_FIELDS = frozenset(Tune.model_fields)


class TuneRecord(Tune):
    """What the store keeps: the public tune plus what the gateway needs to finish it."""

    secret: str
    request: dict[str, Any] | None = None  # the validated request, for a later dispatch
    next_track: int = 0
    track: int | None = None  # the accepted submission's track number
    deadline: float = 0.0  # epoch seconds after which unfinished training fails
    delivery_state: DeliveryState = DeliveryState.NONE
    delivery_base: int = 0
    completed_at: datetime | None = None  # when it ended (the relay measures delivery lag)

    def public(self) -> Tune:
        return Tune.model_validate(self.model_dump(include=set(PUBLIC_FIELDS)))


class TuneList(BaseModel):
    """`GET /v1/tunes`: a page of the tenant's tunes, newest first."""

    data: list[Tune]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last one."
    )


class TuneEvent(BaseModel):
    """The body of a tune's client webhook, signed per Standard Webhooks."""

    type: Literal["tune.succeeded", "tune.failed"]
    data: Tune
