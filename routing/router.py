"""The router: order the candidates by policy, reserve atomically, learn from outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from adapters.errors import ProviderError
from routing.backends import Candidate
from routing.load import Slot
from routing.policies import Policy
from routing.view import FleetView

# Failures that say something about the backend's health (not about the request).
HEALTH_OUTCOMES = frozenset({"unavailable", "timeout", "server_error", "auth_failed"})
DEFAULT_COOLDOWN = 1.0  # seconds, when a 429 does not say how long


class Ledger(Protocol):
    """Shared, atomic backend state (implemented by the gateway's store)."""

    async def reserve(
        self, candidates: Sequence[tuple[str, int, Sequence[str]]], lease: float
    ) -> tuple[str | None, dict[str, int]]: ...

    async def release(self, backend: str, members: Sequence[str]) -> None: ...

    async def record_failure(
        self, backend: str, *, threshold: int, base: float, maximum: float, max_share: float
    ) -> float | None: ...

    async def record_success(self, backend: str, *, forget_after: float) -> None: ...

    async def cool_down(self, backend: str, seconds: float) -> float: ...

    async def learn_speed(self, backend: str, seconds_per_unit: float) -> float: ...


def member(track: str, work: float, started: float, expected_end: float) -> str:
    """A reservation member carries its work, start and expected end, so every instance can
    read the load (and a slowdown) back from the shared ledger."""
    return f"{track}~{work:.6g}~{int(started * 1000)}~{int(expected_end * 1000)}"


def track_of(member_name: str) -> str:
    return member_name.split("~", 1)[0]


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

    @property
    def backend(self) -> str:
        return self.candidate.backend.name


class NoRoutableBackend(Exception):
    """Every candidate is ejected, cooling down, drained or already tried."""


class AllFull(Exception):
    """Every routable candidate is at its max_concurrency."""


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

    async def reserve(
        self, candidates: Sequence[Candidate], tracks: Sequence[str], exclude: set[str]
    ) -> Reservation:
        """Reserve slots on the best candidate with room; raise when none can take it."""
        pool = [
            c
            for c in candidates
            if c.backend.name not in exclude and self.view.routable(c.backend.name)
        ]
        if not pool:
            raise NoRoutableBackend
        ordered = self.policy.order(pool, self.view)
        now = self.view.now()  # the store's clock: every instance reads these slots
        offers, backlogs = [], {}
        for c in ordered:
            name = c.backend.name
            backlogs[name] = self.view.backlog(name)
            ends = now + self.view.expected_completion(name, c.work_per_slot)
            members = [member(t, c.work_per_slot, now, ends) for t in tracks[: c.need]]
            offers.append((name, c.backend.max_concurrency, members))
        chosen, seen = await self._ledger.reserve(offers, self._lease)
        self.view.note_in_flight(seen)
        if chosen is None:
            raise AllFull
        index = next(i for i, c in enumerate(ordered) if c.backend.name == chosen)
        candidate, members = ordered[index], offers[index][2]
        ends = now + self.view.expected_completion(chosen, candidate.work_per_slot)
        self.view.add_slots(
            chosen,
            [Slot(candidate.work_per_slot, now, ends, track_of(m)) for m in members],
        )
        return Reservation(candidate, tuple(members), backlogs[chosen])

    async def release(self, backend: str, members: Sequence[str]) -> None:
        self.view.drop_slots(backend, {track_of(m) for m in members})
        await self._ledger.release(backend, members)

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

    async def learn(self, backend: str, seconds: float, work: float, backlog: float) -> None:
        """Fold one completed job into the backend's speed.

        `seconds` ran from submit to result for `work` units with `backlog` units ahead; by
        the load model that took max(work, (backlog + work) / parallelism) unit-times.
        """
        parallelism = self.view.parallelism[backend]
        units = max(work, (backlog + work) / max(1, parallelism))
        if units <= 0 or seconds <= 0:
            return
        learned = await self._ledger.learn_speed(backend, seconds / units)
        self.view.states[backend].seconds_per_unit = learned


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
