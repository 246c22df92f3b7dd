"""Issue 9: placement across instances and learned parallelism, through real HTTP and Redis."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from gateway.store import keys
from gateway.store.connect import open_store
from gateway.store.fleet import RENEW_CHUNK, SERVICE_WINDOW, FleetStore
from routing.load import REFERENCE_WORK, peak_overlap
from tests.conftest import Gateway, Simulator
from tests.helpers import ADMIN_KEY, AUTH, backend, eventually

# Seconds per reference image and jobs at once. Jobs take tens of seconds there, so none
# ends while the burst is placed; the gateway is told the same speeds through the shared
# ledger, as if it had learned them.
FLEET = {"a": (20.0, 2), "b": (34.0, 2), "c": (46.0, 1), "d": (62.0, 1)}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def _fleet(redis_url: str, simulator: Simulator) -> list[dict[str, Any]]:
    client = aioredis.from_url(redis_url)
    await client.hset(  # type: ignore[misc]
        keys.speeds(), mapping={n: s / REFERENCE_WORK for n, (s, _) in FLEET.items()}
    )
    await client.aclose()
    out = []
    for name, (speed, parallel) in FLEET.items():
        base, _ = await simulator(speed=speed, concurrency=parallel)
        out.append(backend(name, base, parallelism=parallel, max_concurrency=None))
    return out


async def _placed(client: Any, ids: list[str]) -> Counter[str]:
    placed: Counter[str] = Counter()
    for job_id in ids:
        job = await (await client.get(f"/v1/generations/{job_id}", headers=AUTH)).json()
        placed[job.get("backend") or "queued"] += 1
    return placed


async def test_simultaneous_burst_on_two_instances_places_like_one_sequential_decider(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    slots = sum(p for _, p in FLEET.values())
    # Reference-sized jobs: what each backend answers as its eta is what the gateway expects.
    bodies = [
        {"prompt": f"job {n}", "width": 512, "height": 512, "steps": 30} for n in range(2 * slots)
    ]

    one = await gateway(redis_url, await _fleet(redis_url, simulator))
    ids = []
    for body in bodies:  # one decider, one job after another
        ids.append(
            (await (await one.post("/v1/generations", json=body, headers=AUTH)).json())["id"]
        )
    sequential = await _placed(one, ids)
    await one.close()

    flush = aioredis.from_url(redis_url)
    await flush.flushdb()
    await flush.aclose()
    fleet = await _fleet(redis_url, simulator)
    a, b = await gateway(redis_url, fleet), await gateway(redis_url, fleet)
    answers = await asyncio.gather(
        *((a if n % 2 else b).post("/v1/generations", json=body, headers=AUTH)
          for n, body in enumerate(bodies))
    )  # fmt: skip
    burst = await _placed(a, [(await r.json())["id"] for r in answers])

    assert sequential["a"] > sequential["d"]  # the fleet is heterogeneous and it shows
    for name in [*FLEET, "queued"]:
        assert abs(burst[name] - sequential[name]) <= 1, (dict(burst), dict(sequential))


async def test_parallelism_is_learned_from_overlapping_service_times(
    redis_url: str, simulator: Simulator, gateway: Gateway
) -> None:
    # An enterprise server that runs two at once; the config says neither how many it runs
    # nor how many it accepts.
    base, _ = await simulator(speed=0.15, concurrency=2, enterprise=True)
    gpu = backend("gpu", base, max_concurrency=None, options={"enterprise": True})
    client = await gateway(redis_url, [gpu])
    answers = await asyncio.gather(
        *(client.post("/v1/generations", json={"prompt": f"{n}", "steps": 31}, headers=AUTH)
          for n in range(60))
    )  # fmt: skip
    ids = [(await r.json())["id"] for r in answers]

    async def done() -> bool:
        for job_id in ids:
            job = await (await client.get(f"/v1/generations/{job_id}", headers=AUTH)).json()
            if job["status"] != "succeeded":
                return False
        return True

    await eventually(done, timeout=30)
    seen = (await (await client.get("/v1/backends", headers=ADMIN)).json())["backends"][0]
    assert seen["parallelism_learned"] == 2
    assert seen["parallelism"] == 2
    assert seen["capacity"] == 8  # no hard limit: QUEUE_FACTOR (4) x what it runs at once


async def test_learned_parallelism_is_the_models_peak_overlap(store_url: str) -> None:
    """The script counts overlaps by a sweep; the model (routing.load) pair by pair: the
    same answer on random windows, with shared ends, touching and nested intervals."""
    store = await open_store(store_url)
    fleet = FleetStore(store, ["gpu"])
    rng = random.Random(12)
    try:
        for trial in range(12):
            await store.redis.delete(keys.service_times("gpu"))
            spans: list[tuple[float, float]] = []
            for n in range(rng.choice([1, 5, 20, SERVICE_WINDOW + 10])):
                start = rng.choice([rng.randrange(0, 4000), 1000, 2000])  # ties, touching
                end = start + rng.choice([rng.randrange(1, 3000), 1000])
                spans.append((start / 1000, end / 1000))
                _, learned = await fleet.learn("gpu", None, spans[-1], f"{trial}-{n}")
            kept = await store.redis.zrange(keys.service_times("gpu"), 0, -1)
            window = [(int(a) / 1000, int(b) / 1000) for a, b, _ in (m.split(b":") for m in kept)]
            assert len(window) == min(len(spans), SERVICE_WINDOW)
            assert learned == peak_overlap(window), (trial, window)
    finally:
        await store.close()


async def test_a_jobs_end_sent_twice_frees_its_slots_and_is_learned_from_once(
    store_url: str,
) -> None:
    """A job's end goes out with its final save, before the gateway knows the save landed;
    a save that lost a race is retried and ends the job again. Only the call that released
    the members learns from it."""
    store = await open_store(store_url)
    fleet = FleetStore(store, ["gpu"])
    try:
        members = ["t1~1~0~9999999999999"]
        await store.redis.zadd(keys.reservations("gpu"), dict.fromkeys(members, 9999999999999))
        _, first, _ = await fleet.finish("gpu", members, 10, 2.0, None, "t1")
        state, again, _ = await fleet.finish("gpu", members, 10, 4.0, None, "t1")
        assert (first, again) == (2.0, None)
        assert float(await store.redis.hget(keys.speeds(), "gpu")) == 2.0  # type: ignore[misc]
        assert state.count == 0
        assert await store.redis.zcard(keys.reservations("gpu")) == 0
    finally:
        await store.close()


async def test_leases_are_renewed_in_chunks_and_missing_members_reported(store_url: str) -> None:
    """A renewal of more members than one script should hold Redis for goes in chunks;
    every member is renewed and every released one reported, across chunk boundaries."""
    store = await open_store(store_url)
    fleet = FleetStore(store, ["a", "b"])
    try:
        count = RENEW_CHUNK * 2 + 7
        held = {b: [f"{b}-{n}~1~0~1" for n in range(count)] for b in ("a", "b")}
        for backend, members in held.items():
            await store.redis.zadd(keys.reservations(backend), dict.fromkeys(members, 1))
        released = {"a": held["a"][RENEW_CHUNK - 1 : RENEW_CHUNK + 1], "b": [held["b"][-1]]}
        for backend, members in released.items():
            await store.redis.zrem(keys.reservations(backend), *members)
        calls: list[int] = []
        run = store.run

        async def counting(name: str, keys_: Any, args: Any) -> Any:
            if name == "RENEW":
                calls.append(len(args) - 1 - len(keys_))  # members in this call
            return await run(name, keys_, args)

        store.run = counting  # type: ignore[method-assign]
        missing = await fleet.renew(held, lease=60)
        assert missing == released
        assert max(calls) <= RENEW_CHUNK
        assert sum(calls) == 2 * count
        # Renewed: every member still reserved now expires in about a minute.
        left = await store.redis.zrange(keys.reservations("a"), 0, -1, withscores=True)
        assert len(left) == count - 2
        assert min(score for _, score in left) > 1_000_000  # lease ms, not the 1 set above
    finally:
        await store.close()
