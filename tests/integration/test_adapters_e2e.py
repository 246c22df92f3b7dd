"""Every adapter end to end: gateway ↔ simulator ↔ client receiver, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, Receiver, backend, eventually, free_port
from tests.processes import ProcessGroup, gateway_config, wait_ready

# How each adapter's backend is described: models its simulator knows, options that keep
# the test fast, and the path under the simulator's origin that plays base_url.
ADAPTERS: dict[str, dict[str, Any]] = {
    "astria": {"models": {"default": "690204"}, "path": "", "options": {}},
    "bodia": {"models": {"default": "ft-test-1"}, "path": "", "options": {"poll_interval": 0.2}},
    "comfyui": {
        "models": {"default": "sdxl_base_1.0.safetensors"},
        "path": "",
        "options": {"poll_interval": 0.2},
    },
    "modelslab": {"models": {"default": "sdxl"}, "path": "/api/v6/images", "options": {}},
}


def adapter_backend(adapter: str, origin: str, name: str = "b1", **extra: Any) -> dict[str, Any]:
    spec = ADAPTERS[adapter]
    return backend(
        name,
        origin + spec["path"],
        adapter=adapter,
        models=spec["models"],
        options={**spec["options"], **extra.pop("options", {})},
        **extra,
    )


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


@pytest.mark.integration
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
async def test_each_adapter_end_to_end_with_real_processes(
    adapter: str, redis_url: str, procs: ProcessGroup, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    _, origin = procs.simulator("sim", adapter, speed=0.2, concurrency=2)
    port = free_port()
    gw = procs.gateway(
        "gateway", gateway_config(redis_url, port, [adapter_backend(adapter, origin)])
    )
    await wait_ready(gw)
    async with aiohttp.ClientSession(headers=AUTH) as http:
        body = {"prompt": "a red fox", "num_images": 2, "seed": 7, "webhook_url": hook}
        async with http.post(f"{gw}/v1/generations", json=body) as resp:
            assert resp.status == 202, await resp.text()
            job = await resp.json()
        assert job["adapter"] == adapter
        async with http.get(f"{gw}/v1/generations/{job['id']}", params={"wait": "20"}) as resp:
            done = await resp.json()
        assert done["status"] == "succeeded", done
        assert len(done["images"]) == 2
    async with aiohttp.ClientSession() as anonymous:
        for url in done["images"]:  # the provider's own image URLs, fetchable
            async with anonymous.get(url) as image:
                assert image.status == 200
                assert (await image.read()).startswith(b"\x89PNG")
    await eventually(lambda: len(recv.deliveries) == 1, timeout=10)
    delivered = recv.deliveries[0]["payload"]
    assert delivered["type"] == "generation.succeeded"
    assert delivered["data"]["images"] == done["images"]


async def test_eight_images_on_modelslab_are_two_submissions_of_four(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, server = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    resp = await client.post("/v1/generations", json={"prompt": "x", "num_images": 8}, headers=AUTH)
    job = await resp.json()
    assert any("num_images 8 → 4 + 4" in w for w in job["warnings"])
    done = await (await client.get(f"/v1/generations/{job['id']}?wait=10", headers=AUTH)).json()
    assert done["status"] == "succeeded"
    assert len(done["images"]) == 8
    assert len(set(done["images"])) == 8
    stats = await (await client.session.get(f"http://127.0.0.1:{server.port}/_sim/stats")).json()
    assert stats["submitted"] == 2


@pytest.mark.parametrize("adapter", ["astria", "modelslab"])
async def test_missing_callback_is_replaced_by_polling(
    adapter: str,
    redis_url: str,
    simulator: Simulator,
    gateway: Gateway,
    receiver: tuple[Receiver, str],
) -> None:
    recv, hook = receiver
    _, server = await simulator(adapter, drop_webhook_rate=1.0)
    origin = f"http://127.0.0.1:{server.port}"
    options = {"webhook_deadline": 0.5, "poll_interval": 0.2}
    client = await gateway(redis_url, [adapter_backend(adapter, origin, options=options)])
    resp = await client.post(
        "/v1/generations", json={"prompt": "x", "webhook_url": hook}, headers=AUTH
    )
    job = await resp.json()
    done = await (await client.get(f"/v1/generations/{job['id']}?wait=10", headers=AUTH)).json()
    assert done["status"] == "succeeded"
    await eventually(lambda: len(recv.deliveries) == 1)
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_provider_polls_total{backend="b1",outcome="finished"} 1.0' in metrics


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
async def test_malformed_submit_answer_fails_the_job_clearly(
    adapter: str,
    redis_url: str,
    simulator: Simulator,
    gateway: Gateway,
    receiver: tuple[Receiver, str],
) -> None:
    recv, hook = receiver
    _, server = await simulator(adapter, malformed_rate=1.0)
    origin = f"http://127.0.0.1:{server.port}"
    client = await gateway(redis_url, [adapter_backend(adapter, origin)])
    resp = await client.post(
        "/v1/generations", json={"prompt": "x", "webhook_url": hook}, headers=AUTH
    )
    assert resp.status == 202  # never a 500: the job records what went wrong
    job = await resp.json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_bad_answer"
    assert "b1" in job["error"]["message"]
    assert job["attempts"][0]["outcome"] == "bad_answer"
    await eventually(lambda: len(recv.deliveries) == 1)
    assert recv.deliveries[0]["payload"]["type"] == "generation.failed"
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
async def test_failing_backend_fails_over_to_a_healthy_one(
    adapter: str, redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    _, bad = await simulator(adapter, fail_rate=1.0)
    _, good = await simulator(adapter)
    client = await gateway(
        redis_url,
        [
            adapter_backend(adapter, f"http://127.0.0.1:{bad.port}", name="bad"),
            adapter_backend(adapter, f"http://127.0.0.1:{good.port}", name="good"),
        ],
        routing={"strategy": "priority"},  # always try `bad` first
    )
    resp = await client.post("/v1/generations", json={"prompt": "x"}, headers=AUTH)
    job = await resp.json()
    assert job["backend"] == "good"
    assert job["attempts"][0]["backend"] == "bad"
    assert job["attempts"][0]["outcome"] in ("server_error", "maybe_accepted")
    done = await (await client.get(f"/v1/generations/{job['id']}?wait=10", headers=AUTH)).json()
    assert done["status"] == "succeeded"


async def test_modelslab_base64_mode_returns_data_uris(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    inline = "data:image/png;base64,iVBORw0KGgo="
    body = {"prompt": "x", "init_image": inline, "strength": 0.5}
    job = await (await client.post("/v1/generations", json=body, headers=AUTH)).json()
    done = await (await client.get(f"/v1/generations/{job['id']}?wait=10", headers=AUTH)).json()
    assert done["status"] == "succeeded"
    assert done["images"][0].startswith("data:image/png;base64,iVBORw0KGgo")
