"""A killed gateway instance: its reservations lapse, the survivor carries on with its work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import ADMIN, AUTH, backend, free_port
from tests.processes import ProcessGroup, gateway_config, wait_ready

pytestmark = pytest.mark.integration
LEASE = 3.0


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


async def _in_flight(http: aiohttp.ClientSession, gw: str) -> int:
    async with http.get(f"{gw}/v1/backends", headers=ADMIN) as resp:
        return int((await resp.json())["backends"][0]["in_flight"])


async def test_killed_instance_frees_its_slots_and_the_survivor_dispatches_the_queue(
    redis_url: str, procs: ProcessGroup
) -> None:
    _, sim = procs.simulator("sim", speed=6, concurrency=8)
    backends = [
        backend(
            "gpu",
            f"{sim}/api/v6/images",
            max_concurrency=2,
            options={"webhook_deadline": 1, "poll_interval": 0.5},
        )
    ]
    overrides: dict[str, Any] = {"routing": {"reservation_lease": LEASE, "view_refresh": 0.1}}
    a = procs.gateway("gateway-a", gateway_config(redis_url, free_port(), backends, **overrides))
    b = procs.gateway("gateway-b", gateway_config(redis_url, free_port(), backends, **overrides))
    await asyncio.gather(wait_ready(a), wait_ready(b))

    async with aiohttp.ClientSession(headers=AUTH) as http:

        async def submit(gw: str, n: int) -> dict[str, Any]:
            async with http.post(f"{gw}/v1/generations", json={"prompt": f"job {n}"}) as resp:
                assert resp.status == 202
                return await resp.json()  # type: ignore[no-any-return]

        held_by_a = [await submit(a, n) for n in range(2)]
        assert all(job["backend"] == "gpu" for job in held_by_a)
        waiting = [await submit(b, n) for n in range(2, 5)]
        assert all(job["status"] == "queued" for job in waiting)
        assert await _in_flight(http, b) == 2

        procs.kill("gateway-a")  # SIGKILL: no cleanup, its leases simply stop being renewed
        killed = time.monotonic()
        # The survivor refills the freed slots from the queue at once, so the sign that A's
        # slots were released is the queued jobs starting on `gpu`.
        while await _still_queued(http, b, waiting[:2]):
            assert time.monotonic() - killed < LEASE + 2, "slots not freed within the lease"
            await asyncio.sleep(0.1)
        freed_after = time.monotonic() - killed
        assert await _in_flight(http, b) == 2  # the two it dispatched, never more

        # Every job ends: A's through B's polling (A took their callbacks to its grave).
        for job in [*held_by_a, *waiting]:
            async with http.get(f"{b}/v1/generations/{job['id']}", params={"wait": "40"}) as resp:
                done = await resp.json()
            assert done["status"] == "succeeded", done
    assert freed_after <= LEASE + 2


async def _still_queued(http: aiohttp.ClientSession, gw: str, jobs: list[dict[str, Any]]) -> bool:
    for job in jobs:
        async with http.get(f"{gw}/v1/generations/{job['id']}") as resp:
            if (await resp.json())["status"] == "queued":
                return True
    return False
