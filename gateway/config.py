"""The settings model (the YAML config file of PRODUCT.md), built once and passed in."""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adapters.base import Seconds, Target
from adapters.normalized import PRIORITY_CLASSES, Priority
from adapters.registry import ADAPTERS

_KEY_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


def _http_url(value: Any) -> Any:
    if isinstance(value, str) and not re.match(r"^https?://[^\s/]+[^\s]*$", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _key_hash(value: Any) -> Any:
    if isinstance(value, str) and not _KEY_HASH.match(value):
        raise ValueError("must be 'sha256:' followed by 64 lowercase hex digits")
    return value


KeyHash = Annotated[str, BeforeValidator(_key_hash)]
Name = Annotated[str, Field(pattern=_NAME)]
HttpUrl = Annotated[str, BeforeValidator(_http_url)]


def hash_key(key: str) -> str:
    """The form API keys take in the config: `sha256:<hex>` of the key."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(Section):
    host: str = "0.0.0.0"  # noqa: S104 - a service listens on all interfaces by default
    port: int = Field(default=8080, ge=0, le=65535)


class RateLimit(Section):
    per_second: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class Quotas(Section):
    """Fleet-wide limits of one tenant; each one is off unless set."""

    concurrency: int | None = Field(
        default=None, ge=1, description="Jobs accepted and not yet final, across the fleet."
    )
    daily_images: int | None = Field(default=None, ge=1, description="Images per UTC day.")
    daily_reset_hour: int = Field(default=0, ge=0, le=23, description="UTC hour the day starts.")
    monthly_spend: float | None = Field(
        default=None, gt=0, description="Estimated cost per calendar month (UTC), in `currency`."
    )


class Priorities(Section):
    default: Priority = "interactive"
    max: Priority = "interactive"

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if PRIORITY_CLASSES.index(self.default) < PRIORITY_CLASSES.index(self.max):
            raise ValueError(f"default {self.default!r} is above max {self.max!r}")
        return self


class Tenant(Section):
    name: Name
    # Several hashes may be valid at once: rotation adds the new key, then drops the old.
    api_keys: list[KeyHash] = Field(min_length=1)
    webhook_secret: SecretStr
    rate_limit: RateLimit | None = None
    backends: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    quotas: Quotas = Quotas()
    priority: Priorities = Priorities()
    weight: float = Field(
        default=1.0, gt=0, le=1000, description="Share of the gateway queue within a class."
    )

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        import base64
        import binascii

        raw = value.get_secret_value()
        if not raw.startswith("whsec_"):
            raise ValueError("must start with 'whsec_' (Standard Webhooks secret)")
        try:
            decoded = base64.b64decode(raw[len("whsec_") :], validate=True)
        except binascii.Error:
            raise ValueError("the part after 'whsec_' must be base64") from None
        if len(decoded) < 16:
            raise ValueError("must hold at least 16 bytes of key material")
        return value


class Price(Section):
    """What one backend charges, as estimated: any mix of the three."""

    per_image: float = Field(default=0.0, ge=0)
    per_megapixel_step: float = Field(default=0.0, ge=0)
    per_second: float = Field(default=0.0, ge=0)


class Backend(Section):
    name: Name
    adapter: str
    base_url: HttpUrl
    api_key: SecretStr | None = None
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Hard limit on jobs in flight there. Default: 4 for a hosted API; none "
        "for a GPU server (routing sends it up to 4x what it runs at once).",
    )
    parallelism: int | None = Field(
        default=None,
        ge=1,
        description="Jobs it runs at once. Default: 1 for ComfyUI, the limit for a hosted "
        "API, else learned from the service times the server reports.",
    )
    weight: float = Field(default=1.0, gt=0)
    tags: list[Name] = Field(default_factory=list)
    models: dict[str, str] = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    price: Price = Price()

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, value: str) -> str:
        if value not in ADAPTERS:
            raise ValueError(f"unknown adapter; known: {', '.join(sorted(ADAPTERS))}")
        return value

    @field_validator("options")
    @classmethod
    def _adapter_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        adapter = info.data.get("adapter")
        if adapter in ADAPTERS:
            ADAPTERS[adapter].options_model.model_validate(value)
        return value

    def target(self) -> Target:
        return Target(
            name=self.name,
            base_url=self.base_url.rstrip("/"),
            api_key=self.api_key,
            models=self.models,
            options=self.options,
        )


class Ejection(Section):
    consecutive_failures: int = Field(default=5, ge=1)
    base_time: Seconds = 5.0
    max_time: Seconds = 300.0
    max_share: float = Field(default=0.5, ge=0, le=1)


class RetryBudget(Section):
    ratio: float = Field(default=0.2, ge=0, le=10)
    min_retries: int = Field(default=3, ge=0)


class Routing(Section):
    strategy: Literal["least_loaded", "p2c", "round_robin", "weighted_random", "priority"] = (
        "least_loaded"
    )
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_budget: RetryBudget = RetryBudget()
    reservation_lease: Seconds = 30.0
    view_refresh: Seconds = 0.25
    probe_interval: Seconds = 10.0
    speed_prior: Seconds = Field(
        default=0.5, gt=0, description="Seconds per megapixel-step before anything is learned."
    )
    queue_bound: int = Field(default=10_000, ge=0)
    interactive_reserve: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Share of each backend's slots `batch` jobs may not take, so "
        "`interactive` work finds room at once even while batch work saturates the fleet.",
    )
    ejection: Ejection = Ejection()


def _network(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    return value


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_network)]

SVIX_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class Outbound(Section):
    allow_http: bool = False
    allow_networks: list[Network] = Field(default_factory=list)
    timeout: Seconds = 15.0
    resolve_timeout: Seconds = Field(
        default=2.0, description="How long a submitted URL's host may take to resolve."
    )
    schedule: list[Seconds] = Field(default_factory=lambda: list(SVIX_SCHEDULE), min_length=1)
    jitter: float = Field(default=0.2, ge=0, le=1)
    visibility_timeout: Seconds = 60.0
    concurrency: int = Field(default=64, ge=1)
    per_host_concurrency: int = Field(
        default=16,
        ge=1,
        description="Deliveries in flight to one slow receiver host, per instance.",
    )


class Jobs(Section):
    retention: Seconds = 7 * 86400.0
    result_timeout: Seconds = 900.0
    dispatch_timeout: Seconds = 120.0
    idempotency_ttl: Seconds = 86400.0
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Request bodies without `data:` images."
    )
    max_image_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Request bodies carrying `data:` images (the images' bytes included).",
    )


class Tunes(Section):
    """Fine-tunes (`/v1/tunes`): image counts accepted, and how long training may take."""

    min_images: int = Field(default=1, ge=1, le=50)
    max_images: int = Field(default=50, ge=1, le=50)
    training_timeout: Seconds = Field(
        default=6 * 3600.0, gt=0, description="Seconds after acceptance before a tune fails."
    )
    max_wait: Seconds = Field(default=60.0, gt=0, description="Longest `?wait=` on a tune.")


class Shutdown(Section):
    """The drain on SIGTERM (README "Metrics and draining")."""

    drain_seconds: Seconds = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="SIGTERM to exit, at most; keep it below the orchestrator's grace period "
        "(Kubernetes: 30 s).",
    )
    unready_seconds: Seconds = Field(
        default=3.0,
        ge=0,
        description="How long /readyz answers 503 while the listener stays open, so load "
        "balancers take the instance out before it stops accepting connections.",
    )


class Usage(Section):
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    retention_days: int = Field(default=400, ge=1, le=3660)


class Settings(Section):
    public_url: HttpUrl
    store: str = Field(
        default="memory://",
        pattern=r"^(redis|rediss|unix|memory|redis\+cluster|rediss\+cluster)://",
    )
    listen: Listen = Listen()
    admin_keys: list[KeyHash] = Field(default_factory=list)
    routing: Routing = Routing()
    outbound: Outbound = Outbound()
    jobs: Jobs = Jobs()
    tunes: Tunes = Tunes()
    shutdown: Shutdown = Shutdown()
    usage: Usage = Usage()
    tenants: list[Tenant] = Field(min_length=1)
    backends: list[Backend] = Field(min_length=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    instance_id: str | None = Field(default=None, pattern=_NAME)

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        _unique("backends", [b.name for b in self.backends])
        _unique("tenants", [t.name for t in self.tenants])
        seen: dict[str, str] = {}
        for tenant in self.tenants:
            for key in tenant.api_keys:
                if key in seen and seen[key] != tenant.name:
                    raise ValueError(
                        f"tenant {tenant.name!r} shares an API key with tenant {seen[key]!r}"
                    )
                seen[key] = tenant.name
            for pattern in tenant.backends:
                if not any(backend_matches(b, pattern) for b in self.backends):
                    raise ValueError(
                        f"tenant {tenant.name!r}: backends pattern {pattern!r} matches no backend"
                    )
        return self

    @property
    def public_base(self) -> str:
        return self.public_url.rstrip("/")


def _unique(what: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what}: duplicate names {', '.join(dupes)}")


def backend_matches(backend: Backend, pattern: str) -> bool:
    """A tenant pattern is a backend name, a glob over names, or a tag."""
    return fnmatch.fnmatchcase(backend.name, pattern) or pattern in backend.tags
