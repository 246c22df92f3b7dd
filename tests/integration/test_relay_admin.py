"""Dead letters (listed per tenant, replayed) and the SSRF guard on webhook destinations."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from tests.conftest import Gateway, Simulator
from tests.helpers import ADMIN, AUTH, OTHER_AUTH, Receiver, backend, eventually


async def _job(client: Any, hook: str, headers: dict[str, str] = AUTH) -> dict[str, Any]:
    resp = await client.post(
        "/v1/generations", json={"prompt": "x", "webhook_url": hook}, headers=headers
    )
    assert resp.status == 202
    return await resp.json()  # type: ignore[no-any-return]


async def _job_state(client: Any, job_id: str) -> dict[str, Any]:
    return await (await client.get(f"/v1/generations/{job_id}", headers=AUTH)).json()  # type: ignore[no-any-return]


async def test_dead_letters_are_listed_per_tenant_and_replayed(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    failing = True

    async def respond(request: web.Request) -> web.Response:
        return web.Response(status=500 if failing else 204)

    recv.respond = respond
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    job = await _job(client, hook)

    async def dead() -> bool:
        listing = await (await client.get("/v1/deliveries/dead?tenant=acme", headers=ADMIN)).json()
        return [d["job_id"] for d in listing["dead_letters"]] == [job["id"]]

    await eventually(dead, timeout=6)  # four attempts on the test schedule
    listing = await (await client.get("/v1/deliveries/dead", headers=AUTH)).json()
    letter = listing["dead_letters"][0]
    assert letter["webhook_id"] == "msg_" + job["id"].removeprefix("gen_")
    assert [a["status"] for a in letter["attempts"]] == [500, 500, 500, 500]
    # Another tenant sees nothing of it, and cannot replay it.
    theirs = await (await client.get("/v1/deliveries/dead", headers=OTHER_AUTH)).json()
    assert theirs["dead_letters"] == []
    assert (
        await client.post(f"/v1/deliveries/{job['id']}/replay", headers=OTHER_AUTH)
    ).status == 404

    failing = False
    replay = await client.post(f"/v1/deliveries/{job['id']}/replay", headers=AUTH)
    assert replay.status == 202
    await eventually(lambda: len(recv.deliveries) == 1, timeout=5)
    assert recv.deliveries[0]["id"] == letter["webhook_id"]  # the same message, again
    state = await _job_state(client, job["id"])
    assert [a["outcome"] for a in state["deliveries"]][-1] == "delivered"
    empty = await (await client.get("/v1/deliveries/dead", headers=ADMIN)).json()
    assert empty["dead_letters"] == []
    assert (await client.post(f"/v1/deliveries/{job['id']}/replay", headers=AUTH)).status == 409


async def test_replay_all_since_a_time(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    failing = True

    async def respond(request: web.Request) -> web.Response:
        return web.Response(status=410 if failing else 204)  # 410: dead after one attempt

    recv.respond = respond
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    jobs = [await _job(client, hook) for _ in range(3)]

    async def all_dead() -> bool:
        listing = await (await client.get("/v1/deliveries/dead", headers=ADMIN)).json()
        return len(listing["dead_letters"]) == 3

    await eventually(all_dead, timeout=5)
    failing = False
    resp = await client.post(
        "/v1/deliveries/replay",
        json={"since": "2020-01-01T00:00:00Z", "tenant": "acme"},
        headers=ADMIN,
    )
    assert resp.status == 202
    assert (await resp.json()) == {"replayed": 3}
    await eventually(lambda: sorted(recv.jobs()) == sorted(j["id"] for j in jobs), timeout=5)
    bad = await client.post("/v1/deliveries/replay", json={"since": "yesterday"}, headers=ADMIN)
    assert bad.status == 422


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://[::1]:9/hook", "loopback"),
        ("http://localhost:9/hook", "internal name"),
        ("http://[::ffff:192.168.0.1]/hook", "private"),
    ],
)
async def test_internal_destinations_are_refused_with_the_reason(
    url: str, reason: str, redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    """Refused at submit (422); a destination that turns internal later is refused at delivery
    (tests/integration/test_url_guard.py, DNS rebinding)."""
    base, _ = await simulator()
    client = await gateway(
        redis_url, [backend("ml-1", base)], outbound={"allow_networks": [], "allow_http": True}
    )
    resp = await client.post(
        "/v1/generations", json={"prompt": "x", "webhook_url": url}, headers=AUTH
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["details"][0]["field"] == "webhook_url"
    assert reason in error["message"]


async def test_allow_listed_network_is_delivered(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver  # on 127.0.0.1
    base, _ = await simulator()
    client = await gateway(
        redis_url, [backend("ml-1", base)], outbound={"allow_networks": ["127.0.0.1/32"]}
    )
    job = await _job(client, hook)
    await eventually(lambda: recv.jobs() == [job["id"]], timeout=5)
