"""Keep this instance's fleet view fresh, leases renewed, and probes running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp

from gateway.config import Settings
from gateway.held import HeldReservations
from gateway.store.fleet import FleetStore, Snapshot
from observability.logging import get_logger
from observability.metrics import Metrics
from routing.backends import Backend
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
        backends: Mapping[str, Backend],
        session: aiohttp.ClientSession,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._fleet = fleet
        self._view = view
        self._held = held
        self._backends = backends
        self._session = session
        self._metrics = metrics
        for backend in backends.values():
            metrics.backend_capacity.labels(backend.name).set(backend.max_concurrency)

    async def refresh(self) -> None:
        started = time.time()
        snapshot = await self._fleet.snapshot()
        self.apply(snapshot, (started + time.time()) / 2)

    def apply(self, snapshot: Snapshot, local_time: float) -> None:
        self._view.clock_offset = snapshot.server_time - local_time
        for name, record in snapshot.backends.items():
            state = self._view.states[name]
            state.in_flight = record.in_flight
            state.failures = record.failures
            state.ejections = record.ejections
            state.ejected_until = record.ejected_until
            state.drained = record.drained
            self._metrics.backend_inflight.labels(name).set(record.in_flight)
            self._metrics.backend_up.labels(name).set(1 if self._view.routable(name) else 0)
        self._view.refreshed_at = time.time()

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
        probe = await backend.adapter.probe(self._session)
        self._metrics.provider_duration.labels(backend.name, "probe").observe(
            time.perf_counter() - started
        )
        state = self._view.states[backend.name]
        state.probe_ok = probe.healthy
        state.probe_detail = probe.detail
        state.reported_queue = probe.queue_depth
        state.probed_at = time.time()
