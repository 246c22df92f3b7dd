"""Usage and cost per tenant: exact across instances, counted once, agreeing with metrics."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from gateway.store.usage import micros
from tests.conftest import Gateway, Simulator
from tests.helpers import ADMIN, AUTH, OTHER_AUTH, backend, eventually, stored_job

PRICE = {"per_image": 0.01, "per_megapixel_step": 0.0007, "per_second": 0.003}


def _metric(text: str, name: str, tenant: str, backend_name: str) -> float:
    pattern = rf'^{name}\{{backend="{backend_name}",tenant="{tenant}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_usage_equals_the_sum_over_succeeded_jobs_and_the_metrics_agree(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    flaky_base, _ = await simulator(fail_rate=1.0)
    base, _ = await simulator(speed=0.3, concurrency=16, duplicate_webhook_rate=1.0)
    slow_base, _ = await simulator(speed=30)
    backends = [
        backend("flaky", flaky_base, price={"per_image": 5}),
        backend("gpu", base, max_concurrency=16, price=PRICE),
        backend("slow", slow_base, price={"per_image": 5}),
    ]
    one = await gateway(redis_url, backends, routing={"strategy": "priority"})
    two = await gateway(redis_url, backends, routing={"strategy": "priority"})
    bodies: list[tuple[dict[str, str], dict[str, Any]]] = [
        (AUTH, {"num_images": 1}),
        (AUTH, {"num_images": 6, "width": 512, "height": 768, "steps": 20}),  # split 4 + 2
        (AUTH, {"num_images": 8, "aspect_ratio": "16:9"}),  # split 4 + 4
        (AUTH, {"num_images": 2, "steps": 41}),
        (OTHER_AUTH, {"num_images": 3, "width": 640, "height": 640, "steps": 10}),
        (OTHER_AUTH, {"num_images": 1}),
    ]
    jobs: list[tuple[dict[str, str], str]] = []
    for i, (headers, extra) in enumerate(bodies * 2):
        client = (one, two)[i % 2]
        resp = await client.post("/v1/generations", json={"prompt": "u", **extra}, headers=headers)
        assert resp.status == 202
        jobs.append((headers, (await resp.json())["id"]))
    # One is canceled while it runs: it is not usage, though the provider may finish it.
    resp = await two.post(
        "/v1/generations", json={"prompt": "c", "backends": ["slow"]}, headers=AUTH
    )
    jobs.append((AUTH, (await resp.json())["id"]))
    canceled = await one.delete(f"/v1/generations/{jobs[-1][1]}", headers=AUTH)
    assert canceled.status == 200
    finals = [
        await (await (one, two)[i % 2].get(f"/v1/generations/{j}?wait=30", headers=h)).json()
        for i, (h, j) in enumerate(jobs)
    ]
    assert [f["status"] for f in finals].count("succeeded") == len(jobs) - 1
    assert any(a["backend"] == "flaky" for f in finals for a in f["attempts"])  # failed over

    async def scrape() -> list[str]:
        return [await (await c.get("/metrics")).text() for c in (one, two)]

    async def duplicates_seen() -> bool:  # the second copy of each callback comes later
        return any('outcome="duplicate"' in m for m in await scrape())

    await eventually(duplicates_seen, timeout=20)
    metrics = await scrape()

    for tenant, headers in (("acme", AUTH), ("globex", OTHER_AUTH)):
        expected = {"jobs": 0, "images": 0, "mps": 0, "ms": 0, "cost": 0}
        for final in finals:
            if final["tenant"] != tenant or final["status"] != "succeeded":
                continue
            record = await stored_job(redis_url, final["id"])
            usage = record.usage
            assert usage.images == len(final["images"]) > 0
            expected["jobs"] += 1
            expected["images"] += usage.images
            expected["mps"] += micros(usage.megapixel_steps)
            expected["ms"] += round(usage.provider_seconds * 1000)
            expected["cost"] += micros(usage.cost)
            assert usage.cost == round(
                PRICE["per_image"] * usage.images
                + PRICE["per_megapixel_step"] * usage.megapixel_steps
                + PRICE["per_second"] * usage.provider_seconds,
                6,
            )
        report = await (await two.get("/v1/usage?group_by=backend", headers=headers)).json()
        assert [(r["tenant"], r["backend"]) for r in report["usage"]] == [(tenant, "gpu")]
        total = report["total"]
        assert total["jobs"] == expected["jobs"]
        assert total["images"] == expected["images"]
        assert micros(total["megapixel_steps"]) == expected["mps"]
        assert round(total["provider_seconds"] * 1000) == expected["ms"]
        assert micros(total["cost"]) == expected["cost"]
        assert report["currency"] == "USD"
        # The metrics, summed over the instances, agree.
        images = sum(_metric(m, "gateway_usage_images_total", tenant, "gpu") for m in metrics)
        cost = sum(_metric(m, "gateway_usage_cost_total", tenant, "gpu") for m in metrics)
        assert images == expected["images"]
        assert abs(cost - expected["cost"] / 1e6) < 1e-6
        by_day = await (await one.get("/v1/usage?group_by=day", headers=headers)).json()
        today = datetime.now(UTC).date().isoformat()
        assert [(r["day"], r["images"]) for r in by_day["usage"]] == [(today, expected["images"])]

    everyone = await (await one.get("/v1/usage", headers=ADMIN)).json()
    assert sorted(r["tenant"] for r in everyone["usage"]) == ["acme", "globex"]
    only = await (await one.get("/v1/usage?tenant=globex", headers=ADMIN)).json()
    assert [r["tenant"] for r in only["usage"]] == ["globex"]
    six = next(f for f in finals if f["tenant"] == "acme" and len(f["images"]) == 6)
    assert (
        await stored_job(redis_url, six["id"])
    ).usage.megapixel_steps == 512 * 768 * 20 * 6 / 1e6
    # The split 8-image job: both parts' images, and the megapixel-steps of all eight.
    eight = next(f for f in finals if f["tenant"] == "acme" and len(f["images"]) == 8)
    record = await stored_job(redis_url, eight["id"])
    assert record.usage.megapixel_steps > 0
    assert record.usage.images == 8


async def test_usage_query_is_checked(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("gpu", base)])
    for query, field in (("from=yesterday", "from"), ("group_by=tenant", "group_by")):
        resp = await client.get(f"/v1/usage?{query}", headers=AUTH)
        assert resp.status == 400, query
        assert (await resp.json())["error"]["details"][0]["field"] == field
    # Any two dates are a valid question (the OpenAPI document cannot relate parameters):
    # `to` before `from` is an empty report; past 93 days, the 93 days ending at `to`.
    backwards = await client.get("/v1/usage?from=2026-03-01&to=2026-02-01", headers=AUTH)
    assert backwards.status == 200
    assert (await backwards.json())["usage"] == []
    long = await (await client.get("/v1/usage?from=2026-01-01&to=2026-12-01", headers=AUTH)).json()
    assert (long["from"], long["to"]) == ("2026-08-31", "2026-12-01")
    empty = await (await client.get("/v1/usage?from=2026-01-01&to=2026-01-31", headers=AUTH)).json()
    assert empty["usage"] == []
    assert empty["total"]["jobs"] == 0
    assert empty["from"] == "2026-01-01"
    assert empty["to"] == "2026-01-31"
