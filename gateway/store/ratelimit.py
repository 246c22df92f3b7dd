"""Fleet-wide tenant rate limits: GCRA in one Redis script, so every instance shares it.

A busy tenant's tokens are taken a few at a time (a lease) while the shared bucket has
room: the instance hands them out locally, and the submit path skips a Redis round trip
for most requests. A lease holds at most `LEASE_SHARE` of a second's tokens (and
`LEASE_MAX`), so N instances may admit at most N such leases above the limit in any
window; a tenant slower than `1 / LEASE_SHARE` per second is decided in Redis request by
request, exactly. Tokens left when a lease expires go back with the next call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.store import keys
from gateway.store.connect import Store

LEASE_SHARE = 0.02  # of the per-second rate: 20 ms worth of tokens
LEASE_MAX = 32
LEASE_TTL = 1.0  # seconds a leased token stays usable


@dataclass(slots=True)
class _Lease:
    tokens: int
    until: float  # monotonic


def lease_size(per_second: float) -> int:
    """Tokens to ask for at once: 1 (no lease) below 100 per second."""
    return max(1, min(LEASE_MAX, int(per_second * LEASE_SHARE)))


class RateLimiter:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._asking: set[str] = set()  # tenants with a lease being taken

    async def acquire(self, tenant: str, per_second: float, burst: int) -> float:
        """0 when allowed; otherwise the seconds until the next request would be."""
        now = self._clock()
        lease = self._leases.get(tenant)
        if lease is not None and lease.tokens > 0 and now < lease.until:
            lease.tokens -= 1
            return 0.0
        want = lease_size(per_second)
        if want == 1 or tenant in self._asking:
            # One at a time: while a lease is being taken, others ask for their own token
            # (no pile of leases when many requests find the last one empty together).
            return await self._take(tenant, per_second, burst, 1, 0)
        refund = 0
        if lease is not None:  # used up, or expired: what is left goes back
            refund, lease.tokens = lease.tokens, 0
        self._asking.add(tenant)
        try:
            wait = await self._take(tenant, per_second, burst, want, refund)
        finally:
            self._asking.discard(tenant)
        return wait

    async def _take(
        self, tenant: str, per_second: float, burst: int, want: int, refund: int
    ) -> float:
        interval_ms = 1000.0 / per_second
        wait_ms, granted = await self._store.run(
            "RATE_LIMIT",
            [keys.rate_bucket(tenant)],
            [f"{interval_ms:.3f}", f"{(burst - 1) * interval_ms:.3f}", want, refund],
        )
        if granted == 0:
            return int(wait_ms) / 1000
        if want > 1 and granted > 1:  # the one asked for is this call's; the rest wait here
            self._leases[tenant] = _Lease(granted - 1, self._clock() + LEASE_TTL)
        return 0.0
