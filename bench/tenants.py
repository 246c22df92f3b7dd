"""`python -m bench tenants`: priority classes and weighted fair shares under saturation.

Real processes on loopback: a redis-server, two `gateway simulate modelslab` GPU servers
(5 workers each, 1 s per 512x512 30-step image: the fleet runs ~10 jobs/s) and two
`gateway serve` instances; requests alternate between the instances. Three runs, each on
a fresh set of processes, every request loop bounded in count and time:

1. `baseline`: tenant `ui` sends `interactive` jobs at 20% of capacity, alone;
2. `flood`: the same, while tenant `flood` sends `batch` jobs at 10x capacity;
3. `weights`: tenants `heavy` (weight 3) and `light` (weight 1) both send `batch` jobs at
   2x capacity; their jobs dispatched during the run are counted.

A job's queue wait is the time it spent in the gateway queue: 0 for a job a backend took
at submit (its 202 says so), else created -> accepted as the gateway recorded them (which
includes the one provider call that accepted it). The accept latency (created -> accepted
for every job, the provider call included) is reported beside it. Both are read from the
jobs, not timed by the client. Results: bench/results/tenants.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import SIM_KEY, SIM_PATH, WEBHOOK_SECRET, Processes, free_port, wait_ready
from bench.stats import percentile
from gateway.config import hash_key

RESULTS = Path(__file__).resolve().parent / "results"
WORKERS = 5  # per simulated GPU server
SERVERS = 2
JOB_SECONDS = 1.0  # one 512x512, 30-step image
CAPACITY = SERVERS * WORKERS / JOB_SECONDS  # jobs per second the fleet runs
RESERVE = 0.4  # routing.interactive_reserve: 4 of 10 slots, twice what `ui` needs on average
TENANTS: dict[str, dict[str, Any]] = {
    "ui": {"priority": {"default": "interactive", "max": "interactive"}},
    "flood": {"priority": {"default": "batch", "max": "batch"}},
    "heavy": {"priority": {"default": "batch", "max": "batch"}, "weight": 3},
    "light": {"priority": {"default": "batch", "max": "batch"}, "weight": 1},
}
BODY = {"prompt": "bench", "width": 512, "height": 512, "steps": 30}


def _key(tenant: str) -> str:
    return f"bench-{tenant}-key"


def _config(redis_port: int, port: int, sims: list[int]) -> dict[str, Any]:
    return {
        "public_url": f"http://127.0.0.1:{port}",
        "store": f"redis://127.0.0.1:{redis_port}/0",
        "listen": {"host": "127.0.0.1", "port": port},
        "log_level": "warning",
        "routing": {"interactive_reserve": RESERVE, "queue_bound": 100_000},
        "jobs": {"result_timeout": 900, "dispatch_timeout": 600},
        "tenants": [
            {"name": name, "api_keys": [hash_key(_key(name))], "webhook_secret": WEBHOOK_SECRET}
            | extra
            for name, extra in TENANTS.items()
        ],
        "backends": [
            {
                "name": f"gpu-{n}",
                "adapter": "modelslab",
                "base_url": f"http://127.0.0.1:{sim}{SIM_PATH}",
                "api_key": SIM_KEY,
                "max_concurrency": WORKERS,
                "models": {"default": "sdxl"},
            }
            for n, sim in enumerate(sims)
        ],
    }


class Fleet:
    """One run's processes: redis, the GPU simulators, two gateways."""

    def __init__(self, workdir: Path) -> None:
        self.procs = Processes(workdir)
        self.gateways: list[str] = []

    async def __aenter__(self) -> Fleet:
        redis_port = self.procs.redis()
        sims = []
        for n in range(SERVERS):
            port = free_port()
            self.procs.start(f"sim-{n}", [sys.executable, "-m", "gateway", "simulate",
                                          "modelslab", "--port", str(port),
                                          "--speed", f"{JOB_SECONDS:g}",
                                          "--concurrency", str(WORKERS),
                                          "--api-key", SIM_KEY, "--seed", str(n)])  # fmt: skip
            sims.append(port)
        for n in range(2):
            port = free_port()
            self.gateways.append(self.procs.gateway(f"gw-{n}", _config(redis_port, port, sims)))
        for url in self.gateways:
            await wait_ready(f"{url}/readyz")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.procs.stop_all()

    def gateway_cpu(self) -> float:
        """CPU seconds both gateway processes used so far (user + system)."""
        return sum(self.procs.cpu_seconds(f"gw-{n}") for n in range(len(self.gateways)))


def _cpu(seconds: float, *sent: list[str]) -> dict[str, float]:
    """The gateways' CPU time: machine-independent where wall-clock figures are not."""
    requests = sum(len(s) for s in sent)
    return {
        "gateway_cpu_s": round(seconds, 2),
        "gateway_cpu_ms_per_submission": round(1000 * seconds / max(1, requests), 3),
    }


async def _send(
    session: aiohttp.ClientSession, urls: Any, tenant: str, rate: float, duration: float,
    jobs: list[str], refused: list[int], queued: set[str] | None = None,
) -> None:  # fmt: skip
    """`rate` submissions per second for `duration` seconds, on a fixed schedule."""
    headers = {"Authorization": f"Bearer {_key(tenant)}"}
    start = time.monotonic()
    pending: set[asyncio.Task[None]] = set()

    async def one(url: str) -> None:
        async with session.post(f"{url}/v1/generations", json=BODY, headers=headers) as resp:
            if resp.status == 202:
                job = await resp.json()
                jobs.append(job["id"])
                if queued is not None and job["status"] == "queued":
                    queued.add(job["id"])
            else:
                refused.append(resp.status)

    for n in range(int(rate * duration)):  # bounded in count...
        due = start + n / rate
        if time.monotonic() > start + duration + 5:  # ...and in time
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(one(next(urls)))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=30)


async def _jobs(
    session: aiohttp.ClientSession, url: str, tenant: str, ids: list[str]
) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {_key(tenant)}"}
    gate = asyncio.Semaphore(32)

    async def get(job_id: str) -> dict[str, Any]:
        async with gate, session.get(f"{url}/v1/generations/{job_id}", headers=headers) as r:
            found: dict[str, Any] = await r.json()
            return found

    return list(await asyncio.gather(*(get(j) for j in ids)))


def _accepted_at(job: dict[str, Any]) -> float | None:
    for attempt in job["attempts"]:
        if attempt["outcome"] in ("accepted", "completed"):
            return datetime.fromisoformat(attempt["at"]).timestamp()
    return None


def _latencies(jobs: list[dict[str, Any]]) -> dict[str, float]:
    """Created -> accepted by a backend, per job that a backend accepted."""
    found = {}
    for job in jobs:
        at = _accepted_at(job)
        if at is not None:
            found[job["id"]] = at - datetime.fromisoformat(job["created_at"]).timestamp()
    return found


def _summary(jobs: list[dict[str, Any]], queued: set[str]) -> dict[str, Any]:
    latency = _latencies(jobs)
    waits = sorted(v if job in queued else 0.0 for job, v in latency.items())
    accept = sorted(latency.values())
    return {
        "sent": len(jobs),
        "dispatched": len(latency),
        "queued_at_submit": len(queued),
        "queue_wait_p50_s": percentile(waits, 50) if waits else None,
        "queue_wait_p99_s": percentile(waits, 99) if waits else None,
        "queue_wait_max_s": waits[-1] if waits else None,
        "accept_latency_p50_s": percentile(accept, 50) if accept else None,
        "accept_latency_p99_s": percentile(accept, 99) if accept else None,
    }


async def _priority_run(workdir: Path, duration: float, *, flood: bool) -> dict[str, Any]:
    async with (
        Fleet(workdir) as fleet,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session,
    ):
        urls = itertools.cycle(fleet.gateways)
        ui: list[str] = []
        flooded: list[str] = []
        refused: list[int] = []
        queued: set[str] = set()
        senders = [_send(session, urls, "ui", 0.2 * CAPACITY, duration, ui, refused, queued)]
        cpu_before = fleet.gateway_cpu()  # start-up excluded
        if flood:
            senders.append(_send(session, urls, "flood", 10 * CAPACITY, duration, flooded, refused))
        await asyncio.gather(*senders)
        cpu = fleet.gateway_cpu() - cpu_before
        await asyncio.sleep(2 * JOB_SECONDS)
        ui_jobs = await _jobs(session, fleet.gateways[0], "ui", ui)
        out = {"ui": _summary(ui_jobs, queued), "refused": len(refused), **_cpu(cpu, ui, flooded)}
        if flood:
            flood_jobs = await _jobs(session, fleet.gateways[0], "flood", flooded)
            out["flood"] = {
                "sent": len(flooded),
                "dispatched": sum(1 for j in flood_jobs if _accepted_at(j) is not None),
            }
        return out


async def _weights_run(workdir: Path, duration: float) -> dict[str, Any]:
    async with (
        Fleet(workdir) as fleet,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session,
    ):
        urls = itertools.cycle(fleet.gateways)
        sent: dict[str, list[str]] = {"heavy": [], "light": []}
        refused: list[int] = []
        cpu_before = fleet.gateway_cpu()
        started = time.time()
        await asyncio.gather(
            *(_send(session, urls, t, 2 * CAPACITY, duration, sent[t], refused) for t in sent)
        )
        ended = started + duration
        cpu = fleet.gateway_cpu() - cpu_before
        warmup = started + 5 * JOB_SECONDS  # the queue fills before shares mean anything
        counts = {}
        for tenant, ids in sent.items():
            jobs = await _jobs(session, fleet.gateways[0], tenant, ids)
            times = [_accepted_at(j) for j in jobs]
            counts[tenant] = sum(1 for t in times if t is not None and warmup <= t <= ended)
        return {
            "sent": {t: len(ids) for t, ids in sent.items()},
            "refused": len(refused),
            **_cpu(cpu, *sent.values()),
            "measured_seconds": round(ended - warmup, 1),
            "dispatched": counts,
            "ratio": counts["heavy"] / max(1, counts["light"]),
        }


async def run(duration: float, keep: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-tenants-") as tmp:
        base = keep or Path(tmp)
        runs = {}
        for name in ("baseline", "flood", "weights"):
            (base / name).mkdir(parents=True, exist_ok=True)
            print(f"{name}: {duration:g} s ...", flush=True)
            if name == "weights":
                runs[name] = await _weights_run(base / name, duration)
            else:
                runs[name] = await _priority_run(base / name, duration, flood=name == "flood")
    base_p99 = runs["baseline"]["ui"]["queue_wait_p99_s"] or 0.0
    flood_p99 = runs["flood"]["ui"]["queue_wait_p99_s"] or 0.0
    base_accept = runs["baseline"]["ui"]["accept_latency_p99_s"] or 0.0
    flood_accept = runs["flood"]["ui"]["accept_latency_p99_s"] or 0.0
    return {
        "benchmark": "tenants",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "inputs": {
            "duration_s": duration,
            "fleet_jobs_per_s": CAPACITY,
            "gpu_servers": SERVERS,
            "workers_each": WORKERS,
            "job_seconds": JOB_SECONDS,
            "interactive_reserve": RESERVE,
            "ui_rate_per_s": 0.2 * CAPACITY,
            "flood_rate_per_s": 10 * CAPACITY,
            "weights_rate_per_s_each": 2 * CAPACITY,
            "tenants": TENANTS,
        },
        "runs": runs,
        "checks": {
            "ui_p99_flood_over_baseline": flood_p99 / base_p99 if base_p99 else None,
            # A baseline of ~0 makes 2x meaningless: within 2x, or within 50 ms of it.
            "ui_p99_within_2x": flood_p99 <= max(2 * base_p99, base_p99 + 0.05),
            "ui_accept_latency_p99_flood_over_baseline": (
                flood_accept / base_accept if base_accept else None
            ),
            "weights_ratio": runs["weights"]["ratio"],
            "weights_within_10pct": abs(runs["weights"]["ratio"] - 3) <= 0.3,
        },
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tenants", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per run (60)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, help="keep the processes' logs and configs here")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.duration, args.keep))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tenants.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["checks"], indent=1))
    return (
        0
        if results["checks"]["ui_p99_within_2x"] and results["checks"]["weights_within_10pct"]
        else 1
    )
