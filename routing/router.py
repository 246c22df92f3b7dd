"""The router: order the candidates by policy, reserve atomically, learn from failures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from adapters.errors import ProviderError
from routing.backends import Candidate
from routing.policies import Policy
from routing.view import FleetView

# Failures that say something about the backend's health (not about the request).
HEALTH_OUTCOMES = frozenset({"unavailable", "timeout", "server_error", "auth_failed"})


class Ledger(Protocol):
    """Shared, atomic backend state (implemented by the gateway's store)."""

    async def reserve(
        self, candidates: Sequence[tuple[str, int, int]], members: Sequence[str], lease: float
    ) -> tuple[str | None, dict[str, int]]: ...

    async def release(self, backend: str, members: Sequence[str]) -> None: ...

    async def record_failure(
        self, backend: str, *, threshold: int, base: float, maximum: float, max_share: float
    ) -> float | None: ...

    async def record_success(self, backend: str) -> None: ...


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

    @property
    def backend(self) -> str:
        return self.candidate.backend.name


class NoRoutableBackend(Exception):
    """Every candidate is ejected, drained or already tried."""


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
        self, candidates: Sequence[Candidate], members: Sequence[str], exclude: set[str]
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
        need = max(c.need for c in ordered)
        chosen, seen = await self._ledger.reserve(
            [(c.backend.name, c.backend.max_concurrency, c.need) for c in ordered],
            members[:need],
            self._lease,
        )
        self.view.note_in_flight(seen)
        if chosen is None:
            raise AllFull
        candidate = next(c for c in ordered if c.backend.name == chosen)
        return Reservation(candidate, tuple(members[: candidate.need]))

    async def release(self, backend: str, members: Sequence[str]) -> None:
        await self._ledger.release(backend, members)

    async def report_failure(self, backend: str, error: ProviderError) -> float | None:
        """Count a health failure; returns the ejection end when this ejected the backend."""
        if error.outcome not in HEALTH_OUTCOMES:
            return None
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

    async def report_success(self, backend: str) -> None:
        state = self.view.states[backend]
        if state.failures:
            state.failures = 0
            await self._ledger.record_success(backend)
