"""Every metric the gateway exports, declared in one place on an explicit registry.

Labels are bounded: route templates, backend/adapter/tenant names from the config, and
small fixed vocabularies of outcomes. Never job ids, track ids or URLs.

Two kinds of series, and the rule for adding them up over several instances:
- **Per-instance** counters and histograms (requests, attempts, failovers, provider errors,
  lags, store latency...) count what this instance did: dashboards `sum` them.
- **Shared** gauges (`gateway_queue_depth`, `gateway_webhook_dead_letters`,
  `gateway_backend_inflight`, `gateway_backend_reported_queue`, `gateway_backend_up`,
  speed and expected wait) export state that lives in Redis or at the backend, so every
  instance reports the same value: dashboards aggregate them with `max by (backend)` /
  `max by (tenant)`, never `sum`, which would count the state once per instance. They are
  refreshed by background loops, never read from Redis per scrape or per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from observability.histogram import LoopHistogram

PACKAGE = "imagegen-gateway"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_JOB_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)

# Provider error outcomes (adapters/errors.py) in the agreed `kind` vocabulary. `refused`
# covers everything the provider turned down without a 5xx/429/timeout: connection
# refused, credentials or request refused, a model missing there.
ERROR_KINDS = {
    "server_error": "server_error",
    "rate_limited": "rate_limited",
    "timeout": "timeout",
    "maybe_accepted": "timeout",
    "bad_answer": "malformed",
    "unavailable": "refused",
    "auth_failed": "refused",
    "misconfigured": "refused",
    "rejected": "refused",
}
# Retryable outcomes in the agreed failover `reason` vocabulary: a backend that cannot serve
# the job right now (down, wrong credentials, model missing) counts as unavailable.
FAILOVER_REASONS = {
    "server_error": "server_error",
    "rate_limited": "rate_limited",
    "timeout": "timeout",
    "unavailable": "unavailable",
    "auth_failed": "unavailable",
    "misconfigured": "unavailable",
}

# Seconds spent waiting on providers by the request being served (see `provider_clock`).
_PROVIDER_SECONDS: ContextVar[list[float] | None] = ContextVar("provider_seconds", default=None)


def build_version() -> str:
    try:
        return package_version(PACKAGE)
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


@contextmanager
def provider_clock() -> Iterator[list[float]]:
    """Collect the provider time of the current request: `[seconds]`, filled on exit."""
    spent = [0.0]
    token = _PROVIDER_SECONDS.set(spent)
    try:
        yield spent
    finally:
        _PROVIDER_SECONDS.reset(token)


@contextmanager
def provider_call() -> Iterator[None]:
    """Time a provider call and charge it to the request being served, if one is counting."""
    started = time.perf_counter()
    try:
        yield
    finally:
        spent = _PROVIDER_SECONDS.get()
        if spent is not None:
            spent[0] += time.perf_counter() - started


class Metrics:
    """The gateway's metrics; one instance per app, so tests get a fresh registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "gateway_http_requests_total",
            "HTTP requests answered, by route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = LoopHistogram(
            "gateway_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.jobs = Counter(
            "gateway_jobs_total",
            "Jobs by lifecycle event (accepted, succeeded, failed, canceled).",
            ["tenant", "event"],
            registry=r,
        )
        self.tunes = Counter(
            "gateway_tunes_total",
            "Fine-tunes by lifecycle event (accepted, succeeded, failed, canceled).",
            ["tenant", "event"],
            registry=r,
        )
        self.job_duration = LoopHistogram(
            "gateway_job_duration_seconds",
            "Time from acceptance to the final state of a job, by backend and outcome.",
            ["backend", "outcome"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "gateway_backend_attempts_total",
            "Submissions to backends, by outcome (accepted, completed, unavailable, "
            "server_error, rate_limited, timeout, rejected, bad_answer).",
            ["backend", "adapter", "outcome"],
            registry=r,
        )
        self.provider_duration = LoopHistogram(
            "gateway_provider_request_duration_seconds",
            "Latency of calls to providers, by backend and operation.",
            ["backend", "operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.conversion_warnings = Counter(
            "gateway_conversion_warnings_total",
            "Inexact parameter conversions reported in job warnings.",
            ["adapter"],
            registry=r,
        )
        self.webhooks_in = Counter(
            "gateway_provider_webhooks_total",
            "Provider webhooks received, by outcome (applied, duplicate, bad_token, "
            "unknown, unparsable).",
            ["backend", "outcome"],
            registry=r,
        )
        self.polls = Counter(
            "gateway_provider_polls_total",
            "Result polls of providers, by outcome (pending, finished, error).",
            ["backend", "outcome"],
            registry=r,
        )
        self.deliveries = Counter(
            "gateway_webhook_deliveries_total",
            "Client webhook delivery attempts, by outcome (delivered, retry, dead, "
            "disabled, refused).",
            ["tenant", "outcome"],
            registry=r,
        )
        self.deliveries_reclaimed = Counter(
            "gateway_webhook_deliveries_reclaimed_total",
            "Deliveries taken over from a worker that read them and went silent.",
            registry=r,
        )
        self.deliveries_deferred = Counter(
            "gateway_webhook_deliveries_deferred_total",
            "Deliveries put off (no attempt made): their receiver host is slow and holds "
            "its share of the delivery slots.",
            ["tenant"],
            registry=r,
        )
        self.delivery_duration = LoopHistogram(
            "gateway_webhook_delivery_duration_seconds",
            "Time to POST a client webhook (one attempt).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.backend_inflight = Gauge(
            "gateway_backend_inflight",
            "Slots reserved on a backend by all gateway instances.",
            ["backend"],
            registry=r,
        )
        self.backend_capacity = Gauge(
            "gateway_backend_capacity",
            "Configured max_concurrency of a backend.",
            ["backend"],
            registry=r,
        )
        self.backend_up = Gauge(
            "gateway_backend_up",
            "1 when a backend is routable (not ejected, not drained), else 0.",
            ["backend"],
            registry=r,
        )
        self.backend_ejections = Counter(
            "gateway_backend_ejections_total",
            "Times this instance ejected a backend (consecutive failed submits or probes).",
            ["backend"],
            registry=r,
        )
        self.backend_speed = Gauge(
            "gateway_backend_seconds_per_unit",
            "Learned seconds per megapixel-step of one job on a backend.",
            ["backend"],
            registry=r,
        )
        self.backend_expected_wait = Gauge(
            "gateway_backend_expected_wait_seconds",
            "Expected completion of a 512x512, 30-step image if routed there now.",
            ["backend"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "gateway_queue_depth",
            "Jobs waiting in the gateway queue for a backend with room, by tenant (shared).",
            ["tenant"],
            registry=r,
        )
        self.queue_wait = LoopHistogram(
            "gateway_queue_wait_seconds",
            "Time jobs spent in the gateway queue before a backend took them.",
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.retries_denied = Counter(
            "gateway_retries_denied_total",
            "Failovers skipped because the retry budget was spent.",
            registry=r,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited_total",
            "Requests refused by a tenant's rate limit.",
            ["tenant"],
            registry=r,
        )
        self.store_outage_responses = Counter(
            "gateway_store_outage_responses_total",
            "Requests that met a store (Redis) outage and were answered 503, by route.",
            ["route"],
            registry=r,
        )
        self._declare_operations(r)

    def _declare_operations(self, r: CollectorRegistry) -> None:
        """The on-call metrics of issue 8: overhead, routing, provider and store health."""
        self.build_info = Gauge(
            "gateway_build_info", "Always 1; the version label says what runs.", ["version"],
            registry=r,
        )  # fmt: skip
        self.build_info.labels(build_version()).set(1)
        self.ready = Gauge(
            "gateway_ready", "1 while this instance passes /readyz, else 0.", registry=r
        )
        self.draining = Gauge(
            "gateway_draining", "1 while this instance drains before stopping.", registry=r
        )
        self.submit_overhead = LoopHistogram(
            "gateway_submit_overhead_seconds",
            "Gateway time on POST /v1/generations: request in to 202 out, minus provider calls.",
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.routing_decisions = Counter(
            "gateway_routing_decisions_total",
            "Slots reserved for a submission, by routing policy and chosen backend.",
            ["policy", "backend"],
            registry=r,
        )
        self.failovers = Counter(
            "gateway_failovers_total",
            "Submissions moved to another backend after one failed, by the failure "
            "(unavailable, server_error, rate_limited, timeout).",
            ["reason"],
            registry=r,
        )
        self.provider_errors = Counter(
            "gateway_provider_errors_total",
            "Failed provider calls (submit, poll), by kind (server_error, rate_limited, "
            "timeout, malformed, refused).",
            ["backend", "adapter", "kind"],
            registry=r,
        )
        self.provider_webhook_lag = LoopHistogram(
            "gateway_provider_webhook_lag_seconds",
            "Provider webhooks: from the finish time the provider states to their arrival.",
            ["backend"],
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.delivery_lag = LoopHistogram(
            "gateway_webhook_delivery_lag_seconds",
            "Client webhooks: from the job's end to its first successful delivery.",
            ["tenant"],
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.dead_letters = Gauge(
            "gateway_webhook_dead_letters",
            "Client webhooks in the dead letters (given up, kept for replay), by tenant (shared).",
            ["tenant"],
            registry=r,
        )
        self.retries_waiting = Gauge(
            "gateway_webhook_retries_waiting",
            "Client webhook retries waiting (shared): scheduled (not due yet) or due (waiting "
            "for a free delivery slot).",
            ["state"],
            registry=r,
        )
        self.store_duration = LoopHistogram(
            "gateway_store_command_duration_seconds",
            "Latency of store (Redis) calls, by command or script name; blocking reads excluded.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "gateway_store_errors_total",
            "Store (Redis) calls that failed, by command or script name.",
            ["operation"],
            registry=r,
        )
        self.backend_reported_queue = Gauge(
            "gateway_backend_reported_queue",
            "Jobs a backend says it has waiting, every client's (shared: from its probe).",
            ["backend"],
            registry=r,
        )
        # Issue 10: usage and quotas. Counted by the instance that records a job's end, so
        # `sum` across instances equals GET /v1/usage.
        self.usage_images = Counter(
            "gateway_usage_images_total",
            "Images delivered by succeeded jobs, by tenant and backend.",
            ["tenant", "backend"],
            registry=r,
        )
        self.usage_cost = Counter(
            "gateway_usage_cost_total",
            "Estimated cost of succeeded jobs from the configured price table, in the "
            "configured currency (usage.currency, USD unless set), by tenant and backend.",
            ["tenant", "backend"],
            registry=r,
        )
        self.quota_rejections = Counter(
            "gateway_quota_rejections_total",
            "Submissions refused with 429 by a tenant limit (rate_limit, concurrency, "
            "daily_images, monthly_spend).",
            ["tenant", "limit"],
            registry=r,
        )
        self.backend_ejected = Gauge(
            "gateway_backend_ejected",
            "1 while a backend is ejected after failures, else 0 (shared); drains and "
            "429 cool-downs are not ejections.",
            ["backend"],
            registry=r,
        )
        self.tenant_routable_backends = Gauge(
            "gateway_tenant_routable_backends",
            "Routable backends among those a tenant may use (shared); 0: its jobs cannot run.",
            ["tenant"],
            registry=r,
        )

        # labels() validates and takes a lock on every call (~5 us; ~10 calls per job): each
        # label set's child is looked up once, then from a dict. Children are never removed.
        for metric in vars(self).values():
            if isinstance(metric, MetricWrapperBase) and metric._labelnames:
                metric.labels = lru_cache(maxsize=None)(metric.labels)  # type: ignore[method-assign]

    def provider_error(self, backend: str, adapter: str, outcome: str) -> None:
        self.provider_errors.labels(backend, adapter, ERROR_KINDS.get(outcome, "refused")).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
