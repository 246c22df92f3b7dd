"""Injected failures a simulator answers with instead of doing the work."""

from __future__ import annotations

import asyncio
from enum import StrEnum

from aiohttp import web

from adapters.simkit.engine import Engine


class Fault(StrEnum):
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    MALFORMED = "malformed"


def pick_fault(engine: Engine) -> Fault | None:
    s, roll = engine.settings, engine.random.random()
    for fault, rate in (
        (Fault.SERVER_ERROR, s.fail_rate),
        (Fault.RATE_LIMITED, s.rate_limit_rate),
        (Fault.TIMEOUT, s.timeout_rate),
        (Fault.MALFORMED, s.malformed_rate),
    ):
        if roll < rate:
            return fault
        roll -= rate
    return None


async def generic_fault_response(engine: Engine, fault: Fault) -> web.Response:
    """The transport-level faults every provider shares; providers may answer their own way."""
    if fault is Fault.SERVER_ERROR:
        return web.Response(status=503, text="upstream overloaded")
    if fault is Fault.TIMEOUT:
        await asyncio.sleep(3600)  # the client's timeout ends this
        return web.Response(status=504)
    if fault is Fault.MALFORMED:
        return web.Response(status=200, text='{"status": "succ', content_type="application/json")
    return web.json_response(
        {
            "status": "error",
            "message": "Rate limit exceeded",
            "retry_after": engine.settings.retry_after,
        },
        status=429,
        headers={"Retry-After": f"{engine.settings.retry_after:g}"},
    )
