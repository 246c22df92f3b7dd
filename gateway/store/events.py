"""Final-state notifications across instances (Redis pub/sub), for long-polls.

Pub/sub is at-most-once, so waiters also re-read the job now and then; a missed message
only costs latency, never a wrong answer.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.store.connect import Store
from gateway.store.keys import EVENTS_CHANNEL
from observability.logging import get_logger

log = get_logger(__name__)
LISTENER_NAME = "gateway-events"  # its connection's name in `CLIENT LIST`


class JobEvents:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._listeners: list[Callable[[str, str], None]] = []

    def subscribe(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(job_id, status)` for every final transition, on any instance."""
        self._listeners.append(listener)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after store outages."""
        while True:
            try:
                await (self._listen_pubsub() if self._store.memory else self._listen_wire())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store went away; wake everyone to re-read
                log.warning("events_disconnected", error=type(exc).__name__)
                self._wake_all()
                await asyncio.sleep(0.5)

    async def _listen_wire(self) -> None:
        """A connection of our own (on a cluster, to a master picked afresh on every
        reconnect), each message handled as it is parsed: every instance hears of every job
        that ends, so this runs N times per job in a fleet."""
        wire = await self._store.listener(LISTENER_NAME)
        try:
            lost = await wire.subscribe(EVENTS_CHANNEL, self._dispatch)
            await lost
            raise RedisConnectionError("the events connection was lost")
        finally:
            await wire.close()

    async def _listen_pubsub(self) -> None:
        """memory://: fakeredis's pub/sub."""
        pubsub = self._store.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(EVENTS_CHANNEL)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._dispatch(message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, data: bytes) -> None:
        job_id, _, status = data.decode().partition(" ")
        self.notify(job_id)
        for listener in self._listeners:
            listener(job_id, status)

    def notify(self, job_id: str) -> None:
        for future in self._waiters.pop(job_id, ()):
            if not future.done():
                future.set_result(None)

    def _wake_all(self) -> None:
        for job_id in list(self._waiters):
            self.notify(job_id)

    async def wait(self, job_id: str, timeout: float) -> None:
        """Return when the job may have ended, or after `timeout` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[job_id].add(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiters[job_id]
