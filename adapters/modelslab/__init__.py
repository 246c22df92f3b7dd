"""ModelsLab: v6 cloud API keys and enterprise dedicated GPU servers."""

from __future__ import annotations

from aiohttp import web

from adapters.base import Adapter, CommonOptions, SimulatorSettings, Target
from adapters.modelslab.adapter import ModelsLabAdapter
from adapters.modelslab.convert import ModelsLabOptions
from adapters.modelslab.simulator import CLOUD_PREFIX, ENTERPRISE_PREFIX, create_simulator


class ModelsLabFactory:
    kind = "modelslab"
    options_model: type[CommonOptions] = ModelsLabOptions

    def create(self, target: Target) -> Adapter:
        return ModelsLabAdapter(target)

    def simulator(self, settings: SimulatorSettings) -> web.Application:
        return create_simulator(settings)

    def simulator_base_path(self, settings: SimulatorSettings) -> str:
        return ENTERPRISE_PREFIX if settings.enterprise else CLOUD_PREFIX


FACTORY = ModelsLabFactory()
