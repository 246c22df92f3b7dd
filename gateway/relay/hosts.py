"""Receiver hosts on this instance: a slow one may hold only a few delivery slots.

A delivery holds one of `outbound.concurrency` slots until its receiver answers, for up to
`outbound.timeout`. A tenant's endpoint that accepts connections and answers late (or
never) would otherwise end up holding every slot, and every other tenant's webhooks would
wait behind it. A host is slow once its deliveries take `SLOW` seconds or more (a moving
average), or one of them has been out that long; a slow host gets at most
`outbound.per_host_concurrency` deliveries in flight, and the rest come back later, spread
at the pace it answers at. A fast host, or one not seen yet, may use every slot (a burst
to one quick receiver is not held back).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

SLOW = 1.0  # seconds: a host whose deliveries take this long is capped
ALPHA = 0.2  # weight of the newest duration in the moving average
MIN_DEFER = 0.5  # seconds: the soonest a deferred delivery comes back
MAX_DEFER = 3600.0  # seconds: the latest (a long backlog at a very slow host)
REMEMBERED = 10_000  # hosts whose speed is kept (the least recently used go first)


class Hosts:
    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._out: dict[str, dict[int, float]] = {}  # host -> {delivery: started}
        self._seconds: dict[str, float] = {}  # host -> moving average of a delivery
        self._next: dict[str, float] = {}  # host -> when its last deferred one is due
        self._ticket = 0

    @staticmethod
    def of(url: str) -> str:
        """The host (and port) a webhook URL's deliveries go to."""
        parts = urlsplit(url)
        return f"{(parts.hostname or '').lower()}:{parts.port or parts.scheme}"

    def slow(self, host: str) -> bool:
        if self._seconds.get(host, 0.0) >= SLOW:
            return True
        out = self._out.get(host)
        if not out:
            return False
        return self._clock() - min(out.values()) >= SLOW

    def start(self, host: str) -> int | None:
        """A ticket for a delivery to `host`, or None when a slow host is at its limit."""
        out = self._out.get(host)
        if out is None:
            out = self._out[host] = {}
        elif len(out) >= self._limit and self.slow(host):
            return None
        self._ticket += 1
        out[self._ticket] = self._clock()
        return self._ticket

    def done(self, host: str, ticket: int, seconds: float) -> None:
        out = self._out.get(host)
        if out is not None:
            out.pop(ticket, None)
            if not out:
                del self._out[host]
        average = self._seconds.pop(host, None)  # re-inserted: the newest last
        self._seconds[host] = seconds if average is None else average + ALPHA * (seconds - average)
        if len(self._seconds) > REMEMBERED:
            forgotten = next(iter(self._seconds))
            del self._seconds[forgotten]
            self._next.pop(forgotten, None)

    def defer_until(self, host: str, now: float) -> float:
        """When a delivery over the limit comes back (epoch seconds): after those deferred
        before it, at the pace the host answers its `limit` deliveries at."""
        pace = max(self._seconds.get(host, SLOW), SLOW) / self._limit
        due = min(max(now + MIN_DEFER, self._next.get(host, 0.0)) + pace, now + MAX_DEFER)
        self._next[host] = due
        return due
