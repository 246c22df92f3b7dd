"""Client webhooks: signed per Standard Webhooks, retried with the same id, never redirected."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, Receiver, backend, eventually


async def _job(client, hook: str) -> dict:  # type: ignore[no-untyped-def]
    resp = await client.post(
        "/v1/generations", json={"prompt": "x", "webhook_url": hook}, headers=AUTH
    )
    assert resp.status == 202
    return await resp.json()  # type: ignore[no-any-return]


async def _deliveries(client, job_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    job = await (await client.get(f"/v1/generations/{job_id}", headers=AUTH)).json()
    return job["deliveries"]  # type: ignore[no-any-return]


def answer_with(*statuses: int, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """Answer the given statuses in turn, then accept."""
    queue = list(statuses)

    async def respond(request: web.Request) -> web.Response:
        status = queue.pop(0) if queue else 204
        return web.Response(status=status, headers=headers if status >= 300 else None)

    return respond


async def test_retries_keep_the_same_id_until_accepted(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    ids_seen: list[str] = []
    inner = answer_with(500, 503)

    async def respond(request: web.Request) -> web.Response:
        ids_seen.append(request.headers["webhook-id"])
        return await inner(request)

    recv.respond = respond
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    job = await _job(client, hook)
    await eventually(lambda: len(recv.deliveries) == 1)
    assert len(set(ids_seen)) == 1
    assert len(ids_seen) == 3
    assert recv.deliveries[0]["payload"]["data"]["id"] == job["id"]
    await eventually(lambda: _deliveries(client, job["id"]), timeout=2)
    attempts = await _deliveries(client, job["id"])
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "delivered"]
    assert [a["status"] for a in attempts] == [500, 503, 204]


async def test_redirects_are_not_followed(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    followed: list[str] = []
    target = web.Application()

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.Response(status=204)

    target.router.add_post("/elsewhere", elsewhere)
    server = TestServer(target, host="127.0.0.1")
    await server.start_server()
    recv.respond = answer_with(
        302, headers={"Location": f"http://127.0.0.1:{server.port}/elsewhere"}
    )
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    job = await _job(client, hook)
    await eventually(lambda: len(recv.deliveries) == 1)
    attempts = await _deliveries(client, job["id"])
    assert attempts[0]["status"] == 302
    assert attempts[0]["detail"] == "redirects are not followed"
    assert followed == []
    await server.close()


async def test_410_stops_retries(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    recv.respond = answer_with(410, 410, 410)
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    job = await _job(client, hook)
    await eventually(lambda: recv.attempts == 1)
    await eventually(lambda: _deliveries(client, job["id"]))
    await asyncio.sleep(1.0)  # the schedule's next retry would come after 0.2 s
    assert recv.attempts == 1
    attempts = await _deliveries(client, job["id"])
    assert [a["outcome"] for a in attempts] == ["disabled"]


async def test_retry_after_is_honoured(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    times: list[float] = []
    inner = answer_with(429, headers={"Retry-After": "1.5"})

    async def respond(request: web.Request) -> web.Response:
        times.append(time.monotonic())
        return await inner(request)

    recv.respond = respond
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    await _job(client, hook)
    await eventually(lambda: len(recv.deliveries) == 1, timeout=5)
    assert times[1] - times[0] >= 1.4  # the schedule alone would retry after 0.2 s


async def test_dead_letter_after_the_last_attempt(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    recv.respond = answer_with(*([500] * 10))
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)])
    job = await _job(client, hook)
    # The test schedule has four attempts: now, +0.2 s, +0.4 s, +0.8 s.
    await eventually(lambda: recv.attempts == 4, timeout=5)

    async def dead() -> bool:
        attempts = await _deliveries(client, job["id"])
        return len(attempts) == 4

    await eventually(dead, timeout=3)
    assert recv.deliveries == []


async def test_timeout_counts_as_a_failed_attempt(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    first = True

    async def respond(request: web.Request) -> web.Response:
        nonlocal first
        if first:
            first = False
            await asyncio.sleep(2)
        return web.Response(status=204)

    recv.respond = respond
    base, _ = await simulator()
    client = await gateway(redis_url, [backend("ml-1", base)], outbound={"timeout": 0.5})
    job = await _job(client, hook)
    await eventually(lambda: len(recv.deliveries) == 1, timeout=6)

    async def recorded() -> bool:
        return len(await _deliveries(client, job["id"])) == 2

    await eventually(recorded, timeout=2)
    attempts = await _deliveries(client, job["id"])
    assert attempts[0]["outcome"] == "failed"
    assert "0.5" in attempts[0]["detail"]


async def test_a_burst_of_retries_does_not_queue_ahead_of_fresh_deliveries(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    """A receiver back after an outage: the retries that come due together are promoted as
    delivery slots free up, so a job that ends meanwhile is delivered among them rather
    than after every one of them (first in, first out, it used to be)."""
    recv, hook = receiver
    down = True

    async def respond(request: web.Request) -> web.Response:
        if down:
            return web.Response(status=503)
        await asyncio.sleep(0.02)  # a receiver that takes its time: 4 slots, ~200/s
        return web.Response(status=204)

    recv.respond = respond
    base, _ = await simulator(concurrency=128)
    client = await gateway(
        redis_url,
        [backend("ml-1", base, max_concurrency=128)],
        outbound={"concurrency": 4, "schedule": [0, 1.5, 1.5]},
    )
    old = await asyncio.gather(*(_job(client, hook) for _ in range(120)))
    await eventually(lambda: recv.attempts >= 120, timeout=10)  # each failed once
    down = False
    await eventually(lambda: len(recv.deliveries) >= 1, timeout=10)  # the retries are due
    fresh = await asyncio.gather(*(_job(client, hook) for _ in range(4)))
    await eventually(lambda: len(recv.deliveries) == 124, timeout=20)

    order = recv.jobs()
    assert set(order) == {j["id"] for j in old + fresh}
    fresh_ids = {j["id"] for j in fresh}
    last_fresh = max(order.index(job_id) for job_id in fresh_ids)
    retries_after = len(order) - 1 - last_fresh
    # All 120 retries came due within ~0.1 s; the fresh jobs ended ~0.6 s before the last
    # of them could be delivered at ~200/s.
    assert retries_after >= 40, (last_fresh, retries_after)


class Hanging:
    """A receiver host that accepts deliveries and answers none (until released)."""

    def __init__(self) -> None:
        self.in_flight = self.most = self.seen = 0
        self.released = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/hook", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        self.seen += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), 10)
            return web.Response(status=204)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def hanging() -> AsyncIterator[tuple[Hanging, str]]:
    """On another loopback address (another host); it outlives the gateways (asked first)."""
    host = Hanging()
    server = TestServer(host.app, host="127.0.0.2")
    await server.start_server()
    yield host, f"http://127.0.0.2:{server.port}/hook"
    host.released.set()
    await server.close()


async def test_a_receiver_that_answers_late_holds_only_its_share_of_the_slots(
    hanging: tuple[Hanging, str],
    redis_url: str,
    simulator: Simulator,
    gateway: Gateway,
    receiver: tuple[Receiver, str],
) -> None:
    """One tenant's endpoint hangs: once it is seen to be slow it gets at most
    `per_host_concurrency` deliveries in flight, and another host's webhooks go out at once
    (with every slot taken, they waited for the hanging ones' timeouts). Those put off are
    delivered once it answers again."""
    slow, slow_hook = hanging
    recv, hook = receiver
    base, _ = await simulator(concurrency=64)
    client = await gateway(
        redis_url,
        [backend("ml-1", base, max_concurrency=64)],
        outbound={
            "concurrency": 6,
            "per_host_concurrency": 2,
            "timeout": 4,
            "visibility_timeout": 6,
        },
    )
    slow_jobs = [await _job(client, slow_hook)]
    await eventually(lambda: slow.in_flight == 1)
    await asyncio.sleep(1.1)  # out for longer than a second: a slow host
    slow_jobs += await asyncio.gather(*(_job(client, slow_hook) for _ in range(5)))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    fresh = await asyncio.gather(*(_job(client, hook) for _ in range(4)))
    await eventually(lambda: len(recv.deliveries) == 4, timeout=5)
    assert time.monotonic() - started < 1.0
    assert set(recv.jobs()) == {j["id"] for j in fresh}
    assert slow.most == 2
    assert slow.seen < 6  # the others were put off, not sent
    # Back to answering: the ones put off come back in turn and are delivered too.
    slow.released.set()

    async def all_delivered() -> bool:
        for job in slow_jobs:
            if not any(a["outcome"] == "delivered" for a in await _deliveries(client, job["id"])):
                return False
        return True

    await eventually(all_delivered, timeout=20, interval=0.5)
