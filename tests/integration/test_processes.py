"""End to end with real processes: redis-server, `gateway serve` x2, `gateway simulate` x2-3."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import (
    ADMIN_KEY,
    AUTH,
    SECRET,
    TENANT_KEY,
    Receiver,
    backend,
    eventually,
    free_port,
)
from tests.processes import ProcessGroup, gateway_config, wait_ready

pytestmark = pytest.mark.integration

FINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


async def test_callback_to_instance_b_finishes_job_submitted_to_a(
    redis_url: str, procs: ProcessGroup, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    _, sim1 = procs.simulator("sim1", speed=0.3)
    _, sim2 = procs.simulator("sim2", speed=0.3)
    backends = [backend("ml-1", f"{sim1}/api/v6/images"), backend("ml-2", f"{sim2}/api/v6/images")]
    a_port, b_port = free_port(), free_port()
    b_url = f"http://127.0.0.1:{b_port}"
    a = procs.gateway("gateway-a", gateway_config(redis_url, a_port, backends, public_url=b_url))
    b = procs.gateway("gateway-b", gateway_config(redis_url, b_port, backends))
    await asyncio.gather(wait_ready(a), wait_ready(b))

    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(
            f"{a}/v1/generations", json={"prompt": "x", "webhook_url": hook}
        ) as resp:
            assert resp.status == 202
            job = await resp.json()
        async with http.get(f"{a}/v1/generations/{job['id']}", params={"wait": "20"}) as resp:
            done = await resp.json()
        assert done["status"] == "succeeded", done
        assert len(done["images"]) == 1

        async def b_applied_it() -> bool:
            # The provider called B back (A's public_url points there); B counts it just
            # after the atomic update that already woke A's long-poll.
            async with http.get(f"{b}/metrics") as resp:
                metrics_b = await resp.text()
            return (
                'gateway_provider_webhooks_total{backend="'
                + done["backend"]
                + '",outcome="applied"} 1.0'
                in metrics_b
            )

        await eventually(b_applied_it, timeout=2)
    await eventually(lambda: len(recv.deliveries) == 1, timeout=10)
    await asyncio.sleep(1.0)  # nothing more arrives
    assert recv.jobs() == [job["id"]]  # exactly one delivery, signature verified by the library
    assert recv.deliveries[0]["payload"]["data"]["status"] == "succeeded"

    # Logs: JSON lines with the ids bound at the edges, and never a secret.
    logs = procs.log("gateway-a") + procs.log("gateway-b")
    for secret in ("sim-key", TENANT_KEY, SECRET, ADMIN_KEY):
        assert secret not in logs
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    dispatched = next(e for e in events if e["event"] == "job_dispatched")
    for field in ("request_id", "tenant", "job_id", "track_id", "backend"):
        assert dispatched.get(field), (field, dispatched)
    delivered = next(e for e in events if e["event"] == "webhook_delivery")
    assert delivered["job_id"] == job["id"]


async def test_killed_simulator_gets_no_new_jobs_and_no_job_is_left_unfinished(
    redis_url: str, procs: ProcessGroup
) -> None:
    sims = {
        name: procs.simulator(name, speed=0.4, concurrency=8)[1]
        for name in ("sim1", "sim2", "sim3")
    }
    backends = [
        backend(
            name,
            f"{url}/api/v6/images",
            max_concurrency=8,
            options={"webhook_deadline": 1, "poll_interval": 0.5},
        )
        for name, url in sims.items()
    ]
    config = gateway_config(
        redis_url,
        free_port(),
        backends,
        jobs={"result_timeout": 8, "dispatch_timeout": 5},
        routing={
            "ejection": {
                "consecutive_failures": 2,
                "base_time": 30,
                "max_time": 60,
                "max_share": 0.5,
            }
        },
    )
    gw = procs.gateway("gateway", config)
    await wait_ready(gw)

    accepted: list[tuple[float, dict]] = []
    killed_at = 0.0
    async with aiohttp.ClientSession(headers=AUTH) as http:

        async def submit(n: int) -> None:
            started = time.monotonic()
            async with http.post(f"{gw}/v1/generations", json={"prompt": f"job {n}"}) as resp:
                assert resp.status == 202, await resp.text()
                accepted.append((started, await resp.json()))

        for n in range(60):
            if n == 20:
                procs.kill("sim1")  # its port now refuses connections
                killed_at = time.monotonic()
            await submit(n)
            await asyncio.sleep(0.05)

        async def final(job_id: str) -> dict:
            for _ in range(6):
                async with http.get(f"{gw}/v1/generations/{job_id}", params={"wait": "10"}) as resp:
                    body = await resp.json()
                if body["status"] in FINAL:
                    return body  # type: ignore[no-any-return]
            return body  # type: ignore[no-any-return]

        results = await asyncio.gather(*(final(job["id"]) for _, job in accepted))

    assert len(results) == 60
    unfinished = [r["id"] for r in results if r["status"] not in FINAL]
    assert unfinished == [], procs.log("gateway")[-3000:]
    after_kill = [
        r for (started, _), r in zip(accepted, results, strict=True) if started > killed_at
    ]
    assert after_kill
    assert all(r["backend"] != "sim1" for r in after_kill)
    assert all(r["status"] == "succeeded" for r in after_kill)
    # Jobs sim1 had accepted before it died end too: by its callback if it came, else failed.
    on_sim1 = [r for r in results if r["backend"] == "sim1"]
    assert all(r["status"] in ("succeeded", "failed") for r in on_sim1)
