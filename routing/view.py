"""This instance's view of the fleet: refreshed from the shared store several times a second."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from routing.load import Slot, expected_completion, median, overshoot, remaining_work


@dataclass
class BackendState:
    in_flight: int = 0  # reserved slots, across all instances
    slots: list[Slot] = field(default_factory=list)
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # epoch seconds, store clock
    cooldown_until: float = 0.0  # a 429 told us to back off until then
    drained: bool = False
    seconds_per_unit: float | None = None  # learned, shared; None until a job completed
    reported_queue: int | None = None  # jobs the backend says are waiting (all clients)
    reported_wait: float = 0.0  # seconds of others' work ahead, as reported
    reported_at: float = 0.0
    probe_ok: bool | None = None
    probe_detail: str = ""
    probed_at: float = 0.0


class FleetView:
    def __init__(self, parallelism: dict[str, int], speed_prior: float = 0.5) -> None:
        self.states = {name: BackendState() for name in parallelism}
        self.parallelism = parallelism
        self.speed_prior = speed_prior
        self.clock_offset = 0.0  # store clock minus local clock

    def now(self) -> float:
        """The store's clock, which ejection times are written in."""
        return time.time() + self.clock_offset

    def routable(self, name: str) -> bool:
        state = self.states[name]
        now = self.now()
        return not state.drained and state.ejected_until <= now and state.cooldown_until <= now

    def ejected(self, name: str) -> bool:
        return self.states[name].ejected_until > self.now()

    def note_in_flight(self, seen: dict[str, int]) -> None:
        for name, count in seen.items():
            self.states[name].in_flight = count

    def seconds_per_unit(self, name: str) -> float:
        """Learned speed (else the fleet's median: a new GPU is probably like the others),
        slowed by how far its running jobs are past their expected end."""
        state = self.states[name]
        learned = state.seconds_per_unit
        if learned is None:
            known = [s.seconds_per_unit for s in self.states.values() if s.seconds_per_unit]
            learned = median(known) or self.speed_prior
        return learned * overshoot(state.slots, self.now())

    def add_slots(self, name: str, slots: list[Slot]) -> None:
        """This instance's own reservation, seen at once rather than at the next refresh."""
        state = self.states[name]
        state.slots = [*state.slots, *slots]
        state.in_flight = max(state.in_flight, len(state.slots))

    def drop_slots(self, name: str, tracks: set[str]) -> None:
        state = self.states[name]
        kept = [s for s in state.slots if s.track not in tracks]
        state.in_flight = max(0, state.in_flight - (len(state.slots) - len(kept)))
        state.slots = kept

    def backlog(self, name: str) -> float:
        """Work (units) still to do there from what the gateway reserved."""
        state = self.states[name]
        return remaining_work(
            state.slots, self.seconds_per_unit(name), self.parallelism[name], self.now()
        )

    def note_reported_wait(self, name: str, seconds: float, at: float | None = None) -> None:
        """The backend told us (an eta, a queue time) how long others' work there will take."""
        state = self.states[name]
        state.reported_wait = max(0.0, seconds)
        state.reported_at = time.time() if at is None else at

    def reported_wait(self, name: str) -> float:
        """The backend's own queue of others' work, in seconds from now."""
        state = self.states[name]
        return max(0.0, state.reported_wait - (time.time() - state.reported_at))

    def expected_completion(self, name: str, work: float) -> float:
        return expected_completion(
            work,
            seconds_per_unit=self.seconds_per_unit(name),
            parallelism=self.parallelism[name],
            backlog=self.backlog(name),
            reported_wait=self.reported_wait(name),
        )
