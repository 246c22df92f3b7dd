"""Shared test helpers: settings, simulators, a verifying client webhook receiver."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook

from gateway.config import Settings, hash_key

TENANT_KEY = "test-key-acme"
OTHER_KEY = "test-key-globex"
ADMIN_KEY = "test-admin-key"
SECRET = "whsec_" + base64.b64encode(b"acme-webhook-secret-32-bytes!!!!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"globex-webhook-secret-32-bytes!!").decode()
AUTH = {"Authorization": f"Bearer {TENANT_KEY}"}
OTHER_AUTH = {"Authorization": f"Bearer {OTHER_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backend(name: str, base_url: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "adapter": "modelslab",
        "base_url": base_url,
        "api_key": "sim-key",
        "max_concurrency": 4,
        "models": {"default": "sdxl", "portrait": "realistic-vision"},
    }
    entry.update(extra)
    return entry


def settings_dict(
    store: str, port: int, backends: list[dict[str, Any]], **overrides: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "public_url": f"http://127.0.0.1:{port}",
        "store": store,
        "listen": {"host": "127.0.0.1", "port": port},
        "admin_keys": [hash_key(ADMIN_KEY)],
        "outbound": {
            "allow_http": True,
            "allow_networks": ["127.0.0.0/8", "::1/128"],
            "timeout": 5,
            "schedule": [0, 0.2, 0.4, 0.8],
            "jitter": 0,
            "visibility_timeout": 3,
        },
        "routing": {
            "view_refresh": 0.1,
            "probe_interval": 1,
            "reservation_lease": 10,
            "ejection": {"consecutive_failures": 3, "base_time": 1, "max_time": 5},
        },
        "jobs": {"result_timeout": 30, "dispatch_timeout": 10},
        "tenants": tenants(),
        "backends": backends,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def tenants(**extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The two test tenants (acme, globex), each with the extra config given by name."""
    return [
        {"name": "acme", "api_keys": [hash_key(TENANT_KEY)], "webhook_secret": SECRET}
        | extra.get("acme", {}),
        {"name": "globex", "api_keys": [hash_key(OTHER_KEY)], "webhook_secret": OTHER_SECRET}
        | extra.get("globex", {}),
    ]


def make_settings(
    store: str, port: int, backends: list[dict[str, Any]], **overrides: Any
) -> Settings:
    return Settings.model_validate(settings_dict(store, port, backends, **overrides))


class Receiver:
    """A tenant's webhook endpoint: verifies every delivery with the reference library."""

    def __init__(self, secret: str = SECRET) -> None:
        self.webhook = Webhook(secret)
        self.deliveries: list[dict[str, Any]] = []
        self.attempts = 0
        self.respond: Callable[[web.Request], Awaitable[web.Response]] | None = None
        self.app = web.Application()
        self.app.router.add_post("/hook", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.respond is not None:
            response = await self.respond(request)
            if response.status >= 300:
                return response
        body = await request.read()
        payload = self.webhook.verify(body, dict(request.headers))  # raises if the signature is bad
        self.deliveries.append({"id": request.headers["webhook-id"], "payload": payload})
        return web.Response(status=204)

    def jobs(self) -> list[str]:
        return [d["payload"]["data"]["id"] for d in self.deliveries]


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10,
    interval: float = 0.05,
) -> None:
    """Wait until `check()` is true; fail with a clear message after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def stored_job(store_url: str, job_id: str) -> Any:
    """The stored record of a job, internals included (for assertions on what is kept)."""
    from gateway.store import open_store
    from gateway.store.jobs import JobStore

    store = await open_store(store_url)
    try:
        found = await JobStore(store, retention=60, live_ttl=60).get(job_id)
        return found.record if found else None
    finally:
        await store.close()
