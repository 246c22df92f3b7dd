"""Astria: one backend per API key; prompts on a tune, results by callback."""

from __future__ import annotations

from aiohttp import web

from adapters.astria.adapter import AstriaAdapter
from adapters.astria.convert import AstriaOptions
from adapters.astria.simulator import create_simulator
from adapters.base import Adapter, CommonOptions, SimulatorSettings, Target


class AstriaFactory:
    kind = "astria"
    options_model: type[CommonOptions] = AstriaOptions

    def create(self, target: Target) -> Adapter:
        return AstriaAdapter(target)

    def simulator(self, settings: SimulatorSettings) -> web.Application:
        return create_simulator(settings)

    def simulator_base_path(self, settings: SimulatorSettings) -> str:
        # base_url is the origin (https://api.astria.ai); the API paths hang off its root.
        return ""


FACTORY = AstriaFactory()
