"""Latency and errors of every store call, measured in one place: the client itself.

Every command (and every pipeline) a repository sends passes through `execute_command` /
`Pipeline.execute`, so subclassing the client times them all without touching a call site
and without an extra round trip. Scripts go out as EVALSHA; they are labelled with their
name from `gateway/store/scripts.py`, so the label set stays bounded (command and script
names). Blocking reads (`BLOCK`) are not timed: their latency is the block, not Redis.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, RedisError

from observability.histogram import LoopChild
from observability.metrics import Metrics

T = TypeVar("T")


class CommandTiming:
    """Observes store calls into the metrics; `scripts` maps a script's sha to its name."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self.scripts: dict[str, str] = {}
        self._durations: dict[str, LoopChild] = {}

    def operation(self, args: tuple[Any, ...]) -> str:
        name = str(args[0]).upper() if args else "UNKNOWN"
        if name == "EVALSHA" and len(args) > 1:
            return self.scripts.get(str(args[1]), "EVALSHA")
        return name

    @staticmethod
    def blocking(args: tuple[Any, ...]) -> bool:
        """A blocking read (`... BLOCK ms`): one tuple scan, no per-argument isinstance."""
        return "BLOCK" in args or b"BLOCK" in args

    async def observe(self, operation: str, call: Awaitable[T], *, timed: bool = True) -> T:
        metrics = self.metrics
        if metrics is None:
            return await call
        started = time.perf_counter()
        try:
            return await call
        except NoScriptError:
            raise  # redis-py loads the script and retries: not a failure
        except RedisError:
            metrics.store_errors.labels(operation).inc()
            raise
        finally:
            if timed:
                self._duration(metrics, operation).observe(time.perf_counter() - started)

    def observe_done(
        self, operation: str, seconds: float, *, times: int = 1, failed: bool = False
    ) -> None:
        """`times` calls' outcome measured elsewhere (calls sent in one batch: its time)."""
        metrics = self.metrics
        if metrics is None:
            return
        if failed:
            metrics.store_errors.labels(operation).inc(times)
        self._duration(metrics, operation).observe(seconds, times)

    def _duration(self, metrics: Metrics, operation: str) -> LoopChild:
        """The labelled child, looked up once per operation: this runs on every command."""
        child = self._durations.get(operation)
        if child is None:
            child = self._durations[operation] = metrics.store_duration.labels(operation)
        return child


class TimedPipeline(Pipeline):
    timing: CommandTiming

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        operation = "MULTI" if self.is_transaction else "PIPELINE"
        return await self.timing.observe(operation, super().execute(raise_on_error))


class TimedRedis(redis.Redis):
    """A Redis client whose commands and pipelines are timed (see the module docstring)."""

    timing = CommandTiming(None)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self.timing.observe(
            self.timing.operation(args),
            super().execute_command(*args, **options),  # type: ignore[no-untyped-call]
            timed=not self.timing.blocking(args),
        )

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = TimedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.timing = self.timing
        return pipe
