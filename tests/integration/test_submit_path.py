"""The submit path sends no duplicate store commands, shares no job object it mutates, and
stores a job before any provider hears of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.context import SERVICES
from gateway.ids import parse_track_id
from gateway.store import keys
from tests.conftest import Gateway
from tests.helpers import AUTH, backend

# What ModelsLab answers when an image is ready at once (the overhead bench's mock, too).
SUCCESS = {"status": "success", "id": 7, "output": ["http://127.0.0.1/x.png"]}


async def instant_provider(
    seen: Callable[[web.Request], Awaitable[None]] | None = None,
) -> TestServer:
    async def answer(request: web.Request) -> web.Response:
        if seen is not None:
            await seen(request)
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


async def test_a_new_job_is_stored_with_its_reservation_before_the_provider_hears_of_it(
    redis_url: str, gateway: Gateway
) -> None:
    store = aioredis.Redis.from_url(redis_url)
    stored_when_called: list[bool] = []

    async def seen(request: web.Request) -> None:
        parsed = parse_track_id((await request.json())["track_id"])
        assert parsed is not None
        stored_when_called.append(bool(await store.exists(keys.job(parsed[0]))))

    provider = await instant_provider(seen)
    client = await gateway(redis_url, [backend("ml-1", f"http://127.0.0.1:{provider.port}/ml")])
    batcher = client.app[SERVICES].store._batcher
    assert batcher is not None
    batches: list[list[str | None]] = []
    real_send = batcher._send

    async def recording(batch: Any) -> None:
        batches.append([call[0] for call in batch])
        await real_send(batch)

    batcher._send = recording  # type: ignore[method-assign]
    try:
        resp = await client.post("/v1/generations", json={"prompt": "stored"}, headers=AUTH)
        assert resp.status == 202, await resp.json()
        assert stored_when_called == [True]
        # The job's write and its reservation went out together: one round trip, not two.
        assert any({"CREATE_JOB", "RESERVE"} <= set(names) for names in batches), batches
        # An instant result: its final save (with its usage) and its reservation's end too.
        assert any({"JOB_CAS_USAGE", "FINISH"} <= set(names) for names in batches), batches
    finally:
        await store.aclose()
        await provider.close()
