"""Scripts and reads started in the same event-loop turn go to Redis as one pipeline
(auto-pipelining), over one multiplexed connection (gateway/store/wire.py).

Under load many requests are between awaits at once, each about to run a script or read a
record. Batched, a turn's calls share one write, one read and one wake-up. One batch is in
flight at a time: what is called while it is out waits for its answer and goes next, as
one batch (under load a round trip gathers several turns' calls: fewer writes, tasks and
wake-ups per call; Redis runs them one after another anyway). A lone call still goes out
by itself, one loop turn later. Replies come back in order and each caller gets its own
reply or error: one call's error never fails another's.

A batch whose connection drops is sent again whole, with backoff (about 5 s in all, as the
redis-py pool is configured in connect.py); the scripts are written to be safe to resend
(versioned compare-and-set, named members). A script Redis does not know (`NOSCRIPT`, e.g.
after a restart) is sent again as EVAL with its source, which loads it. On a Redis Cluster
the wire is a ClusterWire (gateway/store/cluster_wire.py): a batch goes out as one write per
master, each command to its slot's owner, and is answered when its slowest master answers.
So that a stalled master (seconds, before a failover) does not hold every caller, a batch out
longer than `STALLED` no longer holds the next one back (`overlap`); below that, calls
gather as on one Redis (overlapping every turn's batch cost ~12% more CPU per submit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis._parsers.response_callbacks import get_response_callbacks
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store.timing import CommandTiming
from gateway.store.wire import Wire

if TYPE_CHECKING:
    from gateway.store.cluster_wire import ClusterWire

Arg = str | int | float | bytes
# A script (its name, keys, args) or a plain command (name None, the command's words as args).
Call = tuple[str | None, Sequence[str], Sequence[Arg], "asyncio.Future[Any]"]
# Resends of a batch whose connection dropped: 0.1, 0.2, 0.4, 0.8 s then 1 s apart (~5.5 s);
# the redis-py pool (connect.py) retries its commands on the same policy.
RETRIES, BACKOFF_BASE, BACKOFF_CAP = 8, 0.05, 1.0
# On a cluster, a batch out longer than this is presumed held by a stalled master: the next
# batch goes out without waiting for it (below this, the next one waits and gathers more).
STALLED = 0.05


class Batcher:
    def __init__(
        self,
        wire: Wire | ClusterWire,
        scripts: dict[str, AsyncScript],
        timing: CommandTiming | None,
        *,
        overlap: bool = False,
    ) -> None:
        self._wire = wire
        self._scripts = scripts
        # The wire speaks RESP2 (no HELLO): plain commands' replies are parsed by redis-py's
        # RESP2 parsers, into the shapes its clients return by default.
        self._callbacks = get_response_callbacks(2, legacy_responses=True)
        self._timing = timing
        self._pending: list[Call] = []
        self._tasks: set[asyncio.Task[None]] = set()  # batches sent and not yet answered
        # One batch in flight at a time: what comes meanwhile gathers into the next. On a
        # cluster a batch waits for its slowest master (a failover can take seconds), so
        # there the next batch waits for the last one only while it is young (`STALLED`).
        self._overlap = overlap
        self._latest: asyncio.Task[None] | None = None  # the batch sent last
        self._latest_sent = 0.0  # when (monotonic)
        self._timer: asyncio.TimerHandle | None = None

    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> asyncio.Future[Any]:
        """The script's reply, once this turn's batch has been answered."""
        return self._add(name, keys, args)

    def command(self, *words: Arg) -> asyncio.Future[Any]:
        """A plain command's reply (parsed as redis-py parses it), batched the same way."""
        return self._add(None, (), words)

    def _add(
        self, name: str | None, keys: Sequence[str], args: Sequence[Arg]
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            self._schedule(loop)
        self._pending.append((name, keys, args, future))
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush on the next turn if nothing holds the pending calls back; on a cluster,
        once the batch in flight has been out `STALLED` at the latest."""
        if self._latest not in self._tasks:  # the last batch was answered (or none sent)
            loop.call_soon(self._flush)
        elif self._overlap and self._timer is None:
            wait = self._latest_sent + STALLED - time.monotonic()
            self._timer = loop.call_later(max(0.0, wait), self._flush)

    async def drain(self) -> None:
        """Wait for the batches in flight (before the connections close)."""
        while self._pending or self._tasks:
            await asyncio.sleep(0)  # a pending batch is flushed on the next turn
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        await self._wire.close()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._latest_sent = time.monotonic()
        task = self._latest = asyncio.create_task(self._send(batch))
        self._tasks.add(task)  # a reference until it is done (the loop keeps only weak ones)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        """One batch answered: what gathered meanwhile goes next, as one batch. Under load
        calls pile up during a round trip, so a batch carries many; alone, a call still
        goes out one loop turn after it was made (after its batch's callers resumed, so
        what they send next joins it)."""
        self._tasks.discard(task)
        if self._pending and task is self._latest:
            asyncio.get_running_loop().call_soon(self._flush)

    def _packed(self, call: Call, *, source: bool = False) -> tuple[Arg, ...]:
        name, keys, args, _ = call
        if name is None:
            return tuple(args)
        script = self._scripts[name]
        head: tuple[Any, ...] = ("EVAL", script.script) if source else ("EVALSHA", script.sha)
        return (*head, len(keys), *keys, *args)

    async def _send(self, batch: list[Call]) -> None:
        started = time.perf_counter()
        try:
            replies = await self._resend(batch, [self._packed(call) for call in batch])
        except BaseException as lost:  # the whole batch failed (connection gone for good)
            self._observe(batch, started, failed=True)
            for *_, future in batch:
                _settle(future, error=lost)
            if not isinstance(lost, Exception):
                raise
            return
        self._observe(batch, started)
        unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown:  # Redis forgot these scripts: their source loads them again
            try:
                again = await self._resend(
                    batch, [self._packed(batch[i], source=True) for i in unknown]
                )
            except Exception as error:
                again = [error] * len(unknown)
            for i, reply in zip(unknown, again, strict=True):
                replies[i] = reply
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                _settle(call[3], error=reply)
            elif call[0] is None and (parse := self._callbacks.get(str(call[2][0]).upper())):
                try:
                    parsed = parse(reply)
                except Exception as error:  # a reply redis-py cannot read: this call's error
                    _settle(call[3], error=error)
                else:
                    _settle(call[3], parsed)
            else:
                _settle(call[3], reply)

    async def _resend(self, batch: list[Call], commands: list[tuple[Arg, ...]]) -> list[Any]:
        for attempt in range(RETRIES + 1):
            try:
                return await self._wire.send(commands)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if (
                    attempt == RETRIES
                    or isinstance(exc, AuthenticationError)  # no backoff cures a wrong password
                    or all(call[3].done() for call in batch)  # no caller is waiting any more
                ):
                    raise
            await asyncio.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt + 1)))
        raise AssertionError("unreachable")

    def _observe(self, batch: list[Call], started: float, *, failed: bool = False) -> None:
        timing = self._timing
        if timing is None or timing.metrics is None:
            return
        elapsed = time.perf_counter() - started
        counts: dict[str, int] = {}  # a batch carries many calls of few kinds
        for name, _, args, _ in batch:
            operation = name if name is not None else str(args[0]).upper()
            counts[operation] = counts.get(operation, 0) + 1
        for operation, times in counts.items():
            timing.observe_done(operation, elapsed, times=times, failed=failed)


def _settle(
    future: asyncio.Future[Any], reply: Any = None, *, error: BaseException | None = None
) -> None:
    if future.done():  # its caller was cancelled meanwhile
        return
    if isinstance(error, asyncio.CancelledError):
        future.cancel()  # the batch was cancelled (shutdown): so is each call
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(reply)
