"""The gateway queue's order: priority classes first, then weighted fair shares by tenant."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

from gateway.store import open_store
from gateway.store.queue import GatewayQueue
from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, backend, tenants


async def test_queue_serves_interactive_first_then_tenants_by_weight(redis_url: str) -> None:
    store = await open_store(redis_url)
    queue = GatewayQueue(store, 10_000, {"heavy": 3.0, "light": 1.0, "late": 1.0})
    # Two batch tenants saturate the queue (weights 3:1), each with a backlog of 400...
    for n in range(400):
        assert await queue.push(f"heavy-{n}", "heavy", "batch")
        assert await queue.push(f"light-{n}", "light", "batch")
    # ...then interactive work arrives behind them.
    for n in range(5):
        assert await queue.push(f"ui-{n}", "light", "interactive")
    first = await queue.pop(5)
    assert sorted(job for job, _ in first) == [f"ui-{n}" for n in range(5)]
    served: Counter[str] = Counter()
    for _ in range(25):  # 400 batch jobs, dispatched 16 at a time as slots free
        served.update(job.split("-")[0] for job, _ in await queue.pop(16))
    assert served["heavy"] + served["light"] == 400
    assert abs(served["heavy"] / served["light"] - 3.0) <= 0.3, served
    # A tenant arriving now is not behind the others' backlog: it is served at once.
    assert await queue.push("late-0", "late", "batch")
    assert "late-0" in [job for job, _ in await queue.pop(3)]
    # Popped jobs put back keep their place in line.
    popped = await queue.pop(3)
    await queue.put_back(popped)
    assert await queue.pop(3) == popped
    assert await queue.count_classes() == {"interactive": 0, "batch": 800 - 400 + 1 - 3 - 3}
    await store.close()


async def _batch_tenant(
    redis_url: str, simulator: Simulator, gateway: Gateway, speed: float, slots: int, **extra: Any
) -> Any:
    """A gateway on one GPU server of `slots` where acme sends batch work unless it says so."""
    base, _ = await simulator(speed=speed, concurrency=slots)
    return await gateway(
        redis_url,
        [backend("gpu", base, max_concurrency=slots)],
        tenants=tenants(acme={"priority": {"default": "batch", "max": "interactive"}}),
        **extra,
    )


async def test_batch_flood_does_not_delay_interactive_work(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    client = await _batch_tenant(redis_url, simulator, gateway, 0.2, 2)
    flood = await asyncio.gather(
        *(client.post("/v1/generations", json={"prompt": f"a{n}"}, headers=AUTH) for n in range(24))
    )
    batch = [(await r.json())["id"] for r in flood]
    await asyncio.sleep(0.3)
    # The same tenant, so only the class (not the fair share) can put these first.
    body = {"prompt": "b", "priority": "interactive"}
    urgent = [
        (await (await client.post("/v1/generations", json=body, headers=AUTH)).json())["id"]
        for _ in range(4)
    ]

    async def final(job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = await (
            await client.get(f"/v1/generations/{job_id}?wait=60", headers=AUTH)
        ).json()
        assert job["status"] == "succeeded", job
        return job

    def accepted(job: dict[str, Any]) -> datetime:
        return next(
            datetime.fromisoformat(a["at"])
            for a in job["attempts"]
            if a["outcome"] in ("accepted", "completed")
        )

    urgent_jobs = [await final(j) for j in urgent]
    batch_jobs = [await final(j) for j in batch]
    first_in = min(datetime.fromisoformat(j["created_at"]) for j in urgent_jobs)
    last_out = max(accepted(j) for j in urgent_jobs)
    # Batch work still waited when the interactive jobs came, and went after them: at most
    # one batch job per slot was on its way out of the queue as the first one arrived.
    overtook = sum(1 for j in batch_jobs if first_in < accepted(j) < last_out)
    waited = sum(1 for j in batch_jobs if accepted(j) > last_out)
    assert waited >= 8, waited
    assert overtook <= 2, overtook


async def test_priority_above_the_tenants_maximum_is_422_naming_the_field(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(speed=0.05)
    client = await gateway(
        redis_url,
        [backend("gpu", base)],
        tenants=tenants(acme={"priority": {"default": "batch", "max": "batch"}}),
    )
    resp = await client.post(
        "/v1/generations", json={"prompt": "x", "priority": "interactive"}, headers=AUTH
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["details"][0]["field"] == "priority"
    ok = await client.post(
        "/v1/generations", json={"prompt": "x", "priority": "batch"}, headers=AUTH
    )
    assert ok.status == 202
    bad = await client.post(
        "/v1/generations", json={"prompt": "x", "priority": "urgent"}, headers=AUTH
    )
    assert bad.status == 422


async def test_interactive_reserve_keeps_slots_free_of_batch_work(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    client = await _batch_tenant(
        redis_url, simulator, gateway, 2, 4, routing={"interactive_reserve": 0.5}
    )
    flood = await asyncio.gather(
        *(client.post("/v1/generations", json={"prompt": f"a{n}"}, headers=AUTH) for n in range(6))
    )
    states = [(await r.json())["status"] for r in flood]
    assert states.count("queued") == 4  # batch work takes two of the four slots, no more
    body = {"prompt": "b", "priority": "interactive"}
    for _ in range(2):  # interactive work finds the other two at once
        job = await (await client.post("/v1/generations", json=body, headers=AUTH)).json()
        assert job["status"] != "queued"
        assert job["backend"] == "gpu"
