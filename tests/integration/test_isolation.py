"""Cross-tenant isolation on every route: tenant B with tenant A's job ids, idempotency keys,
delivery ids and usage gets 404 (or its own empty view), and nothing of A's changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.conftest import Gateway, Simulator
from tests.helpers import ADMIN, AUTH, OTHER_AUTH, Receiver, backend, eventually, stored_job

# Routes anyone may call (no tenant data) and routes for providers (a per-submission token).
PUBLIC = {"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json"}


async def _a_state(redis_url: str, job_ids: list[str]) -> list[Any]:
    """Everything stored about A's jobs, to compare before and after B's attempts."""
    return [(await stored_job(redis_url, j)).model_dump() for j in job_ids]


async def test_another_tenants_ids_are_404_on_every_route_and_change_nothing(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=500)

    recv.respond = refuse
    fast, _ = await simulator(speed=0.05)
    slow, _ = await simulator(speed=30)
    trainer, _ = await simulator("astria", speed=0.05)
    client = await gateway(
        redis_url,
        [
            backend("fast", fast),
            backend("slow", slow),
            backend("trainer", trainer, adapter="astria", models={"realistic": "690204"}),
        ],
        routing={"strategy": "priority"},
    )
    # Tenant A: a finished job whose webhook is dead-lettered, with an idempotency key,
    # and a running one; usage recorded.
    resp = await client.post(
        "/v1/generations",
        json={"prompt": "a", "webhook_url": hook},
        headers={**AUTH, "Idempotency-Key": "shared-key"},
    )
    done = await resp.json()
    running = await (
        await client.post(
            "/v1/generations", json={"prompt": "a", "backends": ["slow"]}, headers=AUTH
        )
    ).json()

    async def dead() -> bool:
        found = await (await client.get("/v1/deliveries/dead", headers=AUTH)).json()
        return [d["job_id"] for d in found["dead_letters"]] == [done["id"]]

    await eventually(dead, timeout=20)
    a_jobs = [done["id"], running["id"]]
    # A loopback image URL: the tests allow it and it resolves offline (URLs are screened).
    tune_body = {"name": "man", "branch": "fast", "images": ["http://127.0.0.1:9/a.jpg"]}
    resp = await client.post(
        "/v1/tunes", json=tune_body, headers={**AUTH, "Idempotency-Key": "shared-key"}
    )
    assert resp.status == 202, await resp.text()
    tune_id = (await resp.json())["id"]
    a_tune = await (await client.get(f"/v1/tunes/{tune_id}?wait=15", headers=AUTH)).json()
    assert a_tune["status"] == "succeeded"
    before = await _a_state(redis_url, a_jobs)
    a_usage = await (await client.get("/v1/usage", headers=AUTH)).json()
    assert a_usage["total"]["jobs"] == 1
    today = datetime.now(UTC).date().isoformat()
    midnight = f"{today}T00:00:00Z"  # `since` is a date-time (the body is read strictly)

    b = OTHER_AUTH
    track = f"{running['id']}.0"
    checks: dict[str, list[tuple[str, str, dict[str, Any] | None, dict[str, str], int]]] = {
        "POST /v1/generations": [],  # the shared idempotency key: below
        "GET /v1/generations/{id}": [("GET", f"/v1/generations/{j}", None, b, 404) for j in a_jobs]
        + [("GET", f"/v1/generations/{running['id']}?wait=0.2", None, b, 404)],
        "DELETE /v1/generations/{id}": [
            ("DELETE", f"/v1/generations/{j}", None, b, 404) for j in a_jobs
        ],
        "GET /v1/backends": [],  # the fleet, no tenant's data: below
        "POST /v1/backends/{name}/drain": [("POST", "/v1/backends/fast/drain", None, b, 403)],
        "POST /v1/backends/{name}/undrain": [("POST", "/v1/backends/fast/undrain", None, b, 403)],
        "GET /v1/deliveries/dead": [
            ("GET", "/v1/deliveries/dead?tenant=acme", None, b, 404),
        ],
        "POST /v1/deliveries/replay": [
            ("POST", "/v1/deliveries/replay", {"tenant": "acme", "since": midnight}, b, 404),
        ],
        "POST /v1/deliveries/{id}/replay": [
            ("POST", f"/v1/deliveries/{j}/replay", None, b, 404) for j in a_jobs
        ],
        "GET /v1/usage": [("GET", f"/v1/usage?tenant=acme&from={today}", None, b, 404)],
        "POST /v1/tunes": [],  # the shared idempotency key: below
        "GET /v1/tunes": [],  # B's own, empty listing: below
        "GET /v1/tunes/{id}": [
            ("GET", f"/v1/tunes/{tune_id}", None, b, 404),
            ("GET", f"/v1/tunes/{tune_id}?wait=0.2", None, b, 404),
        ],
        "DELETE /v1/tunes/{id}": [("DELETE", f"/v1/tunes/{tune_id}", None, b, 404)],
        "POST /webhooks/{backend}/{track_id}": [
            # Without the submission token (only A's provider has it), nothing is applied.
            ("POST", f"/webhooks/slow/{track}?token=guess", {"status": "success"}, {}, 401),
            ("POST", f"/webhooks/slow/{track}", {"status": "success"}, {}, 401),
            ("POST", f"/webhooks/trainer/{tune_id}.0?token=guess", {"id": 1}, {}, 401),
        ],
    }
    routes = {
        f"{r.method} {r.resource.canonical}"
        for r in client.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    assert routes - PUBLIC == set(checks), "every route needs a cross-tenant check here"
    for route, cases in checks.items():
        for method, path, body, headers, status in cases:
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.status == status, (route, path, resp.status, await resp.text())
            if status == 404 and "acme" not in path + str(body):
                assert "acme" not in await resp.text()  # an id gives away not even A's name

    # The same idempotency key makes B its own job, not a replay of A's.
    mine = await client.post(
        "/v1/generations", json={"prompt": "a"}, headers={**b, "Idempotency-Key": "shared-key"}
    )
    assert mine.status == 202
    assert "Idempotent-Replayed" not in mine.headers
    assert (await mine.json())["id"] != done["id"]
    assert (await mine.json())["tenant"] == "globex"
    theirs = await client.post(
        "/v1/tunes", json=tune_body, headers={**b, "Idempotency-Key": "shared-key"}
    )
    assert theirs.status == 202
    assert "Idempotent-Replayed" not in theirs.headers
    assert (await theirs.json())["id"] != tune_id
    listing = await (await client.get("/v1/tunes", headers=b)).json()
    assert [t["id"] for t in listing["data"]] == [(await theirs.json())["id"]]
    # B's own views are its own, and empty of A.
    assert (await (await client.get("/v1/deliveries/dead", headers=b)).json())["dead_letters"] == []
    usage = await (await client.get(f"/v1/usage?from={today}", headers=b)).json()
    assert all(r["tenant"] == "globex" for r in usage["usage"])
    assert "acme" not in await (await client.get("/v1/backends", headers=b)).text()

    # Nothing of A's changed: its jobs, its dead letter, its usage.
    assert await _a_state(redis_url, a_jobs) == before
    assert await dead()
    assert await (await client.get("/v1/usage", headers=AUTH)).json() == a_usage
    assert await (await client.get(f"/v1/tunes/{tune_id}", headers=AUTH)).json() == a_tune
    # And A (or an admin) still reaches all of it.
    for job_id in a_jobs:
        assert (await client.get(f"/v1/generations/{job_id}", headers=AUTH)).status == 200
    assert (await client.get("/v1/usage?tenant=acme", headers=ADMIN)).status == 200
