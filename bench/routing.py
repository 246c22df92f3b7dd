"""The routing benchmark: every policy against the oracle, in the model and through real
processes; results in bench/results/routing.json and routing.png.

Parts (see bench/__main__.py): `model` (steady state at 50/80/95% load, every policy, several
seeds), `admission` (the same fleet with every backend's max_concurrency = 1x, 2x, 4x its
parallelism), `failure` (one backend dies and one becomes 4x slower halfway, at 80% load),
`experiments` (candidate routing changes, clearly labelled, see bench/variants.py) and
`live` (the real gateway and simulators, time-compressed).
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from bench.des import Incident, Settings
from bench.fleet import FLEET, MIXED_ADMISSION, BackendSpec
from bench.live import LiveBench, LiveIncident
from bench.placers import ORACLE, run_model
from bench.stats import median, percentile, recovery, summary, windows

POLICIES = ("least_loaded", "p2c", "round_robin", "weighted_random", "priority", ORACLE)
LOADS = (0.5, 0.8, 0.95)
WARMUP = 0.10  # the first 10% of arrivals, while speeds are learned, are not measured
# The gateway before the benchmark's findings landed (no overdue signal), and a faster
# learning rate the first run suggested, measured against today's least_loaded.
EXPERIMENTS = ("least_loaded-overdue", "least_loaded+alpha=0.5")
# Fidelity checks of the model's simplifications, least_loaded vs oracle under each.
# (settings, extra policies): least_loaded and the oracle run under each.
FIDELITY: dict[str, tuple[Settings, tuple[str, ...]]] = {
    "provider_eta": (Settings(provider_eta=True), ()),
    "view_refresh_0.25s": (Settings(view_refresh=0.25), ()),
    "view_refresh_2.5s": (Settings(view_refresh=2.5), ()),
}

# The failure scenario: both incidents at `event`; windows of `width` s by arrival time.
PRIMARY = (Incident(400.0, "gpu-b2"), Incident(400.0, "gpu-b1", 4.0))
SEVERE = (Incident(400.0, "gpu-a2"), Incident(400.0, "gpu-a1", 4.0))
EVENT, WIDTH, BEFORE, AFTER = 400.0, 10.0, 100.0, 300.0
FAILURE_JOBS = 1800  # ~705 s of arrivals at 80% load: past the end of the horizon
THRESHOLD, HOLD = 1.2, 3
BOOTSTRAP = 200


DEFAULTS = Settings()


@dataclass(frozen=True)
class Task:
    policy: str
    load: float
    count: int
    seed: int
    fleet: tuple[BackendSpec, ...] = FLEET
    incidents: tuple[Incident, ...] = ()
    settings: Settings = DEFAULTS


def _steady(task: Task) -> dict[str, float]:
    run = run_model(
        task.policy, task.load, task.count, task.seed, fleet=task.fleet, settings=task.settings
    )
    first = int(task.count * WARMUP)
    ok = [
        lat for i, (lat, st) in enumerate(zip(run.latency, run.status, strict=True))
        if i >= first and st == "succeeded"
    ]  # fmt: skip
    failed = sum(1 for st in run.status if st == "failed")
    return {**summary(ok), "failed": failed, "lost": run.pending}


def _failure(task: Task) -> dict[str, Any]:
    run = run_model(task.policy, task.load, task.count, task.seed, incidents=task.incidents)
    pairs = list(zip(run.latency, run.status, run.backend, strict=True))
    ok = [lat if st == "succeeded" else math.nan for lat, st, _ in pairs]
    return {
        "windows": windows(run.arrival, ok, EVENT - BEFORE, EVENT + AFTER, WIDTH),
        "failed": sum(1 for st in run.status if st == "failed"),
        "failed_on": sorted({b for _, st, b in pairs if st == "failed"}),
        "lost": run.pending,
        "placed_on_dead_after_event": sum(
            1
            for at, b in zip(run.arrival, run.backend, strict=True)
            if at >= EVENT and b == task.incidents[0].backend
        ),
    }


class Runner:
    def __init__(self, workers: int = 2) -> None:
        self.pool = ProcessPoolExecutor(max_workers=workers)

    def close(self) -> None:
        self.pool.shutdown()

    def steady(
        self,
        policies: Sequence[str],
        loads: Iterable[float],
        seeds: Sequence[int],
        count: int,
        **extra: Any,
    ) -> dict[str, dict[str, Any]]:
        """Per load, per policy: medians across seeds, and paired ratios (same arrivals)."""
        tasks = [
            Task(p, load, count, s, **extra) for load in loads for p in policies for s in seeds
        ]
        results = dict(zip(tasks, self.pool.map(_steady, tasks), strict=True))
        out: dict[str, dict[str, Any]] = {}
        for load in sorted({t.load for t in tasks}):
            per: dict[str, list[dict[str, float]]] = {
                p: [results[t] for t in tasks if t.load == load and t.policy == p] for p in policies
            }
            row: dict[str, Any] = {}
            for p, runs in per.items():
                entry: dict[str, Any] = {
                    k: median([r[k] for r in runs]) for k in ("mean", "p50", "p99")
                }
                entry["failed"] = sum(r["failed"] for r in runs)
                entry["lost"] = sum(r["lost"] for r in runs)
                entry["p99_per_seed"] = [round(r["p99"], 3) for r in runs]
                for ref, key in ((ORACLE, "p99_ratio_to_oracle"), ("round_robin", "rr_p99_over")):
                    if ref in per:
                        pairs = zip(runs, per[ref], strict=True)
                        if key == "rr_p99_over":
                            entry[key] = median([b["p99"] / a["p99"] for a, b in pairs])
                        else:
                            entry[key] = median([a["p99"] / b["p99"] for a, b in pairs])
                if ORACLE in per:
                    entry["mean_ratio_to_oracle"] = median(
                        [a["mean"] / b["mean"] for a, b in zip(runs, per[ORACLE], strict=True)]
                    )
                row[p] = entry
            out[f"{load:g}"] = row
        return out

    def failure(
        self, policies: Sequence[str], incidents: tuple[Incident, ...], seeds: Sequence[int]
    ) -> dict[str, Any]:
        """Windowed p99 pooled over seeds (a 10 s window holds ~25 jobs per seed)."""
        tasks = [
            Task(p, 0.8, FAILURE_JOBS, s, incidents=incidents) for p in policies for s in seeds
        ]
        results = dict(zip(tasks, self.pool.map(_failure, tasks), strict=True))
        starts = [EVENT - BEFORE + WIDTH * i for i in range(int((BEFORE + AFTER) / WIDTH))]
        pooled: dict[str, list[float]] = {}
        out: dict[str, Any] = {"window_starts": starts, "policies": {}}
        for p in policies:
            mine = [results[t] for t in tasks if t.policy == p]
            lat = [[x for r in mine for x in r["windows"][i]] for i in range(len(starts))]
            pooled[p] = [percentile(w, 99) for w in lat]
            out["policies"][p] = {
                "p99": [round(x, 3) for x in pooled[p]],
                "jobs_per_window": [len(w) for w in lat],
                "failed": sum(r["failed"] for r in mine),
                "lost": sum(r["lost"] for r in mine),
                "placed_on_dead_backend_after_event": sum(
                    r["placed_on_dead_after_event"] for r in mine
                ),
            }
        per_seed = {p: [results[t]["windows"] for t in tasks if t.policy == p] for p in policies}
        for p in policies:
            if p == ORACLE or ORACLE not in pooled:
                continue
            ratios = [a / b for a, b in zip(pooled[p], pooled[ORACLE], strict=True)]
            before = [r for s, r in zip(starts, ratios, strict=True) if s + WIDTH <= EVENT]
            entry = out["policies"][p]
            entry["ratio_to_oracle"] = [round(r, 3) for r in ratios]
            entry["ratio_before_event_median"] = round(statistics.median(before), 3)
            # Nothing happened yet: how far the ratio wanders by noise alone.
            entry["ratio_before_event_max"] = round(max(before), 3)
            entry["recovery_seconds"] = recovery(starts, ratios, EVENT, WIDTH, THRESHOLD, HOLD)
            entry["recovery_bootstrap"] = _bootstrap(per_seed[p], per_seed[ORACLE], starts)
        return out


def _bootstrap(
    mine: list[list[list[float]]], oracle: list[list[list[float]]], starts: list[float]
) -> dict[str, Any]:
    """How much the recovery time owes to which seeds were drawn: resample seeds (paired)."""
    rng = random.Random(0)
    found: list[float] = []
    for _ in range(BOOTSTRAP):
        pick = [rng.randrange(len(mine)) for _ in mine]
        ratios = []
        for w in range(len(starts)):
            a = percentile([x for i in pick for x in mine[i][w]], 99)
            b = percentile([x for i in pick for x in oracle[i][w]], 99)
            ratios.append(a / b)
        rec = recovery(starts, ratios, EVENT, WIDTH, THRESHOLD, HOLD)
        found.append(math.inf if rec is None else rec)
    return {
        "resamples": BOOTSTRAP,
        "p10": percentile(found, 10),
        "p50": percentile(found, 50),
        "p90": percentile(found, 90),
        "share_within_30s": sum(1 for r in found if r <= 30) / len(found),
    }


def admission_fleets() -> dict[str, tuple[BackendSpec, ...]]:
    fleets = {
        f"{k}x": tuple(replace(b, max_concurrency=b.parallelism * k) for b in FLEET)
        for k in (1, 2, 4)
    }
    fleets["mixed 1-2x"] = tuple(
        replace(b, max_concurrency=m) for b, m in zip(FLEET, MIXED_ADMISSION, strict=True)
    )
    return fleets


def failure_inputs(seeds: Sequence[int]) -> dict[str, Any]:
    def describe(incidents: tuple[Incident, ...]) -> dict[str, Any]:
        lost = {i.backend: (1.0 if i.factor is None else 1 - 1 / i.factor) for i in incidents}
        share = sum(
            b.parallelism / b.seconds_per_unit * lost.get(b.name, 0.0) for b in FLEET
        ) / sum(b.parallelism / b.seconds_per_unit for b in FLEET)
        return {
            "dies": [i.backend for i in incidents if i.factor is None],
            "slows_4x": [i.backend for i in incidents if i.factor is not None],
            "capacity_lost": round(share, 3),
            "load_after_event": round(0.8 / (1 - share), 3),
        }

    return {
        "load": 0.8,
        "event_at": EVENT,
        "window_seconds": WIDTH,
        "horizon": [EVENT - BEFORE, EVENT + AFTER],
        "jobs_per_seed": FAILURE_JOBS,
        "seeds": list(seeds),
        "recovery_rule": (
            f"seconds from the event to the start of the first run of {HOLD} consecutive "
            f"windows whose pooled p99 is <= {THRESHOLD}x the oracle's"
        ),
        "primary": describe(PRIMARY),
        "severe": describe(SEVERE),
    }


async def live(
    policies: Sequence[str],
    *,
    scale: float,
    duration: float,
    seed: int,
    failure: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {"scale": scale, "duration_live_seconds": duration, "seed": seed}
    async with LiveBench(scale, seed) as bench:
        out["workdir"] = str(bench.workdir)
        for policy in policies:
            print(f"  live: {policy} for {duration:g} s ...", flush=True)
            result = await bench.run(
                policy, load=0.8, duration=duration, drain=30, result_timeout=900 * scale
            )
            result.pop("completions")
            out[policy] = result
        if failure:
            # The dead backend's jobs end at created_at + jobs.result_timeout; 15 s here (not
            # 900 x scale) so the run can wait for them.
            incident = LiveIncident(duration / 2, die=PRIMARY[0].backend, slow=PRIMARY[1].backend)
            print(f"  live: least_loaded with the incident for {duration:g} s ...", flush=True)
            result = await bench.run(
                "least_loaded", load=0.8, duration=duration, drain=40, result_timeout=15.0,
                incident=incident,
            )  # fmt: skip
            completions = result.pop("completions")
            step = 5.0
            result["window_live_seconds"] = step
            result["window_p99_live"] = [
                round(percentile([c[1] for c in completions if k * step <= c[0] < (k + 1) * step
                                  and c[2] == "succeeded"], 99), 3)
                for k in range(int(duration / step))
            ]  # fmt: skip
            result["incident_at_live_seconds"] = incident.at
            out["failure_least_loaded"] = result
    return out


def live_sync(policies: Sequence[str], **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(live(policies, **kwargs))
