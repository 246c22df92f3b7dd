"""Jobs in flight and the webhook path, for the overhead bench.

1. inflight: one gateway whose mocks answer `processing` (jobs stay in flight); jobs are
   loaded in ten batches through the open-loop client, CPU per submit measured per batch:
   the curve of submit cost against jobs in flight (0 -> N). Then RSS and Redis bytes per
   job in flight.
2. webhooks: for every job in flight the bench posts the provider's `success` webhook to
   the gateway (64 at a time, the callback URL rebuilt from the stored job: track id and
   its HMAC token), and a receiver here takes the signed client deliveries: webhooks/s per
   instance, gateway CPU per webhook, lag from job end (`completed_at`) to delivery.
   The first part of the webhooks goes out while the receiver is down, so their deliveries
   wait queued in Redis: Redis bytes per finished job with a queued delivery, and after
   all are delivered, per finished job retained. Their retries are awaited before the
   measured phases begin (they come back as one burst that would hold fresh deliveries).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench import loadgen, servers
from bench.procs import WEBHOOK_SECRET, free_port
from bench.rig import AUTH, OTHER, CpuWindow, Rig
from bench.stats import percentile
from gateway import ids
from gateway.relay import signing

BATCHES = 10
SUBMIT_RATE = 600.0  # jobs/s while loading (open loop)
CONCURRENCY = 64  # provider webhooks in flight at once
QUEUED = 1000  # webhooks sent while the receiver is down
PACED_RATE = 400.0  # webhooks/s for the lag below saturation
PACED_SHARE = 0.3  # of the jobs in flight (after the queued ones), posted at PACED_RATE
POST_BUDGET = 90.0  # seconds of posting at most, whatever the gateway's pace
DRAIN_BUDGET = 30.0  # seconds to wait for the queued deliveries' retries (due after 5 s)


class Receiver:
    """Takes client deliveries; verifies a sample of signatures; records arrival times."""

    def __init__(self) -> None:
        self.key = signing.secret_key(WEBHOOK_SECRET)
        self.arrived: dict[str, float] = {}
        self.lag: dict[str, float] = {}
        self.bad_signatures = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self.all_arrived = asyncio.Event()
        self._want: set[str] = set()

    def expect(self, want: set[str]) -> None:
        self._want = set(want) - self.arrived.keys()
        if self._want:
            self.all_arrived.clear()  # set by arrivals before anything was expected
        else:
            self.all_arrived.set()

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        data = orjson.loads(body)["data"]
        if len(self.arrived) % 50 == 0:
            expected = signing.sign(
                self.key, request.headers["webhook-id"],
                int(request.headers["webhook-timestamp"]), body,
            )  # fmt: skip
            self.bad_signatures += expected != request.headers.get("webhook-signature")
        if data["id"] not in self.arrived:
            self.arrived[data["id"]] = now
            ended = datetime.fromisoformat(data["completed_at"]).timestamp()
            self.lag[data["id"]] = now - ended
            self._want.discard(data["id"])
            if not self._want:
                self.all_arrived.set()
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _used_memory(rig: Rig) -> int:
    client = rig.redis_client()
    used = int(client.info("memory")["used_memory"])
    client.close()
    return used


def _stored_jobs(rig: Rig) -> int:
    client = rig.redis_client()
    count = sum(1 for _ in client.scan_iter(match="gw:{j*}:job:*", count=1000))
    client.close()
    return count


def load_inflight(rig: Rig, url: str, body: str, count: int) -> list[dict[str, Any]]:
    batch = max(1, count // BATCHES)
    curve: list[dict[str, Any]] = []
    for _ in range(BATCHES):
        with CpuWindow(rig, ["gateway-1", "redis"]) as window:
            result = loadgen.open_loop(
                f"{url}/v1/generations", body, AUTH,
                rate=SUBMIT_RATE, seconds=batch / SUBMIT_RATE, cpu=OTHER,
            )  # fmt: skip
        accepted = result["statuses"].get("202", 0)
        curve.append(
            {
                "in_flight_before": sum(c["accepted"] for c in curve),
                "accepted": accepted,
                "statuses": result["statuses"],
                "cpu_us_per_submit": window.per_request_us(accepted),
                "latency_ms": result["latency_ms"],
            }
        )
    return curve


def _callbacks(rig: Rig) -> list[tuple[str, str, bytes]]:
    """(job id, callback path, webhook body) for every job the store holds in flight."""
    client = rig.redis_client()
    found = []
    for key in client.scan_iter(match="gw:{j*}:job:*", count=1000):
        doc = client.hget(key, "doc")
        if doc is None:
            continue
        job = orjson.loads(doc)
        if job["status"] not in ("submitted", "processing") or not job.get("backend"):
            continue
        track = ids.track_id(job["id"], job["first_track"])
        token = ids.submission_token(job["secret"], track)
        body = orjson.dumps(
            {
                "status": "success",
                "id": 1,
                "track_id": track,
                "output": ["http://127.0.0.1/bench.png"],
            }
        )
        found.append((job["id"], f"/webhooks/{job['backend']}/{track}?token={token}", body))
    client.close()
    return found


async def _post_all(url: str, calls: list[tuple[str, str, bytes]]) -> dict[str, int]:
    statuses: dict[str, int] = {}
    queue = list(reversed(calls))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONCURRENCY), timeout=timeout
    ) as session:
        deadline = time.monotonic() + POST_BUDGET

        async def worker() -> None:
            while queue and time.monotonic() < deadline:
                _, path, body = queue.pop()
                try:
                    async with session.post(url + path, data=body) as resp:
                        await resp.read()
                        key = str(resp.status)
                except (aiohttp.ClientError, TimeoutError):
                    key = "error"
                statuses[key] = statuses.get(key, 0) + 1
            statuses["not_sent"] = len(queue)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


async def _post_paced(url: str, calls: list[tuple[str, str, bytes]], rate: float) -> None:
    """Each webhook at its scheduled time (open loop), whatever the answers' pace."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=timeout
    ) as session:

        async def one(path: str, body: bytes) -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(url + path, data=body) as resp:
                    await resp.read()

        start, posts = time.monotonic(), []
        for i, (_, path, body) in enumerate(calls):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            posts.append(asyncio.create_task(one(path, body)))
        await asyncio.gather(*posts)


async def _paced(
    url: str, receiver: Receiver, calls: list[tuple[str, str, bytes]]
) -> dict[str, Any]:
    """Lag from job end to delivery below saturation: webhooks at a fixed rate."""
    want = {job_id for job_id, _, _ in calls}
    receiver.expect(want)
    await _post_paced(url, calls, PACED_RATE)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receiver.all_arrived.wait(), 60)
    lag_ms = [receiver.lag[j] * 1000 for j in want if j in receiver.lag]
    return {
        "rate_per_second": PACED_RATE,
        "webhooks_posted": len(calls),
        "delivered": len(lag_ms),
        "lag_ms": {q: percentile(lag_ms, n) for q, n in (("p50", 50), ("p90", 90), ("p99", 99))},
        "note": "open loop: each provider webhook posted at its scheduled time",
    }


async def _drain_queued(receiver: Receiver, want: set[str]) -> dict[str, Any]:
    """The deliveries that failed while the receiver was down come back on the retry
    schedule (5 s after the first try): all at once, a burst the gateway takes ~0.1 s of
    CPU to clear. Wait for them here, so that they fall into neither measured phase."""
    receiver.expect(want)
    started = time.time()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receiver.all_arrived.wait(), DRAIN_BUDGET)
    got = [receiver.arrived[j] for j in want if j in receiver.arrived]
    return {
        "count": len(want),
        "delivered": len(got),
        "seconds_after_receiver_up": round(max(got) - started, 3) if got else math.nan,
        "note": "failed first tries while the receiver was down; retried on the schedule",
    }


async def _webhooks(rig: Rig, url: str, receiver: Receiver) -> dict[str, Any]:
    calls = _callbacks(rig)
    queued, rest = calls[:QUEUED], calls[QUEUED:]
    paced_count = int(len(rest) * PACED_SHARE)
    paced, measured = rest[:paced_count], rest[paced_count:]
    before = _used_memory(rig)
    await _post_all(url, queued)  # receiver down: these deliveries wait in Redis
    await asyncio.sleep(1.0)
    with_queued = (_used_memory(rig) - before) / max(1, len(queued))
    await receiver.start()
    drained = await _drain_queued(receiver, {job_id for job_id, _, _ in queued})
    want = {job_id for job_id, _, _ in measured}
    receiver.expect(want)  # before posting: the wait below is for every one of them
    started = time.time()
    with CpuWindow(rig, ["gateway-1", "redis"]) as window:
        statuses = await _post_all(url, measured)
        posted = time.time() - started
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.all_arrived.wait(), 60)
    got = [receiver.arrived[j] for j in want if j in receiver.arrived]
    span = (max(got) - started) if got else math.nan
    lag_ms = [receiver.lag[j] * 1000 for j in want if j in receiver.lag]
    return {
        "webhooks_posted": len(measured),
        "statuses": statuses,
        "delivered": len(got),
        "bad_signatures": receiver.bad_signatures,
        "post_seconds": round(posted, 3),
        "relayed_per_second": round(len(got) / span, 1) if got else 0.0,
        "cpu_us_per_webhook": window.per_request_us(len(got)),
        "lag_ms": {q: percentile(lag_ms, n) for q, n in (("p50", 50), ("p90", 90), ("p99", 99))},
        "redis_bytes_per_finished_job_with_queued_delivery": round(with_queued),
        "queued_deliveries": drained,
        "below_saturation": await _paced(url, receiver, paced),
        "note": "lag = receive time - the job's completed_at; rate = deliveries / (last "
        "delivery - first webhook posted); all posted 64 at a time as fast as answered, "
        "so this is the saturated rate and its lag",
    }


def inflight_and_webhooks(rig: Rig, count: int) -> dict[str, Any]:
    print(f"in flight: loading {count} jobs, then their webhooks", flush=True)
    rig.flush()
    receiver = Receiver()
    url = rig.start_gateway(
        "gateway-1", rig.gw_ports[0], rig.redis_url, mode=servers.PROCESSING_PATH
    )
    body = orjson.dumps(
        {"prompt": "a lighthouse at dusk", "webhook_url": f"http://127.0.0.1:{receiver.port}/hook"}
    ).decode()
    try:
        base = _used_memory(rig)
        rss0 = rig.rss("gateway-1")
        curve = load_inflight(rig, url, body, count)
        accepted = sum(c["accepted"] for c in curve)
        # Jobs the store holds (a request the client gave up on may still have made one).
        loaded = _stored_jobs(rig)
        memory = {
            "jobs_accepted": accepted,
            "jobs_in_flight": loaded,
            "gateway_rss_mib_idle": round(rss0 / 2**20, 1),
            "gateway_rss_mib_in_flight": round(rig.rss("gateway-1") / 2**20, 1),
            "redis_bytes_per_job_in_flight": round((_used_memory(rig) - base) / max(1, loaded)),
        }

        async def hooks() -> dict[str, Any]:
            try:
                return await _webhooks(rig, url, receiver)
            finally:
                await receiver.stop()

        webhooks = asyncio.run(hooks())
        time.sleep(1.0)
        memory["redis_bytes_per_finished_job_delivered"] = round(
            (_used_memory(rig) - base) / max(1, loaded)
        )
    finally:
        rig.stop("gateway-1")
    return {"inflight": curve, "memory": memory, "webhooks": webhooks}
