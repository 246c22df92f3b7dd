"""Fine-tunes in one process: the API's answers, validation, callbacks, generation with a tune."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import sys
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

from adapters.simkit.routes import PNG
from gateway import ids
from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, OTHER_AUTH, Receiver, backend, eventually, free_port

DATA = "data:image/png;base64," + base64.b64encode(PNG).decode()
# Loopback: the tests allow it (`outbound.allow_networks`), and it resolves offline.
URLS = [f"http://127.0.0.1:9/face-{n}.jpg" for n in range(4)]
FAST = {"webhook_deadline": 0.5, "poll_interval": 0.2}
Client = TestClient[Any, Any]


def astria(name: str, origin: str, max_concurrency: int = 4, **options: Any) -> dict[str, Any]:
    return backend(
        name, origin, adapter="astria", models={"realistic": "690204"},
        max_concurrency=max_concurrency, options={**FAST, **options},
    )  # fmt: skip


def tune_body(**fields: Any) -> dict[str, Any]:
    return {"name": "man", "branch": "fast", "images": URLS, **fields}


async def sim_stats(origin: str) -> dict[str, Any]:
    async with ClientSession() as http, http.get(f"{origin}/_sim/stats") as resp:
        stats: dict[str, Any] = await resp.json()
        return stats


async def trained(gw: Client, **fields: Any) -> dict[str, Any]:
    resp = await gw.post("/v1/tunes", json=tune_body(**fields), headers=AUTH)
    assert resp.status == 202, await resp.text()
    tune = await resp.json()
    resp = await gw.get(f"/v1/tunes/{tune['id']}", params={"wait": "15"}, headers=AUTH)
    done: dict[str, Any] = await resp.json()
    assert done["status"] == "succeeded", done
    return done


async def test_train_then_generate_with_the_tune(
    store_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    origin, _ = await simulator("astria", speed=0.05)
    gw = await gateway(store_url, [astria("astria-1", origin)])
    done = await trained(gw, webhook_url=hook, images=[DATA] * 4, metadata={"order": 7})
    assert done["token"] == "ohwx"
    assert done["provider_tune_id"]
    assert done["metadata"] == {"order": 7}
    await eventually(lambda: len(recv.deliveries) == 1)
    assert recv.deliveries[0]["payload"]["type"] == "tune.succeeded"
    assert recv.deliveries[0]["payload"]["data"]["id"] == done["id"]
    metrics = await (await gw.get("/metrics")).text()
    for event in ("accepted", "succeeded"):
        assert f'gateway_tunes_total{{event="{event}",tenant="acme"}} 1.0' in metrics

    body = {"prompt": "a man on the moon", "model": done["model"]}
    resp = await gw.post("/v1/generations", json=body, headers=AUTH)
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    assert any("lacks the tune's token 'ohwx'" in w for w in job["warnings"]), job
    resp = await gw.get(f"/v1/generations/{job['id']}", params={"wait": "10"}, headers=AUTH)
    assert (await resp.json())["status"] == "succeeded"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"branch": "sd3"}, "branch"),
        ({"images": []}, "images"),
        ({"images": ["ftp://x/y.png"]}, "images[0]"),
        ({"steps": 0}, "steps"),
        ({"steps": 10_001}, "steps"),
        ({"model_type": "dreambooth"}, "model_type"),
        ({"preset": "flux-lora-slow"}, "preset"),
        ({"token": "OHWX!"}, "token"),
        ({"name": "42"}, "name"),
        ({"face_crop": "maybe"}, "face_crop"),
        ({"characteristics": {"Eye Color": "blue"}}, "characteristics"),
        ({"title": ""}, "title"),
        ({"base_model": "anime"}, "base_model"),
        ({"backends": ["comfy-1"]}, "backends"),
        ({"backends": ["nowhere"]}, "backends"),
    ],
)
async def test_invalid_tunes_are_422s_naming_the_field(
    fields: dict[str, Any], field: str, simulator: Simulator, gateway: Gateway
) -> None:
    origin, _ = await simulator("astria")
    comfy = backend("comfy-1", "http://127.0.0.1:9", adapter="comfyui")
    gw = await gateway("memory://", [astria("astria-1", origin), comfy])
    resp = await gw.post("/v1/tunes", json=tune_body(**fields), headers=AUTH)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert field in {d["field"] for d in error["details"]}, error
    assert (await sim_stats(origin))["submitted"] == 0


async def test_only_non_training_backends_is_a_422_saying_none_can_train(
    simulator: Simulator, gateway: Gateway
) -> None:
    origin, _ = await simulator("astria")
    comfy = backend("comfy-1", "http://127.0.0.1:9", adapter="comfyui", tags=["gpu"])
    gw = await gateway("memory://", [astria("astria-1", origin), comfy])
    resp = await gw.post("/v1/tunes", json=tune_body(backends=["gpu"]), headers=AUTH)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["message"] == "no backend this request may use can train a tune"
    assert error["details"][0] == {
        "field": "backends", "backend": "comfy-1", "message": "comfyui backends cannot train",
        "type": "unsupported",
    }  # fmt: skip


async def test_dropped_callback_is_replaced_by_polling(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    origin, _ = await simulator("astria", speed=0.05, drop_webhook_rate=1)
    gw = await gateway(redis_url, [astria("astria-1", origin)])
    await trained(gw, webhook_url=hook)
    assert (await sim_stats(origin))["webhooks_sent"] == 0
    await eventually(lambda: len(recv.deliveries) == 1)


async def test_a_callback_sent_three_times_finishes_the_tune_once(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    origin, _ = await simulator("astria", speed=0.05, drop_webhook_rate=1)
    # A long webhook_deadline: only the callbacks below can finish the tune.
    gw = await gateway(redis_url, [astria("astria-1", origin, webhook_deadline=60)])
    resp = await gw.post("/v1/tunes", json=tune_body(webhook_url=hook), headers=AUTH)
    tune = await resp.json()
    secret = await _secret(redis_url, tune["id"])
    track = ids.track_id(tune["id"], 0)
    url = f"/webhooks/astria-1/{track}?token={ids.submission_token(secret, track)}"
    async with ClientSession() as http:
        await eventually(lambda: _trained_at_sim(http, origin, tune["provider_tune_id"]))
        async with http.get(
            f"{origin}/tunes/{tune['provider_tune_id']}",
            headers={"Authorization": "Bearer sim-key"},
        ) as sim_resp:
            body = {"tune": await sim_resp.json()}
    answers = await asyncio.gather(*(gw.post(url, json=body) for _ in range(3)))
    outcomes = sorted([(await a.json())["status"] for a in answers])
    assert outcomes == ["applied", "duplicate", "duplicate"]
    wrong = await gw.post(f"/webhooks/astria-1/{track}?token=0000", json=body)
    assert wrong.status == 401
    resp = await gw.get(f"/v1/tunes/{tune['id']}", headers=AUTH)
    assert (await resp.json())["status"] == "succeeded"
    await eventually(lambda: len(recv.deliveries) == 1)
    await asyncio.sleep(0.5)
    assert len(recv.deliveries) == 1


async def _trained_at_sim(http: ClientSession, origin: str, provider_id: str) -> bool:
    headers = {"Authorization": "Bearer sim-key"}
    async with http.get(f"{origin}/tunes/{provider_id}", headers=headers) as resp:
        return bool((await resp.json())["trained_at"])


async def _secret(redis_url: str, tune_id: str) -> str:
    from gateway.store import open_store
    from gateway.tunes.store import TuneStore

    store = await open_store(redis_url)
    try:
        found = await TuneStore(store, retention=60, training_timeout=60).get(tune_id)
        assert found is not None
        return found.record.secret
    finally:
        await store.close()


async def test_unusable_tunes_are_422s_naming_model_and_reach_no_provider(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    origin, _ = await simulator("astria", speed=0.05, generation_fail_rate=1)
    gw = await gateway(redis_url, [astria("astria-1", origin)])
    resp = await gw.post("/v1/tunes", json=tune_body(), headers=AUTH)
    tune = await resp.json()
    resp = await gw.get(f"/v1/tunes/{tune['id']}", params={"wait": "10"}, headers=AUTH)
    failed = await resp.json()
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "provider_error"
    submitted = (await sim_stats(origin))["submitted"]
    for auth, model in [
        (AUTH, failed["model"]),
        (OTHER_AUTH, failed["model"]),
        (AUTH, "tune:tune_000000000000000000000000"),
        (AUTH, "tune:nonsense"),
    ]:
        body = {"prompt": "ohwx man", "model": model}
        resp = await gw.post("/v1/generations", json=body, headers=auth)
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["error"]["details"][0]["field"] == "model"
    assert (await sim_stats(origin))["submitted"] == submitted


async def test_idempotency_listing_tenancy_and_delete(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    origin, _ = await simulator("astria", speed=0.05)
    gw = await gateway(redis_url, [astria("astria-1", origin)])
    key = {**AUTH, "Idempotency-Key": "order-1"}
    first = await (await gw.post("/v1/tunes", json=tune_body(), headers=key)).json()
    again = await gw.post("/v1/tunes", json=tune_body(), headers=key)
    assert again.status == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["id"] == first["id"]
    clash = await gw.post("/v1/tunes", json=tune_body(name="cat"), headers=key)
    assert clash.status == 409
    ids_made = [first["id"]]
    for _ in range(4):
        made = await (await gw.post("/v1/tunes", json=tune_body(), headers=AUTH)).json()
        ids_made.append(made["id"])

    pages, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await gw.get("/v1/tunes", params=params, headers=AUTH)).json()
        pages.append([t["id"] for t in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i for p in pages for i in p] == list(reversed(ids_made))
    assert all(len(p) <= 2 for p in pages)
    other = await (await gw.get("/v1/tunes", headers=OTHER_AUTH)).json()
    assert other["data"] == []
    assert (await gw.get(f"/v1/tunes/{first['id']}", headers=OTHER_AUTH)).status == 404
    assert (await gw.delete(f"/v1/tunes/{first['id']}", headers=OTHER_AUTH)).status == 404

    await gw.get(f"/v1/tunes/{first['id']}", params={"wait": "10"}, headers=AUTH)
    deleted = await gw.delete(f"/v1/tunes/{first['id']}", headers=AUTH)
    assert deleted.status == 204
    assert (await gw.get(f"/v1/tunes/{first['id']}", headers=AUTH)).status == 404


async def test_cancel_during_training_stops_it_at_the_provider(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    origin, _ = await simulator("astria", speed=2)
    gw = await gateway(redis_url, [astria("astria-1", origin)])
    tune = await (await gw.post("/v1/tunes", json=tune_body(webhook_url=hook), headers=AUTH)).json()
    resp = await gw.delete(f"/v1/tunes/{tune['id']}", headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["status"] == "canceled"
    async with ClientSession() as http, http.get(f"{origin}/_sim/tunes") as sim_resp:
        assert await sim_resp.json() == []  # deleted at the provider
    body = {"prompt": "ohwx man", "model": tune["model"]}
    assert (await gw.post("/v1/generations", json=body, headers=AUTH)).status == 422
    assert recv.deliveries == []  # a canceled tune is not announced


async def test_openapi_documents_the_tune_operations(
    gateway: Gateway, simulator: Simulator
) -> None:
    origin, _ = await simulator("astria")
    gw = await gateway("memory://", [astria("astria-1", origin)])
    spec = await (await gw.get("/openapi.json")).json()
    assert set(spec["paths"]["/v1/tunes"]) == {"post", "get"}
    assert set(spec["paths"]["/v1/tunes/{id}"]) == {"get", "delete"}
    assert "422" in spec["paths"]["/v1/tunes"]["post"]["responses"]
    tune = spec["components"]["schemas"]["TuneRequest"]["properties"]
    assert tune["branch"]["anyOf"][0]["$ref"].endswith("/Branch")
    assert spec["webhooks"]["tune"]["post"]["requestBody"]


def test_the_demo_trains_a_tune_and_generates_with_it() -> None:
    # A process of its own: the demo configures logging for the whole interpreter.
    demo = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--port", str(free_port()), "--requests", "1",
         "--exit-after-samples"],
        capture_output=True, text=True, timeout=90, check=True,
    )  # fmt: skip
    assert "tune.succeeded (signature valid)" in demo.stdout
    assert re.search(
        r"model tune:tune_[0-9a-f]{24}: gen_\w+ succeeded on astria-key-1", demo.stdout
    )


async def test_failover_before_acceptance_only(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    # astria-1 answers every create with a server error, cycling 503, 504, 500, 502; what
    # its 504 created calls back 4 s after training.
    broken, _ = await simulator("astria", fail_rate=1, webhook_delay=4)
    healthy, _ = await simulator("astria", speed=0.05)
    gw = await gateway(redis_url, [astria("astria-1", broken), astria("astria-2", healthy)])
    resp = await gw.post("/v1/tunes", json=tune_body(), headers=AUTH)
    moved = await resp.json()
    assert moved["backend"] == "astria-2"
    assert [(a["backend"], a["outcome"]) for a in moved["attempts"]] == [
        ("astria-1", "server_error"),
        ("astria-2", "accepted"),
    ]
    # Next, astria-1's 504 means "maybe created": only astria-1 is asked again (same title),
    # never astria-2, which could train it twice. It stays there for its callback.
    resp = await gw.post("/v1/tunes", json=tune_body(), headers=AUTH)
    stuck = await resp.json()
    assert stuck["status"] == "training", stuck
    assert stuck["backend"] == "astria-1"
    assert stuck["provider_tune_id"] is None
    assert [a["outcome"] for a in stuck["attempts"]] == ["maybe_accepted"]
    assert (await sim_stats(healthy))["submitted"] == 1
    # The create it answered with a 504 did make the tune: its callback finishes ours.
    resp = await gw.get(f"/v1/tunes/{stuck['id']}", params={"wait": "15"}, headers=AUTH)
    done = await resp.json()
    assert done["status"] == "succeeded", done
    assert done["backend"] == "astria-1"
    assert done["provider_tune_id"]


async def test_the_listing_index_forgets_expired_tunes(redis_url: str) -> None:
    from gateway.jobs.model import utcnow
    from gateway.store import keys, open_store
    from gateway.tunes.model import TuneRecord
    from gateway.tunes.store import TuneStore

    store = await open_store(redis_url)
    tunes = TuneStore(store, retention=60, training_timeout=60)
    try:
        made = []
        for _ in range(3):
            now, tune_id = utcnow(), ids.new_tune_id()
            record = TuneRecord(
                id=tune_id, status="queued", tenant="acme", name="man", title=tune_id,
                model=f"tune:{tune_id}", created_at=now, updated_at=now, secret="s",
            )  # fmt: skip
            await tunes.create(record, poll_due=0, idempotency=None, ttl=60)
            made.append(record)
        await store.redis.delete(keys.tune(made[0].id))  # as if it had expired
        await tunes.create(made[1].model_copy(update={"id": ids.new_tune_id()}), poll_due=0,
                           idempotency=None, ttl=60)  # fmt: skip
        members = await store.redis.zrange(keys.tune_index("acme"), 0, -1)
        assert made[0].id.encode() not in members
        assert len(members) == 3
    finally:
        await store.close()


async def test_image_and_webhook_urls_are_screened(simulator: Simulator, gateway: Gateway) -> None:
    origin, _ = await simulator("astria")
    gw = await gateway("memory://", [astria("astria-1", origin)], outbound={"allow_networks": []})
    for fields, field in [
        ({"images": [DATA, DATA, DATA, "http://169.254.169.254/latest/meta-data"]}, "images[3]"),
        ({"images": [DATA], "webhook_url": "http://10.0.0.8/hook"}, "webhook_url"),
    ]:
        resp = await gw.post("/v1/tunes", json=tune_body(**fields), headers=AUTH)
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["error"]["details"][0]["field"] == field
    assert (await sim_stats(origin))["submitted"] == 0


def test_check_config_says_which_backends_train() -> None:
    from gateway.config_report import report
    from tests.helpers import make_settings

    comfy = backend("comfy-1", "http://127.0.0.1:9", adapter="comfyui")
    both = make_settings("memory://", 8080, [astria("astria-1", "http://127.0.0.1:9"), comfy])
    assert "fine-tunes: trained on astria-1; 1-50 images" in report(both, "gw.yaml")
    alone = make_settings("memory://", 8080, [comfy])
    assert "fine-tunes: no backend can train (422)" in report(alone, "gw.yaml")


async def test_a_queued_tune_generation_is_dispatched_later_to_the_owner(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    origin, _ = await simulator("astria", speed=0.3)
    gw = await gateway(redis_url, [astria("astria-1", origin, max_concurrency=1)])
    tune = await trained(gw)
    body = {"prompt": "ohwx man", "model": tune["model"]}
    jobs = [await (await gw.post("/v1/generations", json=body, headers=AUTH)).json() for _ in "ab"]
    assert jobs[1]["status"] == "queued"  # the one slot is taken: it waits in the gateway queue
    for job in jobs:
        resp = await gw.get(f"/v1/generations/{job['id']}", params={"wait": "20"}, headers=AUTH)
        done = await resp.json()
        assert done["status"] == "succeeded", done
        assert done["backend"] == "astria-1"


async def test_tunes_on_a_redis_cluster(
    cluster_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    """Every tune script keeps its keys in one slot: train, list, generate, deliver."""
    recv, hook = receiver
    origin, _ = await simulator("astria", speed=0.05, drop_webhook_rate=1)  # polled
    gw = await gateway(cluster_url, [astria("astria-1", origin)])
    tune = await trained(gw, webhook_url=hook)
    listing = await (await gw.get("/v1/tunes", headers=AUTH)).json()
    assert [t["id"] for t in listing["data"]] == [tune["id"]]
    body = {"prompt": "ohwx man", "model": tune["model"]}
    job = await (await gw.post("/v1/generations", json=body, headers=AUTH)).json()
    resp = await gw.get(f"/v1/generations/{job['id']}", params={"wait": "15"}, headers=AUTH)
    assert (await resp.json())["status"] == "succeeded"
    await eventually(lambda: len(recv.deliveries) == 1)
    assert recv.deliveries[0]["payload"]["type"] == "tune.succeeded"
