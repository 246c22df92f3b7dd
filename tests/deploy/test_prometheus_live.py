"""The dashboard and the alert rules against a real Prometheus scraping two real instances.

Debian's `prometheus` (installed by `make prometheus`) scrapes two `gateway serve` processes
on a real Redis every second, with deploy/prometheus/alerts.yml loaded, during a short mixed
workload: successes on four backends, a backend that answers 5xx (failovers, provider errors,
an ejection), a rate-limited tenant, a dead-lettered delivery and a moment of Redis refusing
writes (maxmemory). Then every query of deploy/grafana/dashboards/gateway.json (template
variables as `.*`, `$__rate_interval` as 10s) must return at least one series, every alert
expression must parse and evaluate, and `promtool check metrics` must find nothing to say
about either instance's /metrics.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis as redis_sync
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.deploy.tools import DEPLOY, tool
from tests.helpers import (
    AUTH,
    OTHER_AUTH,
    OTHER_SECRET,
    Receiver,
    backend,
    eventually,
    free_port,
)
from tests.processes import ProcessGroup, RedisProcess, gateway_config, wait_ready

pytestmark = pytest.mark.integration

RATE_WINDOW = "10s"  # ten scrapes at the 1 s interval below
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gateway.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
TEMPLATE_VARIABLES = {
    "tenant": "gateway_queue_depth",
    "backend": "gateway_backend_capacity",
    "instance": "gateway_build_info",
}


class PrometheusServer:
    """A real Prometheus on a free port, in the test's directory; stopped by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, targets: list[str]) -> None:
        config = self.workdir / "prometheus.yml"
        scrape = {"job_name": "gateway", "static_configs": [{"targets": targets}]}
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(ALERTS)],
                    "scrape_configs": [scrape],
                }
            )
        )
        args = [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
        ]
        with (self.workdir / "prometheus.log").open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    async def get(self, http: aiohttp.ClientSession, path: str, **params: str) -> Any:
        async with http.get(self.url + path, params=params) as resp:
            return await resp.json()

    async def query(self, http: aiohttp.ClientSession, expr: str) -> Any:
        return await self.get(http, "/api/v1/query", query=expr)

    async def until(self, http: aiohttp.ClientSession, expr: str, timeout: float) -> None:
        """Wait until the query `expr` returns a series."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = await self.query(http, expr)
                if answer.get("status") == "success" and answer["data"]["result"]:
                    return
            except aiohttp.ClientError:
                pass  # still starting
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: {expr} returned nothing within {timeout}s")
            await asyncio.sleep(0.5)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis of this test's own: it is told to refuse writes for a moment."""
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def failing_receiver() -> AsyncIterator[str]:
    """A tenant endpoint that answers 500 to every delivery: its webhook is dead-lettered."""
    recv = Receiver(OTHER_SECRET)

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=500)

    recv.respond = refuse
    server = TestServer(recv.app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/hook"
    await server.close()


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", RATE_WINDOW)
            for var in TEMPLATE_VARIABLES:
                expr = expr.replace(f"${var}", ".*")
            assert "$" not in expr, expr
            queries.append((f"{panel['title']} [{target['refId']}]", expr))
    return queries


def alert_exprs() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]}


def start_fleet(procs: ProcessGroup, redis_url: str) -> list[str]:
    """Four simulated backends (one answering 5xx) and two `gateway serve` instances."""
    sims = {
        "broken": procs.simulator("broken", "modelslab", fail_rate=1.0)[1] + "/api/v6/images",
        "astria-1": procs.simulator("astria-1", "astria", speed=0.3)[1],
        "ml-1": procs.simulator("ml-1", "modelslab", speed=0.3)[1] + "/api/v6/images",
        "comfy-1": procs.simulator("comfy-1", "comfyui", speed=0.3)[1],
    }
    backends = [
        # First by priority, so submissions try it, fail over, and eject it.
        backend("broken", sims["broken"]),
        backend("astria-1", sims["astria-1"], adapter="astria", models={"default": "690204"}),
        backend("ml-1", sims["ml-1"]),
        backend(
            "comfy-1", sims["comfy-1"], adapter="comfyui", api_key=None,
            models={"default": "sdxl_base_1.0.safetensors"}, options={"poll_interval": 0.3},
        ),
    ]  # fmt: skip
    ports = [free_port(), free_port()]
    tenants = gateway_config(redis_url, ports[0], backends)["tenants"]
    tenants[1]["rate_limit"] = {"per_second": 0.2, "burst": 2}  # globex: a third call is 429
    routing = {
        "strategy": "priority",
        "probe_interval": 1,
        "view_refresh": 0.1,
        "ejection": {"consecutive_failures": 2, "base_time": 30, "max_time": 60},
    }
    return [
        procs.gateway(
            f"gateway-{i}",
            gateway_config(redis_url, port, backends, tenants=tenants, routing=routing),
        )
        for i, port in enumerate(ports)
    ]


async def test_every_dashboard_query_returns_series_and_every_alert_evaluates(
    procs: ProcessGroup,
    redis_proc: RedisProcess,
    prometheus: PrometheusServer,
    receiver: tuple[Receiver, str],
    failing_receiver: str,
) -> None:
    recv, hook = receiver
    origins = start_fleet(procs, redis_proc.url)
    await asyncio.gather(*(wait_ready(o) for o in origins))
    prometheus.start([o.removeprefix("http://") for o in origins])

    async with aiohttp.ClientSession() as http:
        await prometheus.until(http, 'count(up{job="gateway"} == 1) == 2', 30)

        async def submit(n: int, headers: dict[str, str], **body: Any) -> tuple[int, Any]:
            async with http.post(
                f"{origins[n % 2]}/v1/generations",
                json={"prompt": f"job {n}", **body},
                headers=headers,
            ) as resp:
                return resp.status, await resp.json()

        # Successes on every backend, half through each instance.
        pinned = [[], [], [], ["astria-1"], ["ml-1"], ["comfy-1"], ["astria-1"], []]
        accepted = []
        for n, only in enumerate(pinned):
            narrowed = {"backends": only} if only else {}
            status, job = await submit(n, AUTH, webhook_url=hook, **narrowed)
            assert status == 202, job
            accepted.append((n, job["id"]))
        # A rate-limited tenant whose accepted webhooks are dead-lettered.
        statuses = [
            (await submit(10 + n, OTHER_AUTH, webhook_url=failing_receiver))[0] for n in range(3)
        ]
        assert 429 in statuses, statuses
        for n, job_id in accepted:
            async with http.get(
                f"{origins[n % 2]}/v1/generations/{job_id}", params={"wait": "20"}, headers=AUTH
            ) as resp:
                done = await resp.json()
            assert done["status"] == "succeeded", done

        # Redis refuses writes for a moment: store errors, and a 503 for a submission.
        client = redis_sync.Redis.from_url(redis_proc.url)
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
        try:
            status, _ = await submit(20, AUTH)
            assert status == 503
        finally:
            client.config_set("maxmemory", 0)
            client.close()

        await eventually(lambda: len(recv.deliveries) == len(accepted), timeout=20)
        # Shared gauges are refreshed on a timer; wait until the last events are scraped.
        await prometheus.until(http, 'max(gateway_webhook_dead_letters{tenant="globex"}) > 0', 20)
        await prometheus.until(http, "sum(gateway_failovers_total) > 0", 10)
        await prometheus.until(http, "sum(gateway_store_errors_total) > 0", 10)

        failed, empty = [], []
        for title, expr in dashboard_queries():
            answer = await prometheus.query(http, expr)
            if answer.get("status") != "success":
                failed.append((title, answer))
            elif not answer["data"]["result"]:
                empty.append((title, expr))
        assert not failed, failed
        assert not empty, "dashboard queries without a series:\n" + "\n".join(map(str, empty))

        for var, metric in TEMPLATE_VARIABLES.items():
            path = f"/api/v1/label/{var}/values"
            values = (await prometheus.get(http, path, **{"match[]": metric}))["data"]
            assert len(values) >= 2, (var, values)

        for name, expr in alert_exprs().items():
            answer = await prometheus.query(http, expr)
            assert answer.get("status") == "success", (name, answer)
        groups = (await prometheus.get(http, "/api/v1/rules"))["data"]["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(loaded) == set(alert_exprs())
        assert all(r["health"] == "ok" for r in loaded.values()), loaded

        promtool = tool("promtool")
        for origin in origins:
            async with http.get(f"{origin}/metrics") as resp:
                exposition = await resp.read()
            checked = subprocess.run(
                [promtool, "check", "metrics"], input=exposition, capture_output=True, check=False
            )
            assert checked.returncode == 0, checked.stderr
            assert not checked.stdout.strip(), checked.stdout
            assert not checked.stderr.strip(), checked.stderr
