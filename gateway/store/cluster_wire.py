"""The wire's batches over a Redis Cluster: each command to the master owning its key's slot.

`ClusterWire.send` has `Wire.send`'s contract (a batch of commands in, their replies in
order out, error replies as exceptions in the list), so the Batcher runs unchanged on a
cluster: a loop turn's scripts and reads share one write per master, on one multiplexed
connection per master (`Wire`), instead of redis-py's cluster client taking a pooled
connection and a round trip per command (about half the throughput, bench/overhead.py).

The slot map is redis-py's (`RedisCluster.nodes_manager`). What a resharding or failover
sends back is followed here, command by command:
- `MOVED`: the slot has a new owner; the map is read again and the command sent there;
- `ASK`: the slot is migrating and this key already moved; the command goes to the named
  node once, after `ASKING`, and the map stays as it is;
- `TRYAGAIN` / `CLUSTERDOWN`, or a master that cannot be reached: the command is sent again
  after a backoff, with the map read again (a replica may have taken over).
Every command the gateway sends is safe to repeat (versioned compare-and-set, named
reservation members); a command still redirected or unreachable when the tries run out
gets that error as its reply, and only its caller sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store.batch import BACKOFF_BASE, BACKOFF_CAP, RETRIES
from gateway.store.wire import NAME, Arg, Wire, settle_quietly
from observability.logging import get_logger

log = get_logger(__name__)

# Per command: a redirection is followed, and a refused or unreachable send retried with
# backoff (0.1 s doubling to 1 s, ~5.5 s in all: the single-node Batcher's policy).
TRIES = RETRIES + 1
_AGAIN = (TryAgainError, ClusterDownError, RedisConnectionError, RedisTimeoutError)


def command_key(command: Sequence[Arg]) -> Arg | None:
    """The key a command is routed by: a script's first key, XREADGROUP's first stream, else
    the word after the name (every other command the store batches names its key there)."""
    name = str(command[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return command[3] if int(command[2]) > 0 else None
    if name == "XREADGROUP":  # its first stream
        return command[list(command).index("STREAMS") + 1]
    return command[1] if len(command) > 1 else None


def slot_of(key: Arg) -> int:
    data = key if isinstance(key, bytes) else str(key).encode()
    return key_slot(data)


class ClusterWire:
    """Send batches of commands to a cluster; each batch's replies come back in order."""

    def __init__(self, client: RedisCluster, *, name: str = NAME) -> None:
        self._client = client
        self._name = name
        self._wires: dict[str, Wire] = {}  # by node name (host:port)
        self._refreshing: asyncio.Task[None] | None = None
        self._ready = False

    async def send(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        if not self._ready:
            await self._client.initialize()  # the slot map (a no-op once read)
            self._ready = True
        replies: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        asking: dict[int, str] = {}  # command index -> the node an ASK named
        for attempt in range(TRIES):
            retry, refresh = await self._send_round(commands, todo, asking, replies)
            if not retry:
                return replies
            if attempt == TRIES - 1:
                break
            if refresh:
                await self.refresh()
            if any(not isinstance(replies[i], MovedError | AskError) for i in retry):
                await asyncio.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt + 1)))
            todo = retry
        return replies  # what is still redirected or refused: its error is its reply

    async def _send_round(
        self,
        commands: Sequence[Sequence[Arg]],
        todo: list[int],
        asking: dict[int, str],
        replies: list[Any],
    ) -> tuple[list[int], bool]:
        """Send `todo`, one write per node; fill `replies`. Returns (what to send again,
        whether the slot map should be read again first)."""
        groups: dict[str, tuple[ClusterNode | str, list[int]]] = {}
        retry: list[int] = []
        refresh = False
        for i in todo:
            try:
                target = asking.get(i) or self._owner(commands[i])
            except RedisClusterException as uncovered:  # a slot no master covers (mid-failover)
                replies[i] = uncovered
                retry.append(i)
                refresh = True
                continue
            name = target if isinstance(target, str) else target.name
            groups.setdefault(name, (target, []))[1].append(i)
        # Every node's write goes out first, then the answers are collected: the masters
        # work in parallel and no task is made per node.
        sent = [
            self._node_write(name, node, commands, idx, asking)
            for name, (node, idx) in groups.items()
        ]
        for (_, idx), pending in zip(groups.values(), sent, strict=True):
            try:
                result = await pending
            except (RedisConnectionError, RedisTimeoutError, OSError) as lost:
                for i in idx:  # the node's connection failed: its commands go again
                    replies[i] = lost
                retry.extend(idx)
                refresh = True
                continue
            if any(i in asking for i in idx):
                result = _unasked(result, [i in asking for i in idx])
            for i, reply in zip(idx, result, strict=True):
                asking.pop(i, None)  # an ASK redirects one try only
                replies[i] = reply
                if isinstance(reply, MovedError):
                    retry.append(i)
                    refresh = True
                elif isinstance(reply, AskError):
                    asking[i] = f"{reply.host}:{reply.port}"
                    retry.append(i)
                elif isinstance(reply, _AGAIN):
                    retry.append(i)
                    refresh = True
        return retry, refresh

    def _owner(self, command: Sequence[Arg]) -> ClusterNode:
        key = command_key(command)
        if key is None:
            return self._client.get_primaries()[0]
        return self._client.nodes_manager.get_node_from_slot(slot_of(key))

    def _node_write(
        self,
        name: str,
        node: ClusterNode | str,
        commands: Sequence[Sequence[Arg]],
        idx: list[int],
        asking: dict[int, str],
    ) -> Awaitable[list[Any]]:
        """Commands `idx` written to one node; an asked command goes after `ASKING`."""
        wire = self._wires.get(name) or self._open(name, node)
        payload: list[Sequence[Arg]] = []
        for i in idx:
            if i in asking:
                payload.append(("ASKING",))
            payload.append(commands[i])
        return wire.write(payload) or wire.send(payload)  # a coroutine only to connect

    def _open(self, name: str, node: ClusterNode | str) -> Wire:
        if isinstance(node, str):  # an ASK's target, maybe not in the map yet
            host, _, port = node.rpartition(":")
            like = self._client.get_primaries()[0]
            kwargs = {**like.connection_kwargs, "host": host, "port": int(port)}
            wire = Wire(kwargs, like.connection_class, name=self._name)
        else:
            wire = Wire(node.connection_kwargs, node.connection_class, name=self._name)
        self._wires[name] = wire
        return wire

    async def refresh(self) -> None:
        """Read the slot map again; concurrent callers share one read."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._client.nodes_manager.initialize())
            self._refreshing.add_done_callback(settle_quietly)
        try:
            await asyncio.shield(self._refreshing)
        except (RedisClusterException, RedisConnectionError, RedisTimeoutError, OSError):
            log.info("cluster_map_unread")  # no node answers now: the next try's backoff

    async def close(self) -> None:
        wires, self._wires = list(self._wires.values()), {}
        for wire in wires:
            await wire.close()


def _unasked(replies: list[Any], asked: list[bool]) -> list[Any]:
    """The replies without those of the `ASKING`s sent before asked commands."""
    kept, pos = [], 0
    for was_asked in asked:
        pos += was_asked
        kept.append(replies[pos])
        pos += 1
    return kept
