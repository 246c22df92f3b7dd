"""`gateway serve`: one instance, drained on SIGTERM/SIGINT within `shutdown.drain_seconds`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable

from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings, Shutdown
from gateway.config_file import ConfigError, load_config
from gateway.context import SERVICES
from gateway.drain import stop_taking_work
from observability.logging import configure_logging, get_logger

log = get_logger("gateway.serve")


def serve(config_path: str) -> int:
    try:
        settings = load_config(config_path)
    except ConfigError as exc:
        print(f"{config_path}: invalid config", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None
    log.info(
        "starting",
        host=settings.listen.host,
        port=settings.listen.port,
        store=settings.store.split("://")[0],
    )
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_run(settings))
    log.info("stopped")
    return 0


def budgets(shutdown: Shutdown) -> tuple[float, float]:
    """(unready window, in-flight HTTP budget): with the loops' stop (a quarter, see
    `Services.close`) and a margin they fit in `drain_seconds`."""
    total = shutdown.drain_seconds
    unready = min(shutdown.unready_seconds, total / 4)
    return unready, max(0.5, total - unready - total / 4 - max(0.5, total / 10))


async def _run(settings: Settings) -> None:
    unready, in_flight = budgets(settings.shutdown)
    app = create_app(settings, settle_heap=True)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=in_flight)
    await runner.setup()
    site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        await _drain(app, runner, settings.shutdown, unready)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _drain(
    app: web.Application, runner: web.AppRunner, shutdown: Shutdown, unready: float
) -> None:
    """The sequence of gateway/drain.py; a watchdog thread ends the process if it overruns."""
    watchdog = threading.Timer(shutdown.drain_seconds, _overrun, args=(shutdown.drain_seconds,))
    watchdog.daemon = True
    watchdog.start()
    try:
        services = app[SERVICES]
        services.drain.begin()
        window = max(unready, min(2.0, shutdown.drain_seconds / 10))
        await asyncio.gather(stop_taking_work(services, window), asyncio.sleep(unready))
        log.info("drain_closing_listener")
        await runner.cleanup()  # stop listening, finish requests, stop loops, hand back
    finally:
        watchdog.cancel()


def _overrun(seconds: float) -> None:  # pragma: no cover - only when a step hangs
    log.error("drain_overran", drain_seconds=seconds)
    os._exit(1)
