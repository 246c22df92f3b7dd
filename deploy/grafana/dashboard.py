"""Writes deploy/grafana/dashboards/gateway.json, the gateway's Grafana dashboard.

The panels are listed here once, as data; `python deploy/grafana/dashboard.py` rewrites the
JSON and `--check` fails when the JSON is out of date (the test suite runs it).
Aggregation rule: per-instance counters and histograms are summed; shared-state gauges (the
same value on every instance: queue, dead letters, backend state) take `max by (...)`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "gateway.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "[$__rate_interval]"
I = 'instance=~"$instance"'  # noqa: E741 - the filter every per-instance query carries
T = 'tenant=~"$tenant"'
B = 'backend=~"$backend"'


def q(expr: str, legend: str) -> dict[str, str]:
    return {"expr": expr, "legend": legend}


def quantiles(metric: str, by: str, filters: str, qs: tuple[float, ...]) -> list[dict[str, str]]:
    """histogram_quantile targets of a per-instance histogram, summed over instances."""
    group = f"{by}, le" if by else "le"
    prefix = "{{" + by + "}} " if by else ""
    return [
        q(
            f"histogram_quantile({p}, sum by ({group}) (rate({metric}_bucket{{{filters}}}{RATE})))",
            f"{prefix}p{round(p * 100)}",
        )
        for p in qs
    ]


# (row title, [(panel title, unit, description, targets)])
ROWS: list[tuple[str, list[tuple[str, str, str, list[dict[str, str]]]]]] = [
    ("Traffic and errors", [
        ("Accepted jobs by tenant", "reqps", "Submissions answered 202, per second.", [
            q(f'sum by (tenant) (rate(gateway_jobs_total{{event="accepted", {T}, {I}}}{RATE}))',
              "{{tenant}}"),
        ]),
        ("Finished jobs by tenant and outcome", "reqps", "Jobs reaching a final state.", [
            q("sum by (tenant, event) (rate(gateway_jobs_total"
              f'{{event=~"succeeded|failed|canceled", {T}, {I}}}{RATE}))',
              "{{tenant}} {{event}}"),
        ]),
        ("HTTP errors by route and status", "reqps", "4xx and 5xx answers of this API.", [
            q("sum by (route, status) (rate(gateway_http_requests_total"
              f'{{status=~"4..|5..", {I}}}{RATE}))', "{{route}} {{status}}"),
        ]),
        ("Limit rejections by tenant", "reqps",
         "429s by the limit that refused: rate_limit, concurrency, daily_images, monthly_spend.", [
            q("sum by (tenant, limit) (rate(gateway_quota_rejections_total"
              f"{{{T}, {I}}}{RATE}))", "{{tenant}} {{limit}}"),
        ]),
        ("Usage by tenant", "short",
         "Images delivered per second, and estimated cost per hour (usage.currency).", [
            q(f"sum by (tenant) (rate(gateway_usage_images_total{{{T}, {I}}}{RATE}))",
              "{{tenant}} images/s"),
            q(f"3600 * sum by (tenant) (rate(gateway_usage_cost_total{{{T}, {I}}}{RATE}))",
              "{{tenant}} cost/h"),
        ]),
    ]),
    ("Latency", [
        ("Submit overhead", "s",
         "Gateway time on POST /v1/generations, request in to 202 out, provider calls excluded.",
         quantiles("gateway_submit_overhead_seconds", "", I, (0.5, 0.9, 0.99))),
        ("Request latency p99 by route", "s", "Time to answer, by route template.",
         quantiles("gateway_http_request_duration_seconds", "route", I, (0.99,))),
        ("Job duration by backend", "s", "Acceptance to final state.",
         quantiles("gateway_job_duration_seconds", "backend", f"{B}, {I}", (0.5, 0.95))),
        ("Provider call latency p95", "s", "Submits, polls and probes, by backend.",
         quantiles("gateway_provider_request_duration_seconds", "backend, operation",
                   f"{B}, {I}", (0.95,))),
    ]),
    ("Backends", [
        ("Backend routable", "short", "1: routable; 0: ejected, cooling down or drained.", [
            q(f"max by (backend) (gateway_backend_up{{{B}}})", "{{backend}}"),
        ]),
        ("Backends routable per tenant pool", "short",
         "Routable backends among those each tenant may use; 0 means its jobs cannot run.", [
            q(f"max by (tenant) (gateway_tenant_routable_backends{{{T}}})", "{{tenant}}"),
        ]),
        ("In flight vs capacity", "short", "Reserved slots (all instances) and max_concurrency.", [
            q(f"max by (backend) (gateway_backend_inflight{{{B}}})", "{{backend}} in flight"),
            q(f"max by (backend) (gateway_backend_capacity{{{B}}})", "{{backend}} capacity"),
        ]),
        ("Reported queues", "short", "Jobs the backend says it has waiting (all its clients').", [
            q(f"max by (backend) (gateway_backend_reported_queue{{{B}}})", "{{backend}}"),
        ]),
        ("Learned speed", "s", "Seconds per megapixel-step of one job.", [
            q(f"max by (backend) (gateway_backend_seconds_per_unit{{{B}}})", "{{backend}}"),
        ]),
        ("Expected wait", "s", "Expected completion of a 512x512, 30-step image routed now.", [
            q(f"max by (backend) (gateway_backend_expected_wait_seconds{{{B}}})", "{{backend}}"),
        ]),
        ("Routing share per backend", "percentunit", "Share of routing decisions.", [
            q(f"sum by (backend) (rate(gateway_routing_decisions_total{{{B}, {I}}}{RATE}))"
              " / ignoring (backend) group_left"
              f" sum(rate(gateway_routing_decisions_total{{{I}}}{RATE}))", "{{backend}}"),
        ]),
        ("Failovers by reason", "reqps", "Submissions moved to another backend.", [
            q(f"sum by (reason) (rate(gateway_failovers_total{{{I}}}{RATE}))", "{{reason}}"),
        ]),
        ("Provider errors by backend and kind", "reqps", "Failed submits and polls.", [
            q(f"sum by (backend, kind) (rate(gateway_provider_errors_total{{{B}, {I}}}{RATE}))",
              "{{backend}} {{kind}}"),
        ]),
        ("Ejections", "short", "Times a backend was ejected, per interval.", [
            q(f"sum by (backend) (increase(gateway_backend_ejections_total{{{B}, {I}}}{RATE}))",
              "{{backend}}"),
        ]),
        ("Provider webhooks by outcome", "reqps", "Callbacks received from providers.", [
            q("sum by (backend, outcome) (rate(gateway_provider_webhooks_total"
              f"{{{B}, {I}}}{RATE}))", "{{backend}} {{outcome}}"),
        ]),
        ("Provider webhook lag p95", "s", "Provider's stated finish to callback received.",
         quantiles("gateway_provider_webhook_lag_seconds", "backend", f"{B}, {I}", (0.95,))),
    ]),
    ("Gateway queue", [
        ("Gateway queue by tenant", "short", "Jobs waiting for a backend with room.", [
            q(f"max by (tenant) (gateway_queue_depth{{{T}}})", "{{tenant}}"),
        ]),
        ("Queue wait", "s", "Time queued jobs waited for a backend.",
         quantiles("gateway_queue_wait_seconds", "", I, (0.5, 0.95))),
    ]),
    ("Client webhooks", [
        ("Deliveries by outcome", "reqps", "delivered, retry, dead, disabled, refused.", [
            q("sum by (outcome) (rate(gateway_webhook_deliveries_total"
              f"{{{T}, {I}}}{RATE}))", "{{outcome}}"),
        ]),
        ("Dead letters by tenant", "short", "Given-up deliveries kept for replay.", [
            q(f"max by (tenant) (gateway_webhook_dead_letters{{{T}}})", "{{tenant}}"),
        ]),
        ("Retries waiting", "short",
         "Scheduled: not due yet. Due: waiting for a free delivery slot (grows when the "
         "workers are saturated).", [
            q("max by (state) (gateway_webhook_retries_waiting)", "{{state}}"),
        ]),
        ("Delivery lag", "s", "Job end to first successful delivery.",
         quantiles("gateway_webhook_delivery_lag_seconds", "tenant", f"{T}, {I}", (0.5, 0.95))),
    ]),
    ("Store (Redis) and instances", [
        ("Redis latency p99 by operation", "s", "Store commands and scripts.",
         quantiles("gateway_store_command_duration_seconds", "operation", I, (0.99,))),
        ("Redis errors", "reqps", "Failed store calls, and requests answered 503 for it.", [
            q(f"sum by (operation) (rate(gateway_store_errors_total{{{I}}}{RATE}))",
              "{{operation}}"),
            q(f"sum by (route) (rate(gateway_store_outage_responses_total{{{I}}}{RATE}))",
              "503 {{route}}"),
        ]),
        ("Instances ready / draining", "short", "Per instance: readiness and drain.", [
            q(f"gateway_ready{{{I}}}", "{{instance}} ready"),
            q(f"gateway_draining{{{I}}}", "{{instance}} draining"),
        ]),
        ("Versions running", "short", "Instances per build version.", [
            q(f"count by (version) (gateway_build_info{{{I}}})", "{{version}}"),
        ]),
    ]),
]  # fmt: skip


def variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def panel(
    pid: int, title: str, unit: str, description: str, targets: list[dict[str, str]], x: int, y: int
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "datasource": DS,
                "refId": chr(ord("A") + i),
                "expr": t["expr"],
                "legendFormat": t["legend"],
            }
            for i, t in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        for i, (title, unit, description, targets) in enumerate(row_panels):
            x = 12 * (i % 2)
            panels.append(panel(len(panels) + 1, title, unit, description, targets, x, y))
            if x:
                y += 8
        y += 8 * (len(row_panels) % 2)
    return {
        "uid": "imagegen-gateway",
        "title": "imagegen gateway",
        "description": "Traffic, latency, backends, queue, webhooks and Redis of every instance.",
        "tags": ["imagegen", "gateway"],
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "utc",
        "graphTooltip": 1,
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"selected": True, "text": "Prometheus", "value": "prometheus"},
                },
                variable("instance", "label_values(gateway_build_info, instance)"),
                variable("tenant", "label_values(gateway_queue_depth, tenant)"),
                variable("backend", "label_values(gateway_backend_capacity, backend)"),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
