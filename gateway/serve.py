"""`gateway serve`: one instance, with a graceful stop on SIGTERM."""

from __future__ import annotations

import sys

from aiohttp import web

from gateway.app import create_app
from gateway.config import ConfigError, load_config
from observability.logging import configure_logging, get_logger


def serve(config_path: str) -> int:
    try:
        settings = load_config(config_path)
    except ConfigError as exc:
        print(f"{config_path}: invalid config", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    log = get_logger("gateway.serve")
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None
    import asyncio

    loop = loop_factory() if loop_factory else asyncio.new_event_loop()
    log.info(
        "starting",
        host=settings.listen.host,
        port=settings.listen.port,
        store=settings.store.split("://")[0],
    )
    # run_app turns SIGTERM/SIGINT into a graceful stop: no new connections, in-flight
    # requests finish (up to shutdown_timeout), then background loops are awaited.
    web.run_app(
        create_app(settings),
        host=settings.listen.host,
        port=settings.listen.port,
        access_log=None,
        shutdown_timeout=10,
        print=None,
        loop=loop,
    )
    log.info("stopped")
    return 0
