"""Body size limits: 413 naming the limit; `data:` images get the larger one, nothing else."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, backend

LIMITS = {"max_body_bytes": 4096, "max_image_body_bytes": 64 * 1024}


def inline(size: int) -> str:
    return "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\0" * size).decode()


async def test_body_limits(simulator: Simulator, gateway: Gateway) -> None:
    base, _ = await simulator()
    client = await gateway("memory://", [backend("ml-1", base)], jobs=LIMITS)

    async def post(body: object) -> tuple[int, dict[str, object]]:
        resp = await client.post("/v1/generations", json=body, headers=AUTH)
        return resp.status, await resp.json()

    status, answer = await post({"prompt": "x" * 8000})
    assert status == 413
    error = answer["error"]
    assert error["code"] == "payload_too_large"  # type: ignore[index]
    assert error["details"][0] == {  # type: ignore[index]
        "field": "body",
        "message": error["message"],  # type: ignore[index]
        "type": "too_large",
        "limit": 4096,
        "setting": "jobs.max_body_bytes",
    }
    # An inline image may take the body past the plain limit, up to the image limit.
    status, answer = await post({"prompt": "a cat", "init_image": inline(20_000), "strength": 0.5})
    assert status == 202, answer
    job_url = f"/v1/generations/{answer['id']}?wait=20"
    assert (await (await client.get(job_url, headers=AUTH)).json())["status"] == "succeeded"
    status, answer = await post({"prompt": "a cat", "init_image": inline(80_000)})
    assert status == 413
    assert "jobs.max_image_body_bytes" in answer["error"]["message"]  # type: ignore[index]
    # Mentioning `data:` does not buy the larger limit: only the images' own bytes count.
    status, answer = await post({"prompt": "data: " + "x" * 8000, "init_image": inline(10)})
    assert status == 413
    assert "data: images aside" in answer["error"]["message"]  # type: ignore[index]
    # A body that says up front it is too large is refused before it is read.
    resp = await client.post(
        "/v1/generations",
        data=b"{" + b" " * 70_000 + b"}",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert resp.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    resp = await client.post(
        "/v1/generations", data=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert "jobs.max_body_bytes" in (await resp.text())


async def test_provider_callback_limit(simulator: Simulator, gateway: Gateway) -> None:
    base, _ = await simulator()
    client = await gateway("memory://", [backend("ml-1", base)])
    resp = await client.post(
        "/webhooks/ml-1/gen_000000000000000000000000.0?token=x",
        data=io.BytesIO(b"[" + b"0," * (2 * 1024 * 1024 + 1) + b"0]"),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["details"][0]["setting"] == "provider callbacks"
