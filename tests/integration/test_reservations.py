"""Two instances sharing Redis never put more than max_concurrency on a backend."""

from __future__ import annotations

import asyncio

from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, Receiver, backend, eventually


async def test_two_instances_never_oversubscribe(
    redis_url: str, simulator: Simulator, gateway: Gateway, receiver: tuple[Receiver, str]
) -> None:
    recv, hook = receiver
    # The simulator could run 50 at once: any excess would show in its own max_active.
    base, server = await simulator(speed=0.3, concurrency=50)
    backends = [backend("ml-1", base, max_concurrency=3)]
    a = await gateway(redis_url, backends)
    b = await gateway(redis_url, backends)
    responses = await asyncio.gather(
        *(
            (a if n % 2 else b).post(
                "/v1/generations", json={"prompt": f"job {n}", "webhook_url": hook}, headers=AUTH
            )
            for n in range(30)
        )
    )
    jobs = [await r.json() for r in responses]
    assert all(r.status == 202 for r in responses)
    assert any(j["status"] == "queued" for j in jobs)  # the rest waited in the gateway queue
    finished = await asyncio.gather(
        *(a.get(f"/v1/generations/{j['id']}?wait=30", headers=AUTH) for j in jobs)
    )
    assert [(await f.json())["status"] for f in finished] == ["succeeded"] * 30
    stats = await (await a.session.get(f"http://127.0.0.1:{server.port}/_sim/stats")).json()
    assert stats["submitted"] == 30
    assert stats["max_active"] == 3
    # Queued jobs were dispatched later by whichever instance had room, and delivered.
    await eventually(lambda: sorted(recv.jobs()) == sorted(j["id"] for j in jobs))
