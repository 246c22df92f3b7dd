"""The on-call metrics get real values from a real workload (real Redis, real simulators)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ResponseError

from gateway.context import SERVICES
from gateway.store import keys
from observability.metrics import Metrics, build_version
from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, Receiver, backend, eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def test_a_mixed_workload_gives_every_on_call_metric_a_value(
    redis_url: str, gateway: Gateway, simulator: Simulator, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    broken, _ = await simulator("modelslab", fail_rate=1.0)
    astria, _ = await simulator("astria", speed=1.0)  # job 1 still runs when job 2 queues
    dedicated, _ = await simulator("modelslab", enterprise=True)
    backends = [
        backend("broken", broken, options={"webhook_deadline": 1}),
        backend(
            "astria", astria, adapter="astria", models={"default": "690204"}, max_concurrency=1
        ),
        backend("dedicated", dedicated, options={"enterprise": True}, max_concurrency=1),
    ]
    client = await gateway(redis_url, backends, routing={"strategy": "priority"})
    services = client.app[SERVICES]

    async def submit(n: int) -> dict[str, Any]:
        body = {"prompt": f"job {n}", "webhook_url": hook, "backends": ["broken", "astria"]}
        resp = await client.post("/v1/generations", json=body, headers=AUTH)
        assert resp.status == 202, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]

    first = await submit(1)  # broken answers 5xx: fails over to astria
    queued = await submit(2)  # astria is full: waits in the gateway queue
    assert queued["status"] == "queued"

    async def one_queued() -> bool:
        # The runner pops and puts back queued jobs while it looks for room: sample again.
        await services.shared_gauges.refresh()
        listing = parse(await (await client.get("/metrics")).text())
        by_tenant = [value(listing, "gateway_queue_depth", tenant=t) for t in ("acme", "globex")]
        return by_tenant == [1, 0]

    await eventually(one_queued, timeout=5, interval=0.01)

    await eventually(lambda: len(recv.deliveries) == 2, timeout=20)
    recv.respond = lambda _request: _gone()  # 410: the endpoint asks us to stop
    await submit(3)  # its client webhook answers 410: dead-lettered at once

    async def scrape() -> Samples:
        return parse(await (await client.get("/metrics")).text())

    async def dead_lettered() -> bool:
        samples = await scrape()
        return value(samples, "gateway_webhook_deliveries_total", outcome="disabled") == 1

    await eventually(dead_lettered, timeout=20)
    await services.shared_gauges.refresh()
    # A failing store call is counted under its command name.
    with pytest.raises(ResponseError):
        await services.store.redis.hincrby(keys.job(first["id"]), "doc", 1)

    samples = await scrape()
    assert value(samples, "gateway_build_info", version=build_version()) == 1
    assert value(samples, "gateway_ready") == 1
    assert value(samples, "gateway_draining") == 0
    assert value(samples, "gateway_submit_overhead_seconds_count") == 3
    assert value(samples, "gateway_routing_decisions_total", policy="priority", backend="broken")
    assert value(samples, "gateway_routing_decisions_total", backend="astria") == 3
    assert value(samples, "gateway_failovers_total", reason="server_error") >= 1
    assert value(
        samples,
        "gateway_provider_errors_total",
        backend="broken",
        adapter="modelslab",
        kind="server_error",
    )
    assert value(samples, "gateway_provider_webhook_lag_seconds_count", backend="astria") == 3
    assert value(samples, "gateway_webhook_delivery_lag_seconds_count", tenant="acme") == 2
    assert value(samples, "gateway_webhook_dead_letters", tenant="acme") == 1
    assert value(samples, "gateway_webhook_dead_letters", tenant="globex") == 0
    assert value(samples, "gateway_webhook_retries_waiting", state="due") == 0
    assert ("gateway_webhook_retries_waiting", frozenset({("state", "scheduled")})) in samples
    assert value(samples, "gateway_queue_depth", tenant="acme") == 0
    assert value(samples, "gateway_store_command_duration_seconds_count", operation="JOB_CAS")
    assert value(samples, "gateway_store_command_duration_seconds_count", operation="RESERVE")
    assert value(samples, "gateway_store_command_duration_seconds_count", operation="PIPELINE")
    assert value(samples, "gateway_store_errors_total", operation="HINCRBY") == 1
    assert value(samples, "gateway_backend_reported_queue", backend="dedicated") == 0
    assert ("gateway_backend_reported_queue", frozenset({("backend", "dedicated")})) in samples
    # Bounded labels: no job id, track id or URL in any series.
    text = await (await client.get("/metrics")).text()
    assert first["id"] not in text
    assert "127.0.0.1" not in text


async def _gone() -> web.Response:
    return web.Response(status=410)


def test_build_info_carries_the_package_version() -> None:
    text = Metrics().exposition().decode()
    assert f'gateway_build_info{{version="{build_version()}"}} 1.0' in text
    assert build_version() != "unknown"
