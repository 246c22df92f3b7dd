"""The live run: the model's fleet and arrivals through real processes, time-compressed.

One redis-server, one `gateway simulate modelslab` per backend (speed = reference seconds x
scale, concurrency = parallelism) and one `gateway serve` per policy (restarted with
routing.strategy set, Redis flushed in between so nothing learned carries over). A driver
posts the model's Poisson arrivals (same seed, times x scale) to /v1/generations with a
webhook_url served here; a job's completion time is completed_at - created_at from the job
the webhook carries. Everything listens on 127.0.0.1; every loop is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from bench.fleet import FLEET, Arrival, arrivals, capacity
from bench.procs import TENANT_KEY, Processes, free_port, gateway_config, wait_ready
from bench.stats import summary

AUTH = {"Authorization": f"Bearer {TENANT_KEY}"}
START_ATTEMPTS, RETRY_AFTER = 3, 60.0
WORKDIR = Path(__file__).resolve().parent / "results" / "tmp" / "live"  # git-ignored


@dataclass(frozen=True)
class LiveIncident:
    at: float  # live seconds after the first arrival
    die: str  # backend whose simulator is killed (SIGKILL)
    slow: str  # backend whose simulator becomes `factor` times slower
    factor: float = 4.0


@dataclass
class Tracker:
    """What the driver sent and what the receiver got, per job id."""

    accepted: dict[str, Arrival] = field(default_factory=dict)
    rejected: dict[int, int] = field(default_factory=dict)  # arrival index -> HTTP status
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0

    def receive(self, payload: dict[str, Any]) -> None:
        job = payload.get("data") or {}
        if job.get("id") in self.delivered:
            self.duplicates += 1
        elif job.get("id"):
            self.delivered[job["id"]] = job


def _seconds(job: dict[str, Any]) -> float:
    created, completed = job.get("created_at"), job.get("completed_at")
    if not created or not completed:
        return math.nan
    return (datetime.fromisoformat(completed) - datetime.fromisoformat(created)).total_seconds()


class LiveBench:
    def __init__(self, scale: float, seed: int, workdir: Path | None = None) -> None:
        self.scale = scale
        self.seed = seed
        self.workdir = workdir or WORKDIR
        shutil.rmtree(self.workdir, ignore_errors=True)  # the last run's logs and configs
        self.workdir.mkdir(parents=True)
        self.procs = Processes(self.workdir)
        self.sim_ports: dict[str, int] = {}
        self.redis_port = 0
        self.hook_url = ""
        self.tracker = Tracker()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> LiveBench:
        try:
            self.redis_port = self.procs.redis()
            await self._retrying("simulators", self._start_simulators)
            app = web.Application()
            app.router.add_post("/hook", self._hook)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            hook_port = free_port()
            await web.TCPSite(self._runner, "127.0.0.1", hook_port).start()
            self.hook_url = f"http://127.0.0.1:{hook_port}/hook"
        except BaseException:
            self.procs.stop_all()
            raise
        return self

    async def _start_simulators(self) -> None:
        for i, spec in enumerate(FLEET):
            if spec.name in self.procs.procs:
                self.procs.stop(spec.name)
            speed = spec.reference_seconds * self.scale
            self.sim_ports[spec.name] = self.procs.simulator(spec, speed, self.seed + i)
        for port in self.sim_ports.values():
            await wait_ready(f"http://127.0.0.1:{port}/_sim/stats")

    async def _retrying(self, what: str, start: Callable[[], Awaitable[None]]) -> None:
        """The gateway's code may be mid-edit in a shared checkout: wait a minute, retry."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await start()
                return
            except RuntimeError as exc:
                if attempt == START_ATTEMPTS:
                    raise RuntimeError(f"{what} did not start; logs in {self.workdir}") from exc
                print(f"  {what} did not start ({exc}); retrying in {RETRY_AFTER:g} s", flush=True)
                await asyncio.sleep(RETRY_AFTER)

    async def _hook(self, request: web.Request) -> web.Response:
        # The tracker is the current policy's; a late webhook of an earlier one is ignored.
        self.tracker.receive(await request.json())
        return web.Response(status=204)

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.procs.stop_all()

    async def run(
        self,
        strategy: str,
        *,
        load: float,
        duration: float,
        drain: float,
        result_timeout: float,
        incident: LiveIncident | None = None,
    ) -> dict[str, Any]:
        """One policy for `duration` live seconds of arrivals, then up to `drain` to finish."""
        rate = load * capacity()  # per model second
        count = math.ceil(rate * duration / self.scale * 1.2) + 10
        jobs = [a for a in arrivals(rate, count, self.seed) if a.at * self.scale < duration]
        redis = aioredis.Redis(port=self.redis_port)
        await redis.flushall()
        await redis.aclose()
        self.tracker = tracker = Tracker()

        name = f"gateway-{strategy}" + ("-incident" if incident else "")
        config = gateway_config(
            port=free_port(), redis_port=self.redis_port, strategy=strategy, fleet=list(FLEET),
            sim_ports=self.sim_ports, scale=self.scale, result_timeout=result_timeout,
        )  # fmt: skip
        url = f"http://127.0.0.1:{config['listen']['port']}"

        async def start() -> None:
            if name in self.procs.procs:
                self.procs.stop(name)
            self.procs.gateway(name, config)
            await wait_ready(f"{url}/readyz", timeout=30)

        try:
            await self._retrying(name, start)
            cpu0 = self.procs.cpu_seconds(name)
            started = time.monotonic()
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256),
                timeout=aiohttp.ClientTimeout(total=30),
            ) as session:
                await self._drive(session, url, jobs, tracker, incident)
                submitted_for = time.monotonic() - started
                await self._settle(tracker, drain)
                pending = await self._still_pending(session, url, tracker)
            cpu = self.procs.cpu_seconds(name) - cpu0
            wall = time.monotonic() - started
        finally:
            self.procs.stop(name)
        await self._wait_idle(incident)
        return self._report(strategy, load, jobs, tracker, pending, submitted_for, cpu, wall)

    async def _drive(
        self,
        session: aiohttp.ClientSession,
        url: str,
        jobs: list[Arrival],
        tracker: Tracker,
        incident: LiveIncident | None,
    ) -> None:
        start = time.monotonic()
        posts: list[asyncio.Task[None]] = []
        hit = incident is None
        for arrival in jobs:
            due = start + arrival.at * self.scale
            if not hit and incident is not None and due >= start + incident.at:
                await asyncio.sleep(max(0.0, start + incident.at - time.monotonic()))
                await self._incident(session, incident)
                hit = True
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            posts.append(asyncio.create_task(self._post(session, url, arrival, tracker)))
        await asyncio.gather(*posts)

    async def _post(
        self, session: aiohttp.ClientSession, url: str, arrival: Arrival, tracker: Tracker
    ) -> None:
        await post_job(session, url, arrival, tracker, self.hook_url)

    async def _incident(self, session: aiohttp.ClientSession, incident: LiveIncident) -> None:
        self.procs.stop(incident.die, kill=True)
        spec = next(b for b in FLEET if b.name == incident.slow)
        port = self.sim_ports[incident.slow]
        speed = spec.reference_seconds * self.scale * incident.factor
        async with session.post(
            f"http://127.0.0.1:{port}/_sim/config", json={"speed": speed}
        ) as resp:
            resp.raise_for_status()

    async def _settle(self, tracker: Tracker, drain: float) -> None:
        await settle(tracker, drain)

    async def _still_pending(
        self, session: aiohttp.ClientSession, url: str, tracker: Tracker
    ) -> dict[str, str]:
        """Accepted jobs with no webhook yet, and the status the gateway gives them."""
        out: dict[str, str] = {}
        for job_id in [j for j in tracker.accepted if j not in tracker.delivered]:
            try:
                async with session.get(f"{url}/v1/generations/{job_id}", headers=AUTH) as resp:
                    out[job_id] = (await resp.json())["status"] if resp.status == 200 else "?"
            except (aiohttp.ClientError, TimeoutError):
                out[job_id] = "?"
        return out

    async def _wait_idle(self, incident: LiveIncident | None, timeout: float = 60.0) -> None:
        """Let the simulators finish what the stopped gateway left, before the next policy."""
        if incident is not None:
            return  # the fleet is no longer the benchmark's; nothing runs after this
        await wait_idle(self.sim_ports.values(), timeout)

    def _report(
        self,
        strategy: str,
        load: float,
        jobs: list[Arrival],
        tracker: Tracker,
        pending: dict[str, str],
        submitted_for: float,
        cpu: float,
        wall: float,
    ) -> dict[str, Any]:
        warmup = len(jobs) // 10  # as in the model: the first 10% of arrivals learn speeds
        done = [
            (tracker.accepted[i], job) for i, job in tracker.delivered.items()
            if i in tracker.accepted
        ]  # fmt: skip
        ok = [
            _seconds(job) for arrival, job in done
            if job.get("status") == "succeeded" and arrival.index >= warmup
        ]  # fmt: skip
        failed = [job for _, job in done if job.get("status") != "succeeded"]
        stats = summary(ok)
        return {
            "strategy": strategy,
            "load": load,
            "scale": self.scale,
            "offered": len(jobs),
            "accepted": len(tracker.accepted),
            "rejected": len(tracker.rejected),
            "succeeded": sum(1 for _, job in done if job.get("status") == "succeeded"),
            "failed": len(failed),
            "failed_errors": sorted({(j.get("error") or {}).get("code", "?") for j in failed}),
            "no_webhook_yet": len(pending),
            "lost": sum(
                1 for s in pending.values() if s not in ("succeeded", "failed", "canceled")
            ),
            "duplicate_webhooks": tracker.duplicates,
            "warmup_jobs": warmup,
            "submit_seconds": round(submitted_for, 2),
            "live_seconds": {k: round(v, 4) for k, v in stats.items()},
            "model_seconds": {
                k: (v if k == "n" else round(v / self.scale, 3)) for k, v in stats.items()
            },
            "gateway_cpu_share": round(cpu / wall, 3) if wall else None,
            "per_backend": _per_backend(done),
            "completions": [
                (round(arrival.at * self.scale, 3), round(_seconds(job), 4), job.get("status"))
                for arrival, job in sorted(done, key=lambda d: d[0].index)
            ],
        }


def _per_backend(done: list[tuple[Arrival, dict[str, Any]]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, job in done:
        counts[job.get("backend") or "none"] = counts.get(job.get("backend") or "none", 0) + 1
    return dict(sorted(counts.items()))


async def post_job(
    session: aiohttp.ClientSession, url: str, arrival: Arrival, tracker: Tracker, hook: str
) -> None:
    """Submit one arrival's job with `hook` as its webhook_url; note what became of it."""
    spec = arrival.job
    body = {
        "prompt": f"routing benchmark job {arrival.index}",
        "model": "default",
        "width": spec.side,
        "height": spec.side,
        "steps": spec.steps,
        "num_images": spec.images,
        "webhook_url": hook,
    }
    try:
        async with session.post(f"{url}/v1/generations", json=body, headers=AUTH) as resp:
            data = await resp.json(content_type=None)
            if resp.status == 202:
                tracker.accepted[data["id"]] = arrival
            else:
                tracker.rejected[arrival.index] = resp.status
    except (aiohttp.ClientError, TimeoutError):
        tracker.rejected[arrival.index] = 0


async def settle(tracker: Tracker, drain: float) -> None:
    """Wait up to `drain` seconds for every accepted job's webhook."""
    deadline = time.monotonic() + drain
    while time.monotonic() < deadline:
        if all(job_id in tracker.delivered for job_id in tracker.accepted):
            return
        await asyncio.sleep(0.2)


async def wait_idle(ports: Iterable[int], timeout: float = 60.0) -> None:
    """Wait (bounded) until the simulators on `ports` run and queue nothing."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        for port in ports:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/_sim/stats") as resp:
                        stats = await resp.json()
                        if stats["active"] == 0 and stats["queued"] == 0:
                            break
                await asyncio.sleep(0.2)
