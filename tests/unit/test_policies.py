"""Routing policies order candidates; ties are broken fairly."""

from __future__ import annotations

import random
from collections import Counter

from pydantic import SecretStr

from adapters.base import Target
from adapters.modelslab import FACTORY
from adapters.normalized import GenerationRequest
from routing.backends import Backend, Candidate
from routing.policies import make_policy
from routing.view import FleetView


def candidates(caps: dict[str, int], weights: dict[str, float] | None = None) -> list[Candidate]:
    request = GenerationRequest(prompt="x")
    out = []
    for order, (name, cap) in enumerate(caps.items()):
        adapter = FACTORY.create(Target(name, "http://x", SecretStr("k"), {"default": "m"}))
        backend = Backend(name, adapter, cap, (weights or {}).get(name, 1.0), order=order)
        out.append(Candidate(backend, adapter.plan(request)))
    return out


def test_least_loaded_prefers_spare_capacity_relative_to_size() -> None:
    cands = candidates({"small": 2, "big": 10})
    view = FleetView(["small", "big"])
    view.states["small"].in_flight = 1
    view.states["big"].in_flight = 4
    assert make_policy("least_loaded", random.Random(1)).order(cands, view)[0].backend.name == "big"


def test_ties_are_broken_fairly_not_always_first() -> None:
    cands = candidates({"a": 4, "b": 4, "c": 4})
    view = FleetView(["a", "b", "c"])
    policy = make_policy("least_loaded", random.Random(7))
    firsts = Counter(policy.order(cands, view)[0].backend.name for _ in range(3000))
    assert set(firsts) == {"a", "b", "c"}
    assert min(firsts.values()) > 800


def test_round_robin_rotates() -> None:
    cands = candidates({"a": 1, "b": 1, "c": 1})
    policy = make_policy("round_robin")
    view = FleetView(["a", "b", "c"])
    assert [policy.order(cands, view)[0].backend.name for _ in range(6)] == ["a", "b", "c"] * 2


def test_weighted_random_follows_weights() -> None:
    cands = candidates({"a": 1, "b": 1}, {"a": 3, "b": 1})
    policy = make_policy("weighted_random", random.Random(3))
    firsts = Counter(
        policy.order(cands, FleetView(["a", "b"]))[0].backend.name for _ in range(4000)
    )
    assert 2.5 < firsts["a"] / firsts["b"] < 3.5


def test_priority_fills_in_config_order() -> None:
    cands = candidates({"first": 1, "second": 1})
    order = make_policy("priority").order(list(reversed(cands)), FleetView(["first", "second"]))
    assert [c.backend.name for c in order] == ["first", "second"]
