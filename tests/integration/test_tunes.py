"""Fine-tunes in one process: the API's answers, validation, generation with a tune."""

from __future__ import annotations

import base64
from typing import Any

from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, OTHER_AUTH, Receiver, backend, eventually

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image-bytes").decode()
FAST = {"webhook_deadline": 1, "poll_interval": 0.2}


def astria(name: str, origin: str, **extra: Any) -> dict[str, Any]:
    return backend(
        name, origin, adapter="astria", models={"portrait": "690204"},
        options={**FAST, **extra.pop("options", {})}, **extra,
    )  # fmt: skip


def tune_body(**fields: Any) -> dict[str, Any]:
    return {"name": "man", "branch": "fast", "images": [PNG] * 4, **fields}


async def test_train_then_generate_with_the_tune(
    store_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    origin, _sim = await simulator("astria", speed=0.05)
    gw = await gateway(store_url, [astria("astria-1", origin)])
    resp = await gw.post("/v1/tunes", json=tune_body(webhook_url=hook), headers=AUTH)
    assert resp.status == 202, await resp.text()
    tune = await resp.json()
    assert tune["status"] == "training"
    assert tune["model"] == f"tune:{tune['id']}"
    resp = await gw.get(f"/v1/tunes/{tune['id']}", params={"wait": "10"}, headers=AUTH)
    done = await resp.json()
    assert done["status"] == "succeeded", done
    assert done["provider_tune_id"]
    assert done["trained_at"]
    assert done["expires_at"]
    await eventually(lambda: len(recv.deliveries) == 1)
    assert recv.deliveries[0]["payload"]["type"] == "tune.succeeded"

    body = {"prompt": "ohwx man on the moon", "model": done["model"]}
    resp = await gw.post("/v1/generations", json=body, headers=AUTH)
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    resp = await gw.get(f"/v1/generations/{job['id']}", params={"wait": "10"}, headers=AUTH)
    assert (await resp.json())["status"] == "succeeded"

    resp = await gw.post("/v1/generations", json=body, headers=OTHER_AUTH)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"][0]["field"] == "model"
