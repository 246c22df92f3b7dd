"""Machinery every provider simulator shares: a GPU-like work queue, faults, callbacks."""

from adapters.simkit.engine import Engine, SimJob, engine_key
from adapters.simkit.faults import Fault, pick_fault
from adapters.simkit.routes import add_control_routes, base_app

__all__ = [
    "Engine",
    "Fault",
    "SimJob",
    "add_control_routes",
    "base_app",
    "engine_key",
    "pick_fault",
]
