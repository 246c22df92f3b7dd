"""Fleet-wide tenant rate limits: GCRA in one Redis script, so every instance shares it."""

from __future__ import annotations

from gateway.store import keys
from gateway.store.connect import Store


class RateLimiter:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def acquire(self, tenant: str, per_second: float, burst: int) -> float:
        """0 when allowed; otherwise the seconds until the next request would be."""
        interval_ms = 1000.0 / per_second
        wait_ms = await self._store.run(
            "RATE_LIMIT",
            [keys.rate_bucket(tenant)],
            [f"{interval_ms:.3f}", f"{(burst - 1) * interval_ms:.3f}"],
        )
        return int(wait_ms) / 1000
