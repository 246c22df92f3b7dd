"""The submit path sends no duplicate store commands and shares no job object it mutates."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.context import SERVICES
from gateway.store import keys
from tests.conftest import Gateway
from tests.helpers import AUTH, backend

# What ModelsLab answers when an image is ready at once (the overhead bench's mock, too).
SUCCESS = {"status": "success", "id": 7, "output": ["http://127.0.0.1/x.png"]}


async def instant_provider() -> TestServer:
    async def answer(_: web.Request) -> web.Response:
        return web.json_response(SUCCESS)

    app = web.Application()
    app.router.add_post("/ml/{path:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_an_instant_result_releases_its_slot_once(redis_url: str, gateway: Gateway) -> None:
    # The provider answers `success` to the submit itself: the job ends inside dispatch.
    provider = await instant_provider()
    client = await gateway(redis_url, [backend("ml-1", f"http://127.0.0.1:{provider.port}/ml")])
    fleet = client.app[SERVICES].fleet
    released: list[tuple[str, tuple[Any, ...]]] = []
    real_release, real_finish = fleet.release, fleet.finish

    async def counting(backend_name: str, members: Any, head: int) -> Any:
        released.append((backend_name, tuple(members)))
        return await real_release(backend_name, members, head)

    async def counting_finish(backend_name: str, members: Any, head: int, *learn: Any) -> Any:
        released.append((backend_name, tuple(members)))  # a release that also learns
        return await real_finish(backend_name, members, head, *learn)

    fleet.release = counting  # type: ignore[method-assign]
    fleet.finish = counting_finish  # type: ignore[method-assign]
    resp = await client.post("/v1/generations", json={"prompt": "instant"}, headers=AUTH)
    job = await resp.json()
    assert resp.status == 202, job
    assert job["status"] == "succeeded"
    assert len(released) == 1  # by the final hook only, not again by dispatch
    store = aioredis.Redis.from_url(redis_url)
    try:
        assert await store.zcard(keys.reservations("ml-1")) == 0
    finally:
        await store.aclose()
        await provider.close()
