"""Provider callbacks: authenticated per submission, applied exactly once, on any instance."""

from __future__ import annotations

import orjson

from gateway import ids
from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, Receiver, backend, eventually, free_port, stored_job

SILENT = {"drop_webhook_rate": 1.0}  # the simulator never calls back on its own
LATE_POLL = {"webhook_deadline": 60}  # and the poll fallback stays out of the way


async def _submit(client, hook: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    body = {"prompt": "x", **({"webhook_url": hook} if hook else {})}
    resp = await client.post("/v1/generations", json=body, headers=AUTH)
    assert resp.status == 202
    return await resp.json()  # type: ignore[no-any-return]


async def _callback(client, redis_url: str, job: dict, body: bytes, token: str | None = None):  # type: ignore[no-untyped-def]
    record = await stored_job(redis_url, job["id"])
    track = job["track_id"]
    token = token or ids.submission_token(record.secret, track)
    return await client.post(f"/webhooks/{job['backend']}/{track}?token={token}", data=body)


def _success(track: str, image: str = "https://cdn.example/1.png") -> bytes:
    return orjson.dumps({"status": "success", "id": 1, "output": [image], "track_id": track})


async def test_wrong_token_or_unknown_track_changes_nothing(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(**SILENT, speed=5)
    client = await gateway(redis_url, [backend("ml-1", base, options=LATE_POLL)])
    job = await _submit(client)
    bad = await _callback(client, redis_url, job, _success(job["track_id"]), token="0" * 36)
    assert bad.status == 401
    unknown = await client.post(f"/webhooks/ml-1/{job['id']}.9?token=abc", data=b"{}")
    assert unknown.status in (401, 404)
    nobody = await client.post(
        "/webhooks/ml-1/gen_000000000000000000000000.0?token=abc", data=b"{}"
    )
    assert nobody.status == 404
    other_backend = await client.post(f"/webhooks/nope/{job['track_id']}?token=abc", data=b"{}")
    assert other_backend.status == 404
    after = await (await client.get(f"/v1/generations/{job['id']}", headers=AUTH)).json()
    assert after["status"] in ("submitted", "processing")
    assert after["images"] == []


async def test_duplicate_callbacks_make_one_final_state_and_one_delivery(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    base, _ = await simulator(**SILENT, speed=5)
    client = await gateway(redis_url, [backend("ml-1", base, options=LATE_POLL)])
    job = await _submit(client, hook)
    statuses = [
        (
            await _callback(
                client, redis_url, job, _success(job["track_id"], f"https://cdn/{n}.png")
            )
        ).status
        for n in range(3)
    ]
    assert statuses == [200, 200, 200]
    done = await (await client.get(f"/v1/generations/{job['id']}", headers=AUTH)).json()
    assert done["status"] == "succeeded"
    assert done["images"] == ["https://cdn/0.png"]  # the first arrival decided
    await eventually(lambda: len(recv.deliveries) == 1)
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_provider_webhooks_total{backend="ml-1",outcome="duplicate"} 2.0' in metrics


async def test_simulator_duplicates_are_absorbed(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    base, _ = await simulator(duplicate_webhook_rate=1.0)
    client = await gateway(redis_url, [backend("ml-1", base)])
    jobs = [await _submit(client, hook) for _ in range(5)]
    await eventually(lambda: sorted(recv.jobs()) == sorted(j["id"] for j in jobs))
    await eventually(lambda: len(recv.deliveries) == 5)


async def test_unreadable_callback_fails_the_job_clearly(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    base, _ = await simulator(**SILENT, speed=5)
    client = await gateway(redis_url, [backend("ml-1", base, options=LATE_POLL)])
    job = await _submit(client, hook)
    resp = await _callback(client, redis_url, job, b'{"status": "succ')
    assert resp.status == 200
    done = await (await client.get(f"/v1/generations/{job['id']}", headers=AUTH)).json()
    assert done["status"] == "failed"
    assert done["error"]["code"] == "provider_bad_answer"
    assert "ml-1" in done["error"]["message"]
    record = await stored_job(redis_url, job["id"])
    assert record.provider_error_body == '{"status": "succ'
    await eventually(
        lambda: recv.deliveries and recv.deliveries[0]["payload"]["type"] == "generation.failed"
    )


async def test_callback_at_another_instance_completes_the_job(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    base, _ = await simulator()
    b_port = free_port()
    # A hands providers B's address; B receives the callback; the client polls A.
    a = await gateway(redis_url, [backend("ml-1", base)], public_url=f"http://127.0.0.1:{b_port}")
    b = await gateway(redis_url, [backend("ml-1", base)], port=b_port)
    job = await _submit(a, hook)
    done = await (await a.get(f"/v1/generations/{job['id']}?wait=10", headers=AUTH)).json()
    assert done["status"] == "succeeded"

    async def b_applied_it() -> bool:
        # B counts the callback just after its atomic update, which already woke A's poll.
        metrics_b = await (await b.get("/metrics")).text()
        return 'gateway_provider_webhooks_total{backend="ml-1",outcome="applied"} 1.0' in metrics_b

    await eventually(b_applied_it, timeout=2)
    await eventually(lambda: recv.jobs() == [job["id"]])


async def test_missing_webhook_ends_the_job_through_polling(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    base, _ = await simulator(**SILENT)
    client = await gateway(
        redis_url, [backend("ml-1", base, options={"webhook_deadline": 0.5, "poll_interval": 0.2})]
    )
    job = await _submit(client, hook)
    done = await (await client.get(f"/v1/generations/{job['id']}?wait=10", headers=AUTH)).json()
    assert done["status"] == "succeeded"
    assert len(done["images"]) == 1
    # A webhook arriving after the poll finished the job changes nothing.
    late = await _callback(client, redis_url, job, _success(job["track_id"], "https://late/1.png"))
    assert late.status == 200
    again = await (await client.get(f"/v1/generations/{job['id']}", headers=AUTH)).json()
    assert again["images"] == done["images"]
    assert again["updated_at"] == done["updated_at"]
    await eventually(lambda: len(recv.deliveries) == 1)
