"""The router: order the candidates by policy, reserve atomically, learn from outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from adapters.errors import ProviderError
from routing.backends import Candidate
from routing.load import Reserved, Slot
from routing.policies import Policy
from routing.view import FleetView

# Failures that say something about the backend's health (not about the request).
HEALTH_OUTCOMES = frozenset({"unavailable", "timeout", "server_error", "auth_failed"})
DEFAULT_COOLDOWN = 1.0  # seconds, when a 429 does not say how long


HEAD_CAP = 16  # reservations in service read back per backend (see Router.head)


@dataclass(frozen=True)
class Offer:
    """One candidate for the reservation script, in the order the policy prefers."""

    backend: str
    capacity: int
    members: Sequence[str]
    version: int = -1  # the load version the choice was made on; -1: do not check
    seen_work: float = 0.0  # the total work reserved there at that version
    head: int = 1  # reservations to read back in start order (what is in service)


@dataclass(frozen=True)
class Outcome:
    chosen: str | None  # where the members were reserved
    changed: str | None  # a backend whose load changed since the view read it: decide again
    loads: dict[str, Reserved]  # fresh aggregates of every backend the script looked at


class Ledger(Protocol):
    """Shared, atomic backend state (implemented by the gateway's store)."""

    async def reserve(self, offers: Sequence[Offer], lease: float) -> Outcome: ...

    async def release(self, backend: str, members: Sequence[str], head: int) -> Reserved: ...

    async def record_failure(
        self, backend: str, *, threshold: int, base: float, maximum: float, max_share: float
    ) -> float | None: ...

    async def record_success(self, backend: str, *, forget_after: float) -> None: ...

    async def cool_down(self, backend: str, seconds: float) -> float: ...

    async def learn(
        self,
        backend: str,
        seconds_per_unit: float | None,
        service: tuple[float, float] | None,
        tag: str,
    ) -> tuple[float | None, int | None]: ...

    async def finish(
        self,
        backend: str,
        members: Sequence[str],
        head: int,
        seconds_per_unit: float | None,
        service: tuple[float, float] | None,
        tag: str,
    ) -> tuple[Reserved, float | None, int | None]: ...


def member(track: str, work: float, started: float, expected_end: float) -> str:
    """A reservation member carries its work, start and expected end, so every instance can
    read the load (and a slowdown) back from the shared ledger."""
    return f"{track}~{work:.6g}~{int(started * 1000)}~{int(expected_end * 1000)}"


def track_of(member_name: str) -> str:
    return member_name.split("~", 1)[0]


@lru_cache(maxsize=4096)
def parse_slot(member_name: str) -> Slot | None:
    """The slot a member describes (see `member`). Cached: every ledger reply carries a
    backend's head of reservations again, mostly the same members as the last one."""
    parts = member_name.split("~")
    if len(parts) != 4:
        return None
    try:
        return Slot(float(parts[1]), int(parts[2]) / 1000, int(parts[3]) / 1000, parts[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class Completion:
    """What a finished job teaches its backend: `seconds` from submit to result for `work`
    units with `backlog` units ahead, or the provider's own `service` interval (epoch s)."""

    seconds: float
    work: float
    backlog: float
    service: tuple[float, float] | None = None
    tag: str = ""


@dataclass(frozen=True)
class EjectionRules:
    consecutive_failures: int = 5
    base_time: float = 5.0
    max_time: float = 300.0
    max_share: float = 0.5


@dataclass(frozen=True)
class Reservation:
    candidate: Candidate
    members: tuple[str, ...]
    backlog: float  # work (units) ahead of this job there when it was reserved
    expected: float = 0.0  # seconds to completion its own reservations there explain

    @property
    def backend(self) -> str:
        return self.candidate.backend.name


class NoRoutableBackend(Exception):
    """Every candidate is ejected, cooling down, drained or already tried."""


class AllFull(Exception):
    """No routable candidate can take the job now: it waits in the gateway queue."""


class Held(AllFull):
    """The job would finish soonest on a backend that is full: it waits for it there."""

    def __init__(self, candidate: Candidate) -> None:
        super().__init__(candidate.backend.name)
        self.candidate = candidate


# A reservation chosen on a view another instance has since changed is decided again on
# the fresh state the script returned; after this many changes in a row it takes its turn.
DECIDE_AGAIN = 8


class Router:
    def __init__(
        self,
        policy: Policy,
        view: FleetView,
        ledger: Ledger,
        *,
        lease: float,
        ejection: EjectionRules,
    ) -> None:
        self.policy = policy
        self.view = view
        self._ledger = ledger
        self._lease = lease
        self._ejection = ejection
        # One decision at a time per instance: each sees the reservations before it, as a
        # sequential decider would (a decision is one script call: ~0.3 ms).
        self._deciding = asyncio.Lock()

    def head(self, name: str) -> int:
        """Reservations to read in start order: those in service, and one more; at most
        HEAD_CAP + 1, so a backend that runs thousands at once (a hosted API) costs what a
        GPU server costs. Beyond the cap, work in service counts as waiting work spread
        over the idle workers (routing.load): an overestimate of a fraction of one job."""
        return min(self.view.parallelism[name], HEAD_CAP) + 1

    def waits(self, candidates: Sequence[Candidate]) -> bool:
        """Whether a queued job should stay in line now, by this view: its best backend is
        full (then its work counts ahead of later jobs there), or no backend has room."""
        view = self.view
        pool = [c for c in candidates if view.routable(c.backend.name)]
        if not pool:
            return False  # let the dispatch say why
        if not self.policy.holds:
            return not any(view.has_room(c.backend.name, c.need) for c in pool)
        best = self.policy.order(pool, view)[0]
        name = best.backend.name
        if view.has_room(name, best.need):
            return False
        view.ahead[name] = view.ahead.get(name, 0.0) + best.plan.work
        return True

    async def reserve(
        self,
        candidates: Sequence[Candidate],
        tracks: Sequence[str],
        exclude: set[str],
        *,
        held_back: float = 0.0,
    ) -> Reservation:
        """Reserve slots where the policy wants the job; raise when it should wait.

        A policy that `holds` (least_loaded) takes the backend where the job would finish
        soonest, even when it is full: then the job waits in the gateway queue for it
        (`Held`) rather than going to a slower free one. Others take the first with room.
        `held_back` is the share of each backend's slots this job may not take (kept free
        for a higher priority class); a job always fits on an otherwise idle backend.
        The script checks the choice against the shared ledger: if the chosen backend's
        load changed since this view read it (another instance reserved there), nothing is
        reserved and the choice is made again on the fresh state.
        """
        view = self.view
        pool = [
            c for c in candidates if c.backend.name not in exclude and view.routable(c.backend.name)
        ]
        if not pool:
            raise NoRoutableBackend
        async with self._deciding:
            return await self._reserve(pool, tracks, held_back)

    async def _reserve(
        self, pool: Sequence[Candidate], tracks: Sequence[str], held_back: float
    ) -> Reservation:
        view = self.view
        for turn in range(DECIDE_AGAIN + 1):
            ordered = self.policy.order(pool, view)
            if self.policy.holds:
                best = ordered[0]
                name = best.backend.name
                if not view.has_room(name, best.need):
                    # In line for it: later jobs see this work ahead of them there.
                    view.ahead[name] = view.ahead.get(name, 0.0) + best.plan.work
                    raise Held(best)
                ordered = [best]
            now = view.now()  # the store's clock: every instance reads these slots
            check = self.policy.holds and turn < DECIDE_AGAIN
            offers = [self._offer(c, tracks, now, check, held_back) for c in ordered]
            outcome = await self._ledger.reserve([o for o, _ in offers], self._lease)
            for name, reserved in outcome.loads.items():
                view.note_reserved(name, reserved)
            if outcome.changed is not None:
                continue
            if outcome.chosen is None:
                raise AllFull
            return next(r for o, r in offers if o.backend == outcome.chosen)
        raise AllFull  # unreachable: the last turn does not check versions

    def _offer(
        self, c: Candidate, tracks: Sequence[str], now: float, check: bool, held_back: float
    ) -> tuple[Offer, Reservation]:
        view, name = self.view, c.backend.name
        own = view.expected_completion(name, c.work_per_slot, queued=False)
        ends = now + own
        members = tuple(member(t, c.work_per_slot, now, ends) for t in tracks[: c.need])
        reserved = view.states[name].reserved
        version = reserved.version if check else -1
        capacity = view.capacity(name)
        capacity = max(c.need, capacity - int(capacity * held_back))
        offer = Offer(name, capacity, members, version, reserved.work, self.head(name))
        expected = own - view.reported_wait(name)
        return offer, Reservation(c, members, view.backlog(name), expected)

    async def release(self, backend: str, members: Sequence[str]) -> None:
        slots = [s for s in map(parse_slot, members) if s is not None]
        self.view.drop_slots(backend, slots)
        reserved = await self._ledger.release(backend, members, self.head(backend))
        self.view.note_reserved(backend, reserved)

    async def report_failure(self, backend: str, error: ProviderError) -> float | None:
        """Learn from a failed submit: a 429 cools the key down; ill health counts to ejection."""
        if error.outcome == "rate_limited":
            await self.cool_down(backend, error.retry_after or DEFAULT_COOLDOWN)
            return None
        if error.outcome not in HEALTH_OUTCOMES:
            return None
        return await self.count_failure(backend)

    async def count_failure(self, backend: str) -> float | None:
        """One consecutive failure more; returns the ejection end when this ejected it."""
        rules = self._ejection
        state = self.view.states[backend]
        state.failures += 1
        until = await self._ledger.record_failure(
            backend,
            threshold=rules.consecutive_failures,
            base=rules.base_time,
            maximum=rules.max_time,
            max_share=rules.max_share,
        )
        if until is not None:
            state.ejected_until = until  # act on it here at once; others see it on refresh
        return until

    def half_open(self, backend: str) -> bool:
        """Its ejection is over and one more failure would eject it again."""
        state = self.view.states[backend]
        return (
            state.ejected_until > 0
            and not self.view.ejected(backend)
            and state.failures >= self._ejection.consecutive_failures - 1
        )

    async def report_success(self, backend: str) -> None:
        state = self.view.states[backend]
        if state.failures:
            state.failures = 0
            await self._ledger.record_success(backend, forget_after=self._ejection.max_time)

    async def cool_down(self, backend: str, seconds: float) -> None:
        self.view.states[backend].cooldown_until = await self._ledger.cool_down(backend, seconds)

    async def learn(self, backend: str, done: Completion) -> None:
        """Fold one completed job into the backend's speed (and parallelism)."""
        observed, service = self._observation(backend, done)
        if observed is None and service is None:
            return
        self._learned(backend, *await self._ledger.learn(backend, observed, service, done.tag))

    async def finish(self, backend: str, members: Sequence[str], done: Completion) -> None:
        """A job's end: `release` its slots and `learn` from it, in one round trip."""
        observed, service = self._observation(backend, done)
        self.view.drop_slots(backend, [s for s in map(parse_slot, members) if s is not None])
        reserved, speed, parallel = await self._ledger.finish(
            backend, members, self.head(backend), observed, service, done.tag
        )
        self.view.note_reserved(backend, reserved)
        self._learned(backend, speed, parallel)

    def _observation(
        self, backend: str, done: Completion
    ) -> tuple[float | None, tuple[float, float] | None]:
        """(seconds per unit, service interval) a completion shows, each None if it shows none
        (the interval also None where the backend's parallelism is not learned).

        Where the provider said when the generation ran (`service`), the speed is its
        duration over the work. Otherwise `seconds` ran from submit to result for `work`
        units with `backlog` units ahead; by the load model that took
        max(work, (backlog + work) / parallelism) unit-times.
        """
        service, work = done.service, done.work
        if service is not None and service[1] > service[0] and work > 0:
            # The interval itself goes to the ledger only where parallelism is learned:
            # counting overlaps is most of a finished job's Redis time, and a backend whose
            # parallelism is configured or hosted would never read the count.
            return (service[1] - service[0]) / work, (
                service if backend in self.view.learning else None
            )
        parallelism = self.view.parallelism[backend]
        units = max(work, (done.backlog + work) / max(1, parallelism))
        return (done.seconds / units if units > 0 and done.seconds > 0 else None), None

    def _learned(self, backend: str, speed: float | None, parallel: int | None) -> None:
        if speed is not None:
            self.view.states[backend].seconds_per_unit = speed
        if parallel is not None:
            self.view.note_parallelism(backend, parallel)


class RetryBudget:
    """Retries may be at most `ratio` of the submissions in progress (at least `minimum`).

    Under a broad outage this stops every failed submit turning into several more.
    """

    def __init__(self, ratio: float, minimum: int) -> None:
        self._ratio = ratio
        self._minimum = minimum
        self.active = 0
        self.retrying = 0

    def allows_retry(self) -> bool:
        return self.retrying < max(self._minimum, self._ratio * self.active)
