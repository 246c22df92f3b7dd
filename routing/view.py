"""This instance's view of the fleet: refreshed from the shared store several times a second."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class BackendState:
    in_flight: int = 0
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # epoch seconds
    drained: bool = False
    reported_queue: int | None = None
    probe_ok: bool | None = None
    probe_detail: str = ""
    probed_at: float = 0.0


class FleetView:
    def __init__(self, names: list[str]) -> None:
        self.states = {name: BackendState() for name in names}
        self.refreshed_at = 0.0
        self.clock_offset = 0.0  # store clock minus local clock

    def now(self) -> float:
        """The store's clock, which ejection times are written in."""
        return time.time() + self.clock_offset

    def routable(self, name: str) -> bool:
        state = self.states[name]
        return not state.drained and state.ejected_until <= self.now()

    def ejected(self, name: str) -> bool:
        return self.states[name].ejected_until > self.now()

    def note_in_flight(self, seen: dict[str, int]) -> None:
        for name, count in seen.items():
            self.states[name].in_flight = count
