"""Where the relay finds what it delivers: jobs (`gen_…`) or tunes (`tune_…`), by id.

Both live in the job shards and share their delivery streams, retry sets and dead-letter
sets, so one relay delivers, retries, dead-letters and replays both; only reading and
recording go to the store that keeps each kind.
"""

from __future__ import annotations

from gateway import ids
from gateway.jobs.model import JobRecord
from gateway.store.jobs import DeliveryAction, JobStore, Versioned
from gateway.tunes.model import TuneRecord
from gateway.tunes.store import TuneStore, VersionedTune

Record = JobRecord | TuneRecord
Found = Versioned | VersionedTune


class DeliverySources:
    def __init__(self, jobs: JobStore, tunes: TuneStore) -> None:
        self.jobs = jobs
        self.tunes = tunes

    async def get(self, record_id: str) -> Found | None:
        if ids.is_tune_id(record_id):
            return await self.tunes.get(record_id)
        return await self.jobs.get(record_id)

    async def for_delivery(self, record_id: str) -> tuple[Found | None, bytes | None]:
        """The record and its webhook body, in one read."""
        if ids.is_tune_id(record_id):
            return await self.tunes.for_delivery(record_id)
        return await self.jobs.for_delivery(record_id)

    async def delivery_body(self, record_id: str) -> bytes | None:
        if ids.is_tune_id(record_id):
            return await self.tunes.delivery_body(record_id)
        return await self.jobs.delivery_body(record_id)

    async def save_delivery(
        self,
        current: Found,
        record: Record,
        *,
        entry_id: str,
        action: DeliveryAction,
        retry_due: float = 0.0,
    ) -> Found | None:
        if isinstance(current, VersionedTune) and isinstance(record, TuneRecord):
            return await self.tunes.save_delivery(
                current, record, entry_id=entry_id, action=action, retry_due=retry_due
            )
        assert isinstance(current, Versioned)
        assert isinstance(record, JobRecord)
        return await self.jobs.save_delivery(
            current, record, entry_id=entry_id, action=action, retry_due=retry_due
        )

    async def redeliver(self, current: Found, record: Record, body: bytes) -> Found | None:
        if isinstance(current, VersionedTune) and isinstance(record, TuneRecord):
            return await self.tunes.redeliver(current, record, body)
        assert isinstance(current, Versioned)
        assert isinstance(record, JobRecord)
        return await self.jobs.redeliver(current, record, body)

    async def dead_letters(self, tenant: str, since: float, limit: int) -> list[tuple[str, float]]:
        return await self.jobs.dead_letters(tenant, since, limit)
