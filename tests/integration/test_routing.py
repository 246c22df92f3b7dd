"""Routing across instances: ejection and recovery, cool-downs, fair queueing, speed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import Gateway, Simulator
from tests.helpers import ADMIN, AUTH, OTHER_AUTH, backend, eventually


async def _backends(client: Any) -> dict[str, dict[str, Any]]:
    listing = await (await client.get("/v1/backends", headers=ADMIN)).json()
    return {b["name"]: b for b in listing["backends"]}


async def _config(client: Any, server: Any, **settings: Any) -> None:
    url = f"http://127.0.0.1:{server.port}/_sim/config"
    async with client.session.post(url, json=settings) as resp:
        assert resp.status == 200


async def test_failing_backend_is_ejected_then_back_after_recovery_on_every_instance(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base_bad, bad = await simulator()
    base_ok, _ = await simulator()
    backends = [backend("flaky", base_bad), backend("steady", base_ok, max_concurrency=32)]
    # Probes every 0.5 s; ejection 2 s at first; `priority` so `flaky` is always tried first.
    overrides = {
        "routing": {
            "strategy": "priority",
            "probe_interval": 0.5,
            "ejection": {
                "consecutive_failures": 5,
                "base_time": 2,
                "max_time": 8,
                "max_share": 0.5,
            },
        }
    }
    a = await gateway(redis_url, backends, **overrides)
    b = await gateway(redis_url, backends, **overrides)
    await _config(a, bad, fail_rate=1.0)
    # Submissions fail over to `steady`; each failure counts. At most 5 reach `flaky`.
    tried_flaky = 0
    for _ in range(8):
        job = await (await a.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)).json()
        assert job["backend"] == "steady"
        tried_flaky += sum(1 for at in job["attempts"] if at["backend"] == "flaky")
    assert tried_flaky <= 5
    ejected_at = time.monotonic()

    async def b_sees(health: str) -> bool:
        return (await _backends(b))["flaky"]["health"] == health

    await eventually(lambda: b_sees("ejected"), timeout=1)
    # No new work while ejected, from either instance.
    for client in (a, b):
        job = await (
            await client.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)
        ).json()
        assert [at["backend"] for at in job["attempts"]] == ["steady"]
    # It recovers; after its ejection time it is back within one probe interval, everywhere.
    await _config(a, bad, fail_rate=0.0)
    await eventually(lambda: b_sees("healthy"), timeout=2 + 0.5 + 1.5)
    assert time.monotonic() - ejected_at < 2 + 0.5 + 1.5
    job = await (await b.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)).json()
    assert job["backend"] == "flaky"


async def test_dead_idle_backend_is_ejected_by_probes(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base_ok, _ = await simulator()
    dead = "http://127.0.0.1:9/api/v6/images"  # nothing listens on the discard port
    client = await gateway(
        redis_url,
        [backend("dead", dead), backend("ok", base_ok)],
        routing={"probe_interval": 0.2, "ejection": {"consecutive_failures": 3, "base_time": 5}},
    )

    async def ejected() -> bool:
        return (await _backends(client))["dead"]["health"] == "ejected"

    await eventually(ejected, timeout=3)
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_backend_ejections_total{backend="dead"} 1.0' in metrics


async def test_429_cools_the_key_down_for_retry_after_on_every_instance(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base_limited, limited = await simulator(rate_limit_rate=1.0, retry_after=2)
    base_ok, _ = await simulator()
    backends = [backend("limited", base_limited), backend("ok", base_ok)]
    a = await gateway(redis_url, backends, routing={"strategy": "priority"})
    b = await gateway(redis_url, backends, routing={"strategy": "priority"})
    job = await (await a.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)).json()
    assert [at["outcome"] for at in job["attempts"]] == ["rate_limited", "accepted"]

    async def b_skips_it() -> bool:
        return not (await _backends(b))["limited"]["routable"]

    await eventually(b_skips_it, timeout=1)
    job = await (await b.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)).json()
    assert [at["backend"] for at in job["attempts"]] == ["ok"]  # not even tried
    await _config(a, limited, rate_limit_rate=0.0)
    await asyncio.sleep(2.2)
    job = await (await b.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)).json()
    assert job["backend"] == "limited"


async def test_queue_is_fair_across_tenants(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(speed=0.15, concurrency=1)
    client = await gateway(redis_url, [backend("one", base, max_concurrency=1)])
    burst = await asyncio.gather(
        *(client.post("/v1/generations", json={"prompt": f"a{n}"}, headers=AUTH) for n in range(12))
    )
    a_jobs = [(await r.json())["id"] for r in burst]
    await asyncio.sleep(0.05)
    b_job = (
        await (
            await client.post("/v1/generations", json={"prompt": "b"}, headers=OTHER_AUTH)
        ).json()
    )["id"]
    b_done = await (await client.get(f"/v1/generations/{b_job}?wait=30", headers=OTHER_AUTH)).json()
    assert b_done["status"] == "succeeded"
    a_states = [
        (await (await client.get(f"/v1/generations/{j}", headers=AUTH)).json())["status"]
        for j in a_jobs
    ]
    # Globex's one job did not wait for acme's whole burst of 12.
    assert a_states.count("succeeded") < 6, a_states


async def test_full_queue_answers_429_and_keeps_nothing(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(speed=2)
    client = await gateway(
        redis_url, [backend("one", base, max_concurrency=1)], routing={"queue_bound": 2}
    )
    statuses = []
    for n in range(4):
        resp = await client.post(
            "/v1/generations", json={"prompt": f"{n}"}, headers={**AUTH, "Idempotency-Key": f"k{n}"}
        )
        statuses.append(resp.status)
        if resp.status == 429:
            assert resp.headers["Retry-After"].isdigit()
            assert (await resp.json())["error"]["code"] == "queue_full"
    assert statuses == [202, 202, 202, 429]  # one running, two waiting
    listing = await (await client.get("/metrics")).text()
    assert "gateway_queue_depth 2.0" in listing or "gateway_queue_depth" in listing
    # The refused request's idempotency key is free again.
    retry = await client.post(
        "/v1/generations", json={"prompt": "other"}, headers={**AUTH, "Idempotency-Key": "k3"}
    )
    assert retry.status == 429


async def test_provider_losing_a_job_resubmits_it_elsewhere(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    _, forgetful = await simulator("bodia", speed=5)
    _, steady = await simulator("bodia")
    spec = {"adapter": "bodia", "models": {"default": "ft-1"}, "options": {"poll_interval": 0.2}}
    client = await gateway(
        redis_url,
        [
            backend("forgetful", f"http://127.0.0.1:{forgetful.port}", **spec),
            backend("steady", f"http://127.0.0.1:{steady.port}", **spec),
        ],
        routing={"strategy": "priority"},
    )
    job = await (await client.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)).json()
    assert job["backend"] == "forgetful"
    record_id = job["id"]
    # The provider forgets it (deleted on its side): polling proves it lost the job.
    prompts = f"http://127.0.0.1:{forgetful.port}/v1/finetunes/ft-1/prompts"
    async with client.session.get(prompts, headers={"Authorization": "Bearer sim-key"}) as resp:
        prompt_id = (await resp.json())[0]["id"]
    async with client.session.delete(
        f"{prompts}/{prompt_id}", headers={"Authorization": "Bearer sim-key"}
    ):
        pass
    done = await (await client.get(f"/v1/generations/{record_id}?wait=15", headers=AUTH)).json()
    assert done["status"] == "succeeded"
    assert done["backend"] == "steady"
    assert [a["outcome"] for a in done["attempts"]] == ["accepted", "lost", "accepted"]


async def test_speed_is_learned_and_shared(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base_fast, _ = await simulator(speed=0.1, concurrency=8)
    base_slow, _ = await simulator(speed=0.4, concurrency=8)
    backends = [
        backend("fast", base_fast, max_concurrency=8),
        backend("slow", base_slow, max_concurrency=8),
    ]
    a = await gateway(redis_url, backends, routing={"strategy": "round_robin"})
    b = await gateway(redis_url, backends)
    jobs = await asyncio.gather(
        *(a.post("/v1/generations", json={"prompt": f"{n}"}, headers=AUTH) for n in range(8))
    )
    for resp in jobs:
        job = await resp.json()
        await a.get(f"/v1/generations/{job['id']}?wait=10", headers=AUTH)

    async def learned() -> bool:
        seen = await _backends(b)
        return bool(seen["fast"]["seconds_per_unit"] and seen["slow"]["seconds_per_unit"])

    await eventually(learned, timeout=2)
    seen = await _backends(b)
    # 512x512 at 30 steps is 7.86 units: 0.1 s → ~0.013 s/unit, 0.4 s → ~0.05 s/unit.
    assert seen["fast"]["seconds_per_unit"] < seen["slow"]["seconds_per_unit"]
    assert seen["fast"]["expected_wait"] < seen["slow"]["expected_wait"]
