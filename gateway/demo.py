"""`gateway demo`: the gateway on memory:// with a simulated fleet, sample requests, and a
client webhook receiver, all in one process; it keeps serving until interrupted."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from adapters.base import SimulatorSettings
from adapters.registry import ADAPTERS
from gateway.app import create_app
from gateway.config import Settings, hash_key
from gateway.demo_tunes import train_and_generate
from gateway.relay import signing
from gateway.simulate import start_simulator
from observability.logging import configure_logging

TENANT_KEY = "demo-tenant-key"
ADMIN_KEY = "demo-admin-key"


@dataclass(frozen=True)
class SimBackend:
    name: str
    adapter: str
    sim: SimulatorSettings
    max_concurrency: int
    models: dict[str, str]
    tags: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


# Every adapter kind, different speeds (seconds per 512x512x30 image), one flaky backend.
FLEET = [
    SimBackend(
        "modelslab-key-1", "modelslab", SimulatorSettings(speed=1.5, concurrency=4), 4,
        {"default": "sdxl", "portrait": "realistic-vision-v51"}, ("hosted",),
    ),
    SimBackend(
        "modelslab-gpu-1", "modelslab",
        SimulatorSettings(speed=0.8, concurrency=2, enterprise=True), 2,
        {"default": "sdxl", "portrait": "realistic-vision-v51"}, ("gpu",), {"enterprise": True},
    ),
    SimBackend(
        "modelslab-flaky", "modelslab",
        SimulatorSettings(speed=1.0, concurrency=4, fail_rate=0.3, drop_webhook_rate=0.3), 4,
        {"default": "sdxl"}, ("hosted",), {"webhook_deadline": 4, "poll_interval": 1},
    ),
    SimBackend(
        "astria-key-1", "astria", SimulatorSettings(speed=1.2, concurrency=4), 4,
        {"default": "690204", "portrait": "690204"}, ("hosted",),
    ),
    SimBackend(
        "bodia-key-1", "bodia", SimulatorSettings(speed=1.5, concurrency=4), 4,
        {"default": "ft-demo-1"}, ("hosted",), {"poll_interval": 0.5},
    ),
    SimBackend(
        "comfy-gpu-1", "comfyui", SimulatorSettings(speed=0.6, concurrency=1), 2,
        {"default": "sdxl_base_1.0.safetensors", "portrait": "realisticVision_v51.safetensors"},
        ("gpu",), {"poll_interval": 0.5},
    ),
]  # fmt: skip

# Image URLs must resolve to public addresses (the SSRF guard), and the demo runs offline:
# its image inputs are inline `data:` URIs (a 1x1 PNG).
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
)

SAMPLES: list[dict[str, Any]] = [
    {"prompt": "a lighthouse at dawn, oil painting", "width": 768, "height": 512},
    {"prompt": "portrait of an astronaut", "model": "portrait", "scheduler": "dpmpp_2m_karras"},
    {"prompt": "a fox in the snow", "num_images": 6, "seed": 42, "backends": ["modelslab-key-1"]},
    {"prompt": "city skyline at night", "aspect_ratio": "21:9", "backends": ["bodia-key-1"]},
    {
        "prompt": "a bowl of ramen", "style": "Cinematic", "backends": ["astria-key-1"],
        "enhance": {"super_resolution": True, "face_correct": True, "film_grain": True},
    },
    {
        "prompt": "robot gardener", "backends": ["comfy-gpu-1"], "steps": 25,
        "loras": [{"name": "detail-tweaker", "strength": 0.6}],
    },
    {"prompt": "mountain lake", "width": 2048, "height": 1024, "backends": ["modelslab-gpu-1"]},
    {"prompt": "edges to photo", "controlnet": {"type": "canny", "image": PIXEL}},
    {"prompt": "strict request", "steps": 30, "strict": True, "backends": ["modelslab-gpu-1"]},
    {"prompt": "img2img from an inline image", "init_image": PIXEL, "backends": ["gpu"]},
]  # fmt: skip


class Receiver:
    """The tenant's side: receives signed webhooks and checks their signatures."""

    def __init__(self, secret: str) -> None:
        self.key = signing.secret_key(secret)
        self.deliveries: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/hook", self.receive)

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = signing.sign(
            self.key, request.headers["webhook-id"], int(request.headers["webhook-timestamp"]), body
        )
        data = await request.json()
        self.deliveries.append(
            {
                "id": request.headers["webhook-id"],
                "valid": expected in request.headers["webhook-signature"].split(" "),
                "type": data["type"],
                "job": data["data"]["id"],
            }
        )
        return web.Response(status=204)


def demo_settings(host: str, port: int, sim_ports: dict[str, int], secret: str) -> Settings:
    return Settings.model_validate(
        {
            "public_url": f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}",  # noqa: S104
            "store": "memory://",
            "listen": {"host": host, "port": port},
            "admin_keys": [hash_key(ADMIN_KEY)],
            "outbound": {
                "allow_http": True,
                "allow_networks": ["127.0.0.0/8", "::1/128"],
                "schedule": [0, 1, 2, 5, 10],
            },
            "routing": {
                "ejection": {"consecutive_failures": 3, "base_time": 5},
                "probe_interval": 5,
            },
            "jobs": {"result_timeout": 120, "dispatch_timeout": 60},
            "tenants": [
                {
                    "name": "demo",
                    "api_keys": [hash_key(TENANT_KEY)],
                    "webhook_secret": secret,
                    "rate_limit": {"per_second": 50, "burst": 100},
                }
            ],
            "backends": [
                {
                    "name": b.name,
                    "adapter": b.adapter,
                    "base_url": f"http://127.0.0.1:{sim_ports[b.name]}"
                    + ADAPTERS[b.adapter].simulator_base_path(b.sim),
                    "api_key": b.sim.api_keys[0],
                    "max_concurrency": b.max_concurrency,
                    "tags": list(b.tags),
                    "models": b.models,
                    "options": b.options,
                }
                for b in FLEET
            ],
        }
    )


async def run_demo(host: str, port: int, requests: int, exit_after: bool) -> int:
    configure_logging("warning", json=False)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    runners: list[web.AppRunner] = []
    sim_ports: dict[str, int] = {}
    for backend in FLEET:
        runner, sim_port = await start_simulator(backend.adapter, backend.sim)
        runners.append(runner)
        sim_ports[backend.name] = sim_port
    receiver = Receiver(secret)
    recv_runner = web.AppRunner(receiver.app, access_log=None)
    await recv_runner.setup()
    await web.TCPSite(recv_runner, "127.0.0.1", 0).start()
    runners.append(recv_runner)
    hook_url = f"http://127.0.0.1:{recv_runner.addresses[0][1]}/hook"

    settings = demo_settings(host, port, sim_ports, secret)
    gateway = web.AppRunner(create_app(settings), access_log=None)
    await gateway.setup()
    await web.TCPSite(gateway, host, port).start()
    base = settings.public_base
    print(f"gateway demo listening on {base}")
    print(f"  tenant key: {TENANT_KEY}    admin key: {ADMIN_KEY}")
    for b in FLEET:
        print(
            f"  backend {b.name:<16} {b.adapter} simulator on :{sim_ports[b.name]} "
            f"(speed {b.sim.speed:g}s/image, concurrency {b.sim.concurrency}"
            f"{', flaky' if b.sim.fail_rate else ''}{', enterprise' if b.sim.enterprise else ''})"
        )
    try:
        await _samples(base, hook_url, requests, receiver)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TENANT_KEY}"}) as http:
            await train_and_generate(http, base, hook_url, receiver.deliveries)
        print(
            f"\ntry it:\n  curl -s -X POST {base}/v1/generations "
            f"-H 'Authorization: Bearer {TENANT_KEY}' "
            f"-H 'Content-Type: application/json' -d '{{\"prompt\": \"a red bicycle\"}}'"
        )
        print(f"  curl -s {base}/v1/backends -H 'Authorization: Bearer {ADMIN_KEY}'")
        print(f"  curl -s {base}/metrics\n(Ctrl-C stops the demo)", flush=True)
        if not exit_after:
            await asyncio.Event().wait()
    finally:
        await gateway.cleanup()
        for runner in runners:
            await runner.cleanup()
    return 0


async def _samples(base: str, hook_url: str, count: int, receiver: Receiver) -> None:
    headers = {"Authorization": f"Bearer {TENANT_KEY}"}
    chosen = [SAMPLES[i % len(SAMPLES)] for i in range(count)]
    async with aiohttp.ClientSession(headers=headers) as http:
        submitted = await asyncio.gather(*(_submit(http, base, s, hook_url) for s in chosen))
        print("\nsubmitted:")
        for sample, (status, body) in zip(chosen, submitted, strict=True):
            prompt = sample["prompt"][:28]
            if status != 202:
                error = body["error"]
                print(f"  {prompt:<30} -> HTTP {status} {error['code']}: {error['message']}")
                continue
            where = body["backend"] or "(queued)"
            print(f"  {prompt:<30} -> {body['id']} on {where} [{body['status']}]")
            for warning in body["warnings"]:
                print(f"      warning: {warning}")
        jobs = [body for status, body in submitted if status == 202]
        finished = await asyncio.gather(*(_wait(http, base, job["id"]) for job in jobs))
        print("\nfinished:")
        for job in finished:
            tried = " → ".join(f"{a['backend']}:{a['outcome']}" for a in job["attempts"])
            print(f"  {job['id']} {job['status']:<9} {len(job['images'])} image(s) via {tried}")
            if job["error"]:
                print(f"      error: {job['error']['message']}")
        for _ in range(50):
            if len(receiver.deliveries) >= len(jobs):
                break
            await asyncio.sleep(0.1)
        print("\nwebhook deliveries received:")
        for d in receiver.deliveries:
            verdict = "valid" if d["valid"] else "INVALID"
            print(f"  {d['id']} {d['type']} for {d['job']} (signature {verdict})")


async def _submit(
    http: aiohttp.ClientSession, base: str, sample: dict[str, Any], hook_url: str
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{base}/v1/generations", json={**sample, "webhook_url": hook_url}
    ) as resp:
        return resp.status, await resp.json()


async def _wait(http: aiohttp.ClientSession, base: str, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(10):
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/v1/generations/{job_id}", params={"wait": "30"}) as resp:
                body = await resp.json()
                if body["status"] in ("succeeded", "failed", "canceled"):
                    break
    return body
