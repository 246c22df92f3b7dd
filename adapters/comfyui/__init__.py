"""ComfyUI: self-hosted GPU servers driven through their workflow API."""

from __future__ import annotations

from aiohttp import web

from adapters.base import Adapter, CommonOptions, SimulatorSettings, Target
from adapters.comfyui.adapter import ComfyAdapter
from adapters.comfyui.convert import ComfyOptions
from adapters.comfyui.simulator import create_simulator


class ComfyFactory:
    kind = "comfyui"
    options_model: type[CommonOptions] = ComfyOptions

    def create(self, target: Target) -> Adapter:
        return ComfyAdapter(target)

    def simulator(self, settings: SimulatorSettings) -> web.Application:
        return create_simulator(settings)

    def simulator_base_path(self, settings: SimulatorSettings) -> str:
        return ""  # base_url is the server's origin


FACTORY = ComfyFactory()
