"""Fine-tunes through real processes: redis-server, two `gateway serve`, two Astria accounts
(`gateway simulate astria`, one per key) and a client receiver verifying signatures."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.simkit.routes import PNG
from tests.helpers import AUTH, OTHER_AUTH, Receiver, backend, eventually, free_port
from tests.processes import ProcessGroup, gateway_config, wait_ready

pytestmark = pytest.mark.integration

DATA = "data:image/png;base64," + base64.b64encode(PNG).decode()
# Loopback: the tests allow it (`outbound.allow_networks`), and it resolves offline.
URLS = [f"http://127.0.0.1:9/grumpy-{n}.jpg" for n in range(4)]
OPTIONS = {"webhook_deadline": 1, "poll_interval": 0.3}


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


def astria(name: str, origin: str) -> dict[str, Any]:
    return backend(name, origin, adapter="astria", models={"realistic": "690204"}, options=OPTIONS)


async def start_fleet(
    procs: ProcessGroup, redis_url: str, speed: float
) -> tuple[list[str], list[str]]:
    """Two Astria accounts and two gateway instances; (simulator origins, gateway origins)."""
    origins = [procs.simulator(f"astria-{n}", "astria", speed=speed)[1] for n in (1, 2)]
    backends = [astria(f"astria-{n}", origin) for n, origin in enumerate(origins, 1)]
    gateways = [
        procs.gateway(name, gateway_config(redis_url, free_port(), backends))
        for name in ("gateway-a", "gateway-b")
    ]
    await asyncio.gather(*(wait_ready(gw) for gw in gateways))
    return origins, gateways


async def call(
    http: aiohttp.ClientSession, method: str, url: str, status: int = 200, **kw: Any
) -> Any:
    async with http.request(method, url, **kw) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def test_train_two_tunes_then_generate_only_on_the_owning_key(
    redis_url: str, procs: ProcessGroup, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    # Training takes 2 s: long enough that the first tune's eta still counts as astria-1's
    # queue when the second is placed, however busy the machine.
    sims, (a, b) = await start_fleet(procs, redis_url, speed=2)
    async with aiohttp.ClientSession(headers=AUTH) as http:
        common = {"name": "man", "branch": "fast", "webhook_url": hook}
        inline = await call(
            http, "POST", f"{a}/v1/tunes", 202, json={**common, "images": [DATA] * 4}
        )
        linked = await call(
            http, "POST", f"{a}/v1/tunes", 202, json={**common, "name": "cat", "images": URLS}
        )
        assert inline["status"] == linked["status"] == "training"
        tunes = {}
        for tune in (inline, linked):
            done = await call(http, "GET", f"{b}/v1/tunes/{tune['id']}", params={"wait": "30"})
            assert done["status"] == "succeeded", done
            assert done["provider_tune_id"]
            assert done["trained_at"]
            assert done["expires_at"] > done["trained_at"]
            assert done["model"] == f"tune:{tune['id']}"
            tunes[tune["id"]] = done
        # The second tune went to the other key: the first one's eta was its queue.
        assert {t["backend"] for t in tunes.values()} == {"astria-1", "astria-2"}

        received: dict[str, dict[str, Any]] = {}
        for sim in sims:
            async with aiohttp.ClientSession() as plain, plain.get(f"{sim}/_sim/tunes") as resp:
                received |= {str(t["id"]) + sim: t for t in await resp.json()}
        by_title = {t["title"]: t for t in received.values()}
        files = by_title[inline["title"]]
        assert {"tune[title]", "tune[name]", "tune[branch]", "tune[token]", "tune[callback]",
                "tune[images][]"} <= set(files["received"])  # fmt: skip
        assert files["image_files"] == 4
        urls = by_title[linked["title"]]
        assert "tune[image_urls][]" in urls["received"]
        assert urls["image_urls"] == 4

        await eventually(lambda: len(recv.deliveries) == 2, timeout=15)
        assert sorted(d["payload"]["type"] for d in recv.deliveries) == ["tune.succeeded"] * 2
        assert sorted(d["payload"]["data"]["id"] for d in recv.deliveries) == sorted(tunes)

        async with aiohttp.ClientSession() as plain:
            for sim in sims:  # quick generations from here on
                await call(plain, "POST", f"{sim}/_sim/config", json={"speed": 0.1})
        owned = tunes[inline["id"]]
        body = {"prompt": "ohwx man in a spacesuit", "model": owned["model"]}
        other = await call(http, "POST", f"{b}/v1/generations", 422, json=body, headers=OTHER_AUTH)
        assert other["error"]["details"][0]["field"] == "model"
        jobs = [await call(http, "POST", f"{b}/v1/generations", 202, json=body) for _ in range(20)]
        for job in jobs:
            done = await call(http, "GET", f"{b}/v1/generations/{job['id']}", params={"wait": "30"})
            assert done["status"] == "succeeded", done
            assert done["backend"] == owned["backend"]

    prompts: dict[str, list[Any]] = {}
    async with aiohttp.ClientSession() as plain:
        for n, sim in enumerate(sims, 1):
            async with plain.get(f"{sim}/_sim/tunes") as resp:
                prompts[f"astria-{n}"] = [p for t in await resp.json() for p in t["prompts"]]
            async with plain.get(f"{sim}/_sim/stats") as resp:
                stats = await resp.json()
            # Prompts only where the tune lives (the other tenant's try reached nobody).
            expected = 20 if f"astria-{n}" == owned["backend"] else 0
            assert stats["submitted"] - 1 == expected  # one training each, then the prompts
    assert len(prompts[owned["backend"]]) == 20


async def test_tune_survives_the_instance_that_took_it_being_killed(
    redis_url: str, procs: ProcessGroup, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    _, (a, b) = await start_fleet(procs, redis_url, speed=3)
    async with aiohttp.ClientSession(headers=AUTH) as http:
        body = {"name": "woman", "branch": "fast", "images": URLS, "webhook_url": hook}
        tune = await call(http, "POST", f"{a}/v1/tunes", 202, json=body)
        assert tune["status"] == "training"
        procs.kill("gateway-a")  # SIGKILL mid-training: the provider's callback now fails
        done = await call(http, "GET", f"{b}/v1/tunes/{tune['id']}", params={"wait": "30"})
        assert done["status"] == "succeeded", done
    await eventually(lambda: len(recv.deliveries) == 1, timeout=15)
    assert recv.deliveries[0]["payload"]["type"] == "tune.succeeded"
    assert recv.deliveries[0]["payload"]["data"]["id"] == tune["id"]
