"""Where adapters are registered: a new provider is one folder plus one line here."""

from __future__ import annotations

from adapters.astria import FACTORY as ASTRIA
from adapters.base import AdapterFactory
from adapters.bodia import FACTORY as BODIA
from adapters.comfyui import FACTORY as COMFYUI
from adapters.modelslab import FACTORY as MODELSLAB

ADAPTERS: dict[str, AdapterFactory] = {
    factory.kind: factory for factory in (ASTRIA, BODIA, COMFYUI, MODELSLAB)
}
