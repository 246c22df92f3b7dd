"""The gateway's own routing code, driven on the model's clock.

The model does not reimplement any policy: it builds routing.backends.Backend/Candidate
objects, a routing.view.FleetView whose clock is the model's, and a routing.router.Router
whose Ledger is an in-memory mirror of the Redis scripts (RESERVE, RECORD_FAILURE,
RECORD_SUCCESS, LEARN_SPEED). The Router's methods are coroutines that never wait on
anything here, so `run_sync` steps each one to completion without an event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from adapters.base import Plan, Submission, Target
from adapters.registry import ADAPTERS
from bench.fleet import BackendSpec
from gateway.store.fleet import SERVICE_WINDOW, SPEED_ALPHA, parse_member
from routing.backends import Backend, Candidate
from routing.load import Reserved, Slot, ewma, peak_overlap
from routing.router import Offer, Outcome
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
    """Backends as gateway/services.py builds them, with a real (never called) adapter: a
    ModelsLab dedicated server, or a ComfyUI server."""
    return [
        Backend(
            name=spec.name,
            adapter=ADAPTERS[spec.kind].create(
                Target(
                    spec.name,
                    "http://127.0.0.1:9" + ("" if spec.kind == "comfyui" else "/api/v1/enterprise"),
                    None,
                    {"default": "m"},
                    {} if spec.kind == "comfyui" else {"enterprise": True},
                )
            ),
            max_concurrency=spec.max_concurrency,
            parallelism=spec.parallelism if spec.parallelism_given else 0,
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

    def __init__(
        self,
        clock: Clock,
        parallelism: dict[str, int],
        speed_prior: float,
        *,
        limits: Mapping[str, int | None] | None = None,
        learning: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(parallelism, speed_prior, limits=limits, learning=learning)
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
        self.versions = dict.fromkeys(names, 0)
        self.speeds: dict[str, float] = {}
        self.parallelism: dict[str, int] = {}
        self.service: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        self.failures = dict.fromkeys(names, 0)
        self.ejections = dict.fromkeys(names, 0)
        self.ejected_until = dict.fromkeys(names, 0.0)
        self.changed: Callable[[str], None] = lambda name: None  # an exact view syncs here

    def state(self, name: str) -> Reserved:
        return Reserved.of(list(self.members[name].values()), self.versions[name])

    async def reserve(self, offers: Sequence[Offer], lease: float) -> Outcome:
        loads: dict[str, Reserved] = {}
        for offer in offers:
            name, held = offer.backend, self.members[offer.backend]
            grew = sum(s.work for s in held.values()) > offer.seen_work + 1e-9
            if offer.version >= 0 and offer.version != self.versions[name] and grew:
                loads[name] = self.state(name)
                return Outcome(None, name, loads)
            if len(held) + len(offer.members) <= offer.capacity:
                for m in offer.members:
                    # The Router stamps members with its view's clock: the model's here.
                    slot = parse_member(m)
                    assert slot is not None, m
                    held[m] = slot
                self.versions[name] += 1
                loads[name] = self.state(name)
                self.changed(name)
                return Outcome(name, None, loads)
            loads[name] = self.state(name)
        return Outcome(None, None, loads)

    async def release(self, backend: str, members: Sequence[str], head: int) -> Reserved:
        for m in members:
            self.members[backend].pop(m, None)
        self.versions[backend] += 1
        self.changed(backend)
        return self.state(backend)

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

    async def learn(
        self,
        backend: str,
        seconds_per_unit: float | None,
        service: tuple[float, float] | None,
        tag: str,
    ) -> tuple[float | None, int | None]:
        # The LEARN script: routing.load.ewma with the store's alpha, and the peak overlap
        # of the last SERVICE_WINDOW service intervals.
        speed = None
        if seconds_per_unit is not None:
            speed = ewma(self.speeds.get(backend), seconds_per_unit, self._alpha)
            self.speeds[backend] = speed
        parallel = None
        if service is not None:
            spans = self.service[backend]
            spans.append(service)
            del spans[:-SERVICE_WINDOW]
            parallel = self.parallelism[backend] = peak_overlap(spans)
        self.changed(backend)
        return speed, parallel

    async def finish(
        self,
        backend: str,
        members: Sequence[str],
        head: int,
        seconds_per_unit: float | None,
        service: tuple[float, float] | None,
        tag: str,
    ) -> tuple[Reserved, float | None, int | None]:
        speed, parallel = await self.learn(backend, seconds_per_unit, service, tag)
        return await self.release(backend, members, head), speed, parallel

    def sync(self, view: FleetView, name: str | None = None) -> None:
        """What FleetSync.apply copies from a snapshot into the view (one backend or all)."""
        for backend in view.states if name is None else (name,):
            state = view.states[backend]
            view.note_reserved(backend, self.state(backend))
            view.note_parallelism(backend, self.parallelism.get(backend))
            state.ejected_until = self.ejected_until[backend]
            state.failures = self.failures[backend]
            state.seconds_per_unit = self.speeds.get(backend)
