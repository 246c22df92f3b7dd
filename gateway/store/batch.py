"""Scripts and reads started in the same event-loop turn go to Redis as one pipeline
(auto-pipelining).

Under load many requests are between awaits at once, each about to run a script or read a
record. Sent one by one, every call pays redis-py's whole per-command path (a pooled
connection taken and given back, a write, a read under a timeout); batched, a turn's calls
share one of each. A lone call still goes out by itself, one loop turn later. Replies come
back in order and each caller gets its own reply or error: one call's error never fails
another's.

A pipeline is retried whole by redis-py on a dropped connection, as a lone command is; the
scripts are written to be safe to resend (versioned compare-and-set, named members).
A script Redis does not know (`NOSCRIPT`, e.g. after a restart) is re-run alone, which
loads it. Single-node Redis only: a Redis Cluster cannot pipeline EVALSHA across slots.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from gateway.store.timing import CommandTiming

Arg = str | int | float | bytes
# A script (its name, keys, args) or a plain command (name None, the command's words as args).
Call = tuple[str | None, Sequence[str], Sequence[Arg], "asyncio.Future[Any]"]


class Batcher:
    def __init__(
        self, client: redis.Redis, scripts: dict[str, AsyncScript], timing: CommandTiming | None
    ) -> None:
        self._client = client
        self._scripts = scripts
        self._timing = timing
        self._pending: list[Call] = []
        self._tasks: set[asyncio.Task[None]] = set()

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
            loop.call_soon(self._flush)
        self._pending.append((name, keys, args, future))
        return future

    async def drain(self) -> None:
        """Wait for the batches in flight (before the connections close)."""
        while self._pending or self._tasks:
            await asyncio.sleep(0)  # a pending batch is flushed on the next turn
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._send(batch) if len(batch) > 1 else self._one(batch[0]))
        self._tasks.add(task)  # a reference until it is done (the loop keeps only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _one(self, call: Call) -> None:
        name, keys, args, future = call
        try:
            if name is None:
                reply = await self._client.execute_command(*args)  # type: ignore[no-untyped-call]
            else:
                reply = await self._scripts[name](keys=list(keys), args=list(args))
        except BaseException as exc:  # handed to the caller, whatever it is
            _settle(future, error=exc)
        else:
            _settle(future, reply)

    async def _send(self, batch: list[Call]) -> None:
        started = time.perf_counter()
        try:
            # Not a TimedPipeline's one "PIPELINE" sample: each script is observed below.
            async with Pipeline(
                self._client.connection_pool, self._client.response_callbacks, False, None
            ) as pipe:
                for name, keys, args, _ in batch:
                    if name is None:
                        pipe.execute_command(*args)
                    else:
                        pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the whole batch failed (connection gone for good)
            self._observe(batch, started, failed=True)
            for *_, future in batch:
                _settle(future, error=exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._observe(batch, started)
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):
                await self._one(call)  # loads the script, then runs it
            elif isinstance(reply, Exception):
                _settle(call[3], error=reply)
            else:
                _settle(call[3], reply)

    def _observe(self, batch: list[Call], started: float, *, failed: bool = False) -> None:
        timing = self._timing
        if timing is None or timing.metrics is None:
            return
        elapsed = time.perf_counter() - started
        for name, _, args, _ in batch:
            operation = name if name is not None else str(args[0]).upper()
            timing.observe_done(operation, elapsed, failed=failed)


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
