"""The ledger harness: many jobs through real processes, every one accounted for.

A job accepted with 202 must end in a final state and its webhook must reach the
receiver, whatever happens to gateway instances, the receiver or Redis in between;
repeats are allowed only as the same `webhook-id` again.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.helpers import AUTH, SECRET, backend, free_port
from tests.processes import ProcessGroup, gateway_config, wait_ready

FINAL = {"succeeded", "failed", "canceled"}
# Ten attempts over ~48 s: enough to ride out a 30 s outage at the receiver.
SCHEDULE = [0, 0.5, 1, 2, 4, 8, 8, 8, 8, 8]


class LedgerReceiver:
    """Counts deliveries per job and webhook-id; can be told to answer 503 for a while."""

    def __init__(self) -> None:
        self.webhook = Webhook(SECRET)
        self.ids_by_job: dict[str, set[str]] = defaultdict(set)
        self.deliveries = 0
        self.bad_signatures = 0
        self.unavailable_until = 0.0
        self.app = web.Application()
        self.app.router.add_post("/hook", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        if time.monotonic() < self.unavailable_until:
            return web.Response(status=503)
        body = await request.read()
        try:
            payload = self.webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=400)
        self.deliveries += 1
        self.ids_by_job[payload["data"]["id"]].add(request.headers["webhook-id"])
        return web.Response(status=204)


@dataclass
class LedgerRun:
    procs: ProcessGroup
    redis_url: str
    gateways: dict[str, str]  # name -> origin
    configs: dict[str, dict[str, Any]]
    receiver: LedgerReceiver
    hook: str
    receiver_server: TestServer
    accepted: dict[str, float] = field(default_factory=dict)
    refused: int = 0
    readiness: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def live_gateways(self) -> list[str]:
        return [url for name, url in self.gateways.items() if self.procs.procs[name].poll() is None]

    async def restart_gateway(self, name: str) -> None:
        self.procs.gateway(name, self.configs[name])
        await wait_ready(self.gateways[name], path="/healthz")


async def start_ledger(
    procs: ProcessGroup,
    redis_url: str,
    receiver: LedgerReceiver,
    *,
    speed: float = 0.05,
    max_concurrency: int = 64,
    **extra: Any,
) -> LedgerRun:
    """Two simulators, two gateway instances; `extra` overrides config sections."""
    server = TestServer(receiver.app, host="127.0.0.1")
    await server.start_server()
    hook = f"http://127.0.0.1:{server.port}/hook"
    backends = []
    for n in (1, 2):
        _, origin = procs.simulator(f"sim{n}", speed=speed, concurrency=64)
        backends.append(
            backend(
                f"ml-{n}",
                f"{origin}/api/v6/images",
                max_concurrency=max_concurrency,
                options={"webhook_deadline": 2, "poll_interval": 1},
            )
        )
    overrides: dict[str, Any] = {
        "outbound": {"schedule": SCHEDULE, "jitter": 0.1, "timeout": 5, "visibility_timeout": 6},
        "routing": {"reservation_lease": 5},
        "jobs": {"result_timeout": 90, "dispatch_timeout": 10},
        "log_level": "warning",
    }
    for key, value in extra.items():
        overrides[key] = {**overrides.get(key, {}), **value} if isinstance(value, dict) else value
    gateways, configs = {}, {}
    for name in ("gateway-a", "gateway-b"):
        config = gateway_config(redis_url, free_port(), backends, **overrides)
        configs[name] = config
        gateways[name] = procs.gateway(name, config)
    await asyncio.gather(*(wait_ready(url) for url in gateways.values()))
    return LedgerRun(procs, redis_url, gateways, configs, receiver, hook, server)


async def drive(
    run: LedgerRun,
    jobs: int,
    *,
    disturb: Callable[[LedgerRun], Awaitable[None]] | None = None,
    disturb_after: float = 1 / 3,
    concurrency: int = 32,
) -> asyncio.Task[None] | None:
    """Submit `jobs` jobs across the live instances; fire `disturb` a third of the way in."""
    counter = itertools.count()
    disturbance: asyncio.Task[None] | None = None
    async with aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def worker() -> None:
            nonlocal disturbance
            while (n := next(counter)) < jobs:
                if disturb is not None and disturbance is None and n >= jobs * disturb_after:
                    disturbance = asyncio.create_task(disturb(run))
                body = {"prompt": f"ledger {n}", "webhook_url": run.hook, "metadata": {"n": n}}
                # A well-behaved client: on a refusal it waits (Retry-After) and tries the same
                # request again, with its Idempotency-Key, a bounded number of times.
                headers = {"Idempotency-Key": f"ledger-{n}"}
                for attempt in range(20):
                    live = run.live_gateways() or list(run.gateways.values())
                    url = live[(n + attempt) % len(live)]
                    try:
                        async with http.post(
                            f"{url}/v1/generations", json=body, headers=headers
                        ) as resp:
                            if resp.status == 202:
                                run.accepted[(await resp.json())["id"]] = time.monotonic()
                                break
                            wait = float(resp.headers.get("Retry-After", "0.5"))
                    except (aiohttp.ClientError, TimeoutError):
                        wait = 0.5  # no 202, so nothing was promised
                    run.refused += 1
                    await asyncio.sleep(min(wait, 2.0))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return disturbance


async def reclaimed(run: LedgerRun) -> float:
    """Deliveries the live instances had to take over from a silent worker."""
    total = 0.0
    async with aiohttp.ClientSession() as http:
        for url in run.live_gateways():
            async with http.get(f"{url}/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    if line.startswith("gateway_webhook_deliveries_reclaimed_total "):
                        total += float(line.split()[1])
    return total


async def settle(run: LedgerRun, timeout: float) -> dict[str, Any]:
    """Wait for every accepted job's webhook, then check each job's final state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(job in run.receiver.ids_by_job for job in run.accepted):
            break
        await asyncio.sleep(0.5)
    missing = [job for job in run.accepted if job not in run.receiver.ids_by_job]
    statuses: dict[str, str] = {}
    async with aiohttp.ClientSession(headers=AUTH) as http:
        semaphore = asyncio.Semaphore(32)

        async def status(job_id: str) -> None:
            async with semaphore:
                for url in itertools.cycle(run.live_gateways()):
                    try:
                        async with http.get(f"{url}/v1/generations/{job_id}") as resp:
                            statuses[job_id] = (await resp.json())["status"]
                            return
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)

        await asyncio.gather(*(status(job) for job in run.accepted))
    ids_per_job = {job: run.receiver.ids_by_job.get(job, set()) for job in run.accepted}
    return {
        "accepted": len(run.accepted),
        "refused": run.refused,
        "not_final": [j for j, s in statuses.items() if s not in FINAL],
        "missing_webhook": missing,
        "several_ids": [j for j, ids in ids_per_job.items() if len(ids) > 1],
        "deliveries": run.receiver.deliveries,
        "bad_signatures": run.receiver.bad_signatures,
        "unknown_jobs": sorted(set(run.receiver.ids_by_job) - set(run.accepted)),
    }
