"""Whether the store answers, known without asking it on the request path.

A ping on every `/readyz` would wait out the client's reconnect retries during an outage;
this loop pings on its own and readiness reads the result.
"""

from __future__ import annotations

import asyncio
import time

from gateway.store.connect import Store
from observability.logging import get_logger

log = get_logger(__name__)

INTERVAL = 0.25
TIMEOUT = 0.75
STALE_AFTER = 1.0  # a ping answers in a millisecond; a second without one is an outage


class StoreHealth:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.last_ok = time.monotonic()
        self._was_ok = True

    def answered(self) -> None:
        """The store just answered someone else's command: it is reachable now."""
        self.last_ok = time.monotonic()

    @property
    def ok(self) -> bool:
        return time.monotonic() - self.last_ok < STALE_AFTER

    async def run(self) -> None:
        while True:
            try:
                if await asyncio.wait_for(self._store.ping(), TIMEOUT):
                    self.last_ok = time.monotonic()
            except TimeoutError:
                pass
            if self.ok != self._was_ok:
                self._was_ok = self.ok
                log.warning("store_reachable" if self.ok else "store_unreachable")
            await asyncio.sleep(INTERVAL)
