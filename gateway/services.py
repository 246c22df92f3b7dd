"""Everything one gateway instance runs, built once from the settings."""

from __future__ import annotations

import random
import secrets
import socket
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver

from adapters.httpclient import HttpClient
from adapters.registry import ADAPTERS
from gateway.auth import Directory
from gateway.background import Background
from gateway.config import Settings
from gateway.dispatch import Dispatcher
from gateway.drain import Drain, hand_back
from gateway.fleet_sync import FleetSync
from gateway.held import HeldReservations
from gateway.inbound import Inbound
from gateway.jobs.model import JobRecord, JobStatus
from gateway.jobs.updater import JobUpdater
from gateway.poller import Poller
from gateway.queue_runner import QueueRunner
from gateway.quotas import Quotas
from gateway.relay.dead_letters import DeadLetters
from gateway.relay.guard import GuardedResolver, OutboundGuard
from gateway.relay.sender import Sender
from gateway.relay.signing import secret_key
from gateway.relay.sources import DeliverySources
from gateway.relay.worker import Relay
from gateway.shared_gauges import SharedGauges
from gateway.store import Store, open_store
from gateway.store.events import JobEvents
from gateway.store.fleet import FleetStore
from gateway.store.health import StoreHealth
from gateway.store.jobs import JobStore
from gateway.store.queue import GatewayQueue
from gateway.store.quotas import QuotaStore
from gateway.store.ratelimit import RateLimiter
from gateway.store.schedules import Schedules
from gateway.store.usage import UsageStore
from gateway.tunes.service import Tunes, build_tunes
from gateway.usage import Accountant
from observability.metrics import Metrics
from routing.backends import Backend
from routing.eligibility import Eligibility
from routing.policies import make_policy
from routing.router import Completion, EjectionRules, Router
from routing.view import FleetView


@dataclass
class Services:
    settings: Settings
    instance_id: str
    metrics: Metrics
    store: Store
    jobs: JobStore
    schedules: Schedules
    fleet: FleetStore
    rate: RateLimiter
    events: JobEvents
    backends: dict[str, Backend]
    eligibility: Eligibility
    view: FleetView
    router: Router
    directory: Directory
    guard: OutboundGuard
    updater: JobUpdater
    dispatcher: Dispatcher
    queue: GatewayQueue
    runner: QueueRunner
    inbound: Inbound
    poller: Poller
    relay: Relay
    sync: FleetSync
    held: HeldReservations
    quotas: Quotas
    usage: UsageStore
    dead_letters: DeadLetters
    tunes: Tunes
    deliveries: DeliverySources
    store_health: StoreHealth
    shared_gauges: SharedGauges
    background: Background
    drain: Drain
    provider_session: HttpClient
    outbound_session: HttpClient

    async def close(self) -> None:
        """Stop loops (one-off tasks get a grace), hand back unsettled slots, disconnect."""
        share = self.settings.shutdown.drain_seconds / 8  # twice: a quarter in all
        await self.background.stop(grace=min(5.0, share), deadline=min(10.0, share))
        await hand_back(self)
        await self.provider_session.close()
        await self.outbound_session.close()
        await self.store.close()


def completion(record: JobRecord) -> Completion | None:
    """What a succeeded job teaches its backend: submit-to-result time for its work."""
    if record.status is not JobStatus.SUCCEEDED or not record.backend or record.work_per_slot <= 0:
        return None
    parts = record.current_parts()
    started = [p.submitted_at for p in parts if p.submitted_at is not None]
    if not started or record.completed_at is None:
        return None
    # Each part ran on its own slot: the first one's service interval teaches the speed
    # (work_per_slot is per part) and, overlapping with others', the parallelism.
    return Completion(
        seconds=(record.completed_at - min(started)).total_seconds(),
        work=record.work_per_slot,
        backlog=record.backlog,
        service=next((p.service for p in parts if p.service is not None), None),
        tag=f"{record.id}.{parts[0].n}",
    )


def build_backends(settings: Settings) -> dict[str, Backend]:
    return {
        cfg.name: Backend(
            name=cfg.name,
            adapter=ADAPTERS[cfg.adapter].create(cfg.target()),
            max_concurrency=cfg.max_concurrency,
            parallelism=cfg.parallelism or 0,
            weight=cfg.weight,
            tags=frozenset(cfg.tags),
            models=cfg.models,
            order=position,
        )
        for position, cfg in enumerate(settings.backends)
    }


async def build_services(
    settings: Settings, metrics: Metrics, resolver: AbstractResolver | None = None
) -> Services:
    instance_id = settings.instance_id or f"{socket.gethostname()}-{secrets.token_hex(3)}"
    store = await open_store(settings.store, metrics)
    backends = build_backends(settings)
    view = FleetView(
        {name: b.runs_at_once for name, b in backends.items()},
        speed_prior=settings.routing.speed_prior,
        limits={name: b.limit for name, b in backends.items()},
        learning=frozenset(name for name, b in backends.items() if b.learns_parallelism),
    )
    fleet = FleetStore(store, list(backends))
    rules = settings.routing.ejection
    router = Router(
        make_policy(settings.routing.strategy, random.Random()),
        view,
        fleet,
        lease=settings.routing.reservation_lease,
        ejection=EjectionRules(
            rules.consecutive_failures, rules.base_time, rules.max_time, rules.max_share
        ),
    )
    jobs = JobStore(store, retention=settings.jobs.retention, live_ttl=settings.jobs.result_timeout)
    schedules = Schedules(store)
    held = HeldReservations()
    background = Background()
    # Provider URLs are operator-configured and trusted: no SSRF guard on this client. It
    # keeps no cookies (one key's answers never shape another key's requests).
    provider_session = HttpClient()
    guard = OutboundGuard(
        settings.outbound.allow_networks,
        allow_http=settings.outbound.allow_http,
        resolver=resolver,
        resolve_timeout=settings.outbound.resolve_timeout,
    )
    # Every address a receiver's name resolves to passes the guard before a connection is
    # made; no cookies ride along from one delivery to the next.
    outbound_session = HttpClient(resolver=GuardedResolver(guard))

    queue = GatewayQueue(
        store, settings.routing.queue_bound, {t.name: t.weight for t in settings.tenants}
    )
    runner_ref: list[QueueRunner] = []
    quotas = Quotas(
        QuotaStore(store), settings.tenants, metrics, result_timeout=settings.jobs.result_timeout
    )

    async def on_end(record: JobRecord) -> None:
        """Its slots free up and its backend learns from it: one script, safe to run twice
        (FINISH learns only when it released the members), sent with the final save."""
        if record.backend and record.reserved:
            done = completion(record)
            if done is None:
                await router.release(record.backend, record.reserved)
            else:
                await router.finish(record.backend, record.reserved, done)
            held.drop(record.backend, record.reserved)

    async def on_final(record: JobRecord) -> None:
        if record.backend and record.reserved:
            for runner in runner_ref:
                runner.wake()  # slots were freed (on_end)
        elif record.backend and (done := completion(record)) is not None:
            await router.learn(record.backend, done)  # not idempotent: once it is saved
        await quotas.finished(record.tenant, record.id)
        metrics.jobs.labels(record.tenant, record.status.value).inc()
        if record.usage is not None and record.backend:
            metrics.usage_images.labels(record.tenant, record.backend).inc(record.usage.images)
            metrics.usage_cost.labels(record.tenant, record.backend).inc(record.usage.cost)
        if record.completed_at is not None:
            metrics.job_duration.labels(record.backend or "none", record.status.value).observe(
                (record.completed_at - record.created_at).total_seconds()
            )

    updater = JobUpdater(
        jobs,
        on_final,
        on_end=on_end,
        account=Accountant(
            {b.name: b.price for b in settings.backends}, settings.usage.retention_days
        ),
    )
    eligibility = Eligibility(
        list(backends.values()), {t.name: t.backends for t in settings.tenants}
    )
    tunes = build_tunes(
        settings=settings,
        store=store,
        backends=backends,
        eligibility=eligibility,
        router=router,
        session=provider_session,
        metrics=metrics,
        background=background,
    )
    deliveries = DeliverySources(jobs, tunes.store)
    dispatcher = Dispatcher(
        settings=settings,
        router=router,
        eligibility=eligibility,
        backends=backends,
        updater=updater,
        session=provider_session,
        held=held,
        metrics=metrics,
        evaluate=tunes.models.evaluate,  # resolves `model: tune:<id>` on a later dispatch
    )
    events = JobEvents(store)
    runner = QueueRunner(
        queue=queue,
        jobs=jobs,
        dispatcher=dispatcher,
        router=router,
        backends=backends,
        view=view,
        metrics=metrics,
        interactive_reserve=settings.routing.interactive_reserve,
    )
    runner_ref.append(runner)
    # A job ending on any instance frees a slot somewhere: look at the queue.
    events.subscribe(lambda _job, _status: runner.wake())
    services = Services(
        settings=settings,
        instance_id=instance_id,
        metrics=metrics,
        store=store,
        jobs=jobs,
        schedules=schedules,
        fleet=fleet,
        rate=RateLimiter(store),
        events=events,
        backends=backends,
        eligibility=eligibility,
        view=view,
        router=router,
        directory=Directory(settings.tenants, settings.admin_keys),
        guard=guard,
        updater=updater,
        dispatcher=dispatcher,
        queue=queue,
        runner=runner,
        inbound=Inbound(jobs=jobs, updater=updater, backends=backends, metrics=metrics),
        poller=Poller(
            settings=settings,
            jobs=jobs,
            schedules=schedules,
            updater=updater,
            queue=queue,
            router=router,
            backends=backends,
            session=provider_session,
            metrics=metrics,
            background=background,
        ),
        relay=Relay(
            consumer=instance_id,
            outbound=settings.outbound,
            jobs=deliveries,
            schedules=schedules,
            sender=Sender(outbound_session, guard, settings.outbound.timeout),
            tenant_keys={
                t.name: secret_key(t.webhook_secret.get_secret_value()) for t in settings.tenants
            },
            metrics=metrics,
            background=background,
            retention=settings.jobs.retention,
        ),
        sync=FleetSync(
            settings=settings,
            fleet=fleet,
            view=view,
            held=held,
            router=router,
            backends=backends,
            session=provider_session,
            metrics=metrics,
        ),
        held=held,
        dead_letters=DeadLetters(deliveries),
        tunes=tunes,
        deliveries=deliveries,
        quotas=quotas,
        usage=UsageStore(store),
        store_health=StoreHealth(store),
        shared_gauges=SharedGauges(
            jobs=jobs,
            queue=queue,
            schedules=schedules,
            tenants=[t.name for t in settings.tenants],
            metrics=metrics,
        ),
        background=background,
        drain=Drain(),
        provider_session=provider_session,
        outbound_session=outbound_session,
    )
    # ... and may have left a webhook to send (readers that cannot block wait for this).
    events.subscribe(lambda job_id, _status: services.relay.wake(job_id))
    return services


async def start_background(services: Services) -> None:
    """First refresh synchronously (routing needs a view), then every loop."""
    await services.schedules.ensure_groups()
    await services.sync.refresh()
    # Both just talked to the store; on a loaded machine startup can outlast STALE_AFTER
    # before the health loop's first ping, which would make a fresh instance look unready.
    services.store_health.answered()
    bg = services.background
    bg.start("store-health", services.store_health.run)
    bg.start("events", services.events.run)
    bg.start("fleet-refresh", services.sync.refresh_loop)
    bg.start("lease-renewal", services.sync.renew_loop)
    bg.start("probes", services.sync.probe_loop)
    bg.start("poller", services.poller.run)
    bg.start("queue", services.runner.run)
    bg.start("relay-read", services.relay.read_loop)
    bg.start("relay-maintenance", services.relay.maintenance_loop)
    bg.start("shared-gauges", services.shared_gauges.run)
    bg.start("tune-poller", services.tunes.poller.run)
    bg.start("quota-reaper", services.quotas.reap_loop)
