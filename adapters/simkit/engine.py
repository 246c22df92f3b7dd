"""A simulated GPU server: processes `concurrency` jobs at a time and queues the rest."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from adapters.base import SimulatorSettings

REFERENCE_WORK = 512 * 512 * 30  # one 512x512 image at 30 steps takes `speed` seconds

Finisher = Callable[["Engine", "SimJob"], Awaitable[None]]


@dataclass
class SimJob:
    """One generation inside a simulator."""

    id: str
    work: float  # pixels x steps x images
    images: int
    body: dict[str, Any]
    state: str = "queued"  # queued, processing, success, failed
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Engine:
    """Owns the queue, the workers and the callback sender of one simulator app."""

    def __init__(self, settings: SimulatorSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.random = random.Random(settings.seed)
        self.jobs: dict[str, SimJob] = {}
        self._ids = itertools.count(1)
        self._queue: asyncio.Queue[SimJob] = asyncio.Queue()
        self._on_finish: Finisher | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._callbacks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None
        self.base_url = ""
        self.active = 0
        self.stats: dict[str, int] = {
            "submitted": 0,
            "completed": 0,
            "failed": 0,
            "max_active": 0,
            "webhooks_sent": 0,
            "webhooks_failed": 0,
            "rejected": 0,
        }

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, on_finish: Finisher | None = None) -> None:
        self._on_finish = on_finish
        self.session = aiohttp.ClientSession()
        self._resize_workers()

    async def stop(self) -> None:
        tasks = [*self._workers, *self._callbacks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.close()

    def _resize_workers(self) -> None:
        while len(self._workers) < self.settings.concurrency:
            self._workers.append(asyncio.create_task(self._work(), name=f"{self.name}-worker"))

    def reconfigure(self, changes: dict[str, Any]) -> None:
        merged = {**self.settings.model_dump(), **changes}
        self.settings = SimulatorSettings.model_validate(merged)
        self._resize_workers()

    # -- work ------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(next(self._ids))

    def duration(self, work: float) -> float:
        return self.settings.speed * work / REFERENCE_WORK

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def queue_seconds(self) -> float:
        """Estimated seconds until a new job would start."""
        waiting = sum(j.work for j in self.jobs.values() if j.state == "queued")
        return self.duration(waiting) / self.settings.concurrency

    def enqueue(self, job: SimJob) -> SimJob:
        self.jobs[job.id] = job
        self.stats["submitted"] += 1
        self._queue.put_nowait(job)
        return job

    def eta(self, job: SimJob) -> float:
        return round(self.queue_seconds() + self.duration(job.work), 2)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            # Workers beyond a lowered concurrency put their job back and retire.
            if self.active >= self.settings.concurrency:
                self._queue.put_nowait(job)
                await asyncio.sleep(0.01)
                continue
            self.active += 1
            self.stats["max_active"] = max(self.stats["max_active"], self.active)
            job.state, job.started = "processing", time.monotonic()
            try:
                await asyncio.sleep(self.duration(job.work))
            finally:
                self.active -= 1
            if self.random.random() < self.settings.generation_fail_rate:
                job.state, job.error = "failed", "simulated generation failure"
                self.stats["failed"] += 1
            else:
                job.state = "success"
                job.outputs = [
                    f"{self.base_url}/_sim/images/{job.id}-{n}.png" for n in range(job.images)
                ]
                self.stats["completed"] += 1
            job.finished = time.monotonic()
            job.done.set()
            if self._on_finish is not None:
                await self._on_finish(self, job)

    # -- callbacks -----------------------------------------------------------------------

    def send_callback(self, url: str, payload: Any) -> None:
        """POST `payload` to `url` later, maybe twice, maybe never (per settings)."""
        if self.random.random() < self.settings.drop_webhook_rate:
            return
        copies = 2 if self.random.random() < self.settings.duplicate_webhook_rate else 1
        task = asyncio.create_task(self._post(url, payload, copies))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    async def _post(self, url: str, payload: Any, copies: int) -> None:
        assert self.session is not None
        if self.settings.webhook_delay:
            await asyncio.sleep(self.settings.webhook_delay)
        body = orjson.dumps(payload)
        for _ in range(copies):
            try:
                async with self.session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    await resp.read()
                    self.stats["webhooks_sent" if resp.status < 300 else "webhooks_failed"] += 1
            except (aiohttp.ClientError, TimeoutError):
                # Like the real providers: best effort, no retries.
                self.stats["webhooks_failed"] += 1


engine_key = web.AppKey("sim_engine", Engine)
