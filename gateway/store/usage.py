"""Usage per tenant in Redis: written with a job's final transition, read summed by day.

Each of the 16 job shards keeps, per tenant and UTC day, a hash of `<backend>|<counter>`
integers (jobs, images, megapixel-steps and cost in millionths, provider milliseconds),
so a job's usage is one HINCRBY set inside the script that makes it succeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.ids import SHARDS
from gateway.store import keys
from gateway.store.connect import Store

MICRO = 1_000_000
COUNTERS = ("jobs", "images", "mps", "ms", "cost")


def micros(value: float) -> int:
    return round(value * MICRO)


@dataclass(frozen=True)
class UsageEntry:
    """One succeeded job's usage, as the finishing script records it."""

    tenant: str
    backend: str
    day: str  # YYYY-MM-DD (UTC) of completion
    images: int
    megapixel_steps: float
    provider_seconds: float
    cost: float
    ttl: float  # seconds the day's record is kept

    @property
    def month(self) -> str:
        return self.day[:7]

    def keys(self, shard: int) -> list[str]:
        return [keys.usage_day(shard, self.tenant, self.day), keys.spend_month(shard, self.month)]

    def args(self) -> list[str | int | bytes]:
        return [
            self.backend,
            self.images,
            micros(self.megapixel_steps),
            round(self.provider_seconds * 1000),
            micros(self.cost),
            int(self.ttl * 1000),
            self.tenant,
        ]


@dataclass
class Totals:
    """Summed counters; megapixel-steps and cost in millionths, provider time in ms."""

    jobs: int = 0
    images: int = 0
    mps: int = 0
    ms: int = 0
    cost: int = 0

    def add(self, counter: str, value: int) -> None:
        setattr(self, counter, getattr(self, counter) + value)

    def add_all(self, other: Totals) -> None:
        for counter in COUNTERS:
            self.add(counter, getattr(other, counter))

    def view(self) -> dict[str, float | int]:
        return {
            "jobs": self.jobs,
            "images": self.images,
            "megapixel_steps": self.mps / MICRO,
            "provider_seconds": self.ms / 1000,
            "cost": self.cost / MICRO,
        }


@dataclass
class DayUsage:
    tenant: str
    day: str
    backends: dict[str, Totals] = field(default_factory=dict)


class UsageStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def days(self, tenants: Sequence[str], days: Sequence[str]) -> list[DayUsage]:
        """Usage per (tenant, day, backend), summed over the shards, in one round trip."""
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                for day in days:
                    for shard in range(SHARDS):
                        pipe.hgetall(keys.usage_day(shard, tenant, day))
            replies = iter(await pipe.execute())
        found = []
        for tenant in tenants:
            for day in days:
                usage = DayUsage(tenant, day)
                for _ in range(SHARDS):
                    for raw_field, raw_value in next(replies).items():
                        backend, _, counter = raw_field.decode().rpartition("|")
                        if counter in COUNTERS:
                            usage.backends.setdefault(backend, Totals()).add(
                                counter, int(raw_value)
                            )
                if usage.backends:
                    found.append(usage)
        return found
