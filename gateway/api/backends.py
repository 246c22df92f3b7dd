"""`/v1/backends`: the fleet as this instance sees it; drain and undrain (admin)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web

from gateway.api.schemas import BackendList, BackendStatus, Probe
from gateway.context import services
from gateway.errors import Forbidden, NotFound
from routing.load import REFERENCE_WORK


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/backends", list_backends)
    app.router.add_post("/v1/backends/{name}/drain", drain)
    app.router.add_post("/v1/backends/{name}/undrain", undrain)


def _iso(epoch: float) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


def describe(request: web.Request, name: str) -> BackendStatus:
    s = services(request)
    backend, state, view = s.backends[name], s.view.states[name], s.view
    ejected = view.ejected(name)
    cooling = state.cooldown_until > view.now()
    health: Literal["healthy", "probe_failing", "cooling_down", "ejected", "drained"]
    if state.drained:
        health = "drained"
    elif ejected:
        health = "ejected"
    elif cooling:
        health = "cooling_down"
    elif state.probe_ok is False:
        health = "probe_failing"
    else:
        health = "healthy"
    return BackendStatus(
        name=name,
        adapter=backend.kind,
        health=health,
        routable=view.routable(name),
        drained=state.drained,
        ejected_until=_iso(state.ejected_until) if ejected else None,
        cooldown_until=_iso(state.cooldown_until) if cooling else None,
        ejections=state.ejections,
        consecutive_failures=state.failures,
        in_flight=state.in_flight,
        reserved_work=round(view.backlog(name), 3),
        capacity=view.capacity(name),
        parallelism=view.parallelism[name],
        parallelism_learned=state.learned_parallelism if backend.learns_parallelism else None,
        reported_queue=state.reported_queue,
        reported_wait=round(view.reported_wait(name), 3),
        seconds_per_unit=state.seconds_per_unit,
        expected_wait=round(view.expected_completion(name, REFERENCE_WORK), 3),
        last_probe=Probe(ok=state.probe_ok, detail=state.probe_detail, at=_iso(state.probed_at)),
        weight=backend.weight,
        tags=sorted(backend.tags),
        models=sorted(backend.models),
    )


def _json(model: BackendStatus | BackendList) -> web.Response:
    return web.Response(body=model.model_dump_json(), content_type="application/json")


async def list_backends(request: web.Request) -> web.Response:
    s = services(request)
    try:
        s.directory.admin(request)
        names = list(s.backends)
    except Forbidden:
        # A tenant sees the backends it may use.
        tenant = s.directory.tenant(request)
        names = [b.name for b in s.eligibility.allowed(tenant.name)]
    return _json(
        BackendList(
            backends=[describe(request, n) for n in names],
            queued=await s.queue.size(),
            as_of=_iso(time.time()),
        )
    )


async def _set_drained(request: web.Request, drained: bool) -> web.Response:
    s = services(request)
    s.directory.admin(request)
    name = request.match_info["name"]
    if name not in s.backends:
        raise NotFound(f"no backend {name}")
    await s.fleet.set_drained(name, drained)
    s.view.states[name].drained = drained
    return _json(describe(request, name))


async def drain(request: web.Request) -> web.Response:
    return await _set_drained(request, True)


async def undrain(request: web.Request) -> web.Response:
    return await _set_drained(request, False)
