"""The app skeleton and control routes every simulator has (`/_sim/...`)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from adapters.base import SimulatorSettings
from adapters.simkit.engine import Engine, Finisher, engine_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A 1x1 transparent PNG: enough for a client to fetch something real.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def base_app(
    settings: SimulatorSettings,
    name: str,
    on_finish: Finisher | None = None,
) -> web.Application:
    """An app with a running engine and the control routes; providers add their own routes."""
    app = web.Application(client_max_size=32 * 1024 * 1024)
    engine = Engine(settings, name)
    app[engine_key] = engine

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await engine.start(on_finish)
        yield
        await engine.stop()

    @web.middleware
    async def remember_base_url(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Image URLs point back at this simulator, as the client reached it.
        if not engine.base_url:
            engine.base_url = f"{request.scheme}://{request.host}"
        return await handler(request)

    app.middlewares.append(remember_base_url)
    app.cleanup_ctx.append(lifecycle)
    add_control_routes(app)
    return app


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_post("/_sim/config", _config)
    app.router.add_get("/_sim/images/{name}", _image)


async def _stats(request: web.Request) -> web.Response:
    engine = request.app[engine_key]
    return web.json_response(
        {
            **engine.stats,
            "active": engine.active,
            "queued": engine.queued,
            "settings": engine.settings.model_dump(),
        }
    )


async def _config(request: web.Request) -> web.Response:
    engine = request.app[engine_key]
    try:
        engine.reconfigure(await request.json())
    except (ValidationError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(engine.settings.model_dump())


async def _image(request: web.Request) -> web.Response:
    return web.Response(body=PNG, content_type="image/png")
