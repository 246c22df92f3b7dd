"""`gateway simulate ADAPTER`: one provider simulator on its own."""

from __future__ import annotations

import asyncio

from aiohttp import web

from adapters.base import SimulatorSettings
from adapters.registry import ADAPTERS


async def start_simulator(
    adapter: str, settings: SimulatorSettings, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(ADAPTERS[adapter].simulator(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound)


async def simulate(adapter: str, host: str, port: int, settings: SimulatorSettings) -> int:
    runner, bound = await start_simulator(adapter, settings, host, port)
    base = f"http://{host}:{bound}{ADAPTERS[adapter].simulator_base_path(settings)}"
    print(f"{adapter} simulator: base_url {base} ({settings.model_dump_json()})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return 0
