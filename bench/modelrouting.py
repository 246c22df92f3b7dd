"""The gateway's own routing code, driven on the model's clock.

The model does not reimplement any policy: it builds routing.backends.Backend/Candidate
objects, a routing.view.FleetView whose clock is the model's, and a routing.router.Router
whose Ledger is an in-memory mirror of the Redis scripts (RESERVE, RECORD_FAILURE,
RECORD_SUCCESS, LEARN_SPEED). The Router's methods are coroutines that never wait on
anything here, so `run_sync` steps each one to completion without an event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from adapters.base import Plan, Submission, Target
from adapters.registry import ADAPTERS
from bench.fleet import BackendSpec
from gateway.store.fleet import SPEED_ALPHA, parse_member
from routing.backends import Backend, Candidate
from routing.load import Slot, ewma
from routing.view import FleetView

T = TypeVar("T")
Clock = Callable[[], float]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the Router over the in-memory ledger)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the coroutine waited on something; the model has no event loop")


def build_backends(fleet: Sequence[BackendSpec]) -> list[Backend]:
    """Backends as gateway/services.py builds them, with a real (never called) adapter."""
    factory = ADAPTERS["modelslab"]
    return [
        Backend(
            name=spec.name,
            adapter=factory.create(
                Target(spec.name, "http://127.0.0.1:9/api/v6/images", None, {"default": "m"})
            ),
            max_concurrency=spec.max_concurrency,
            parallelism=spec.parallelism,
            weight=spec.weight,
            order=position,
        )
        for position, spec in enumerate(fleet)
    ]


def candidates(backends: Sequence[Backend], work: float, images: int) -> list[Candidate]:
    """One submission per job (the mix never exceeds ModelsLab's 4 samples)."""
    plan = Plan(model_id="m", submissions=[Submission("text2img", {}, images)], work=work)
    return [Candidate(b, plan) for b in backends]


class SimView(FleetView):
    """The gateway's FleetView on the model's clock."""

    def __init__(self, clock: Clock, parallelism: dict[str, int], speed_prior: float) -> None:
        super().__init__(parallelism, speed_prior)
        self._clock = clock

    def now(self) -> float:
        return self._clock()

    def reported_wait(self, name: str) -> float:
        state = self.states[name]
        return max(0.0, state.reported_wait - (self._clock() - state.reported_at))


class SimLedger:
    """What the Redis scripts keep, in memory, on the model's clock.

    Reservations never expire here: the gateway renews the leases of jobs it holds until
    they end, which is what the model does by releasing at the job's end.
    """

    def __init__(self, clock: Clock, names: Sequence[str], alpha: float = SPEED_ALPHA) -> None:
        self._clock = clock
        self._alpha = alpha
        self.members: dict[str, dict[str, Slot]] = {n: {} for n in names}
        self.speeds: dict[str, float] = {}
        self.failures = dict.fromkeys(names, 0)
        self.ejections = dict.fromkeys(names, 0)
        self.ejected_until = dict.fromkeys(names, 0.0)
        self.changed: Callable[[str], None] = lambda name: None  # an exact view syncs here

    async def reserve(
        self, candidates: Sequence[tuple[str, int, Sequence[str]]], lease: float
    ) -> tuple[str | None, dict[str, int]]:
        seen: dict[str, int] = {}
        for name, capacity, members in candidates:
            held = self.members[name]
            if len(held) + len(members) <= capacity:
                for m in members:
                    # The Router stamps members with its view's clock: the model's here.
                    slot = parse_member(m)
                    assert slot is not None, m
                    held[m] = slot
                seen[name] = len(held)
                self.changed(name)
                return name, seen
            seen[name] = len(held)
        return None, seen

    async def release(self, backend: str, members: Sequence[str]) -> None:
        for m in members:
            self.members[backend].pop(m, None)
        self.changed(backend)

    async def record_failure(
        self, backend: str, *, threshold: int, base: float, maximum: float, max_share: float
    ) -> float | None:
        now = self._clock()
        self.failures[backend] += 1
        if self.failures[backend] < threshold or self.ejected_until[backend] > now:
            return None
        ejected = sum(1 for until in self.ejected_until.values() if until > now)
        if ejected + 1 > max_share * len(self.ejected_until):
            return None
        self.ejections[backend] += 1
        until = now + min(base * 2.0 ** (self.ejections[backend] - 1), maximum)
        self.ejected_until[backend] = until
        self.failures[backend] = threshold - 1
        self.changed(backend)
        return until

    async def record_success(self, backend: str, *, forget_after: float) -> None:
        self.failures[backend] = 0

    async def cool_down(self, backend: str, seconds: float) -> float:
        return self._clock() + seconds

    async def learn_speed(self, backend: str, seconds_per_unit: float) -> float:
        # The LEARN_SPEED script is routing.load.ewma with the store's alpha.
        value = ewma(self.speeds.get(backend), seconds_per_unit, self._alpha)
        self.speeds[backend] = value
        self.changed(backend)
        return value

    def sync(self, view: FleetView, name: str | None = None) -> None:
        """What FleetSync.apply copies from a snapshot into the view (one backend or all)."""
        for backend in view.states if name is None else (name,):
            state = view.states[backend]
            state.slots = list(self.members[backend].values())
            state.in_flight = len(state.slots)
            state.ejected_until = self.ejected_until[backend]
            state.failures = self.failures[backend]
            state.seconds_per_unit = self.speeds.get(backend)
