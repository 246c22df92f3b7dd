"""Dead letters: deliveries that gave up, listed per tenant and replayed on request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.jobs.model import DeliveryAttempt, DeliveryState
from gateway.relay.events import webhook_id
from gateway.relay.sources import DeliverySources, Found, Record
from gateway.store.jobs import Conflict


@dataclass(frozen=True)
class DeadLetter:
    job_id: str
    tenant: str
    webhook_id: str
    webhook_url: str | None
    dead_at: datetime
    attempts: list[DeliveryAttempt]


class NotReplayable(Exception):
    """The job has no dead delivery to replay (delivered, pending, or none)."""


class DeadLetters:
    def __init__(self, jobs: DeliverySources) -> None:
        self._jobs = jobs

    async def list(self, tenant: str, since: float = 0.0, limit: int = 100) -> list[DeadLetter]:
        letters = []
        for job_id, dead_at in await self._jobs.dead_letters(tenant, since, limit):
            found = await self._jobs.get(job_id)
            if found is None or found.record.delivery_state is not DeliveryState.DEAD:
                continue  # expired, or replayed meanwhile
            record = found.record
            letters.append(
                DeadLetter(
                    job_id=job_id,
                    tenant=tenant,
                    webhook_id=webhook_id(job_id),
                    webhook_url=record.webhook_url,
                    dead_at=datetime.fromtimestamp(dead_at, UTC),
                    attempts=record.deliveries,
                )
            )
        return letters

    async def replay(self, current: Found) -> Record:
        """Deliver a dead-lettered webhook again: same id, same body, a fresh schedule."""
        for _ in range(8):
            record = current.record.model_copy(deep=True)
            if record.delivery_state is not DeliveryState.DEAD:
                raise NotReplayable(record.delivery_state.value)
            body = await self._jobs.delivery_body(record.id)
            if body is None:
                raise NotReplayable("no webhook body kept")
            record.delivery_state = DeliveryState.PENDING
            record.delivery_base = len(record.deliveries)
            try:
                saved = await self._jobs.redeliver(current, record, body)
            except Conflict:
                fresh = await self._jobs.get(record.id)
                if fresh is None:
                    raise NotReplayable("expired") from None
                current = fresh
                continue
            return saved.record if saved else record
        raise NotReplayable("the job kept changing")

    async def replay_since(self, tenant: str, since: float) -> int:
        replayed = 0
        for letter in await self.list(tenant, since, limit=10_000):
            current = await self._jobs.get(letter.job_id)
            if current is None:
                continue
            try:
                await self.replay(current)
            except NotReplayable:
                continue
            replayed += 1
        return replayed
