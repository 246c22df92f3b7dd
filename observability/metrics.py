"""Every metric the gateway exports, declared in one place on an explicit registry.

Labels are bounded: route templates, backend/adapter/tenant names from the config, and
small fixed vocabularies of outcomes. Never job ids, track ids or URLs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_JOB_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


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
        self.http_duration = Histogram(
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
        self.job_duration = Histogram(
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
        self.provider_duration = Histogram(
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
        self.delivery_duration = Histogram(
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
            "Jobs waiting in the gateway queue for a backend with room (all instances).",
            registry=r,
        )
        self.queue_wait = Histogram(
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
        self.store_errors = Counter(
            "gateway_store_errors_total",
            "Requests that met a store (Redis) outage and were answered 503, by route.",
            ["route"],
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
