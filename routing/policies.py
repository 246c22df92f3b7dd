"""Routing policies: each orders the candidates; the router reserves in that order."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from routing.backends import Candidate
from routing.view import FleetView


class Policy(Protocol):
    name: str
    # True: the job goes where it would finish soonest, waiting in the gateway queue when
    # that backend is full. False: the first candidate in order with room takes it.
    holds: bool

    def order(self, candidates: Sequence[Candidate], view: FleetView) -> list[Candidate]: ...


def expected_wait(candidate: Candidate, view: FleetView) -> float:
    """Seconds until this job would be done there (see routing/load.py)."""
    return view.expected_completion(candidate.backend.name, candidate.work_per_slot)


def _shuffled(candidates: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    # Shuffle first so that a stable sort breaks ties fairly, never "always the first".
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    return shuffled


class LeastLoaded:
    name = "least_loaded"
    holds = True

    def __init__(
        self,
        rng: random.Random | None = None,
        measure: Callable[[Candidate, FleetView], float] = expected_wait,
    ) -> None:
        self._rng = rng or random.Random()
        self._measure = measure

    def order(self, candidates: Sequence[Candidate], view: FleetView) -> list[Candidate]:
        return sorted(_shuffled(candidates, self._rng), key=lambda c: self._measure(c, view))


class PowerOfTwo:
    """Two random candidates, the lighter first; the rest follow by load as fallbacks."""

    name = "p2c"
    holds = False

    def __init__(
        self,
        rng: random.Random | None = None,
        measure: Callable[[Candidate, FleetView], float] = expected_wait,
    ) -> None:
        self._rng = rng or random.Random()
        self._measure = measure

    def order(self, candidates: Sequence[Candidate], view: FleetView) -> list[Candidate]:
        shuffled = _shuffled(candidates, self._rng)
        pair = sorted(shuffled[:2], key=lambda c: self._measure(c, view))
        rest = sorted(shuffled[2:], key=lambda c: self._measure(c, view))
        return pair + rest


class RoundRobin:
    name = "round_robin"
    holds = False

    def __init__(self) -> None:
        self._turn = itertools.count()

    def order(self, candidates: Sequence[Candidate], view: FleetView) -> list[Candidate]:
        if not candidates:
            return []
        start = next(self._turn) % len(candidates)
        return [*candidates[start:], *candidates[:start]]


class WeightedRandom:
    name = "weighted_random"
    holds = False

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def order(self, candidates: Sequence[Candidate], view: FleetView) -> list[Candidate]:
        # Efraimidis–Spirakis: sampling without replacement proportional to weight.
        keyed = [(self._rng.random() ** (1 / c.backend.weight), c) for c in candidates]
        return [c for _, c in sorted(keyed, key=lambda kc: kc[0], reverse=True)]


class Priority:
    """Fill preferred backends (config order, then weight) first; spill over in order."""

    name = "priority"
    holds = False

    def order(self, candidates: Sequence[Candidate], view: FleetView) -> list[Candidate]:
        return sorted(candidates, key=lambda c: (c.backend.order, -c.backend.weight))


def make_policy(name: str, rng: random.Random | None = None) -> Policy:
    policies: dict[str, Callable[[], Policy]] = {
        "least_loaded": lambda: LeastLoaded(rng),
        "p2c": lambda: PowerOfTwo(rng),
        "round_robin": RoundRobin,
        "weighted_random": lambda: WeightedRandom(rng),
        "priority": Priority,
    }
    return policies[name]()
