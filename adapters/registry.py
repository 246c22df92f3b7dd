"""Where adapters are registered: a new provider is one folder plus one line here."""

from __future__ import annotations

from adapters.base import AdapterFactory
from adapters.modelslab import FACTORY as MODELSLAB

ADAPTERS: dict[str, AdapterFactory] = {
    MODELSLAB.kind: MODELSLAB,
}
