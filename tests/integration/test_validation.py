"""Bad input gets a 4xx that names the field; never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, backend

OK = {"prompt": "a cat"}

# (case, body, expected status, the field the error must name)
JSON_CASES: list[tuple[str, Any, int, str]] = [
    ("missing prompt", {"width": 512, "height": 512}, 422, "prompt"),
    ("empty prompt", {"prompt": ""}, 422, "prompt"),
    ("prompt too long", {"prompt": "x" * 10_001}, 422, "prompt"),
    ("prompt wrong type", {"prompt": 42}, 422, "prompt"),
    ("num_images zero", {**OK, "num_images": 0}, 422, "num_images"),
    ("num_images nine", {**OK, "num_images": 9}, 422, "num_images"),
    ("num_images string", {**OK, "num_images": "many"}, 422, "num_images"),
    ("width not multiple of 8", {**OK, "width": 513, "height": 512}, 422, "width"),
    ("width too large", {**OK, "width": 4096, "height": 512}, 422, "width"),
    ("height too small", {**OK, "width": 512, "height": 32}, 422, "height"),
    ("width without height", {**OK, "width": 512}, 422, "height"),
    (
        "size and aspect ratio",
        {**OK, "width": 512, "height": 512, "aspect_ratio": "1:1"},
        422,
        "aspect_ratio",
    ),
    ("unknown aspect ratio", {**OK, "aspect_ratio": "7:3"}, 422, "aspect_ratio"),
    ("steps out of range", {**OK, "steps": 101}, 422, "steps"),
    ("guidance out of range", {**OK, "guidance_scale": -1}, 422, "guidance_scale"),
    ("seed negative", {**OK, "seed": -5}, 422, "seed"),
    ("seed too large", {**OK, "seed": 2**32}, 422, "seed"),
    ("unknown scheduler", {**OK, "scheduler": "karras_magic"}, 422, "scheduler"),
    ("bad init_image url", {**OK, "init_image": "ftp://x/y.png"}, 422, "init_image"),
    ("mask without init", {**OK, "mask_image": "https://x/m.png"}, 422, "mask_image"),
    (
        "strength out of range",
        {**OK, "init_image": "https://x/i.png", "strength": 1.5},
        422,
        "strength",
    ),
    ("strength without image", {**OK, "strength": 0.5}, 422, "strength"),
    ("bad webhook url", {**OK, "webhook_url": "not a url"}, 422, "webhook_url"),
    ("webhook not http", {**OK, "webhook_url": "ftp://example.com/hook"}, 422, "webhook_url"),
    ("oversize metadata", {**OK, "metadata": {"blob": "x" * 17_000}}, 422, "metadata"),
    ("metadata not an object", {**OK, "metadata": [1, 2]}, 422, "metadata"),
    (
        "controlnet bad type",
        {**OK, "controlnet": {"type": "magic", "image": "https://x/c.png"}},
        422,
        "controlnet.type",
    ),
    (
        "controlnet scale",
        {
            **OK,
            "controlnet": {"type": "canny", "image": "https://x/c.png", "conditioning_scale": 2},
        },
        422,
        "controlnet.conditioning_scale",
    ),
    ("lora strength", {**OK, "loras": [{"name": "a", "strength": 0}]}, 422, "loras[0].strength"),
    (
        "enhance wrong type",
        {**OK, "enhance": {"super_resolution": "very"}},
        422,
        "enhance.super_resolution",
    ),
    ("unknown style", {**OK, "style": "Baroque"}, 422, "style"),
    ("unknown field", {**OK, "temperature": 0.7}, 422, "temperature"),
    ("strict wrong type", {**OK, "strict": "yes please"}, 422, "strict"),
    ("backends not a list", {**OK, "backends": "ml-1"}, 422, "backends"),
    ("backend not allowed", {**OK, "backends": ["elsewhere"]}, 422, "backends"),
    ("model unknown everywhere", {**OK, "model": "anime-v9"}, 422, "model"),
    ("top level array", [OK], 422, "body"),
    ("top level string", "prompt", 422, "body"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), JSON_CASES, ids=[c[0] for c in JSON_CASES]
)
async def test_bad_json_requests(
    case: str,
    body: Any,
    status: int,
    field: str,
    redis_url: str,
    simulator: Simulator,
    gateway: Gateway,
) -> None:
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    resp = await client.post("/v1/generations", json=body, headers=AUTH)
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    named = {d["field"] for d in error["details"]}
    assert field in named, (case, error)
    assert field in error["message"]


RAW_CASES: list[tuple[str, bytes, str, int, str]] = [
    ("malformed json", b'{"prompt": "a cat",', "application/json", 400, "body"),
    ("empty body", b"", "application/json", 400, "body"),
    ("whitespace body", b"   ", "application/json", 400, "body"),
    ("wrong content type", b'{"prompt": "a cat"}', "text/plain", 415, "Content-Type"),
    ("form content type", b"prompt=cat", "application/x-www-form-urlencoded", 415, "Content-Type"),
    ("not utf-8", b'{"prompt": "\xff\xfe"}', "application/json", 400, "body"),
]


@pytest.mark.parametrize(
    ("case", "raw", "ctype", "status", "field"), RAW_CASES, ids=[c[0] for c in RAW_CASES]
)
async def test_bad_raw_requests(
    case: str,
    raw: bytes,
    ctype: str,
    status: int,
    field: str,
    redis_url: str,
    simulator: Simulator,
    gateway: Gateway,
) -> None:
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    resp = await client.post("/v1/generations", data=raw, headers={**AUTH, "Content-Type": ctype})
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert field in {d["field"] for d in error["details"]}, (case, error)


async def test_oversize_body_is_413(redis_url: str, simulator: Simulator, gateway: Gateway) -> None:
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)], jobs={"max_body_bytes": 4096})
    resp = await client.post("/v1/generations", json={"prompt": "x" * 8000}, headers=AUTH)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"


async def test_unknown_routes_and_methods_answer_json(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    missing = await client.get("/v2/nothing")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    wrong = await client.put("/v1/generations", json=OK, headers=AUTH)
    assert wrong.status == 405
    assert (await wrong.json())["error"]["code"] == "method_not_allowed"


async def test_strict_names_the_fields_no_backend_honours(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    base, _ = await simulator(enterprise=True)
    client = await gateway(redis_url, [backend("gpu", base, options={"enterprise": True})])
    resp = await client.post(
        "/v1/generations", json={**OK, "steps": 30, "strict": True}, headers=AUTH
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "no_eligible_backend"
    assert "steps" in error["message"]
    assert error["details"][0]["backend"] == "gpu"
    exact = await client.post(
        "/v1/generations", json={**OK, "steps": 31, "strict": True}, headers=AUTH
    )
    assert exact.status == 202
