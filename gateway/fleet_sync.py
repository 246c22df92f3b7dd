"""Keep this instance's fleet view fresh, leases renewed, and probes running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from adapters.base import Probe
from adapters.httpclient import HttpClient
from gateway.config import Settings, backend_matches
from gateway.held import HeldReservations
from gateway.store.fleet import FleetStore, Snapshot
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend
from routing.load import REFERENCE_WORK
from routing.router import Router
from routing.view import FleetView

log = get_logger(__name__)


class FleetSync:
    def __init__(
        self,
        *,
        settings: Settings,
        fleet: FleetStore,
        view: FleetView,
        held: HeldReservations,
        router: Router,
        backends: Mapping[str, Backend],
        session: HttpClient,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._fleet = fleet
        self._view = view
        self._held = held
        self._router = router
        self._backends = backends
        self._session = session
        self._metrics = metrics
        # Each tenant's pool, for the "every backend of a tenant's pool is down" alert.
        self._pools = {
            tenant.name: [
                b.name
                for b in settings.backends
                if any(backend_matches(b, p) for p in tenant.backends)
            ]
            for tenant in settings.tenants
        }

    async def refresh(self) -> None:
        started = time.time()
        snapshot = await self._fleet.snapshot({n: self._router.head(n) for n in self._backends})
        self.apply(snapshot, (started + time.time()) / 2)

    def apply(self, snapshot: Snapshot, local_time: float) -> None:
        self._view.clock_offset = snapshot.server_time - local_time
        for name, record in snapshot.backends.items():
            state = self._view.states[name]
            self._view.note_reserved(name, record.reserved)
            self._view.note_parallelism(name, record.parallelism)
            state.failures = record.failures
            state.ejections = record.ejections
            state.ejected_until = record.ejected_until
            state.cooldown_until = record.cooldown_until
            state.drained = record.drained
            state.seconds_per_unit = record.seconds_per_unit
            self._metrics.backend_inflight.labels(name).set(record.in_flight)
            self._metrics.backend_capacity.labels(name).set(self._view.capacity(name))
            self._metrics.backend_up.labels(name).set(1 if self._view.routable(name) else 0)
            self._metrics.backend_ejected.labels(name).set(1 if self._view.ejected(name) else 0)
            self._metrics.backend_speed.labels(name).set(self._view.seconds_per_unit(name))
            self._metrics.backend_expected_wait.labels(name).set(
                self._view.expected_completion(name, REFERENCE_WORK)
            )
        for tenant, names in self._pools.items():
            routable = sum(1 for name in names if self._view.routable(name))
            self._metrics.tenant_routable_backends.labels(tenant).set(routable)

    async def refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("fleet_refresh_failed", error=type(exc).__name__)
            await asyncio.sleep(self._settings.routing.view_refresh)

    async def renew_loop(self) -> None:
        lease = self._settings.routing.reservation_lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                missing = await self._fleet.renew(self._held.to_renew(), lease)
            except Exception as exc:
                log.warning("lease_renewal_failed", error=type(exc).__name__)
                continue
            for backend, members in missing.items():
                self._held.drop(backend, members)

    async def probe_loop(self) -> None:
        while True:
            await asyncio.gather(*(self._probe(b) for b in self._backends.values()))
            await asyncio.sleep(self._settings.routing.probe_interval)

    async def _probe(self, backend: Backend) -> None:
        started = time.perf_counter()
        try:
            probe = await backend.adapter.probe(self._session)
        except Exception as exc:  # a probe must never take the loop down
            log.warning("probe_crashed", backend=backend.name, error=type(exc).__name__)
            return
        self._metrics.provider_duration.labels(backend.name, "probe").observe(
            time.perf_counter() - started
        )
        name = backend.name
        state = self._view.states[name]
        state.probe_ok = probe.healthy
        state.probe_detail = probe.detail
        state.reported_queue = probe.queue_depth
        if probe.queue_depth is not None:
            self._metrics.backend_reported_queue.labels(name).set(probe.queue_depth)
        state.probed_at = time.time()
        self._note_reported_queue(name, probe)
        # Probes are health evidence too: a dead idle backend gets ejected without costing a
        # request, and a recovered one closes its half-open state. A good probe does not
        # clear failures of a backend that was never ejected: it may answer probes and still
        # fail every submission.
        try:
            if not probe.healthy:
                if await self._router.count_failure(name) is not None:
                    self._metrics.backend_ejections.labels(name).inc()
            elif self._router.half_open(name):
                await self._router.report_success(name)
        except Exception as exc:
            log.warning("probe_health_update_failed", backend=name, error=type(exc).__name__)

    def _note_reported_queue(self, name: str, probe: Probe) -> None:
        """Turn what the backend says it has queued into seconds of others' work ahead."""
        if probe.queue_seconds is not None:
            # Its queue time covers our own jobs waiting there too, which the reservations
            # already count: only the rest is others' work.
            self._view.note_reported_wait(name, probe.queue_seconds - self._view.own_queue(name))
        elif probe.queue_depth is not None:
            # The count includes our own jobs there, which the reservations already cover.
            others = max(0, probe.queue_depth - self._view.states[name].in_flight)
            per_job = self._view.seconds_per_unit(name) * REFERENCE_WORK
            self._view.note_reported_wait(name, others * per_job / self._view.parallelism[name])
