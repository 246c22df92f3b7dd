"""Retention: finished jobs and their history expire; nothing in Redis grows without bound."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from aiohttp import web

from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, Receiver, backend, eventually


async def test_finished_jobs_expire_and_leave_nothing_behind(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    gone = False

    async def respond(request: web.Request) -> web.Response:
        return web.Response(status=410 if gone else 204)

    recv.respond = respond
    base, _ = await simulator()
    client = await gateway(
        redis_url,
        [backend("ml-1", base)],
        jobs={"retention": "2s", "idempotency_ttl": "2s"},
    )
    store = aioredis.Redis.from_url(redis_url)
    try:
        delivered = await (
            await client.post(
                "/v1/generations",
                json={"prompt": "x", "webhook_url": hook},
                headers={**AUTH, "Idempotency-Key": "kept-for-a-while"},
            )
        ).json()
        await eventually(lambda: recv.jobs() == [delivered["id"]])
        gone = True
        dead = await (
            await client.post(
                "/v1/generations", json={"prompt": "y", "webhook_url": hook}, headers=AUTH
            )
        ).json()
        await eventually(lambda: recv.attempts == 2)

        # A finished job with its history stays within the 4 KiB budget.
        job_keys = [k async for k in store.scan_iter(match="gw:{j*}:job:*")]
        assert len(job_keys) == 2
        for key in job_keys:
            assert await store.memory_usage(key) <= 4096

        async def only_bounded_keys_remain() -> bool:
            names = {k.decode() async for k in store.scan_iter(match="gw:*")}
            if any(":job:" in n or ":idem:" in n for n in names):
                return False
            for name in names:
                if name.endswith(":deliveries") and await store.xlen(name):
                    return False
                if (
                    name.endswith((":polls", ":retries")) or ":dead:" in name
                ) and await store.zcard(name):
                    return False
            return True

        await eventually(only_bounded_keys_remain, timeout=6)
        for job in (delivered, dead):
            assert (await client.get(f"/v1/generations/{job['id']}", headers=AUTH)).status == 404
        # The idempotency key expired with its job: the same key makes a new job.
        again = await client.post(
            "/v1/generations",
            json={"prompt": "x"},
            headers={**AUTH, "Idempotency-Key": "kept-for-a-while"},
        )
        assert (await again.json())["id"] != delivered["id"]
    finally:
        await store.aclose()
        await asyncio.sleep(0)
