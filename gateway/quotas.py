"""Tenant quotas at admission: monthly spend, jobs in flight, images per day (fleet-wide).

A job is admitted (counted in flight, its images counted for the day) just before it is
created, and counts in flight until it ends: `finished` runs with its final transition.
An admission also expires at the job's deadline, and a reaper drops members whose job
ended or never came to exist, so no crash holds a slot for ever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.config import Tenant
from gateway.errors import GatewayError, QuotaExceeded, RateLimited
from gateway.store.quotas import QuotaStore, Refused
from gateway.store.usage import MICRO
from observability.logging import get_logger
from observability.metrics import Metrics

log = get_logger(__name__)

DAY = 86400.0
REAP_EVERY = 5.0
REAP_GRACE = 30.0  # an admission younger than this may still be creating its job
CONCURRENCY_RETRY = 1  # seconds: a slot frees when any of the tenant's jobs ends


def daily_window(now: float, reset_hour: int) -> tuple[int, float]:
    """The tenant's current day (an index) and the epoch second it ends."""
    window = int((now - reset_hour * 3600) // DAY)
    return window, (window + 1) * DAY + reset_hour * 3600


def month_bounds(now: float) -> tuple[str, float]:
    """The UTC calendar month (YYYY-MM) and the epoch second the next one starts."""
    today = datetime.fromtimestamp(now, UTC)
    start = today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m"), following.timestamp()


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def over_limit(
    tenant: str, limit: str, value: float, resets_at: float | None, retry_after: float | None,
    **extra: Any,
) -> GatewayError:  # fmt: skip
    """The 429: `details[0]` names the limit, its value and when it resets."""
    error: type[GatewayError] = QuotaExceeded if limit != "rate_limit" else RateLimited
    headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))} if retry_after else {}
    return error(
        f"tenant {tenant} is over its {limit.replace('_', ' ')} ({value:g})",
        details=[{"limit": limit, "value": value, "resets_at": _iso(resets_at), **extra}],
        headers=headers,
    )


class Quotas:
    def __init__(
        self,
        store: QuotaStore,
        tenants: Sequence[Tenant],
        metrics: Metrics,
        *,
        result_timeout: float,
    ) -> None:
        self._store = store
        self._tenants = {t.name: t for t in tenants}
        self._metrics = metrics
        self._result_timeout = result_timeout

    def refuse(self, tenant: str, limit: str, *args: Any, **extra: Any) -> GatewayError:
        self._metrics.quota_rejections.labels(tenant, limit).inc()
        return over_limit(tenant, limit, *args, **extra)

    async def admit(self, tenant: Tenant, job_id: str, images: int, deadline: float) -> None:
        """Count the job against the tenant's quotas, or raise the 429 that says which."""
        q = tenant.quotas
        now = time.time()
        if q.monthly_spend is not None:
            month, next_month = month_bounds(now)
            spent = await self._store.month_spend(tenant.name, month) / MICRO
            if spent >= q.monthly_spend:
                raise self.refuse(
                    tenant.name, "monthly_spend", q.monthly_spend, next_month, next_month - now,
                    used=round(spent, 6),
                )  # fmt: skip
        if q.concurrency is None and q.daily_images is None:
            return
        window, resets = daily_window(now, q.daily_reset_hour)
        admission = await self._store.admit(
            tenant.name, job_id, now=now, expires=deadline, concurrency=q.concurrency,
            images=images, daily=q.daily_images, window=window, window_ttl=resets - now + DAY,
        )  # fmt: skip
        if admission.refused is Refused.CONCURRENCY:
            assert q.concurrency is not None
            raise self.refuse(
                tenant.name, "concurrency", q.concurrency, None, CONCURRENCY_RETRY,
                used=admission.used,
            )  # fmt: skip
        if admission.refused is Refused.DAILY_IMAGES:
            assert q.daily_images is not None
            raise self.refuse(
                tenant.name, "daily_images", q.daily_images, resets, resets - now,
                used=admission.used, requested=images,
            )  # fmt: skip

    async def undo(self, tenant: Tenant, job_id: str, images: int) -> None:
        """The admitted job was not created after all (an idempotent replay, a full queue)."""
        q = tenant.quotas
        if q.concurrency is None and q.daily_images is None:
            return
        window, _ = daily_window(time.time(), q.daily_reset_hour)
        await self._store.release(
            tenant.name, job_id, window=window, images=images if q.daily_images else 0
        )

    async def finished(self, tenant: str, job_id: str) -> None:
        """The job ended: it no longer counts in flight."""
        config = self._tenants.get(tenant)
        if config is not None and config.quotas.concurrency is not None:
            await self._store.finished(tenant, job_id)

    async def reap(self) -> int:
        """Drop in-flight members whose job ended or was never created (a crash between)."""
        dropped = 0
        admitted_before = time.time() - REAP_GRACE
        for tenant in self._tenants.values():
            if tenant.quotas.concurrency is None:
                continue
            members = await self._store.in_flight(tenant.name)
            old = [
                job for job, expires in members if expires - self._result_timeout < admitted_before
            ]
            gone = await self._store.ended(old)
            await self._store.forget(tenant.name, gone)
            dropped += len(gone)
        return dropped

    async def reap_loop(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY)
            if dropped := await self.reap():
                log.info("quota_slots_reaped", count=dropped)
