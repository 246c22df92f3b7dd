"""The ledger: 2,000 jobs through 2 gateway instances; nothing accepted is ever lost.

Each run disturbs something a third of the way in: nothing, a gateway instance
(SIGKILL, then restarted), the client's endpoint (503 for 30 s), or Redis (restarted,
with AOF persistence). Every accepted job must end in a final state and its webhook must
be delivered, with repeats only of the same webhook-id, every signature verified.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.ledger import LedgerReceiver, LedgerRun, drive, reclaimed, settle, start_ledger
from tests.processes import ProcessGroup, RedisProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
JOBS = 2000


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[tuple[LedgerRun, RedisProcess]]:
    redis = RedisProcess(tmp_path)
    redis.start()
    procs = ProcessGroup(tmp_path)
    run = await start_ledger(procs, redis.url, LedgerReceiver())
    try:
        yield run, redis
    finally:
        procs.stop_all()
        await run.receiver_server.close()
        redis.stop()


def assert_ledger(report: dict[str, object]) -> None:
    assert report["not_final"] == [], report
    assert report["missing_webhook"] == [], report
    assert report["several_ids"] == [], report
    assert report["bad_signatures"] == 0, report


async def test_ledger_undisturbed(ledger: tuple[LedgerRun, RedisProcess]) -> None:
    run, _ = ledger
    await drive(run, JOBS)
    report = await settle(run, timeout=60)
    assert report["accepted"] == JOBS
    assert_ledger(report)
    assert report["unknown_jobs"] == []
    # With every worker alive, no delivery waits for the visibility timeout.
    assert await reclaimed(run) == 0


async def test_ledger_with_an_instance_killed_and_restarted(
    ledger: tuple[LedgerRun, RedisProcess],
) -> None:
    run, _ = ledger

    async def kill_and_restart(run: LedgerRun) -> None:
        run.procs.kill("gateway-a")  # SIGKILL mid-run: in-flight work just stops
        await asyncio.sleep(3)
        await run.restart_gateway("gateway-a")

    disturbance = await drive(run, JOBS, disturb=kill_and_restart)
    assert disturbance is not None
    await disturbance
    report = await settle(run, timeout=120)
    assert report["accepted"] == JOBS  # clients went to the other instance meanwhile
    assert_ledger(report)


async def test_ledger_with_the_receiver_down_for_30_seconds(
    ledger: tuple[LedgerRun, RedisProcess],
) -> None:
    run, _ = ledger

    async def receiver_outage(run: LedgerRun) -> None:
        run.receiver.unavailable_until = time.monotonic() + 30

    await drive(run, JOBS, disturb=receiver_outage)
    report = await settle(run, timeout=150)
    assert report["accepted"] == JOBS
    assert_ledger(report)


async def test_ledger_with_redis_restarted(ledger: tuple[LedgerRun, RedisProcess]) -> None:
    run, redis = ledger
    readiness: dict[str, list[int]] = {name: [] for name in run.gateways}

    async def watch_readiness(stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                for name, url in run.gateways.items():
                    try:
                        async with http.get(
                            f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=1)
                        ) as r:
                            readiness[name].append(r.status)
                    except (aiohttp.ClientError, TimeoutError):
                        readiness[name].append(0)
                await asyncio.sleep(0.1)

    async def restart_redis(run: LedgerRun) -> None:
        redis.stop()
        await asyncio.sleep(2)  # an outage the instances must notice and ride out
        redis.start()

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_readiness(stop))
    disturbance = await drive(run, JOBS, disturb=restart_redis)
    assert disturbance is not None
    await disturbance
    report = await settle(run, timeout=120)
    stop.set()
    await watcher
    assert report["accepted"] == JOBS  # clients retried through the outage (Retry-After)
    assert_ledger(report)
    for name, seen in readiness.items():
        assert 503 in seen, f"{name} never reported the outage"
        assert seen[-1] == 200, f"{name} did not recover"
