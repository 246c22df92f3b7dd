"""The cluster wire on a real 3-master Redis Cluster: one write per master, replies in the
batch's order, and a resharding's MOVED and ASK followed command by command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.rediscluster import ClusterNodes, start_cluster
from gateway.store.batch import STALLED
from gateway.store.cluster_wire import ClusterWire, command_key, slot_of
from gateway.store.connect import Store, open_store
from gateway.store.events import LISTENER_NAME, JobEvents
from gateway.store.keys import EVENTS_CHANNEL
from tests.helpers import eventually
from tests.integration.test_cluster import _migrate_slot, _node_ids, _slot_owner

TAGS = [f"{{k{n}}}" for n in range(24)]  # hash tags spread over every master


@pytest.fixture
async def store(cluster_url: str) -> AsyncIterator[Store]:
    opened = await open_store(cluster_url)
    try:
        yield opened
    finally:
        await opened.close()


def _wire(store: Store) -> ClusterWire:
    wire = store._batcher._wire  # type: ignore[union-attr]
    assert isinstance(wire, ClusterWire)
    return wire


def test_commands_are_routed_by_their_first_key() -> None:
    assert command_key(("EVALSHA", "abc", 2, "gw:{fleet}:a", "gw:{fleet}:b", "x")) == (
        "gw:{fleet}:a"
    )
    assert command_key(("EVAL", "return 1", 0)) is None
    assert command_key(("HMGET", "gw:{j3}:job:x", "v", "doc")) == "gw:{j3}:job:x"
    read = ("XREADGROUP", "GROUP", "relay", "me", "COUNT", 5, "STREAMS", "gw:{j2}:d", ">")
    assert command_key(read) == "gw:{j2}:d"
    assert slot_of("a{fleet}b") == slot_of(b"{fleet}") == slot_of("fleet")


async def test_one_batch_spans_every_master_and_keeps_its_order(
    store: Store, redis_cluster: ClusterNodes
) -> None:
    owners = {_slot_owner(redis_cluster, slot_of(tag)) for tag in TAGS}
    assert owners == set(redis_cluster.ports)  # the batch below reaches all three
    wire = _wire(store)
    await wire.send([("SET", f"{tag}:v", tag) for tag in TAGS])
    replies = await wire.send([("GET", f"{tag}:v") for tag in reversed(TAGS)])
    assert replies == [tag.encode() for tag in reversed(TAGS)]
    # Through the store: a script on each of the masters in one loop turn.
    results = await store.run_each(
        "RATE_LIMIT", [([f"gw:{tag}:bucket"], [1000, 1000]) for tag in TAGS]
    )
    assert results == [[0, 1]] * len(TAGS)
    # One multiplexed connection per master carried all of it.
    for port in redis_cluster.ports:
        assert redis_cluster.cli(port, "client", "list").count("name=gateway-wire") == 1


def _slowed(store: Store, first_delay: float) -> tuple[list[int], list[float]]:
    """The cluster wire's first batch answered `first_delay` late (a slow round trip or a
    stalled master); returns the sizes and send times of every batch sent from then on."""
    wire = _wire(store)
    sizes: list[int] = []
    sent_at: list[float] = []
    real_send = wire.send

    async def send(commands: Any) -> Any:
        sizes.append(len(commands))
        sent_at.append(time.monotonic())
        if len(sizes) == 1:
            await asyncio.sleep(first_delay)
        return await real_send(commands)

    wire.send = send  # type: ignore[method-assign]
    return sizes, sent_at


async def test_calls_made_while_a_batch_is_out_gather_into_the_next(store: Store) -> None:
    """As on one Redis: while a batch is out (and young), the calls of the turns after it
    wait and go out together, one batch, not one per turn."""
    await store.command("HSET", "gw:{k0}:h", "v", "1")  # the slot map and connections
    sizes, _ = _slowed(store, 0.02)
    first = asyncio.ensure_future(store.command("HMGET", "gw:{k0}:h", "v"))
    later = []
    for tag in TAGS[:6]:
        await asyncio.sleep(0)  # a turn of its own for each
        later.append(asyncio.ensure_future(store.command("HMGET", f"gw:{tag}:h", "v")))
    await asyncio.gather(first, *later)
    assert sizes == [1, 6]


async def test_a_batch_held_past_stalled_does_not_hold_the_next(store: Store) -> None:
    """A batch out longer than `STALLED` (a master stalled before a failover) no longer
    holds the next one back: it goes out then, and is answered first."""
    await store.command("HSET", "gw:{k0}:h", "v", "1")
    _, sent_at = _slowed(store, 1.0)
    first = asyncio.ensure_future(store.command("HMGET", "gw:{k0}:h", "v"))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(store.command("HMGET", "gw:{k1}:h", "v"))
    async with asyncio.timeout(0.5):
        await second
    assert not first.done()
    assert STALLED <= sent_at[1] - sent_at[0] < STALLED + 0.1
    assert await first == [b"1"]


async def test_moved_after_a_resharding_is_followed(
    store: Store, redis_cluster: ClusterNodes
) -> None:
    wire = _wire(store)
    await wire.send([("SET", f"{tag}:v", tag) for tag in TAGS])
    moved = TAGS[:3]
    for tag in moved:
        _migrate_slot(redis_cluster, tag)  # the wire's slot map is now stale for these
    replies = await wire.send([("GET", f"{tag}:v") for tag in TAGS])
    assert replies == [tag.encode() for tag in TAGS]
    # A NOSCRIPT on the new owner is still the Batcher's to handle: scripts run there.
    assert await store.run("RATE_LIMIT", [f"gw:{moved[0]}:bucket"], [1000, 1000]) == [0, 1]


async def test_ask_during_a_migration_is_followed_once(
    store: Store, redis_cluster: ClusterNodes
) -> None:
    wire = _wire(store)
    tag = TAGS[5]
    await wire.send([("SET", f"{tag}:v", "before"), ("SET", f"{TAGS[6]}:v", "other")])
    slot = slot_of(tag)
    ids = _node_ids(redis_cluster)
    source = _slot_owner(redis_cluster, slot)
    target = redis_cluster.ports[(redis_cluster.ports.index(source) + 1) % 3]
    redis_cluster.cli(target, "cluster", "setslot", str(slot), "importing", ids[source])
    redis_cluster.cli(source, "cluster", "setslot", str(slot), "migrating", ids[target])
    out = redis_cluster.cli(
        source, "migrate", "127.0.0.1", str(target), f"{tag}:v", "0", "5000"
    )  # fmt: skip
    assert "OK" in out, out
    # The source answers ASK for the moved key: the wire asks the target, map unchanged.
    replies = await wire.send([("GET", f"{tag}:v"), ("GET", f"{TAGS[6]}:v")])
    assert replies == [b"before", b"other"]
    assert wire._client.nodes_manager.get_node_from_slot(slot).port == source
    for port in redis_cluster.ports:
        redis_cluster.cli(port, "cluster", "setslot", str(slot), "node", ids[target])
    assert await wire.send([("GET", f"{tag}:v")]) == [b"before"]  # now by MOVED


async def test_a_stalled_master_holds_up_only_its_own_commands(
    store: Store, redis_cluster: ClusterNodes
) -> None:
    """A master that stops answering (here: SIGSTOP, as in a long pause before a failover)
    delays the commands sent to it, not the next batches to the other masters."""
    by_owner = {_slot_owner(redis_cluster, slot_of(tag)): tag for tag in TAGS}
    stalled_port = redis_cluster.ports[0]
    stalled = by_owner[stalled_port]
    others = [by_owner[p] for p in redis_cluster.ports[1:]]
    await store.command("HSET", f"gw:{stalled}:h", "v", "1")  # connections open first
    for tag in others:
        await store.command("HSET", f"gw:{tag}:h", "v", "1")
    pid = redis_cluster.pids[redis_cluster.ports.index(stalled_port)]
    os.kill(pid, signal.SIGSTOP)
    try:
        waiting = asyncio.ensure_future(store.command("HMGET", f"gw:{stalled}:h", "v"))
        await asyncio.sleep(0.05)  # its batch is out
        async with asyncio.timeout(1):
            for tag in others:
                assert await store.command("HMGET", f"gw:{tag}:h", "v") == [b"1"]
        assert not waiting.done()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await waiting == [b"1"]


async def test_job_events_reach_a_listener_on_any_master(
    store: Store, redis_cluster: ClusterNodes
) -> None:
    """The events listener holds one connection to one master; a cluster's PUBLISH on any
    node reaches it (and it is the lean wire subscriber, not redis-py's pub/sub)."""
    events = JobEvents(store)
    heard: list[tuple[str, str]] = []
    events.subscribe(lambda job_id, status: heard.append((job_id, status)))
    listening = asyncio.ensure_future(events.run())
    try:
        await eventually(
            lambda: (
                sum(
                    redis_cluster.cli(p, "client", "list").count(f"name={LISTENER_NAME}")
                    for p in redis_cluster.ports
                )
                == 1
            )
        )
        for n, port in enumerate(redis_cluster.ports):
            redis_cluster.cli(port, "publish", EVENTS_CHANNEL, f"job-{n} succeeded")
        await eventually(lambda: len(heard) == 3)
        assert sorted(heard) == [(f"job-{n}", "succeeded") for n in range(3)]
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[ClusterNodes]:
    """Three masters with a replica each, for this test alone (one master is killed). A node
    timeout of 1 s: the failover takes 2.5-3.5 s here, inside the ~5.5 s of retries (at
    2 s it takes 4.5-5.5 s: too close to test)."""
    nodes = start_cluster(tmp_path, replicas=1, node_timeout_ms=1000)
    try:
        yield nodes
    finally:
        nodes.stop()


def _owner_by(nodes: ClusterNodes, asked: int, slot: int) -> int:
    """The port of the master serving `slot`, as the node at `asked` sees it."""
    for line in nodes.cli(asked, "cluster", "nodes").splitlines():
        fields = line.split()
        if "master" not in fields[2] or "fail" in fields[2]:
            continue
        for spec in fields[8:]:
            low, _, high = spec.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return int(fields[1].split(":")[1].split("@")[0])
    raise AssertionError(f"no live master serves slot {slot}")


def _replicas_caught_up(nodes: ClusterNodes, master: int) -> bool:
    """Every replica of `master` has acknowledged all it was sent. (WAIT would count only
    the writes of redis-cli's own connection: none.)"""
    info = dict(
        line.split(":", 1)
        for line in nodes.cli(master, "info", "replication").splitlines()
        if ":" in line
    )
    offset = int(info["master_repl_offset"])
    replicas = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
    acked = [int(dict(f.split("=") for f in r.split(","))["offset"]) for r in replicas]
    return bool(acked) and min(acked) >= offset


async def test_a_failover_is_ridden_out(replicated_cluster: ClusterNodes) -> None:
    """A master dies (SIGKILL); its replica takes over after the cluster's node timeout.
    Commands for its slots are sent again (slot map re-read, backoff) until the new master
    answers them; the others are answered at once."""
    nodes = replicated_cluster
    store = await open_store(nodes.url)
    try:
        wire = _wire(store)
        await wire.send([("SET", f"{tag}:v", tag) for tag in TAGS])
        slot = slot_of(TAGS[0])
        victim = _owner_by(nodes, nodes.ports[0], slot)
        await eventually(lambda: _replicas_caught_up(nodes, victim))  # a failover loses nothing
        os.kill(nodes.pids[nodes.ports.index(victim)], signal.SIGKILL)
        replies = await wire.send([("GET", f"{tag}:v") for tag in TAGS])
        assert replies == [tag.encode() for tag in TAGS]
        survivor = next(p for p in nodes.ports if p != victim)
        assert _owner_by(nodes, survivor, slot) != victim
        # A script on the new master: NOSCRIPT there is handled as anywhere else.
        assert await store.run("RATE_LIMIT", [f"gw:{TAGS[0]}:bucket"], [1000, 1000]) == [0, 1]
    finally:
        await store.close()
