"""A succeeded job's usage and estimated cost, from its record and its backend's price."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config import Price
from gateway.jobs.model import JobRecord, JobStatus, JobUsage
from gateway.store.usage import UsageEntry


def measure(record: JobRecord, price: Price) -> JobUsage:
    """Images delivered, their megapixel-steps, provider time, and what that costs.

    Megapixel-steps are the accepted plan's work (as the backend was asked to run it)
    scaled to the images actually delivered; provider seconds run from the first
    submission to the result, as the gateway saw them.
    """
    parts = record.current_parts()
    images = len(record.images)
    requested = sum(p.images_requested for p in parts) or images or 1
    work = record.work_per_slot * len(record.reserved)
    mps = round(work * images / requested, 6)
    started = [p.submitted_at for p in parts if p.submitted_at is not None]
    seconds = round(
        max(0.0, (record.completed_at - min(started)).total_seconds())
        if started and record.completed_at is not None
        else 0.0,
        3,
    )
    # From the rounded figures, so anyone can recompute a job's cost from its usage.
    cost = price.per_image * images + price.per_megapixel_step * mps + price.per_second * seconds
    return JobUsage(
        images=images, megapixel_steps=mps, provider_seconds=seconds, cost=round(cost, 6)
    )


class Accountant:
    """Prices succeeded jobs; the updater records the result with the final transition."""

    def __init__(self, prices: Mapping[str, Price], retention_days: int) -> None:
        self._prices = prices
        self._ttl = retention_days * 86400.0

    def __call__(self, record: JobRecord) -> UsageEntry | None:
        if record.status is not JobStatus.SUCCEEDED or not record.backend:
            return None
        usage = measure(record, self._prices.get(record.backend, Price()))
        record.usage = usage
        completed = record.completed_at or record.updated_at
        return UsageEntry(
            tenant=record.tenant,
            backend=record.backend,
            day=completed.date().isoformat(),  # YYYY-MM-DD, without strftime's format parsing
            images=usage.images,
            megapixel_steps=usage.megapixel_steps,
            provider_seconds=usage.provider_seconds,
            cost=usage.cost,
            ttl=self._ttl,
        )
