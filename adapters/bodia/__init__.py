"""Bodia: fine-tune prompts, one backend per API key, results polled."""

from __future__ import annotations

from aiohttp import web

from adapters.base import Adapter, CommonOptions, SimulatorSettings, Target
from adapters.bodia.adapter import BodiaAdapter
from adapters.bodia.convert import BodiaOptions
from adapters.bodia.simulator import create_simulator


class BodiaFactory:
    kind = "bodia"
    options_model: type[CommonOptions] = BodiaOptions

    def create(self, target: Target) -> Adapter:
        return BodiaAdapter(target)

    def simulator(self, settings: SimulatorSettings) -> web.Application:
        return create_simulator(settings)

    def simulator_base_path(self, settings: SimulatorSettings) -> str:
        # The documented paths start at the origin (/v1/finetunes/...).
        return ""


FACTORY = BodiaFactory()
