"""Background loops owned by the app: started together, restarted on crash, awaited on stop.

Never fire-and-forget: every task is referenced here and cancelled on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from observability.logging import get_logger

log = get_logger(__name__)

Loop = Callable[[], Awaitable[None]]


class Background:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._spawned: set[asyncio.Task[None]] = set()

    def start(self, name: str, loop: Loop, *, restart_delay: float = 1.0) -> None:
        self._tasks[name] = asyncio.create_task(
            self._supervise(name, loop, restart_delay), name=name
        )

    def spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        """A one-off task (e.g. one delivery) that is still tracked and cancelled on stop."""

        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task_failed", task=name)

        task = asyncio.create_task(run(), name=name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    async def finish(self, names: tuple[str, ...], timeout: float) -> None:
        """Wait up to `timeout` for the named loops to return by themselves (see drain.py)."""
        tasks = {self._tasks[n] for n in names if n in self._tasks}
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _supervise(self, name: str, loop: Loop, delay: float) -> None:
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background_loop_crashed", loop=name)
                await asyncio.sleep(delay)

    async def stop(self, grace: float = 5.0, deadline: float = 10.0) -> None:
        """Let one-off tasks finish for up to `grace` seconds, then cancel everything."""
        if self._spawned:
            await asyncio.wait(set(self._spawned), timeout=grace)
        tasks = [*self._tasks.values(), *self._spawned]
        stuck = await cancel_all(tasks, deadline)
        if stuck:
            log.error("tasks_ignored_cancellation", tasks=sorted(t.get_name() for t in stuck))
        self._tasks.clear()


async def cancel_all(tasks: list[asyncio.Task[None]], deadline: float) -> set[asyncio.Task[None]]:
    """Cancel until done; returns the tasks still running after `deadline` seconds.

    One cancel is not always enough on Python 3.11: `asyncio.wait_for` (which redis-py
    uses for every send when `socket_timeout` is set) drops a cancellation that arrives
    as its inner future completes, and the task carries on. So cancel again until it ends.
    """
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    while pending and loop.time() < give_up:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for task in tasks:
        if task.done() and not task.cancelled():
            with contextlib.suppress(BaseException):
                task.exception()  # retrieved, so asyncio does not warn about it
    return pending
