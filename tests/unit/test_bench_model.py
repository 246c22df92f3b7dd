"""The routing benchmark's pure parts: statistics, the event model, the routing glue."""

from __future__ import annotations

import math

import pytest

from bench.des import Incident, Job, Model, Server, Settings
from bench.fleet import Arrival, BackendSpec, JobSpec, capacity, mean_work
from bench.modelrouting import SimLedger, run_sync
from bench.placers import placer_factory, run_model
from bench.stats import percentile, recovery, windows
from gateway.store.fleet import SPEED_ALPHA
from routing.load import REFERENCE_WORK, ewma, peak_overlap

FAST = BackendSpec("fast", 1.0, 1, 2)
SLOW = BackendSpec("slow", 4.0, 1, 1)
REF = JobSpec(512, 30, 1)  # one reference image: reference_seconds on a worker


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99
    assert math.isnan(percentile([], 99))


def test_windows_group_by_arrival_and_skip_failures() -> None:
    grouped = windows([0.5, 1.5, 1.7, 9.0], [1.0, 2.0, math.nan, 3.0], 0, 4, 1)
    assert grouped == [[1.0], [2.0], [], []]


def test_recovery_needs_a_run_of_windows_under_the_threshold() -> None:
    starts = [0, 10, 20, 30, 40, 50]
    assert recovery(starts, [1, 1, 2, 1, 1, 1], 20, 10, 1.2, 3) == 10
    assert recovery(starts, [1, 1, 1, 1, 1, 1], 20, 10, 1.2, 3) == 0
    assert recovery(starts, [1, 1, 2, 1, 2, 1], 20, 10, 1.2, 3) is None


def test_mean_work_matches_sampling() -> None:
    assert REF.work == pytest.approx(REFERENCE_WORK)
    assert capacity((FAST,)) == pytest.approx(1 / (FAST.seconds_per_unit * mean_work()))


def test_exact_completion_replays_the_fifo() -> None:
    server = Server(BackendSpec("b", 1.0, 2, 4), seconds_per_unit=1.0)
    server.running = {1: 10.0, 2: 4.0}
    assert server.exact_completion(0.0, 3.0) == 7.0  # waits for the worker free at 4
    server.running = {1: 10.0}
    assert server.exact_completion(0.0, 3.0) == 3.0  # an idle worker: own time only


def _model(jobs: list[tuple[float, JobSpec]], policy: str, **kw: object) -> Model:
    arrivals = [Arrival(i, at, job) for i, (at, job) in enumerate(jobs)]
    return Model(arrivals, placer_factory(policy, 1), fleet=[FAST, SLOW], **kw)  # type: ignore[arg-type]


def test_oracle_prefers_the_backend_that_finishes_first() -> None:
    model = _model([(0.0, REF), (0.0, REF), (0.0, REF), (0.0, REF)], "oracle")
    model.run()
    # fast: 1 s each, queue of one more; slow: 4 s. Third job: fast done at 3 < slow at 4.
    assert [j.server.spec.name for j in model.jobs if j.server] == ["fast", "fast", "slow", "fast"]
    assert [j.finished for j in model.jobs] == [1.0, 2.0, 4.0, 3.0]
    assert model.pending == 0


def test_policy_respects_admission_and_queues_in_the_gateway() -> None:
    model = _model([(0.0, REF)] * 5, "round_robin")
    model.run(until=0.0)
    held = {name: s.held for name, s in model.servers.items()}
    assert held == {"fast": 2, "slow": 1}
    assert len(model.queue) == 2
    model.run()
    assert all(j.status == "succeeded" for j in model.jobs)


def test_router_learns_speeds_from_completions() -> None:
    model = _model([(i * 10.0, REF) for i in range(20)], "least_loaded")
    model.run()
    learned = model.placer.ledger.speeds  # type: ignore[attr-defined]
    assert learned["fast"] == pytest.approx(FAST.seconds_per_unit, rel=1e-6)


def test_a_dead_backend_fails_its_jobs_at_their_deadline_and_loses_none() -> None:
    jobs = [(0.0, REF), (0.0, REF), (0.5, REF), (5.0, REF), (6.0, REF)]
    model = _model(
        jobs,
        "least_loaded",
        incidents=[Incident(0.6, "fast")],
        settings=Settings(result_timeout=30),
    )
    model.run()
    assert model.pending == 0
    failed = [j for j in model.jobs if j.status == "failed"]
    assert failed
    assert all(j.finished == pytest.approx(j.arrival + 30) for j in failed)
    assert all(j.server is not None and j.server.spec.name == "slow" for j in model.jobs[3:])


def test_ledger_learning_is_the_stores_ewma() -> None:
    ledger = SimLedger(lambda: 0.0, ["b"])
    assert run_sync(ledger.learn("b", 1.0, None, "1")) == (1.0, None)
    assert run_sync(ledger.learn("b", 100.0, None, "2"))[0] == ewma(1.0, 100.0, SPEED_ALPHA)


def test_ledger_learns_parallelism_from_overlapping_service_times() -> None:
    ledger = SimLedger(lambda: 0.0, ["b"])
    # Two workers: pairs of jobs run side by side, one after another.
    spans = [(t, t + 1.0) for t in range(10) for _ in range(2)]
    learned = [run_sync(ledger.learn("b", None, s, str(i)))[1] for i, s in enumerate(spans)]
    assert learned[-1] == 2
    assert peak_overlap([(0.0, 1.0), (0.98, 2.0)]) == 1  # a late callback is not overlap


def test_run_sync_refuses_a_coroutine_that_waits() -> None:
    import asyncio

    with pytest.raises(RuntimeError):
        run_sync(asyncio.sleep(0.01))


def test_same_seed_same_result() -> None:
    a = run_model("least_loaded", 0.8, 300, 3, fleet=[FAST, SLOW])
    b = run_model("least_loaded", 0.8, 300, 3, fleet=[FAST, SLOW])
    assert a == b


def test_the_model_fills_a_free_slow_slot_from_beyond_the_first_few_in_line() -> None:
    # QueueRunner's late binding, as the model mirrors it (tests/unit/test_policies.py has
    # the runner's own test): four fast workers busy until 1.0, one idle worker 4x slower,
    # fifteen jobs arrive at 0.4. The first ten in line finish sooner by waiting for the
    # fast ones; the eleventh goes to the slow worker at once (4.0 s there, 4.1 s waiting).
    fast = BackendSpec("fast", 1.0, 4, 4)
    slow = BackendSpec("slow", 4.0, 1, 1)
    jobs = [Arrival(i, 0.0 if i < 4 else 0.4, REF) for i in range(19)]
    model = Model(jobs, placer_factory("least_loaded", 1), fleet=[fast, slow])
    placer = model.placer
    placer.ledger.speeds = {"fast": fast.seconds_per_unit, "slow": slow.seconds_per_unit}  # type: ignore[attr-defined]
    placer.refresh()
    model.run(until=0.4)
    on = {j.index: j.server.spec.name for j in model.jobs if j.server is not None}
    assert on == {0: "fast", 1: "fast", 2: "fast", 3: "fast", 14: "slow"}
    assert [j.index for j in model.queue][:10] == list(range(4, 14))
    model.run()
    assert model.pending == 0


def test_a_new_job_joins_the_line_when_others_wait() -> None:
    # api/generations.py: with jobs waiting, a new one is not tried on its own; it joins
    # the line and the runner looks at the line in order (the newcomer behind the others,
    # seeing their work ahead of it).
    tiny = JobSpec(256, 20, 1)
    model = _model([(0.0, REF), (0.0, REF), (0.0, REF), (0.1, tiny)], "least_loaded")
    placer = model.placer
    placer.ledger.speeds = {"fast": FAST.seconds_per_unit, "slow": SLOW.seconds_per_unit}  # type: ignore[attr-defined]
    placer.refresh()
    decided: list[int] = []
    place = placer.place

    def logged(job: Job) -> bool:
        decided.append(job.index)
        return place(job)

    placer.place = logged  # type: ignore[method-assign]
    model.run(until=0.0)
    assert [j.index for j in model.queue] == [2]  # fast has 2 (its limit); 2 waits for it
    decided.clear()
    model.run(until=0.1)
    assert decided == [2, 3]  # the line first, then the newcomer (it fits on slow)
    assert model.jobs[3].server is not None
    assert model.jobs[3].server.spec.name == "slow"
