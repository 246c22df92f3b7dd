"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.context import METRICS, services
from gateway.services import Services


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def is_ready(s: Services) -> bool:
    """Ready: not draining, the store answers and at least one backend is routable."""
    if s.drain.draining:
        return False
    return s.store_health.ok and any(s.view.routable(name) for name in s.backends)


async def readyz(request: web.Request) -> web.Response:
    s = services(request)
    store_ok = s.store_health.ok
    routable = [name for name in s.backends if s.view.routable(name)]
    ready = is_ready(s)
    return web.json_response(
        {
            "ready": ready,
            "store": "ok" if store_ok else "unreachable",
            "routable_backends": len(routable),
            "draining": s.drain.draining,
        },
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
