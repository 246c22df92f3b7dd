"""Known secrets in the config never reach a log line, an error body, /metrics or a job body.

Real processes: Redis, `gateway simulate` for two ModelsLab backends and one Astria backend,
`gateway serve` at debug level, and a webhook receiver. One job lives through a provider
that refuses the key, one that answers 5xx, a success, a failed first delivery; another
dead-letters; a client uses a wrong tenant key and a wrong admin key.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import hash_key
from tests.helpers import Receiver, backend, eventually, free_port
from tests.processes import ProcessGroup, gateway_config, wait_ready

pytestmark = pytest.mark.integration


def _secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(16)}"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


def _fragments(secret: str) -> list[str]:
    """The secret and 12-character pieces of it: a truncated or partly masked leak counts."""
    return [secret, *(secret[i : i + 12] for i in range(0, len(secret) - 11, 6))]


async def test_no_secret_reaches_logs_errors_metrics_or_jobs(
    redis_url: str, procs: ProcessGroup
) -> None:
    ml_key, astria_key, wrong_key = _secret("ml-"), _secret("astria-"), _secret("wrong-")
    tenant_key, admin_key, bad_key = _secret("tk-"), _secret("ak-"), _secret("bad-")
    raw_secret = base64.b64encode(secrets.token_bytes(32)).decode()
    webhook_secret = "whsec_" + raw_secret
    known = {
        "modelslab key": ml_key,
        "astria key": astria_key,
        "refused key": wrong_key,
        "tenant key": tenant_key,
        "admin key": admin_key,
        "bad tenant key": bad_key,
        "webhook secret": raw_secret,
    }

    _, refusing = procs.simulator("sim-refusing", api_key=ml_key)
    _, failing = procs.simulator("sim-failing", api_key=ml_key, fail_rate=1.0)
    _, astria = procs.simulator("sim-astria", "astria", api_key=astria_key, speed=0.3)
    backends = [
        backend("refusing", f"{refusing}/api/v6/images", api_key=wrong_key),
        backend("failing", f"{failing}/api/v6/images", api_key=ml_key),
        backend("astria", astria, adapter="astria", api_key=astria_key,
                models={"default": "690204"}),
    ]  # fmt: skip
    receiver = Receiver(webhook_secret)
    calls = 0

    async def first_attempt_fails(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if "dead-letter" in (await request.text()):
            return web.Response(status=410)
        return web.Response(status=500 if calls == 1 else 204)

    receiver.respond = first_attempt_fails
    server = TestServer(receiver.app, host="127.0.0.1")
    await server.start_server()
    hook = f"http://127.0.0.1:{server.port}/hook"
    config = gateway_config(
        redis_url,
        free_port(),
        backends,
        log_level="debug",
        routing={"strategy": "priority", "probe_interval": 0.5},
        admin_keys=[hash_key(admin_key)],
        tenants=[
            {"name": "acme", "api_keys": [hash_key(tenant_key)], "webhook_secret": webhook_secret}
        ],
    )
    gw = procs.gateway("gateway", config)
    outputs: list[str] = []
    try:
        await wait_ready(gw)
        auth = {"Authorization": f"Bearer {tenant_key}"}
        admin = {"Authorization": f"Bearer {admin_key}"}
        async with aiohttp.ClientSession() as http:

            async def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
                async with http.request(method, f"{gw}{path}", **kwargs) as resp:
                    text = await resp.text()
                    outputs.append(f"{resp.status} {dict(resp.headers)} {text}")
                    return resp.status, json.loads(text) if text.startswith("{") else text

            status, _ = await call(
                "POST", "/v1/generations", json={"prompt": "x"},
                headers={"Authorization": f"Bearer {bad_key}"},
            )  # fmt: skip
            assert status == 401
            status, _ = await call("GET", "/v1/backends", headers={"Authorization": bad_key})
            assert status in (401, 403)
            status, job = await call(
                "POST", "/v1/generations", json={"prompt": "a fox", "webhook_url": hook},
                headers=auth,
            )  # fmt: skip
            assert status == 202, job
            status, done = await call(
                "GET", f"/v1/generations/{job['id']}", params={"wait": "20"}, headers=auth
            )
            assert done["status"] == "succeeded", done
            tried = [a["backend"] for a in done["attempts"]]
            assert tried[:2] == ["refusing", "failing"], done  # a refused key, then a 5xx
            status, dead = await call(
                "POST", "/v1/generations", headers=auth,
                json={"prompt": "y", "webhook_url": hook, "metadata": {"case": "dead-letter"}},
            )  # fmt: skip
            assert status == 202, dead
            await eventually(lambda: len(receiver.deliveries) == 1 and calls >= 3, timeout=30)
            await call("GET", "/v1/deliveries/dead", params={"tenant": "acme"}, headers=admin)
            await call("GET", "/v1/backends", headers=admin)
            await call("GET", f"/v1/generations/{job['id']}", headers=auth)
            await call("GET", f"/v1/generations/{dead['id']}", headers=auth)
            status, metrics = await call("GET", "/metrics")
            assert "gateway_provider_errors_total" in metrics
    finally:
        procs.stop_all()
        await server.close()

    assert calls >= 3  # a failed delivery, its retry, and the 410 that dead-lettered
    log = procs.log("gateway")
    assert '"status":500,"next":"retry"' in log  # the failed delivery was logged
    assert '"next":"dead"' in log
    webhooks = [json.dumps(d["payload"]) for d in receiver.deliveries]
    places = {"gateway log": log, "responses": "\n".join(outputs), "webhooks": "\n".join(webhooks)}
    leaks = [
        f"{what} in {where}"
        for what, secret in known.items()
        for where, text in places.items()
        if any(piece in text for piece in _fragments(secret))
    ]
    assert leaks == []
