"""The gateway on a real 3-master Redis Cluster (`redis+cluster://`).

The integration scenarios below are the suite's own, re-run against the cluster; together
they run every Lua script and every multi-key or multi-shard operation the store has
(listed per scenario), so a CROSSSLOT anywhere fails them. Then the cluster's own
hazards: a SCRIPT FLUSH on every node mid-run (NOSCRIPT) and slots migrated to another
node mid-run (MOVED), both with requests in between that must not notice.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bench.rediscluster import ClusterNodes
from gateway.config import hash_key
from gateway.ids import SHARDS
from tests.conftest import Gateway, Simulator
from tests.helpers import AUTH, SECRET, TENANT_KEY, Receiver, backend, eventually
from tests.integration import (
    test_api,
    test_delivery,
    test_provider_webhooks,
    test_quotas,
    test_relay_admin,
    test_reservations,
    test_routing,
)

Scenario = Callable[..., Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {
    # CREATE_JOB, RESERVE, JOB_CAS, DELIVERY_CAS, per-stream XREADGROUP, pub/sub, SNAPSHOT
    "submit_and_deliver": test_api.test_submit_routes_and_delivers,
    # CREATE_JOB with its idempotency key in the job's shard
    "idempotency": test_api.test_idempotency_key,
    # JOB_CAS from a cancel; the gateway queue's ZREM
    "cancel": test_api.test_cancel,
    # RECORD_FAILURE over every health hash (RECORD_SUCCESS has one key: one slot)
    "ejection": test_routing.test_dead_idle_backend_is_ejected_by_probes,
    # COOL_DOWN
    "cool_down": test_routing.test_429_cools_the_key_down_for_retry_after_on_every_instance,
    # QUEUE_PUSH, QUEUE_POP across tenants
    "fair_queue": test_routing.test_queue_is_fair_across_tenants,
    # QUEUE_PUSH refused, DELETE_JOB
    "full_queue": test_routing.test_full_queue_answers_429_and_keeps_nothing,
    # LEARN_SPEED shared between instances
    "speed": test_routing.test_speed_is_learned_and_shared,
    # PROMOTE_RETRIES on every shard (concurrently: no EVALSHA in a cluster pipeline)
    "retries": test_delivery.test_retries_keep_the_same_id_until_accepted,
    # dead letters: DELIVERY_CAS 'dead', the per-shard listing pipeline, replay
    "dead_letters": test_relay_admin.test_dead_letters_are_listed_per_tenant_and_replayed,
    # CLAIM_POLLS on every shard
    "polling": test_provider_webhooks.test_missing_webhook_ends_the_job_through_polling,
    # QUOTA_ADMIT and the ended job's ZREM under contention from two instances
    "concurrency_quota": (
        test_quotas.test_concurrency_quota_holds_across_instances_and_spares_other_tenants
    ),
    # QUOTA_ADMIT's daily count
    "daily_images": test_quotas.test_daily_image_quota_admits_exactly_its_images_across_instances,
    # the month's spend read from every shard at admission
    "monthly_spend": test_quotas.test_monthly_spend_cap_refuses_once_spent_until_next_month,
    # two instances, one ledger: RESERVE under contention, RENEW
    "two_instances": test_reservations.test_two_instances_never_oversubscribe,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario_on_a_cluster(
    name: str,
    cluster_url: str,
    simulator: Simulator,
    gateway: Gateway,
    receiver: tuple[Receiver, str],
) -> None:
    scenario = SCENARIOS[name]
    given: dict[str, Any] = {
        "redis_url": cluster_url,
        "store_url": cluster_url,
        "simulator": simulator,
        "gateway": gateway,
        "receiver": receiver,
    }
    await scenario(**{p: given[p] for p in inspect.signature(scenario).parameters})


async def _submit_all(client: Any, count: int, hook: str) -> list[str]:
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/generations", json={"prompt": f"job {n}", "webhook_url": hook}, headers=AUTH
            )
            for n in range(count)
        )
    )
    bodies = [await r.json() for r in responses]
    assert [r.status for r in responses] == [202] * count, bodies
    return [b["id"] for b in bodies]


async def test_noscript_and_moved_are_handled_mid_run(
    redis_cluster: ClusterNodes,
    cluster_url: str,
    simulator: Simulator,
    gateway: Gateway,
    receiver: tuple[Receiver, str],
) -> None:
    recv, hook = receiver
    base, _ = await simulator(speed=0.05, concurrency=8)
    # The tenant's rate limit is on: RATE_LIMIT runs on every submit too.
    tenants = [
        {
            "name": "acme",
            "api_keys": [hash_key(TENANT_KEY)],
            "webhook_secret": SECRET,
            "rate_limit": {"per_second": 1000, "burst": 1000},
        }
    ]
    client = await gateway(cluster_url, [backend("ml-1", base)], tenants=tenants)
    jobs = await _submit_all(client, 8, hook)

    # Every node forgets every script: the next EVALSHA of each gets NOSCRIPT.
    for port in redis_cluster.ports:
        assert "OK" in redis_cluster.cli(port, "script", "flush")
    jobs += await _submit_all(client, 8, hook)

    # Move the slots of the fleet ledger, the queue and two job shards to another node.
    tags = ["{fleet}", "{queue}", "{j0}", f"{{j{SHARDS - 1:x}}}"]
    for tag in tags:
        _migrate_slot(redis_cluster, tag)
    jobs += await _submit_all(client, 8, hook)

    await eventually(lambda: set(recv.jobs()) == set(jobs), timeout=30)
    finished = [await (await client.get(f"/v1/generations/{j}", headers=AUTH)).json() for j in jobs]
    assert {f["status"] for f in finished} == {"succeeded"}


def _migrate_slot(nodes: ClusterNodes, tag: str) -> None:
    """Move the slot holding `tag`, with its keys, to the next master (as a resharding does)."""
    port0 = nodes.ports[0]
    slot = int(nodes.cli(port0, "cluster", "keyslot", tag).strip())
    ids = _node_ids(nodes)
    source = _slot_owner(nodes, slot)
    target = nodes.ports[(nodes.ports.index(source) + 1) % len(nodes.ports)]
    nodes.cli(target, "cluster", "setslot", str(slot), "importing", ids[source])
    nodes.cli(source, "cluster", "setslot", str(slot), "migrating", ids[target])
    while True:
        names = nodes.cli(source, "cluster", "getkeysinslot", str(slot), "100").split()
        if not names:
            break
        out = nodes.cli(source, "migrate", "127.0.0.1", str(target), "", "0", "5000",
                        "keys", *names)  # fmt: skip
        assert "OK" in out or "NOKEY" in out, out
    for port in nodes.ports:
        nodes.cli(port, "cluster", "setslot", str(slot), "node", ids[target])
    assert _slot_owner(nodes, slot) == target


def _node_ids(nodes: ClusterNodes) -> dict[int, str]:
    return {p: nodes.cli(p, "cluster", "myid").strip() for p in nodes.ports}


def _slot_owner(nodes: ClusterNodes, slot: int) -> int:
    for line in nodes.cli(nodes.ports[0], "cluster", "nodes").splitlines():
        fields = line.split()
        port = int(fields[1].split(":")[1].split("@")[0])
        for spec in fields[8:]:
            low, _, high = spec.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return port
    raise AssertionError(f"no node owns slot {slot}")
