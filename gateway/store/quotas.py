"""Fleet-wide tenant quotas in Redis: jobs in flight and images per day, one script each."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from gateway.ids import SHARDS
from gateway.jobs.model import FINAL_STATUSES
from gateway.store import keys
from gateway.store.connect import Store

FINAL = frozenset(s.value for s in FINAL_STATUSES)


class Refused(IntEnum):
    NO = 0
    CONCURRENCY = 1
    DAILY_IMAGES = 2


@dataclass(frozen=True)
class Admission:
    refused: Refused
    used: int  # jobs in flight, or images counted today, when refused


class QuotaStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def admit(
        self,
        tenant: str,
        job_id: str,
        *,
        now: float,
        expires: float,
        concurrency: int | None,
        images: int,
        daily: int | None,
        window: int,
        window_ttl: float,
    ) -> Admission:
        refused, used = await self._store.run(
            "QUOTA_ADMIT",
            [keys.tenant_inflight(tenant), keys.tenant_daily(tenant, window)],
            [
                int(now * 1000),
                job_id,
                int(expires * 1000),
                concurrency or 0,
                images,
                daily or 0,
                int(window_ttl * 1000),
            ],
        )
        return Admission(Refused(int(refused)), int(used))

    async def release(self, tenant: str, job_id: str, *, window: int, images: int) -> None:
        """Undo an admission; `images` > 0 also gives the day's images back."""
        await self._store.run(
            "QUOTA_RELEASE",
            [keys.tenant_inflight(tenant), keys.tenant_daily(tenant, window)],
            [job_id, images],
        )

    async def finished(self, tenant: str, job_id: str) -> None:
        """Joins the turn's batch: it runs with every ended job of a concurrency-capped tenant."""
        await self._store.command("ZREM", keys.tenant_inflight(tenant), job_id)

    async def in_flight(self, tenant: str) -> list[tuple[str, float]]:
        """(job id, admission expiry) of the tenant's jobs counted as in flight."""
        key = keys.tenant_inflight(tenant)
        found: Any = await self._store.redis.zrange(key, 0, -1, withscores=True)
        return [(m.decode(), float(score) / 1000) for m, score in found]

    async def forget(self, tenant: str, job_ids: list[str]) -> None:
        if job_ids:
            await self._store.redis.zrem(keys.tenant_inflight(tenant), *job_ids)

    async def ended(self, job_ids: list[str]) -> list[str]:
        """Those of `job_ids` whose job is final or gone."""
        if not job_ids:
            return []
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job(job_id), "s")
            statuses = await pipe.execute()
        return [
            job_id
            for job_id, status in zip(job_ids, statuses, strict=True)
            if status is None or status.decode() in FINAL
        ]

    async def month_spend(self, tenant: str, month: str) -> int:
        """Cost recorded this month, in millionths, summed over the job shards: read at every
        admission of a tenant with a monthly cap, so the reads join the turn's batch."""
        found = await asyncio.gather(
            *(self._store.command("HGET", keys.spend_month(shard, month), tenant)
              for shard in range(SHARDS))
        )  # fmt: skip
        return sum(int(v) for v in found if v is not None)
