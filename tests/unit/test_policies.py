"""Routing policies order candidates by the load model; ties are broken fairly."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest
from pydantic import SecretStr

import routing.load
from adapters.base import Target
from adapters.modelslab import FACTORY
from adapters.normalized import GenerationRequest
from bench.modelrouting import SimLedger, SimView
from gateway.dispatch import Dispatched
from gateway.jobs.model import JobRecord, JobStatus, utcnow
from gateway.queue_runner import LOOK_AHEAD, QueueRunner
from gateway.store.jobs import Versioned
from routing.backends import Backend, Candidate
from routing.eligibility import Eligible
from routing.load import Reserved, Slot, expected_completion, remaining_work, start_delay
from routing.policies import make_policy
from routing.router import AllFull, EjectionRules, Router
from routing.router import member as router_member
from routing.view import FleetView


def candidates(caps: dict[str, int], weights: dict[str, float] | None = None) -> list[Candidate]:
    request = GenerationRequest(prompt="x", width=512, height=512, steps=30)
    out = []
    for order, (name, cap) in enumerate(caps.items()):
        adapter = FACTORY.create(Target(name, "http://x", SecretStr("k"), {"default": "m"}))
        backend = Backend(name, adapter, cap, weight=(weights or {}).get(name, 1.0), order=order)
        out.append(Candidate(backend, adapter.plan(request)))
    return out


def view(caps: dict[str, int], speeds: dict[str, float] | None = None) -> FleetView:
    fleet = FleetView(dict(caps))
    for name, speed in (speeds or {}).items():
        fleet.states[name].seconds_per_unit = speed
    return fleet


def test_idle_fleet_prefers_the_fastest_backend() -> None:
    caps = {"slow": 8, "fast": 1}
    order = make_policy("least_loaded", random.Random(1)).order(
        candidates(caps), view(caps, {"slow": 2.0, "fast": 0.5})
    )
    assert order[0].backend.name == "fast"  # 8 slow slots do not make one job faster


def test_backlog_on_the_fast_backend_sends_work_to_the_slower_idle_one() -> None:
    caps = {"slow": 1, "fast": 1}
    fleet = view(caps, {"slow": 1.0, "fast": 0.5})
    now = time.time()
    fleet.note_reserved(
        "fast", Reserved.of([Slot(7.86, now, track="a"), Slot(7.86, now, track="b")])
    )
    order = make_policy("least_loaded", random.Random(1)).order(candidates(caps), fleet)
    assert order[0].backend.name == "slow"


def test_a_server_without_a_hard_limit_is_sent_four_times_what_it_runs_at_once() -> None:
    # Not 2x: that bound did the routing (round_robin's jobs waited in the gateway queue for
    # the next free worker, only ~2x worse than least_loaded in the model, 1.7x live).
    fleet = FleetView(
        {"gpu": 2, "comfy": 1, "api": 3}, limits={"gpu": None, "comfy": None, "api": 5}
    )
    assert [fleet.capacity(n) for n in ("gpu", "comfy", "api")] == [8, 4, 5]
    fleet.learning = frozenset({"gpu"})
    fleet.note_parallelism("gpu", 3)  # learned: the bound follows it
    assert fleet.capacity("gpu") == 12


def test_load_model_is_the_per_slot_fifo() -> None:
    now = 1000.0

    def completion(slots: list[Slot], parallelism: int, **kw: float) -> float:
        return expected_completion(
            10, seconds_per_unit=1.0, parallelism=parallelism, reserved=Reserved.of(slots),
            now=now, **kw,
        )  # fmt: skip

    # Idle: the job's own service time; idle workers beside a busy one change nothing.
    assert completion([], 4) == 10
    assert completion([Slot(10, now - 4)], 4) == 10
    # One worker busy 6 s more, then the job: 16 s; with another reported second, 17.
    assert completion([Slot(10, now - 4)], 1) == 16
    assert completion([Slot(10, now - 4)], 1, reported_wait=1) == 17
    # Two in service (6 s and 9 s left), one of 10 waiting: it takes the worker free at 6,
    # the new job the one free at 9: 19 s (water-filling puts it at 12.5 + 10).
    slots = [Slot(10, now - 4), Slot(10, now - 1), Slot(10, now)]
    assert completion(slots, 2) == pytest.approx(22.5)
    assert remaining_work(Reserved.of(slots), 1.0, 2, now) == pytest.approx(6 + 9 + 10)
    # Work the gateway queue holds for the backend counts like work queued there.
    assert completion(slots[:2], 2, ahead=10) == pytest.approx(22.5)
    # Aggregates: all the waiting work counts, only the first `parallelism` are looked at.
    many = Reserved.of([Slot(1, now + i) for i in range(100_000)])
    assert completion(many.head, 1) == pytest.approx(1 + 99_999 + 10)
    assert start_delay([1.0, 3.0], 4.0, 2) == 4.0


def test_unknown_speed_borrows_the_fleet_median() -> None:
    fleet = view({"a": 1, "b": 1, "new": 1}, {"a": 0.2, "b": 0.4})
    assert fleet.seconds_per_unit("new") == pytest.approx(0.3)
    assert FleetView({"only": 1}, speed_prior=0.7).seconds_per_unit("only") == 0.7


def test_ties_are_broken_fairly_not_always_first() -> None:
    caps = {"a": 4, "b": 4, "c": 4}
    cands, fleet = candidates(caps), view(caps)
    policy = make_policy("least_loaded", random.Random(7))
    firsts = Counter(policy.order(cands, fleet)[0].backend.name for _ in range(3000))
    assert set(firsts) == {"a", "b", "c"}
    assert min(firsts.values()) > 800


def test_p2c_picks_the_better_of_two() -> None:
    caps = {"a": 1, "b": 1}
    fleet = view(caps, {"a": 0.1, "b": 1.0})
    policy = make_policy("p2c", random.Random(5))
    assert all(policy.order(candidates(caps), fleet)[0].backend.name == "a" for _ in range(50))


def test_round_robin_rotates() -> None:
    caps = {"a": 1, "b": 1, "c": 1}
    cands, fleet = candidates(caps), view(caps)
    policy = make_policy("round_robin")
    assert [policy.order(cands, fleet)[0].backend.name for _ in range(6)] == ["a", "b", "c"] * 2


def test_weighted_random_follows_weights() -> None:
    caps = {"a": 1, "b": 1}
    cands, fleet = candidates(caps, {"a": 3, "b": 1}), view(caps)
    policy = make_policy("weighted_random", random.Random(3))
    firsts = Counter(policy.order(cands, fleet)[0].backend.name for _ in range(4000))
    assert 2.5 < firsts["a"] / firsts["b"] < 3.5


def test_priority_fills_in_config_order() -> None:
    caps = {"first": 1, "second": 1}
    cands, fleet = candidates(caps), view(caps)
    order = make_policy("priority").order(list(reversed(cands)), fleet)
    assert [c.backend.name for c in order] == ["first", "second"]


def test_a_decision_reads_only_what_is_in_service_with_100000_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the ledger hands the view: aggregates plus the first parallelism + 1 members.
    now = time.time()
    fleet = view({"a": 1, "b": 1}, {"a": 0.5, "b": 0.5})
    fleet.parallelism.update(a=4, b=4)
    for name in ("a", "b"):
        head = [Slot(10, now - i, track=f"{name}{i}") for i in range(5)]
        fleet.note_reserved(name, Reserved(head, count=100_000, work=10 * 100_000, version=7))
    looked_at = []
    real = routing.load.time_left

    def counting(slot: Slot, seconds_per_unit: float, at: float) -> float:
        looked_at.append(slot)
        return real(slot, seconds_per_unit, at)

    monkeypatch.setattr(routing.load, "time_left", counting)
    order = make_policy("least_loaded", random.Random(1)).order(candidates({"a": 1, "b": 1}), fleet)
    assert len(order) == 2
    assert len(looked_at) <= 2 * 4 * 2  # per candidate: its 4 in service, for speed and wait
    # ... and the 99,996 waiting there still count, through the total work.
    assert fleet.expected_completion("a", 7.86) > 0.5 * 10 * 99_000 / 4


def _water_fill(free: list[float], queued: float, parallelism: int) -> float:
    """The definition start_delay computes: every worker as one level, filled one by one."""
    levels = sorted([*free[:parallelism], *[0.0] * max(0, parallelism - len(free))])
    left, level = queued, levels[0]
    for i in range(1, len(levels)):
        if left <= (levels[i] - level) * i:
            return level + left / i
        left -= (levels[i] - level) * i
        level = levels[i]
    return level + left / len(levels)


def test_start_delay_is_the_water_fill_and_costs_only_busy_workers() -> None:
    rng = random.Random(5)
    for _ in range(5000):
        parallelism = rng.randint(1, 12)
        free = [rng.choice([0.0, rng.uniform(0, 5)]) for _ in range(rng.randint(0, 15))]
        queued = rng.choice([0.0, rng.uniform(0, 10)])
        assert start_delay(free, queued, parallelism) == pytest.approx(
            _water_fill(free, queued, parallelism)
        )
    # Idle workers are one block: a huge configured parallelism (a mock, a hosted API) is
    # not a list of that many levels (the bench's 100,000 made every submit cost ~7 ms).
    assert start_delay([2.0, 4.0], 0.0, 10**12) == 0.0
    assert start_delay([2.0], 10**12, 10**12) == pytest.approx(1.0)


class _Line:
    """The gateway queue as QueueRunner uses it: jobs in order, left in line when peeked."""

    def __init__(self, ids: list[str]) -> None:
        self.jobs = [(job_id, float(i)) for i, job_id in enumerate(ids)]
        self.waiting = {"interactive": len(ids)}
        self.peeked: list[int] = []

    async def peek(self, count: int) -> list[tuple[str, float]]:
        self.peeked.append(count)
        return self.jobs[:count]

    async def take(self, job_id: str) -> float | None:
        found = [s for j, s in self.jobs if j == job_id]
        self.jobs = [(j, s) for j, s in self.jobs if j != job_id]
        return found[0] if found else None

    async def put_back(self, jobs: list[tuple[str, float]]) -> None:
        self.jobs = sorted([*self.jobs, *jobs], key=lambda js: js[1])

    async def remove(self, job_id: str) -> bool:
        return await self.take(job_id) is not None


class _Records:
    async def get(self, job_id: str) -> Versioned:
        now = utcnow()
        record = JobRecord(id=job_id, status=JobStatus.QUEUED, tenant="acme", created_at=now,
                           updated_at=now, secret="s", request={})  # fmt: skip
        return Versioned(1, record)


class _Dispatcher:
    """gateway/dispatch.py's first attempt: reserve through the router, or stay queued."""

    def __init__(self, router: Router, pool: list[Candidate]) -> None:
        self.router, self.pool = router, pool
        self.placed: dict[str, str] = {}

    async def eligible(self, record: Any) -> Eligible:
        return Eligible(self.pool)

    async def dispatch(self, current: Any, eligible: Eligible) -> Dispatched:
        job_id = current.record.id
        try:
            reservation = await self.router.reserve(eligible.candidates, [f"{job_id}.0"], set())
        except AllFull:
            return Dispatched(current, placed=False)
        self.placed[job_id] = reservation.backend
        return Dispatched(current, placed=True)


async def test_a_free_slow_slot_is_filled_from_beyond_the_first_few_in_line() -> None:
    # Four busy fast workers (free in 0.6 s, 1 s per job) and one idle worker 4x slower. The
    # first ten in line finish sooner by waiting for the fast ones (the tenth at 0.6 + 9/4 +
    # 1 = 3.85 s); the eleventh would finish at 4.1 s there, 4 s on the slow one: it goes.
    # A runner that looked only at the first LOOK_AHEAD (8) left the slow worker idle.
    now = 1000.0
    caps = {"fast": 4, "slow": 1}
    pool = candidates(caps)
    work = pool[0].plan.work
    fleet = SimView(lambda: now, dict(caps), 0.5, limits=dict(caps))
    fleet.states["fast"].seconds_per_unit = 1.0 / work
    fleet.states["slow"].seconds_per_unit = 4.0 / work
    busy = [Slot(work, now - 0.4, now + 0.6, f"busy{i}") for i in range(4)]
    ledger = SimLedger(lambda: now, list(caps))
    ledger.members["fast"] = {
        router_member(s.track, s.work, s.started, s.expected_end): s for s in busy
    }
    fleet.note_reserved("fast", ledger.state("fast"))
    router = Router(
        make_policy("least_loaded", random.Random(1)), fleet, ledger, lease=30.0,
        ejection=EjectionRules(),
    )  # fmt: skip
    line = _Line([f"job{i}" for i in range(1, 16)])
    dispatcher = _Dispatcher(router, pool)
    runner = QueueRunner(
        queue=line, jobs=_Records(), dispatcher=dispatcher, router=router,  # type: ignore[arg-type]
        backends={c.backend.name: c.backend for c in pool}, view=fleet, metrics=None,  # type: ignore[arg-type]
    )  # fmt: skip
    assert await runner.drain() == 1
    assert dispatcher.placed == {"job11": "slow"}
    assert [j for j, _ in line.jobs][:10] == [f"job{i}" for i in range(1, 11)]
    # The rest of the second read (jobs 9-15) was looked at too: each that waits, once.
    assert fleet.ahead["fast"] == pytest.approx(14 * work)
    assert max(line.peeked) > LOOK_AHEAD
    # Nothing is free any more: the next look reads the first few and stops.
    line.peeked.clear()
    assert await runner.drain() == 0
    assert line.peeked == []
