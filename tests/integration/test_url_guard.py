"""Issue 10 point 6: every URL the gateway would call or hand to a backend, refused or allowed,
through the real HTTP API, in `webhook_url` and in each image field."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.demo import PIXEL
from tests.conftest import Simulator
from tests.helpers import AUTH, backend, eventually, free_port, make_settings

# The names this test's DNS knows; any other name does not resolve (no real lookups leave
# the machine). The resolver is the gateway's seam for name resolution: the same one screens
# URLs at submit and resolves them for deliveries.
ZONE = {
    "metadata.cloud.test": ["169.254.169.254"],
    "internal.corp.test": ["10.1.2.3"],
    "mixed.test": ["93.184.216.34", "192.168.0.5"],
    "v6private.test": ["fd00::5"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "public.test": ["93.184.216.34"],
    "allowed.test": ["127.0.0.2"],
}


class ZoneResolver(AbstractResolver):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in ZONE:
            raise OSError(f"{host}: name does not resolve")
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for a in ZONE[host]
        ]

    async def close(self) -> None:
        return None


REFUSED = [
    "http://127.0.0.1/x",
    "http://localhost/x",
    "http://app.localhost:8080/x",
    "http://0.0.0.0/x",
    "http://0/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[::ffff:a9fe:a9fe]/latest",
    "http://[::1]/x",
    "http://[::]/x",
    "http://2130706433/x",
    "http://0177.0.0.1/x",
    "http://0x7f.0.0.1/x",
    "http://0x7f000001/x",
    "http://127.1/x",
    "http://127.000.000.001/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/x",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.cloud.test/latest",
    "http://internal.corp.test/x.png",
    "http://mixed.test/x.png",
    "http://v6private.test/x.png",
    "http://mapped.test/x.png",
    "http://nxdomain.test/x.png",
    "http://10.0.0.1/x",
    "http://172.16.0.1/x",
    "http://192.168.1.1/x",
    "http://100.64.0.1/x",
    "http://[fe80::1]/x",
    "http://[fc00::1]/x",
    "http://224.0.0.1/x",
    "http://240.0.0.1/x",
    "http://[::127.0.0.1]/x",
    "http://[2002:7f00:1::]/x",
    "http://[64:ff9b::a9fe:a9fe]/x",
    "ftp://public.test/x.png",
    "file:///etc/passwd",
    "gopher://public.test:70/x",
    "javascript:alert(1)",
    "http://public.test@127.0.0.1/x",
    "http://user:pass@public.test/x",
    "http://127.0.0.1#@public.test/x",
    "http://public.test\\@127.0.0.1/x",
    "http://public.test:99999/x",
]
ALLOWED = [
    "http://127.0.0.2:1/x.png",  # allow-listed network
    "http://allowed.test:1/x.png",  # a name resolving into the allow-listed network
]
PUBLIC = "https://public.test/x.png"  # only in image fields: a webhook there would leave the box
FIELDS = ["webhook_url", "init_image", "mask_image", "controlnet.image"]


def body_with(field: str, url: str, init_image: str = PIXEL) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": "a cat"}
    if field == "controlnet.image":
        body["controlnet"] = {"type": "canny", "image": url}
    elif field == "mask_image":
        # Backends want both images in one form; an allowed mask goes with an allowed image.
        body.update(init_image=init_image, mask_image=url)
    else:
        body[field] = url
    return body


@pytest.fixture
async def client(simulator: Simulator) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    ml, _ = await simulator("modelslab")
    astria, _ = await simulator("astria")
    port = free_port()
    settings = make_settings(
        "memory://",
        port,
        [
            backend("ml-1", ml),
            backend("astria-1", astria, adapter="astria", models={"default": "690204"}),
        ],
        outbound={"allow_http": True, "allow_networks": ["127.0.0.2/32"]},
    )
    app = create_app(settings, resolver=ZoneResolver())
    test_client = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await test_client.start_server()
    yield test_client
    await test_client.close()


async def test_url_table(client: TestClient[web.Request, web.Application]) -> None:
    assert len(REFUSED) >= 30
    wrong: list[str] = []
    accepted_jobs: list[str] = []
    for field in FIELDS:
        for url in REFUSED:
            resp = await client.post("/v1/generations", json=body_with(field, url), headers=AUTH)
            error = (await resp.json()).get("error", {})
            named = [d.get("field") for d in error.get("details", [])]
            if resp.status != 422 or field not in named or field not in error["message"]:
                wrong.append(f"{field}={url}: {resp.status} {error}")
        accepted = [*ALLOWED, PUBLIC] if field != "webhook_url" else ALLOWED
        for url in accepted:
            body = body_with(field, url, init_image=url)
            resp = await client.post("/v1/generations", json=body, headers=AUTH)
            if resp.status != 202:
                wrong.append(f"{field}={url}: {resp.status} {await resp.text()}")
            else:
                accepted_jobs.append((await resp.json())["id"])
    assert not wrong, "\n".join(wrong)

    async def finished() -> bool:  # no provider callback may still be on its way at teardown
        for job_id in accepted_jobs:
            job = await (await client.get(f"/v1/generations/{job_id}", headers=AUTH)).json()
            if job["status"] not in ("succeeded", "failed", "canceled"):
                return False
        return True

    await eventually(finished, timeout=20)


async def test_refusal_says_why(client: TestClient[web.Request, web.Application]) -> None:
    cases = {
        "http://metadata.cloud.test/x": "metadata",
        "http://0x7f.0.0.1/x": "loopback",
        "http://nxdomain.test/x": "does not resolve",
        "http://[::ffff:10.0.0.1]/x": "private",
    }
    for url, reason in cases.items():
        resp = await client.post("/v1/generations", json=body_with("init_image", url), headers=AUTH)
        error = (await resp.json())["error"]
        assert resp.status == 422
        assert error["code"] == "url_refused"
        assert reason in error["details"][0]["message"], (url, error)
    # Userinfo never reaches the guard: the documented URL pattern has no room for it.
    resp = await client.post(
        "/v1/generations", json=body_with("init_image", "http://a.test@127.0.0.1/"), headers=AUTH
    )
    error = (await resp.json())["error"]
    assert (resp.status, error["details"][0]["field"]) == (422, "init_image")
    assert "no user@" in error["message"]


async def test_a_name_that_turns_internal_is_refused_at_delivery(simulator: Simulator) -> None:
    """DNS rebinding: public when screened at submit, loopback when the delivery connects."""
    answers = iter([["93.184.216.34"]])

    class Rebinding(ZoneResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            ZONE["rebind.test"] = next(answers, ["127.0.0.1"])
            return await super().resolve(host, port, family)

    ml, _ = await simulator("modelslab")
    port = free_port()
    settings = make_settings(
        "memory://", port, [backend("ml-1", ml)], outbound={"allow_networks": []}
    )
    client = TestClient(
        TestServer(create_app(settings, resolver=Rebinding()), host="127.0.0.1", port=port)
    )
    await client.start_server()
    try:
        body = {"prompt": "a cat", "webhook_url": "http://rebind.test:9/hook"}
        resp = await client.post("/v1/generations", json=body, headers=AUTH)
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["id"]

        async def attempted() -> bool:
            job = await (await client.get(f"/v1/generations/{job_id}", headers=AUTH)).json()
            return bool(job["deliveries"])

        await eventually(attempted, timeout=10)
        job = await (await client.get(f"/v1/generations/{job_id}", headers=AUTH)).json()
        assert job["deliveries"][0]["outcome"] == "refused"
        assert "loopback" in job["deliveries"][0]["detail"]
    finally:
        await client.close()
        ZONE.pop("rebind.test", None)


async def test_deliveries_carry_no_cookies_a_receiver_set(
    client: TestClient[web.Request, web.Application],
) -> None:
    """The delivery session keeps no cookie jar: a cookie one receiver sets would otherwise
    ride along on every later delivery to that host, whichever tenant's job it carries."""
    cookies: list[str | None] = []

    async def hook(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        response = web.Response(status=204)
        response.set_cookie("session", "set-by-the-first-receiver", path="/")
        return response

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = TestServer(app, host="127.0.0.2")  # allowed.test; a jar keeps none for an IP
    await receiver.start_server()
    try:
        for sent in (1, 2):
            body = {"prompt": "a cat", "webhook_url": f"http://allowed.test:{receiver.port}/hook"}
            resp = await client.post("/v1/generations", json=body, headers=AUTH)
            assert resp.status == 202, await resp.text()
            await eventually(lambda sent=sent: len(cookies) == sent)  # type: ignore[misc]
    finally:
        await receiver.close()
    assert cookies == [None, None]
