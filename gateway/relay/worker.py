"""The durable delivery worker: a consumer of every shard's delivery stream.

Any instance delivers any job's webhook. A delivery is read from the stream (consumer
group `relay`), sent, and its outcome recorded in the job together with the stream
acknowledgement, atomically. A worker that dies mid-delivery leaves the entry pending;
another instance reclaims it after `outbound.visibility_timeout`. Retries wait in a
per-shard sorted set and are moved back onto the stream when due, by one script, no more
at a time than the worker has free slots: a burst of retries (a receiver back up after an
outage) fills the room fresh deliveries leave instead of queueing ahead of them. A slow
receiver host holds at most `outbound.per_host_concurrency` slots (gateway/relay/hosts.py);
its other deliveries are deferred through the same retry set, no attempt counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping

import structlog

from gateway.background import Background
from gateway.config import Outbound
from gateway.ids import SHARDS, shard_of
from gateway.jobs.model import DeliveryAttempt, DeliveryState, utcnow
from gateway.relay.events import webhook_id
from gateway.relay.hosts import Hosts
from gateway.relay.sender import Sender, Verdict
from gateway.relay.sources import DeliverySources, Found, Record
from gateway.store.jobs import Conflict, DeliveryAction
from gateway.store.schedules import DeliveryEntry, Schedules
from observability.logging import get_logger, log_sampled
from observability.metrics import Metrics

log = get_logger(__name__)

BATCH = 64
DELIVERY_LOG_SAMPLE = 1000  # one info line per this many successful deliveries
PAUSE = 0.05  # seconds a non-blocking reader waits when the streams were empty
MAINTAIN_EVERY = 0.25  # seconds between promotions of due retries (and the rest)
PROMOTE_AGAIN = 0.02  # seconds, while due retries are waiting for free slots
TIDY_EVERY = 600.0  # seconds between trims of dead letters and departed consumers
CONSUMER_IDLE = 86_400.0  # a consumer silent this long, holding nothing, is a gone instance


class Relay:
    def __init__(
        self,
        *,
        consumer: str,
        outbound: Outbound,
        jobs: DeliverySources,
        schedules: Schedules,
        sender: Sender,
        tenant_keys: Mapping[str, bytes],
        metrics: Metrics,
        background: Background,
        retention: float,
    ) -> None:
        self._consumer = consumer
        self._retention = retention
        self._outbound = outbound
        self._jobs = jobs
        self._schedules = schedules
        self._sender = sender
        self._keys = tenant_keys
        self._metrics = metrics
        self._background = background
        self._slots = asyncio.Semaphore(outbound.concurrency)
        self._hosts = Hosts(outbound.per_host_concurrency)
        # Keyed by (shard, entry id): entry ids are timestamps, so two shards' streams can
        # hand out the same one.
        self._in_progress: set[tuple[int, str]] = set()
        self._stopping = False
        self._woken = asyncio.Event()
        self._woken_shards: set[int] = set()  # shards where a job ended since the last read
        self._read_all_at = 0.0  # monotonic time of the last read of every shard
        self._promote_from = 0  # the shard whose due retries go first next time
        self.delivered = 0

    def stop_reading(self) -> None:
        """Read no new deliveries; the stream keeps them for the other instances."""
        self._stopping = True

    async def read_loop(self) -> None:
        await self._schedules.ensure_groups()
        shards: set[int] | None = None  # None: every shard
        while not self._stopping:
            await self._slots.acquire()
            self._slots.release()
            if shards is None:
                self._read_all_at = time.monotonic()
            entries = await self._schedules.read_deliveries(
                self._consumer, BATCH, block_ms=1000, shards=shards
            )
            for entry in entries:
                await self._start(entry)
            shards = None
            if not entries and not self._schedules.blocking_reads:
                shards = await self._pause()

    async def _pause(self) -> set[int] | None:
        """No blocking read here (memory://, a cluster, where a read is one command per
        stream): wait until a job ends (wake) or a retry may be due, whichever is first.
        Then read the shards where jobs ended, and every shard at least every PAUSE (a
        promoted retry, or an event that pub/sub dropped)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PAUSE):
                await self._woken.wait()
        self._woken.clear()
        woken, self._woken_shards = self._woken_shards, set()
        if time.monotonic() - self._read_all_at >= PAUSE:
            return None
        return woken

    def wake(self, job_id: str) -> None:
        """A job just ended somewhere: its delivery may be waiting in its shard's stream."""
        try:
            self._woken_shards.add(shard_of(job_id))
        except (IndexError, ValueError):  # not an id of ours: read every shard next
            self._read_all_at = 0.0
        self._woken.set()

    async def maintenance_loop(self) -> None:
        """Promote due retries; reclaim deliveries whose worker went silent; tidy up."""
        last_reclaim = last_tidy = 0.0
        while True:
            if time.monotonic() - last_tidy > min(TIDY_EVERY, self._retention / 2):
                last_tidy = time.monotonic()
                await self._schedules.trim_dead_letters(
                    list(self._keys), time.time() - self._retention
                )
                await self._schedules.forget_idle_consumers(CONSUMER_IDLE)
            backlog = await self._promote()
            reclaim_due = time.monotonic() - last_reclaim > self._outbound.visibility_timeout / 4
            if reclaim_due and not self._stopping:  # a draining instance takes no new work
                last_reclaim = time.monotonic()
                for entry in await self._schedules.reclaim_deliveries(
                    self._consumer, self._outbound.visibility_timeout, BATCH
                ):
                    self._metrics.deliveries_reclaimed.inc()
                    await self._start(entry)
            await asyncio.sleep(PROMOTE_AGAIN if backlog else MAINTAIN_EVERY)

    async def _promote(self) -> bool:
        """Due retries onto the streams, no more than this worker has free slots, taken
        from the shards in turn; whether more may be due (then promote again soon)."""
        free = self._outbound.concurrency - len(self._in_progress)
        if free <= 0:
            return True
        each, extra = divmod(free, SHARDS)
        first = self._promote_from
        self._promote_from = (first + extra) % SHARDS
        limits = {(first + i) % SHARDS: each + (1 if i < extra else 0) for i in range(SHARDS)}
        moved = await self._schedules.promote_retries(time.time(), limits)
        # Fewer free slots than shards: the other shards' turn comes soon.
        return each == 0 or any(n >= limits[shard] for shard, n in moved.items())

    async def _start(self, entry: DeliveryEntry) -> None:
        key = (entry[0], entry[1])
        if key in self._in_progress:
            return
        await self._slots.acquire()
        self._in_progress.add(key)
        self._background.spawn(self._deliver_one(entry), name=f"deliver-{entry[2]}")

    async def _deliver_one(self, entry: DeliveryEntry) -> None:
        try:
            await self.deliver(entry)
        finally:
            self._in_progress.discard((entry[0], entry[1]))
            self._slots.release()

    async def deliver(self, entry: DeliveryEntry) -> None:
        job_id = entry[2]
        structlog.contextvars.bind_contextvars(job_id=job_id)  # a task of its own
        current, body = await self._jobs.for_delivery(job_id)
        record = current.record if current is not None else None
        if current is None or record is None or body is None or record.webhook_url is None:
            await self._schedules.drop_delivery(entry)  # expired or nothing to deliver
            return
        if record.delivery_state is not DeliveryState.PENDING:
            await self._schedules.drop_delivery(entry)  # a duplicate entry (replay race, reclaim)
            return
        key = self._keys.get(record.tenant)
        if key is None:
            log.error("delivery_tenant_unknown", job_id=job_id, tenant=record.tenant)
            await self._schedules.drop_delivery(entry)
            return
        host = Hosts.of(record.webhook_url)
        ticket = self._hosts.start(host)
        if ticket is None:  # a slow receiver at its share of the slots: later, in its turn
            again_at = self._hosts.defer_until(host, time.time())
            await self._schedules.drop_delivery(entry, again_at=again_at)
            self._metrics.deliveries_deferred.labels(record.tenant).inc()
            return
        started = time.monotonic()
        try:
            sent = await self._sender.send(record.webhook_url, key, webhook_id(job_id), body)
        finally:
            self._hosts.done(host, ticket, time.monotonic() - started)
        self._metrics.delivery_duration.observe((sent.attempt.duration_ms or 0) / 1000)
        action, due = self._next_step(record, sent.verdict, sent.retry_after)
        self._metrics.deliveries.labels(record.tenant, sent.attempt.outcome).inc()
        first = not any(a.outcome == "delivered" for a in record.deliveries)
        if action == "done" and first and record.completed_at is not None:
            lag = (utcnow() - record.completed_at).total_seconds()
            self._metrics.delivery_lag.labels(record.tenant).observe(max(0.0, lag))
        await self._record(entry, current, sent.attempt, action, due)
        # Every retry and dead letter at info; successes at debug, with a sampled info line,
        # so the log costs little at 1,000s of deliveries a second.
        self.delivered += action == "done"
        sampled = action != "done" or self.delivered % DELIVERY_LOG_SAMPLE == 1
        log_sampled(
            log,
            sampled,
            "webhook_delivery",
            job_id=job_id,
            tenant=record.tenant,
            outcome=sent.attempt.outcome,
            status=sent.attempt.status,
            next=action,
        )

    async def _record(
        self,
        entry: DeliveryEntry,
        current: Found,
        attempt: DeliveryAttempt,
        action: DeliveryAction,
        due: float,
    ) -> None:
        state = {
            "done": DeliveryState.DELIVERED,
            "retry": DeliveryState.PENDING,
            "dead": DeliveryState.DEAD,
        }
        for _ in range(8):
            # This delivery read its own copy of the record: change it in place (no deep
            # copy); on a conflict it is dropped and a fresh one read.
            record = current.record
            record.deliveries.append(attempt)
            record.delivery_state = state[action]
            try:
                await self._jobs.save_delivery(
                    current, record, entry_id=entry[1], action=action, retry_due=due
                )
                return
            except Conflict:
                fresh = await self._jobs.get(current.record.id)
                if fresh is None:
                    await self._schedules.drop_delivery(entry)
                    return
                current = fresh
        log.error("delivery_record_conflict", job_id=current.record.id)

    def _next_step(
        self, record: Record, verdict: Verdict, retry_after: float | None
    ) -> tuple[DeliveryAction, float]:
        if verdict is Verdict.DELIVERED:
            return "done", 0.0
        if verdict in (Verdict.DISABLED, Verdict.REFUSED):
            return "dead", 0.0
        schedule = self._outbound.schedule
        made = len(record.deliveries) - record.delivery_base + 1  # this round, this one included
        if made >= len(schedule):
            return "dead", 0.0
        delay = schedule[made] * (1 + random.uniform(-self._outbound.jitter, self._outbound.jitter))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return "retry", time.time() + delay
