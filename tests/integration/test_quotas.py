"""Tenant quotas held fleet-wide (two instances, one Redis): concurrency, daily images,
monthly spend, rate limit; the 429 body; no slot leaked by a crash."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from gateway import quotas as quota_module
from gateway.config import Quotas as Quotas_
from gateway.quotas import Quotas, daily_window
from gateway.store import keys, open_store
from gateway.store.quotas import QuotaStore
from observability.metrics import Metrics
from tests.conftest import Gateway, Simulator
from tests.helpers import (
    AUTH,
    OTHER_AUTH,
    OTHER_KEY,
    TENANT_KEY,
    backend,
    eventually,
    free_port,
    make_settings,
    tenants,
)
from tests.processes import ProcessGroup, gateway_config, wait_ready

FINAL = {b"succeeded", b"failed", b"canceled"}


async def _submit(client: Any, headers: dict[str, str], **body: Any) -> tuple[int, Any]:
    resp = await client.post("/v1/generations", json={"prompt": "q", **body}, headers=headers)
    return resp.status, (await resp.json(), resp.headers)


async def test_concurrency_quota_holds_across_instances_and_spares_other_tenants(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(speed=0.4, concurrency=64)
    backends = [backend("gpu", base, max_concurrency=64)]
    config = {"tenants": tenants(acme={"quotas": {"concurrency": 10}})}
    one = await gateway(redis_url, backends, **config)
    two = await gateway(redis_url, backends, **config)
    store = await open_store(redis_url)  # a Redis or a cluster (tests/integration/test_cluster)
    accepted: dict[str, list[str]] = {"acme": [], "globex": []}
    refusals: list[dict[str, Any]] = []
    peak = 0
    flooding = True

    async def flood(client: Any, tenant: str, headers: dict[str, str], rounds: int) -> None:
        for _ in range(rounds):  # bounded: rounds x 8 requests
            answers = await asyncio.gather(*(_submit(client, headers) for _ in range(8)))
            for status, (body, resp_headers) in answers:
                if status == 202:
                    accepted[tenant].append(body["id"])
                else:
                    assert status == 429, body
                    refusals.append({**body["error"], "retry_after": resp_headers["Retry-After"]})
            await asyncio.sleep(0.05)

    async def sample() -> None:
        nonlocal peak
        while flooding:  # every 100 ms: acme's jobs not yet final, read from the jobs
            ids = list(accepted["acme"])
            if ids:
                found = await asyncio.gather(
                    *(store.command("HGET", keys.job(job_id), "s") for job_id in ids)
                )
                live = sum(1 for s in found if s not in FINAL)
                peak = max(peak, live)
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    await asyncio.gather(
        flood(one, "acme", AUTH, 12),
        flood(two, "acme", AUTH, 12),
        flood(one, "globex", OTHER_AUTH, 4),
        flood(two, "globex", OTHER_AUTH, 4),
    )
    flooding = False
    await sampler
    await store.close()
    assert 10 < len(accepted["acme"]) < 12 * 16, len(accepted["acme"])
    print(f"acme accepted {len(accepted['acme'])}, peak in flight {peak}")
    assert 0 < peak <= 10, peak
    assert refusals
    assert all(r["code"] == "quota_exceeded" for r in refusals)
    detail = refusals[0]["details"][0]
    assert detail["limit"] == "concurrency"
    assert detail["value"] == 10
    assert "resets_at" in detail
    assert int(refusals[0]["retry_after"]) >= 1
    assert len(accepted["globex"]) == 2 * 4 * 8  # unaffected: every request taken
    for job_id in accepted["globex"][-3:]:
        done = await (await one.get(f"/v1/generations/{job_id}?wait=20", headers=OTHER_AUTH)).json()
        assert done["status"] == "succeeded"
    metrics = await (await one.get("/metrics")).text()
    assert 'gateway_quota_rejections_total{limit="concurrency",tenant="acme"}' in metrics


async def test_daily_image_quota_admits_exactly_its_images_across_instances(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(speed=0.05, concurrency=64)
    backends = [backend("gpu", base, max_concurrency=64)]
    reset_hour = (datetime.now(UTC).hour + 5) % 24
    config = {
        "tenants": tenants(acme={"quotas": {"daily_images": 50, "daily_reset_hour": reset_hour}})
    }
    one = await gateway(redis_url, backends, **config)
    two = await gateway(redis_url, backends, **config)
    # Split jobs count by their images: 8 images go to modelslab as two submissions of 4.
    sizes = [8, 3, 1, 4, 2, 8, 5, 1, 6, 2, 7, 3, 8, 1, 2]
    answers = await asyncio.gather(
        *(_submit((one, two)[i % 2], AUTH, num_images=n) for i, n in enumerate(sizes))
    )
    admitted = sum(n for n, (status, _) in zip(sizes, answers, strict=True) if status == 202)
    while admitted < 50:  # top up one image at a time, alternating instances
        status, (body, _) = await _submit((one, two)[admitted % 2], AUTH, num_images=1)
        assert status == 202, body
        admitted += 1
    assert admitted == 50
    status, (body, headers) = await _submit(two, AUTH, num_images=1)
    assert status == 429
    detail = body["error"]["details"][0]
    _window, resets = daily_window(time.time(), reset_hour)
    assert detail["limit"] == "daily_images"
    assert detail["value"] == 50
    assert datetime.fromisoformat(detail["resets_at"]).timestamp() == resets
    assert datetime.fromisoformat(detail["resets_at"]).hour == reset_hour
    assert 0 < int(headers["Retry-After"]) <= 86400
    assert (await _submit(one, OTHER_AUTH, num_images=8))[0] == 202  # globex has no quota


async def test_monthly_spend_cap_refuses_once_spent_until_next_month(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(speed=0.05)
    client = await gateway(
        redis_url,
        [backend("gpu", base, price={"per_image": 0.5})],
        tenants=tenants(acme={"quotas": {"monthly_spend": 2.0}}),
    )
    for _ in range(2):
        status, (job, _) = await _submit(client, AUTH, num_images=2)
        assert status == 202
        done = await (await client.get(f"/v1/generations/{job['id']}?wait=20", headers=AUTH)).json()
        assert done["status"] == "succeeded"
    status, (body, headers) = await _submit(client, AUTH)
    assert status == 429, body
    detail = body["error"]["details"][0]
    assert detail["limit"] == "monthly_spend"
    assert detail["value"] == 2.0
    assert detail["used"] == 2.0
    resets = datetime.fromisoformat(detail["resets_at"])
    assert (resets.day, resets.hour, resets.minute) == (1, 0, 0)
    assert int(headers["Retry-After"]) > 0


async def test_rate_limit_429_names_the_limit(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(speed=0.05)
    client = await gateway(
        redis_url,
        [backend("gpu", base)],
        tenants=tenants(acme={"rate_limit": {"per_second": 0.5, "burst": 1}}),
    )
    assert (await _submit(client, AUTH))[0] == 202
    status, (body, headers) = await _submit(client, AUTH)
    assert status == 429
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"][0]["limit"] == "rate_limit"
    assert body["error"]["details"][0]["value"] == 0.5
    assert body["error"]["details"][0]["resets_at"] is not None
    assert int(headers["Retry-After"]) >= 1


async def test_a_crash_between_admission_and_the_end_leaks_no_slot(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admission whose job never came to exist (the instance died) stops counting."""
    store = await open_store(redis_url)
    quotas = QuotaStore(store)
    window, _ = daily_window(time.time(), 0)

    async def admit(job_id: str, *, expires: float) -> bool:
        got = await quotas.admit(
            "acme", job_id, now=time.time(), expires=expires, concurrency=2,
            images=1, daily=None, window=window, window_ttl=60,
        )  # fmt: skip
        return got.refused == 0

    assert await admit("gen_0aaaaaaaaaaaaaaaaaaaaaaa", expires=time.time() + 0.3)
    assert await admit("gen_0bbbbbbbbbbbbbbbbbbbbbbb", expires=time.time() + 600)
    assert not await admit("gen_0ccccccccccccccccccccccc", expires=time.time() + 600)
    # The first admission expires at its job's deadline: room again, without anyone's help.
    await eventually(
        lambda: admit("gen_0ccccccccccccccccccccccc", expires=time.time() + 600), timeout=3
    )
    # The reaper drops members whose job is gone or final once past their grace time, so
    # a slot comes back long before the deadline.
    monkeypatch.setattr(quota_module, "REAP_GRACE", 0.0)
    settings = make_settings(redis_url, 1, [backend("gpu", "http://127.0.0.1:9")])
    acme = settings.tenants[0].model_copy(update={"quotas": Quotas_(concurrency=2)})
    reaper = Quotas(quotas, [acme], Metrics(), result_timeout=600)
    assert await reaper.reap() == 2
    assert await quotas.in_flight("acme") == []
    await store.close()


async def test_concurrency_quota_holds_across_two_gateway_processes(
    redis_url: str, tmp_path: Path
) -> None:
    """Point 1 with real processes: two `gateway serve`, one `gateway simulate`, flooding."""
    procs = ProcessGroup(tmp_path)
    try:
        _, sim = procs.simulator("sim", speed=0.4, concurrency=64)
        backends = [backend("gpu", f"{sim}/api/v6/images", max_concurrency=64)]
        ports = [free_port(), free_port()]
        urls = [
            procs.gateway(
                f"gw-{n}",
                gateway_config(
                    redis_url, port, backends, tenants=tenants(acme={"quotas": {"concurrency": 10}})
                ),
            )
            for n, port in enumerate(ports)
        ]
        await asyncio.gather(*(wait_ready(u, timeout=60) for u in urls))
        redis = aioredis.Redis.from_url(redis_url)
        accepted: dict[str, list[str]] = {"acme": [], "globex": []}
        statuses: list[int] = []
        peak, flooding = 0, True

        async def flood(http: aiohttp.ClientSession, url: str, tenant: str, key: str) -> None:
            for _ in range(10):  # bounded: 10 rounds of 8 requests
                answers = await asyncio.gather(*(
                    http.post(f"{url}/v1/generations", json={"prompt": "q"},
                              headers={"Authorization": f"Bearer {key}"})
                    for _ in range(8)
                ))  # fmt: skip
                for resp in answers:
                    statuses.append(resp.status)
                    if resp.status == 202:
                        accepted[tenant].append((await resp.json())["id"])
                    resp.release()
                await asyncio.sleep(0.05)

        async def sample() -> None:
            nonlocal peak
            while flooding:
                pipe = redis.pipeline(transaction=False)
                for job_id in list(accepted["acme"]):
                    pipe.hget(keys.job(job_id), "s")
                found = await pipe.execute()
                peak = max(peak, sum(1 for s in found if s not in FINAL))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(
                *(flood(http, u, "acme", TENANT_KEY) for u in urls),
                *(flood(http, u, "globex", OTHER_KEY) for u in urls),
            )
        flooding = False
        await sampler
        await redis.aclose()
        assert 0 < peak <= 10, peak
        assert len(accepted["globex"]) == 2 * 10 * 8  # the unlimited tenant: every request
        assert len(accepted["acme"]) > 10
        assert set(statuses) == {202, 429}
    finally:
        procs.stop_all()
