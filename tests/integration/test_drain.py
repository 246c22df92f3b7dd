"""SIGTERM drains an instance mid-run: unready at once, out within the configured time,
every accepted job finished and delivered, no reservation it held outliving its lease."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from gateway import ids
from gateway.context import SERVICES
from gateway.drain import hand_back
from gateway.jobs.model import JobRecord, JobStatus, utcnow
from gateway.store import keys
from gateway.store.jobs import Versioned
from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, backend, eventually
from tests.ledger import LedgerReceiver, LedgerRun, drive, settle, start_ledger
from tests.processes import ProcessGroup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
JOBS = 200
DRAIN = 8.0
LEASE = 3.0


async def _unready_after(http: aiohttp.ClientSession, url: str, since: float) -> float:
    while time.monotonic() - since < 5:
        try:
            async with http.get(f"{url}/readyz") as resp:
                if resp.status == 503 and (await resp.json())["draining"]:
                    return time.monotonic() - since
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)
    return float("inf")


async def _long_poll(http: aiohttp.ClientSession, url: str, job_id: str) -> tuple[int, float]:
    """(status, seconds) of a `?wait=30` read: it must end well before its wait."""
    started = time.monotonic()
    async with http.get(
        f"{url}/v1/generations/{job_id}", params={"wait": "30"}, headers=AUTH
    ) as resp:
        await resp.read()
        return resp.status, time.monotonic() - started


async def _live_members(client: redis.Redis, backends: list[str]) -> set[str]:
    """Reservation members whose lease has not run out (by the Redis server's clock)."""
    seconds, micros = await client.time()
    now_ms = seconds * 1000 + micros // 1000
    live: set[str] = set()
    for name in backends:
        found = await client.zrangebyscore(keys.reservations(name), f"({now_ms}", "+inf")
        live |= {m.decode() for m in found}
    return live


def _left_to_lapse(log: str) -> set[str]:
    members: set[str] = set()
    for line in log.splitlines():
        if '"leases_left_to_lapse"' in line:
            members |= set(json.loads(line)["members"])
    return members


async def test_sigterm_mid_run_drains_the_instance_and_loses_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    procs = ProcessGroup(tmp_path)
    run = await start_ledger(
        procs,
        redis_url,
        LedgerReceiver(),
        speed=3.0,  # long enough that A still runs jobs when it exits
        max_concurrency=32,
        routing={"reservation_lease": LEASE},
        shutdown={"drain_seconds": DRAIN, "unready_seconds": 1.5},
        log_level="info",
    )
    seen: dict[str, Any] = {}
    store = redis.Redis.from_url(redis_url)

    async def sigterm_a(run: LedgerRun) -> None:
        a, proc = run.gateways["gateway-a"], procs.procs["gateway-a"]
        async with aiohttp.ClientSession() as http:
            # A request in flight at SIGTERM: a long-poll on a job that is still running.
            job_id = list(run.accepted)[-1]  # just accepted: runs for seconds yet
            poll = asyncio.create_task(_long_poll(http, a, job_id))
            await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            seen["unready_after"] = await _unready_after(http, a, signalled)
            async with http.post(
                f"{a}/v1/generations", json={"prompt": "during drain"}, headers=AUTH
            ) as resp:
                seen["refusal"] = (resp.status, resp.headers.get("Retry-After"), await resp.json())
            seen["long_poll"] = await poll
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, DRAIN + 10)
        seen["exit_after"] = time.monotonic() - signalled
        seen["exit_code"] = proc.returncode
        # One lease after the exit, nothing the instance left behind is still reserved.
        await asyncio.sleep(LEASE + 0.5)
        seen["live_after_lease"] = await _live_members(store, ["ml-1", "ml-2"])

    try:
        disturbance = await drive(run, JOBS, disturb=sigterm_a, disturb_after=0.4, concurrency=24)
        assert disturbance is not None
        await disturbance
        report = await settle(run, timeout=90)
        left_behind = _left_to_lapse(procs.log("gateway-a"))
        live_at_end = await _live_members(store, ["ml-1", "ml-2"])
    finally:
        procs.stop_all()
        await run.receiver_server.close()
        await store.aclose()

    assert seen["unready_after"] < 1.0, seen
    status, retry_after, body = seen["refusal"]
    assert status == 503, seen
    assert retry_after == "1"
    assert body["error"]["code"] == "unavailable"
    status, waited = seen["long_poll"]
    assert status == 200, seen  # the request in flight finished, answered, not cut
    assert 0.15 < waited < 5, seen  # in flight at SIGTERM; returned when the drain began
    assert seen["exit_code"] == 0, procs.log("gateway-a")[-3000:]
    assert seen["exit_after"] <= DRAIN, seen
    assert '"drain_started"' in procs.log("gateway-a")
    # Every accepted job ended and its webhook arrived (B finished A's where needed).
    assert report["accepted"] == JOBS
    assert report["not_final"] == [], report
    assert report["missing_webhook"] == [], report
    assert report["unknown_jobs"] == [], report
    assert report["bad_signatures"] == 0, report
    # The slots of A's running jobs lapsed with the lease; nothing stays reserved at the end.
    assert left_behind, "A held no running job at SIGTERM: the test did not exercise the drain"
    assert not (left_behind & seen["live_after_lease"]), seen
    assert live_at_end == set()


async def test_a_dispatch_cut_short_hands_back_its_slots_and_requeues_the_job(
    redis_url: str, gateway: Gateway, simulator: Simulator
) -> None:
    silent, _ = await simulator("modelslab", timeout_rate=1.0)  # never answers a submit
    client = await gateway(redis_url, [backend("silent", silent, options={"timeout": 30})])
    services = client.app[SERVICES]
    now = utcnow()
    record = JobRecord(
        id=ids.new_job_id(), status=JobStatus.QUEUED, tenant="acme", created_at=now,
        updated_at=now, secret=ids.new_job_secret(), request={"prompt": "cut short"},
        deadline=time.time() + 60,
    )  # fmt: skip
    await services.jobs.create(record, poll_due=time.time() + 60)
    dispatch = asyncio.create_task(services.dispatcher.dispatch(Versioned(1, record)))
    await eventually(lambda: bool(services.dispatcher.unsettled), timeout=5)
    reservations = keys.reservations("silent")
    assert await services.store.redis.zcard(reservations) == 1
    dispatch.cancel()  # what stopping the loops does to a dispatch that overran the drain
    with contextlib.suppress(asyncio.CancelledError):
        await dispatch

    assert await hand_back(services) == 1
    assert services.dispatcher.unsettled == {}
    assert await services.store.redis.zcard(reservations) == 0
    assert await services.queue.contains(record.id)  # another instance will take it
