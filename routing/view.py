"""This instance's view of the fleet: refreshed from the shared store several times a second."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from routing.load import Reserved, Slot, expected_completion, median, overshoot, remaining_work

# Where the config sets no hard limit, a GPU server is sent at most this many times what it
# runs at once. It is a bound on what a server whose real limit we do not know is sent, not
# a routing decision: least_loaded places by expected completion and holds a job in the
# gateway queue for a better backend by itself, so the bound should rarely bind it. Lower,
# the bound does the routing instead: a policy blind to load is shielded (its jobs wait in
# the gateway queue and go to the next free worker) and an operator cannot see what the
# policy is worth; higher, an unknown server is flooded (a job at the back of 4x waits ~3 of
# its own service times there; a server that dies strands what it was sent) and more jobs
# are committed on an estimate instead of bound late. Learned parallelism can grow up to
# this factor per step (overlap shows only up to what is sent). The model's grid (minimal
# config, p99 / free oracle at 80% load, issue6 | hetero10; seed 1, 4,000 jobs per cell):
#   factor 2: least_loaded 1.00 | 0.97, round_robin 2.13 | 2.78
#   factor 3: least_loaded 1.03 | 0.98, round_robin 2.78 | 3.79
#   factor 4: least_loaded 1.03 | 0.97, round_robin 3.64 | 4.59
#   factor 8: least_loaded 1.03 | 0.97, round_robin 6.54 | 8.56
# 4 keeps least_loaded within 1.05 (80%) and 1.04 (95%) of the free oracle, and round_robin
# at least 2.3x worse than it with room for the live run's smaller gap (1.7x live vs 2.0x
# in the model at 2).
QUEUE_FACTOR = 4


@dataclass
class BackendState:
    in_flight: int = 0  # reserved slots, across all instances
    reserved: Reserved = field(default_factory=Reserved)
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # epoch seconds, store clock
    cooldown_until: float = 0.0  # a 429 told us to back off until then
    drained: bool = False
    seconds_per_unit: float | None = None  # learned, shared; None until a job completed
    learned_parallelism: int | None = None  # from overlapping service times, shared
    reported_queue: int | None = None  # jobs the backend says are waiting (all clients)
    reported_wait: float = 0.0  # seconds of others' work ahead, as reported
    reported_at: float = 0.0
    probe_ok: bool | None = None
    probe_detail: str = ""
    probed_at: float = 0.0

    @property
    def slots(self) -> list[Slot]:
        """The first reservations in start order (all of them up to a few)."""
        return self.reserved.head


class FleetView:
    """What routing knows about each backend.

    `parallelism` is what a backend runs at once: configured, an adapter's default, or
    learned (names in `learning`: their value follows what the ledger learned). `limits`
    are hard limits on jobs in flight (None: none known, see `capacity`).
    """

    def __init__(
        self,
        parallelism: dict[str, int],
        speed_prior: float = 0.5,
        *,
        limits: Mapping[str, int | None] | None = None,
        learning: frozenset[str] = frozenset(),
    ) -> None:
        self.states = {name: BackendState() for name in parallelism}
        self.parallelism = parallelism
        self.limits = dict(limits) if limits is not None else dict(parallelism)
        self.learning = learning
        self.speed_prior = speed_prior
        self.clock_offset = 0.0  # store clock minus local clock
        # Work (units) the gateway queue holds for each backend, as the queue runner last
        # placed it: a new job waits behind it.
        self.ahead: dict[str, float] = {}

    def now(self) -> float:
        """The store's clock, which ejection times are written in."""
        return time.time() + self.clock_offset

    def capacity(self, name: str) -> int:
        """Jobs in flight allowed there: the hard limit, else QUEUE_FACTOR per worker."""
        limit = self.limits.get(name)
        return limit if limit else QUEUE_FACTOR * self.parallelism[name]

    def has_room(self, name: str, need: int = 1) -> bool:
        return self.states[name].in_flight + need <= self.capacity(name)

    def routable(self, name: str) -> bool:
        state = self.states[name]
        now = self.now()
        return not state.drained and state.ejected_until <= now and state.cooldown_until <= now

    def ejected(self, name: str) -> bool:
        return self.states[name].ejected_until > self.now()

    def note_in_flight(self, seen: dict[str, int]) -> None:
        for name, count in seen.items():
            self.states[name].in_flight = count

    def note_reserved(self, name: str, reserved: Reserved) -> None:
        """The ledger's aggregates for one backend, fresh from a script's answer."""
        state = self.states[name]
        state.reserved = reserved
        state.in_flight = reserved.count

    def note_parallelism(self, name: str, learned: int | None) -> None:
        state = self.states[name]
        state.learned_parallelism = learned
        if learned and name in self.learning:
            self.parallelism[name] = learned

    def seconds_per_unit(self, name: str) -> float:
        """Learned speed (else the fleet's median: a new GPU is probably like the others),
        slowed by how far its running jobs are past their expected end."""
        state = self.states[name]
        learned = state.seconds_per_unit
        if learned is None:
            known = [s.seconds_per_unit for s in self.states.values() if s.seconds_per_unit]
            learned = median(known) or self.speed_prior
        serving = state.reserved.head[: self.parallelism[name]]
        return learned * overshoot(serving, self.now())

    def add_slots(self, name: str, slots: list[Slot]) -> None:
        """This instance's own reservation, seen at once rather than at the next refresh."""
        state = self.states[name]
        state.reserved.add(slots)
        state.in_flight = max(state.in_flight + len(slots), state.reserved.count)

    def drop_slots(self, name: str, slots: list[Slot]) -> None:
        state = self.states[name]
        state.reserved.drop(slots)
        state.in_flight = max(0, state.in_flight - len(slots))

    def backlog(self, name: str) -> float:
        """Work (units) still to do there from what the gateway reserved."""
        return remaining_work(
            self.states[name].reserved,
            self.seconds_per_unit(name),
            self.parallelism[name],
            self.now(),
        )

    def own_queue(self, name: str) -> float:
        """Seconds our own reservations wait there before a worker takes them."""
        reserved = self.states[name].reserved
        parallelism = self.parallelism[name]
        waiting = reserved.work - sum(s.work for s in reserved.head[:parallelism])
        return max(0.0, waiting) * self.seconds_per_unit(name) / max(1, parallelism)

    def note_reported_wait(self, name: str, seconds: float, at: float | None = None) -> None:
        """The backend told us (an eta, a queue time) how long others' work there will take."""
        state = self.states[name]
        state.reported_wait = max(0.0, seconds)
        state.reported_at = time.time() if at is None else at

    def reported_wait(self, name: str) -> float:
        """The backend's own queue of others' work, in seconds from now."""
        state = self.states[name]
        return max(0.0, state.reported_wait - (time.time() - state.reported_at))

    def expected_completion(self, name: str, work: float, *, queued: bool = True) -> float:
        """Seconds until a job of `work` would finish there; `queued`: behind the work the
        gateway queue holds for it."""
        return expected_completion(
            work,
            seconds_per_unit=self.seconds_per_unit(name),
            parallelism=self.parallelism[name],
            reserved=self.states[name].reserved,
            now=self.now(),
            ahead=self.ahead.get(name, 0.0) if queued else 0.0,
            reported_wait=self.reported_wait(name),
        )
