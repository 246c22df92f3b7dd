"""The app factory: `create_app(settings)` owns the store, sessions and background loops."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractResolver

from gateway import heap
from gateway.api import backends, deliveries, generations, health, openapi, tunes, usage, webhooks
from gateway.config import Settings
from gateway.context import METRICS, SERVICES, SETTINGS
from gateway.middleware import make_middlewares
from gateway.services import build_services, start_background
from observability.metrics import Metrics


def create_app(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    resolver: AbstractResolver | None = None,
    settle_heap: bool = False,
) -> web.Application:
    """`resolver` resolves the hosts of outbound URLs (default: the event loop's getaddrinfo);
    `settle_heap` freezes the start-up heap for the garbage collector (a served process)."""
    metrics = metrics or Metrics()
    app = web.Application(
        client_max_size=max(settings.jobs.max_body_bytes, settings.jobs.max_image_body_bytes),
        middlewares=make_middlewares(metrics),
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        services = await build_services(settings, metrics, resolver)
        app[SERVICES] = services
        metrics.ready.set_function(lambda: 1.0 if health.is_ready(services) else 0.0)
        metrics.draining.set_function(lambda: 1.0 if services.drain.draining else 0.0)
        try:
            await start_background(services)
            if settle_heap:
                heap.settle()
            yield
        finally:
            await services.close()

    app.cleanup_ctx.append(services_ctx)
    generations.add_routes(app)
    tunes.add_routes(app)
    webhooks.add_routes(app)
    backends.add_routes(app)
    deliveries.add_routes(app)
    usage.add_routes(app)
    health.add_routes(app)
    openapi.add_routes(app)
    return app
