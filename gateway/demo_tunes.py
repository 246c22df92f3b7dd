"""The demo's fine-tune: train one tune on the Astria simulator, then generate with it."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp

from adapters.simkit.routes import PNG

PHOTO = "data:image/png;base64," + base64.b64encode(PNG).decode()


async def train_and_generate(
    http: aiohttp.ClientSession, base: str, hook_url: str, deliveries: list[dict[str, Any]]
) -> None:
    print("\nfine-tune: four photos to an Astria key (branch=fast), then a prompt on it")
    body = {"name": "man", "branch": "fast", "images": [PHOTO] * 4, "webhook_url": hook_url}
    async with http.post(f"{base}/v1/tunes", json=body) as resp:
        tune = await resp.json()
    if resp.status != 202:
        print(f"  POST /v1/tunes -> HTTP {resp.status}: {tune['error']['message']}")
        return
    print(f"  {tune['id']} on {tune['backend']} [{tune['status']}], eta {tune['eta']}")
    async with http.get(f"{base}/v1/tunes/{tune['id']}", params={"wait": "60"}) as resp:
        tune = await resp.json()
    print(
        f"  {tune['id']} {tune['status']}: astria tune {tune['provider_tune_id']}, token "
        f"{tune['token']!r}, trained {tune['trained_at']}, expires {tune['expires_at']}"
    )
    if tune["status"] != "succeeded":
        return
    prompt = {"prompt": f"{tune['token']} man as an astronaut", "model": tune["model"]}
    async with http.post(f"{base}/v1/generations", json=prompt) as resp:
        job = await resp.json()
    async with http.get(f"{base}/v1/generations/{job['id']}", params={"wait": "60"}) as resp:
        job = await resp.json()
    print(
        f"  model {tune['model']}: {job['id']} {job['status']} on {job['backend']}, "
        f"{len(job['images'])} image(s)"
    )
    for _ in range(50):
        if any(d["job"] == tune["id"] for d in deliveries):
            break
        await asyncio.sleep(0.1)
    for d in deliveries:
        if d["job"] == tune["id"]:
            verdict = "valid" if d["valid"] else "INVALID"
            print(f"  webhook {d['id']} {d['type']} (signature {verdict})")
