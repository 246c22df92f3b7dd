"""The adapter interface: what the gateway and routing know about any provider."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from adapters.httpclient import HttpClient
from adapters.normalized import GenerationRequest
from adapters.normalized_tune import TuneRequest

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or text like `250ms`, `5s`, `10m`, `2h`, `7d`."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("a duration is a number of seconds or text like 500ms, 5s, 10m, 2h")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class ResultMode(StrEnum):
    WEBHOOK = "webhook"  # the provider calls back; polling is the fallback after a deadline
    POLL = "poll"  # the gateway polls until the result is there


class ResultState(StrEnum):
    PENDING = "pending"  # accepted, waiting in the provider's queue
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (ResultState.SUCCEEDED, ResultState.FAILED)


class CommonOptions(BaseModel):
    """Options every adapter understands; adapters extend this with their own."""

    model_config = ConfigDict(extra="forbid")

    timeout: Seconds = Field(default=30.0, gt=0, description="Seconds to wait for a submit answer.")
    poll_timeout: Seconds = Field(default=10.0, gt=0, description="Seconds for a poll or probe.")
    webhook_deadline: Seconds = Field(
        default=60.0, gt=0, description="Seconds after acceptance before polling for a result."
    )
    poll_interval: Seconds = Field(default=5.0, gt=0, description="Seconds between polls.")


@dataclass(frozen=True)
class Target:
    """One backend as its adapter sees it."""

    name: str
    base_url: str
    api_key: SecretStr | None
    models: Mapping[str, str]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    """One call to the provider: a path under the backend's base_url and a body.

    The body holds no credentials and no callback; `Adapter.submit` adds those.
    """

    endpoint: str
    body: dict[str, Any]
    images: int


@dataclass
class Plan:
    """How one backend would carry out a request: provider calls plus what had to change."""

    model_id: str
    submissions: list[Submission]
    warnings: list[str] = field(default_factory=list)
    inexact: list[str] = field(default_factory=list)  # normalized fields not honoured exactly
    work: float = 1.0  # megapixel-steps, for load estimates

    @property
    def exact(self) -> bool:
        return not self.inexact


@dataclass(frozen=True)
class Callback:
    """Where and how the provider should call the gateway back for one submission."""

    url: str
    track_id: str


@dataclass(frozen=True)
class ProviderResult:
    """A provider's answer about one submission, from a submit, a webhook or a poll."""

    state: ResultState
    provider_id: str | None = None
    images: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    eta: float | None = None  # seconds, when the provider estimates one
    finished_at: float | None = None  # epoch seconds, when the provider says it finished
    # When the generation itself ran (epoch seconds, the provider's clock), where the
    # provider says: routing learns speed and parallelism from it, not from queueing.
    service: tuple[float, float] | None = None


@dataclass(frozen=True)
class Probe:
    """A cheap health check: is the backend up, and how much work does it report queued."""

    healthy: bool
    queue_depth: int | None = None  # jobs waiting there, every client's
    queue_seconds: float | None = None  # the backend's own estimate of its queue, in seconds
    detail: str = ""


@dataclass(frozen=True)
class Capacity:
    """What a backend runs at once and accepts when its config does not say.

    `parallelism` None: learn it from the service intervals the provider reports (a GPU
    server of unknown size); `hosted`: an elastic API that runs what it accepts, so what it
    runs at once is its concurrency limit. `max_concurrency` None: no hard limit known.
    """

    parallelism: int | None = None
    max_concurrency: int | None = None
    hosted: bool = False


HOSTED = Capacity(max_concurrency=4, hosted=True)


def plan_key(kind: str, target: Target, options: BaseModel) -> Hashable:
    """The plan key of an adapter whose `plan` reads the request, the target's models and
    the options, nothing else (a rejection's reasons may name the backend: not shared)."""
    return (kind, tuple(sorted(target.models.items())), options.model_dump_json())


class Adapter(Protocol):
    """Speaks one provider's API for one backend (one key or one server)."""

    kind: ClassVar[str]
    target: Target
    result_mode: ResultMode
    capacity: Capacity
    # Backends whose adapters have the same key (not None) plan every request alike, so a
    # request is planned once for them all (many keys of one provider); None: plan apart.
    plan_key: Hashable | None

    @property
    def options(self) -> CommonOptions: ...

    def plan(self, request: GenerationRequest) -> Plan:
        """Convert a request; raise `Unsupported` when this backend cannot serve it."""
        ...

    async def submit(
        self, session: HttpClient, submission: Submission, callback: Callback
    ) -> ProviderResult:
        """Send one submission; raise a `ProviderError` when the provider did not take it."""
        ...

    def parse_webhook(self, body: bytes) -> ProviderResult:
        """Read the provider's callback body; raise `ProviderBadAnswer` when unreadable."""
        ...

    async def poll(self, session: HttpClient, provider_id: str) -> ProviderResult:
        """Ask the provider where a submission stands."""
        ...

    async def probe(self, session: HttpClient) -> Probe:
        """A cheap health and queue check; never a real generation."""
        ...


@dataclass
class TunePlan:
    """How one backend would train a tune: the provider's fields plus what had to change."""

    fields: dict[str, Any]  # provider field names; images still as URLs or data: URIs
    token: str  # the word a prompt must contain for the tune to show
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TuneResult:
    """A provider's answer about one tune, from a create, a callback or a poll."""

    state: ResultState
    provider_id: str | None = None
    token: str | None = None
    eta: datetime | None = None
    trained_at: datetime | None = None
    expires_at: datetime | None = None
    error_message: str | None = None


@runtime_checkable
class Trainer(Protocol):
    """The optional training capability: an adapter that also has these can train tunes.

    The gateway asks `trainer_of(adapter)`; nothing else needs to know which providers
    train. Errors are the same `ProviderError` family as for generations.
    """

    def plan_tune(self, request: TuneRequest) -> TunePlan:
        """Convert a tune request; raise `Unsupported` when this backend cannot train it."""
        ...

    async def submit_tune(
        self, session: HttpClient, plan: TunePlan, callback: Callback
    ) -> TuneResult:
        """Start training; raise a `ProviderError` when the provider did not take it."""
        ...

    def parse_tune_webhook(self, body: bytes) -> TuneResult:
        """Read the provider's tune callback; raise `ProviderBadAnswer` when unreadable."""
        ...

    async def poll_tune(self, session: HttpClient, provider_id: str) -> TuneResult:
        """Ask the provider where a tune stands."""
        ...

    async def delete_tune(self, session: HttpClient, provider_id: str) -> None:
        """Cancel or delete a tune at the provider; raise a `ProviderError` when refused."""
        ...

    def plan_on_tune(self, request: GenerationRequest, provider_id: str) -> Plan:
        """Convert a generation that prompts one of this backend's trained tunes."""
        ...


def trainer_of(adapter: Adapter) -> Trainer | None:
    """The adapter's training capability, or None when it cannot train."""
    return adapter if isinstance(adapter, Trainer) else None


class SimulatorSettings(BaseModel):
    """How a provider simulator behaves; shared by every simulator (see adapters/simkit)."""

    model_config = ConfigDict(extra="forbid")

    api_keys: list[str] = Field(default_factory=lambda: ["sim-key"])
    speed: float = Field(default=1.0, gt=0, description="Seconds for a 512x512, 30-step image.")
    concurrency: int = Field(default=4, ge=1, description="Generations processed at once.")
    fail_rate: float = Field(default=0.0, ge=0, le=1, description="Share of submits answered 5xx.")
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1, description="Share answered 429.")
    retry_after: float = Field(default=1.0, ge=0)
    timeout_rate: float = Field(default=0.0, ge=0, le=1, description="Share left unanswered.")
    malformed_rate: float = Field(default=0.0, ge=0, le=1, description="Share answered garbage.")
    generation_fail_rate: float = Field(default=0.0, ge=0, le=1)
    duplicate_webhook_rate: float = Field(default=0.0, ge=0, le=1)
    drop_webhook_rate: float = Field(default=0.0, ge=0, le=1)
    webhook_delay: float = Field(default=0.0, ge=0, description="Extra seconds before callbacks.")
    instant_threshold: float = Field(
        default=0.0, ge=0, description="Jobs shorter than this are answered synchronously."
    )
    enterprise: bool = False
    seed: int | None = None


class AdapterFactory(Protocol):
    """What one provider folder registers: how to build its adapters and its simulator."""

    kind: str
    options_model: type[CommonOptions]

    def create(self, target: Target) -> Adapter: ...

    def simulator(self, settings: SimulatorSettings) -> web.Application: ...

    def simulator_base_path(self, settings: SimulatorSettings) -> str:
        """The path under the simulator's origin that plays the role of `base_url`."""
        ...
