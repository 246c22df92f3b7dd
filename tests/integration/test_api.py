"""The HTTP API end to end, in-process, against the real Redis and against memory://."""

from __future__ import annotations

import asyncio

from tests.conftest import Gateway, Simulator
from tests.helpers import ADMIN, AUTH, OTHER_AUTH, Receiver, backend, eventually


async def test_submit_routes_and_delivers(
    store_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    base, _ = await simulator()
    client = await gateway(store_url, [backend("ml-1", base)])
    resp = await client.post(
        "/v1/generations",
        json={"prompt": "a red fox", "webhook_url": hook, "metadata": {"order": 7}},
        headers=AUTH,
    )
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    assert job["id"].startswith("gen_")
    assert job["backend"] == "ml-1"
    assert job["adapter"] == "modelslab"
    assert job["track_id"] == f"{job['id']}.0"
    assert job["status"] in ("submitted", "processing", "succeeded")
    assert resp.headers["Location"] == f"/v1/generations/{job['id']}"

    done = await (await client.get(f"/v1/generations/{job['id']}?wait=10", headers=AUTH)).json()
    assert done["status"] == "succeeded"
    assert len(done["images"]) == 1
    assert done["images"][0].endswith(".png")
    assert done["metadata"] == {"order": 7}
    assert done["completed_at"] is not None
    await eventually(lambda: recv.jobs() == [job["id"]])
    event = recv.deliveries[0]["payload"]
    assert event["type"] == "generation.succeeded"
    assert event["data"]["images"] == done["images"]


async def test_idempotency_key(store_url: str, simulator: Simulator, gateway: Gateway) -> None:
    base, _ = await simulator()
    client = await gateway(store_url, [backend("ml-1", base)])
    headers = {**AUTH, "Idempotency-Key": "order-42"}
    first = await client.post("/v1/generations", json={"prompt": "a"}, headers=headers)
    again = await client.post("/v1/generations", json={"prompt": "a"}, headers=headers)
    assert first.status == again.status == 202
    assert (await first.json())["id"] == (await again.json())["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await client.post("/v1/generations", json={"prompt": "b"}, headers=headers)
    assert other.status == 409
    assert (await other.json())["error"]["details"][0]["field"] == "Idempotency-Key"
    # The same key is a different key for another tenant.
    theirs = await client.post(
        "/v1/generations",
        json={"prompt": "b"},
        headers={**OTHER_AUTH, "Idempotency-Key": "order-42"},
    )
    assert theirs.status == 202


async def test_concurrent_idempotent_submissions_make_one_job(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, server = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    headers = {**AUTH, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(
            client.post("/v1/generations", json={"prompt": "same"}, headers=headers)
            for _ in range(10)
        )
    )
    ids = {(await r.json())["id"] for r in responses}
    assert len(ids) == 1
    stats = await (await client.session.get(f"http://127.0.0.1:{server.port}/_sim/stats")).json()
    assert stats["submitted"] == 1


async def test_tenants_see_only_their_jobs(
    store_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator()
    client = await gateway(store_url, [backend("ml-1", base)])
    job = await (await client.post("/v1/generations", json={"prompt": "mine"}, headers=AUTH)).json()
    for method in ("get", "delete"):
        resp = await getattr(client, method)(f"/v1/generations/{job['id']}", headers=OTHER_AUTH)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    assert (await client.get("/v1/generations/gen_nope", headers=AUTH)).status == 404


async def test_authentication(store_url: str, simulator: Simulator, gateway: Gateway) -> None:
    base, _ = await simulator()
    client = await gateway(store_url, [backend("ml-1", base)])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        resp = await client.post("/v1/generations", json={"prompt": "x"}, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    # Admin routes refuse tenant keys.
    assert (await client.post("/v1/backends/ml-1/drain", headers=AUTH)).status == 403
    assert (await client.post("/v1/backends/ml-1/drain", headers=ADMIN)).status == 200


async def test_cancel(
    store_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    base, _ = await simulator(speed=2)
    client = await gateway(store_url, [backend("ml-1", base)])
    job = await (
        await client.post(
            "/v1/generations", json={"prompt": "slow", "webhook_url": hook}, headers=AUTH
        )
    ).json()
    resp = await client.delete(f"/v1/generations/{job['id']}", headers=AUTH)
    assert resp.status == 200
    canceled = await resp.json()
    assert canceled["status"] == "canceled"
    assert canceled["completed_at"]
    assert (await client.delete(f"/v1/generations/{job['id']}", headers=AUTH)).status == 409
    # The provider's late result is recorded but nothing is delivered and the state stays.
    await asyncio.sleep(2.5)
    after = await (await client.get(f"/v1/generations/{job['id']}", headers=AUTH)).json()
    assert after["status"] == "canceled"
    assert after["images"] == []
    assert recv.attempts == 0


async def test_long_poll_returns_when_the_job_ends(
    store_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(speed=0.5)
    client = await gateway(store_url, [backend("ml-1", base)])
    job = await (await client.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)).json()
    loop = asyncio.get_running_loop()
    started = loop.time()
    done = await (await client.get(f"/v1/generations/{job['id']}?wait=20", headers=AUTH)).json()
    assert done["status"] == "succeeded"
    assert loop.time() - started < 5
    short = await client.get(f"/v1/generations/{job['id']}?wait=abc", headers=AUTH)
    assert short.status == 400
    assert (await short.json())["error"]["details"][0]["field"] == "wait"


async def test_health_ready_metrics_openapi(
    store_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator()
    client = await gateway(store_url, [backend("ml-1", base)])
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["store"] == "ok"
    await client.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)
    metrics = await (await client.get("/metrics")).text()
    assert (
        'gateway_http_requests_total{method="POST",route="/v1/generations",status="202"} 1.0'
        in metrics
    )
    assert "gateway_http_request_duration_seconds_bucket" in metrics
    assert "sim-key" not in metrics
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    request_schema = spec["components"]["schemas"]["GenerationRequest"]
    assert request_schema["properties"]["num_images"]["maximum"] == 8
    assert "/v1/generations/{id}" in spec["paths"]


async def test_backends_view_and_drain(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base1, _ = await simulator()
    base2, _ = await simulator()
    a = await gateway(redis_url, [backend("ml-1", base1), backend("ml-2", base2)])
    b = await gateway(redis_url, [backend("ml-1", base1), backend("ml-2", base2)])
    listing = await (await a.get("/v1/backends", headers=ADMIN)).json()
    assert [x["name"] for x in listing["backends"]] == ["ml-1", "ml-2"]
    assert listing["backends"][0]["capacity"] == 4
    assert (await a.post("/v1/backends/ml-1/drain", headers=ADMIN)).status == 200

    async def b_sees(health: str) -> bool:
        seen = await (await b.get("/v1/backends", headers=ADMIN)).json()
        return bool(seen["backends"][0]["health"] == health)

    await eventually(lambda: b_sees("drained"), timeout=1)
    for _ in range(4):  # ml-2's capacity
        job = await (await b.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)).json()
        assert job["backend"] == "ml-2"
    await a.post("/v1/backends/ml-1/undrain", headers=ADMIN)
    await eventually(lambda: b_sees("healthy"), timeout=1)
    assert (await a.post("/v1/backends/nope/drain", headers=ADMIN)).status == 404
    # Tenants see the backends they may use, without admin routes.
    tenant_view = await (await b.get("/v1/backends", headers=AUTH)).json()
    assert [x["name"] for x in tenant_view["backends"]] == ["ml-1", "ml-2"]
