"""Issue 12 point 3a: the routing decision's cost does not grow with the jobs in flight.

Real processes: redis-server, four ModelsLab simulators and one `gateway serve` (10
backends' worth of decisions are not needed: four candidates show the shape). The ledger
is pre-filled with `in_flight` reservations spread over the backends (long leases, as
other instances' running jobs would be), then `submits` jobs are posted one after another
and the gateway's CPU time per submit is read from /proc (user + system), side by side
for 0 and 10,000 in flight in one run. The gateway reads per-backend aggregates and the
first few reservations in start order, so the figures should match.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import yaml

from bench.fleet import BackendSpec
from bench.live import AUTH
from bench.procs import Processes, free_port, gateway_config, wait_ready
from gateway.store import keys
from routing.router import member

WORKDIR = Path(__file__).resolve().parent / "results" / "tmp" / "cost"  # git-ignored
FLEET = tuple(BackendSpec(f"gpu-{i}", 1.0, 2, None) for i in range(4))


async def _prefill(port: int, in_flight: int) -> None:
    """`in_flight` reservations, as the RESERVE script writes them, with a day's lease."""
    client = aioredis.Redis(port=port)
    now = time.time()
    per = in_flight // len(FLEET)
    for spec in FLEET:
        members = [member(f"gen_prefill{spec.name}{i}.0", 7.86, now + i / 1000, now + 600)
                   for i in range(per)]  # fmt: skip
        async with client.pipeline(transaction=False) as pipe:
            for chunk in range(0, per, 1000):
                part = members[chunk : chunk + 1000]
                if not part:
                    continue
                lease = {m: (now + 86400) * 1000 for m in part}
                starts = {m: (now + j / 1000) * 1000 for j, m in enumerate(part, chunk)}
                pipe.zadd(keys.reservations(spec.name), lease)
                pipe.zadd(keys.reservation_starts(spec.name), starts)
            pipe.hset(keys.reservation_load(spec.name), mapping={"v": 1, "w": 7.86 * per})
            await pipe.execute()
    await client.aclose()


async def _one(
    procs: Processes, redis_port: int, sims: dict[str, int], in_flight: int, submits: int
) -> float:
    port = free_port()
    config = gateway_config(
        port=port, redis_port=redis_port, strategy="least_loaded", fleet=list(FLEET),
        sim_ports=sims, scale=1.0, result_timeout=900,
    )  # fmt: skip
    for b in config["backends"]:
        b["max_concurrency"] = 100_000  # room for the pre-filled ones and ours
    client = aioredis.Redis(port=redis_port)
    await client.flushall()
    await client.aclose()
    await _prefill(redis_port, in_flight)
    name = f"gateway-{in_flight}"
    (WORKDIR / f"{name}.yaml").write_text(yaml.safe_dump(config))
    procs.gateway(name, config)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(f"{url}/readyz")
        await asyncio.sleep(1.0)  # the refresh loop settles
        before = procs.cpu_seconds(name)
        async with aiohttp.ClientSession() as session:
            for n in range(submits):
                body = {"prompt": f"cost {n}", "width": 512, "height": 512, "steps": 30}
                async with session.post(f"{url}/v1/generations", json=body, headers=AUTH) as r:
                    assert r.status == 202, await r.text()
        return (procs.cpu_seconds(name) - before) / submits
    finally:
        procs.stop(name)


async def _run(submits: int, levels: tuple[int, ...], rounds: int) -> dict[str, Any]:
    WORKDIR.mkdir(parents=True, exist_ok=True)
    procs = Processes(WORKDIR)
    try:
        redis_port = procs.redis()
        sims = {}
        for spec in FLEET:
            # Slow enough that none of our jobs ends during the run.
            sims[spec.name] = procs.simulator(spec, 600.0, 1)
        for p in sims.values():
            await wait_ready(f"http://127.0.0.1:{p}/_sim/stats")
        per: dict[int, list[float]] = {n: [] for n in levels}
        for _ in range(rounds):  # interleaved, so a busy spell hits both alike
            for n in levels:
                per[n].append(await _one(procs, redis_port, sims, n, submits))
        return {
            "submits_per_round": submits,
            "rounds": rounds,
            "cpu_ms_per_submit": {str(n): [round(x * 1000, 3) for x in v] for n, v in per.items()},
            "median_cpu_ms_per_submit": {
                str(n): round(sorted(v)[len(v) // 2] * 1000, 3) for n, v in per.items()
            },
        }
    finally:
        procs.stop_all()


def decision_cost(submits: int = 300, rounds: int = 3) -> dict[str, Any]:
    return asyncio.run(_run(submits, (0, 10_000), rounds))
