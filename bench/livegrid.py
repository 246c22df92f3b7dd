"""Issue 9's live runs: real processes, two gateway instances, requests alternating.

One redis-server; per fleet, one simulator process per backend (`gateway simulate
modelslab --enterprise`, or `comfyui`) with speed = reference seconds x scale and
concurrency = what it runs at once; per cell (config, load, policy), Redis flushed (nothing
learned carries over) and two `gateway serve` processes with the operator's config. The
driver posts Poisson arrivals (the model's, times x scale) alternately to the two, each
with a `webhook_url` served here; completion = the job's completed_at - created_at as the
webhook carries it. The free oracle's p99 is computed on the same arrivals (bench/grid.py).
Everything listens on 127.0.0.1; every loop is bounded in time.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import yaml
from aiohttp import web

from adapters.base import SimulatorSettings
from adapters.registry import ADAPTERS
from bench.fleet import ISSUE_MIX, Arrival, BackendSpec, arrivals, capacity
from bench.grid import CONFIGS, FLEETS, configure, p99_measured
from bench.live import Tracker, _seconds, post_job, settle, wait_idle
from bench.placers import FREE_ORACLE, run_model
from bench.procs import SIM_KEY, Processes, free_port, gateway_config, wait_ready
from bench.stats import percentile, summary

WORKDIR = Path(__file__).resolve().parent / "results" / "tmp" / "livegrid"  # git-ignored
COMFY_MODELS = {"default": "sdxl_base_1.0.safetensors"}


class LiveGrid:
    def __init__(self, scale: float, seed: int) -> None:
        self.scale = scale
        self.seed = seed
        shutil.rmtree(WORKDIR, ignore_errors=True)
        WORKDIR.mkdir(parents=True)
        self.procs = Processes(WORKDIR)
        self.redis_port = 0
        self.hook_url = ""
        self.tracker = Tracker()
        self.fleet_name = ""
        self.sim_ports: dict[str, int] = {}
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> LiveGrid:
        try:
            self.redis_port = self.procs.redis()
            app = web.Application()
            app.router.add_post("/hook", self._hook)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            port = free_port()
            await web.TCPSite(self._runner, "127.0.0.1", port).start()
            self.hook_url = f"http://127.0.0.1:{port}/hook"
        except BaseException:
            self.procs.stop_all()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.procs.stop_all()

    async def _hook(self, request: web.Request) -> web.Response:
        self.tracker.receive(await request.json())
        return web.Response(status=204)

    async def use_fleet(self, name: str) -> None:
        """Simulators for this fleet (the previous fleet's are stopped)."""
        if name == self.fleet_name:
            return
        for spec in FLEETS.get(self.fleet_name, ()):
            self.procs.stop(spec.name)
        self.sim_ports = {}
        for i, spec in enumerate(FLEETS[name]):
            port = free_port()
            argv = ["--port", str(port), "--speed", f"{spec.reference_seconds * self.scale:.6g}",
                    "--concurrency", str(spec.parallelism), "--api-key", SIM_KEY,
                    "--seed", str(self.seed + i)]  # fmt: skip
            if spec.kind == "modelslab":
                argv.append("--enterprise")
            self.procs.start(spec.name, [*SIMULATE, spec.kind, *argv])
            self.sim_ports[spec.name] = port
        for port in self.sim_ports.values():
            await wait_ready(f"http://127.0.0.1:{port}/_sim/stats")
        self.fleet_name = name

    def _config(self, port: int, config: str, policy: str) -> dict[str, Any]:
        specs = configure(FLEETS[self.fleet_name], CONFIGS[config])
        base = gateway_config(
            port=port, redis_port=self.redis_port, strategy=policy, fleet=[],
            sim_ports={}, scale=self.scale, result_timeout=900 * self.scale,
        )  # fmt: skip
        base["backends"] = [self._backend(spec) for spec in specs]
        return base

    def _backend(self, spec: BackendSpec) -> dict[str, Any]:
        settings = SimulatorSettings(enterprise=spec.kind == "modelslab")
        path = ADAPTERS[spec.kind].simulator_base_path(settings)
        entry: dict[str, Any] = {
            "name": spec.name,
            "adapter": spec.kind,
            "base_url": f"http://127.0.0.1:{self.sim_ports[spec.name]}{path}",
            "models": COMFY_MODELS if spec.kind == "comfyui" else {"default": "sdxl"},
        }
        if spec.kind == "modelslab":
            entry["api_key"] = SIM_KEY
            entry["options"] = {"enterprise": True, "webhook_deadline": 60 * self.scale}
        else:
            entry["options"] = {"poll_interval": 0.02}
        if spec.max_concurrency is not None:
            entry["max_concurrency"] = spec.max_concurrency
        if spec.parallelism_given:
            entry["parallelism"] = spec.parallelism
        return entry

    async def run(
        self, config: str, policy: str, *, load: float, duration: float, drain: float
    ) -> dict[str, Any]:
        fleet = FLEETS[self.fleet_name]
        rate = load * capacity(fleet, ISSUE_MIX)  # per model second
        count = math.ceil(rate * duration / self.scale * 1.2) + 10
        jobs = [
            a for a in arrivals(rate, count, self.seed, ISSUE_MIX) if a.at * self.scale < duration
        ]
        redis = aioredis.Redis(port=self.redis_port)
        await redis.flushall()
        await redis.aclose()
        self.tracker = tracker = Tracker()
        names, urls = [], []
        for i in range(2):
            port = free_port()
            name = f"gateway-{i}"
            (WORKDIR / f"{name}.yaml").write_text(
                yaml.safe_dump(self._config(port, config, policy))
            )
            self.procs.start(name, [*SERVE, str(WORKDIR / f"{name}.yaml")])
            names.append(name)
            urls.append(f"http://127.0.0.1:{port}")
        try:
            for url in urls:
                await wait_ready(f"{url}/readyz", timeout=30)
            cpu0 = sum(self.procs.cpu_seconds(n) for n in names)
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=30)
            ) as session:
                await self._drive(session, urls, jobs, tracker)
                await settle(tracker, drain)
            cpu = sum(self.procs.cpu_seconds(n) for n in names) - cpu0
        finally:
            for name in names:
                self.procs.stop(name)
        await wait_idle(self.sim_ports.values())
        return self._report(config, policy, load, jobs, tracker, cpu)

    async def _drive(
        self,
        session: aiohttp.ClientSession,
        urls: list[str],
        jobs: list[Arrival],
        tracker: Tracker,
    ) -> None:
        start = time.monotonic()
        posts = []
        for arrival in jobs:
            await asyncio.sleep(max(0.0, start + arrival.at * self.scale - time.monotonic()))
            url = urls[arrival.index % 2]  # alternating between the two instances
            posts.append(
                asyncio.create_task(post_job(session, url, arrival, tracker, self.hook_url))
            )
        await asyncio.gather(*posts)

    def _report(
        self,
        config: str,
        policy: str,
        load: float,
        jobs: list[Arrival],
        tracker: Tracker,
        cpu: float,
    ) -> dict[str, Any]:
        warmup = len(jobs) // 10  # the first 10% of arrivals learn speeds (and parallelism)
        done = [(tracker.accepted[i], job) for i, job in tracker.delivered.items()
                if i in tracker.accepted]  # fmt: skip
        ok = [_seconds(job) for a, job in done
              if job.get("status") == "succeeded" and a.index >= warmup]  # fmt: skip
        # The free oracle on exactly these arrivals, at the fleet's true speeds (model s).
        model_jobs = [Arrival(a.index, a.at, a.job) for a in jobs]
        oracle = run_model(
            FREE_ORACLE, load, len(jobs), self.seed, jobs=model_jobs,
            fleet=configure(FLEETS[self.fleet_name], CONFIGS["minimal"]), mix=ISSUE_MIX,
        )  # fmt: skip
        oracle_p99 = p99_measured(oracle) * self.scale
        stats = summary(ok)
        placed: dict[str, dict[str, int]] = {}
        for arrival, job in done:
            size = f"{arrival.job.images}x{arrival.job.steps}"
            row = placed.setdefault(job.get("backend") or "none", {})
            row[size] = row.get(size, 0) + 1
        return {
            "fleet": self.fleet_name, "config": config, "policy": policy, "load": load,
            "offered": len(jobs), "accepted": len(tracker.accepted),
            "rejected": len(tracker.rejected),
            "succeeded": sum(1 for _, j in done if j.get("status") == "succeeded"),
            "failed": sum(1 for _, j in done if j.get("status") != "succeeded"),
            "no_webhook": len(tracker.accepted) - len(done),
            "measured": len(ok),
            "p99_live_seconds": round(stats["p99"], 4) if ok else None,
            "p50_live_seconds": round(percentile(ok, 50), 4) if ok else None,
            "oracle_free_p99_live_seconds": round(oracle_p99, 4),
            "ratio_to_oracle_free": round(stats["p99"] / oracle_p99, 3) if ok else None,
            "gateway_cpu_seconds_per_job": round(cpu / max(1, len(done)), 5),
            "placed_by_size": placed,
        }  # fmt: skip


SIMULATE = [sys.executable, "-m", "gateway", "simulate"]
SERVE = [sys.executable, "-m", "gateway", "serve", "--config"]


def over_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several live grids (one per arrival seed) as one: each cell's ratio is the median of
    its seeds' ratios (every seed's figures kept beside it)."""
    first = runs[0]
    cells: list[dict[str, Any]] = []
    for i, cell in enumerate(first["cells"]):
        same = [run["cells"][i] for run in runs if i < len(run["cells"])]
        ratios = [c["ratio_to_oracle_free"] for c in same if c["ratio_to_oracle_free"] is not None]
        merged = dict(cell)
        merged["ratio_to_oracle_free"] = round(_median(ratios), 3) if ratios else None
        merged["ratio_per_seed"] = [c["ratio_to_oracle_free"] for c in same]
        merged["p99_live_seconds_per_seed"] = [c["p99_live_seconds"] for c in same]
        merged["oracle_free_p99_per_seed"] = [c["oracle_free_p99_live_seconds"] for c in same]
        merged["measured"] = sum(c["measured"] for c in same)
        merged["failed"] = sum(c["failed"] for c in same)
        merged["no_webhook"] = sum(c["no_webhook"] for c in same)
        cells.append(merged)
    return {**first, "seeds": [r.get("seed") for r in runs], "cells": cells, "runs": runs}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
