"""`python -m bench [routing|overhead|tenants|instructions|latency]`: the routing benchmark
(the default), the overhead benchmark (bench/overhead.py), the tenants benchmark
(priorities and weighted shares, bench/tenants.py), instructions per submit under callgrind
against an earlier revision (bench/instructions.py) or the added latency at one rate in
short interleaved rounds (bench/latency.py); `--help` after any for its options.

Routing's default parts: issue 9's grid (`grid`: the model over every fleet x config x load;
`live`: real processes, two instances, the acceptance cells). The earlier benchmark's parts
(`model`, `admission`, `failure`, `experiments`, `live1`) stay available. Results are merged
into bench/results/routing.json (parts not run keep their last figures)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import decision_cost, fleet, gridreport, gridrun, livegrid, routing
from bench.grid import LIVE_SCALE
from bench.placers import ORACLE
from bench.report import plot, table

PARTS = (
    "grid", "live", "live-configs", "live-fleets", "cost",
    "model", "admission", "failure", "experiments", "live1",
)  # fmt: skip
DEFAULT_PARTS = "grid,live"
RESULTS = Path(__file__).resolve().parent / "results"


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--parts", default=DEFAULT_PARTS, help=f"comma list of {PARTS}")
    parser.add_argument("--grid-jobs", type=int, help="model jobs per grid cell (default 4000)")
    parser.add_argument(
        "--live-every-cell", action="store_true", help="live: every fleet x config x load"
    )
    parser.add_argument("--grid-scale", type=float, default=LIVE_SCALE, help="live grid time scale")
    parser.add_argument(
        "--live-seeds", type=int, default=2, help="live grid: arrival seeds (cells: medians)"
    )
    parser.add_argument("--seeds", type=int, help="model seeds per load x policy (default 5)")
    parser.add_argument("--jobs", type=int, help="model jobs per run (default 20000)")
    parser.add_argument("--failure-seeds", type=int, help="failure-scenario seeds (default 96)")
    parser.add_argument("--live-duration", type=float, help="live seconds per policy (90)")
    parser.add_argument(
        "--live-policies",
        default="least_loaded,round_robin,p2c",
        help="comma list, or 'all' for every strategy",
    )
    parser.add_argument("--scale", type=float, default=0.1, help="live time compression")
    parser.add_argument("--workers", type=int, default=2, help="model processes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def _clean(value: Any) -> Any:
    """JSON without NaN (null instead), floats rounded for reading."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (`timeout`, a CI runner, `kill`) unwinds like Ctrl-C: every `finally` runs, so
    the redis-servers, simulators and gateways a part started are stopped, not orphaned."""
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if len(sys.argv) > 1 and sys.argv[1] == "overhead":
        from bench import overhead

        return overhead.main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "instructions":
        from bench import instructions

        return instructions.main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "latency":
        from bench import latency

        return latency.main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "tenants":
        from bench import tenants

        return tenants.main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "routing":
        del sys.argv[1]
    args = _args()
    parts = set(args.parts.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts: {', '.join(sorted(unknown))}")
    seeds = list(range(1, 1 + (args.seeds or (2 if args.quick else 5))))
    jobs = args.jobs or (5000 if args.quick else 20000)
    fseeds = list(range(101, 101 + (args.failure_seeds or (12 if args.quick else 96))))
    # 90 s gives ~2,000 measured jobs per policy: a p99 that is more than a few outliers.
    duration = args.live_duration or (15.0 if args.quick else 90.0)
    live_policies = (
        [p for p in routing.POLICIES if p != ORACLE]
        if args.live_policies == "all"
        else args.live_policies.split(",")
    )
    results: dict[str, Any] = {
        "benchmark": "routing",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "quick": args.quick,
        "inputs": {
            **fleet.describe(),
            "loads": list(routing.LOADS),
            "policies": list(routing.POLICIES),
            "model_seeds": seeds,
            "model_jobs_per_run": jobs,
            "warmup_share_not_measured": routing.WARMUP,
            "model_settings": dataclasses.asdict(routing.DEFAULTS),
        },
    }
    started = time.monotonic()
    exp = routing.EXPERIMENTS if "experiments" in parts else ()
    runner = routing.Runner(args.workers)
    try:
        if "model" in parts:
            print(f"model: {len(routing.POLICIES)} policies x {routing.LOADS} x {len(seeds)} seeds")
            results["model"] = {
                "results": runner.steady(routing.POLICIES, routing.LOADS, seeds, jobs)
            }
        if "admission" in parts:
            print("admission depth sensitivity ...")
            pols: tuple[str, ...] = ("least_loaded", "round_robin", ORACLE)
            results["admission"] = {
                "note": "the same fleet with max_concurrency = k x parallelism on every backend",
                "seeds": seeds[:3],
                "results": {
                    depth: runner.steady(pols, (0.8,), seeds[:3], jobs, fleet=f)
                    for depth, f in routing.admission_fleets().items()
                },
            }
        if "failure" in parts:
            print(f"failure scenarios x {len(fseeds)} seeds ...")
            inputs = routing.failure_inputs(fseeds)
            pols = ("least_loaded", *exp, ORACLE)
            part = runner.failure(pols, routing.PRIMARY, fseeds)
            results["failure"] = {**part, "inputs": {**inputs, "scenario": inputs["primary"]}}
            severe_seeds = fseeds[: max(4, len(fseeds) // 6)]
            part = runner.failure(
                ("least_loaded", "round_robin", ORACLE), routing.SEVERE, severe_seeds
            )
            results["failure_severe"] = {
                **part,
                "inputs": {**inputs, "seeds": severe_seeds, "scenario": inputs["severe"]},
                "note": "over capacity after the event: queues grow for every policy, so the "
                "ratio to the oracle says little; shown to explain the choice of the primary",
            }
        if "experiments" in parts:
            print("experiments (candidate routing changes, model fidelity) ...")
            pols = ("least_loaded", *routing.EXPERIMENTS, ORACLE)
            results["experiments"] = {
                "note": "bench/variants.py: NOT the gateway's behaviour: the gateway as it "
                "was before (no overdue signal) and a faster learning rate, for comparison. "
                "Their failure-scenario results are under failure.policies.",
                "seeds": seeds[:3],
                "steady": runner.steady(pols, (0.8, 0.95), seeds[:3], jobs),
                "fidelity": {
                    name: runner.steady(
                        ("least_loaded", *extra, ORACLE), (0.8, 0.95), seeds[:3], jobs, settings=st
                    )
                    for name, (st, extra) in routing.FIDELITY.items()
                },
            }
    finally:
        runner.close()
    if "grid" in parts:
        count = args.grid_jobs or (1500 if args.quick else 4000)
        print(f"grid (model): every fleet x config x load, {count} jobs per cell ...", flush=True)
        results["grid"] = gridrun.model_grid(count, seed=1, workers=args.workers)
    if "live" in parts:
        print("live grid: two gateway instances, requests alternating ...", flush=True)
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        runs = []
        for seed in range(1, 1 + args.live_seeds):
            print(f" arrivals seed {seed} of {args.live_seeds}", flush=True)
            run = gridrun.live_grid(
                quick=args.quick, scale=args.grid_scale, duration=args.live_duration,
                seed=seed, every=args.live_every_cell,
            )  # fmt: skip
            runs.append({**run, "seed": seed})
        results["live_grid"] = livegrid.over_seeds(runs)
        results["live_grid"]["loadavg_before"] = load_before
    for wanted, key, what, choice in (
        ("live-configs", "live_configs", "point 2: both policies across admission configs",
         {"configs": True}),
        ("live-fleets", "live_fleets", "the homogeneous and ComfyUI-mix fleets, minimal, 80%",
         {"other_fleets": True}),
    ):  # fmt: skip
        if wanted in parts:
            print(f"live, {what} ...", flush=True)
            results[key] = gridrun.live_grid(
                quick=False, scale=args.grid_scale, duration=args.live_duration, seed=1,
                every=False, **choice,
            )  # fmt: skip
    if "cost" in parts:
        print("decision cost: gateway CPU per submit at 0 and 10,000 jobs in flight ...")
        results["decision_cost"] = decision_cost.decision_cost(100 if args.quick else 300)
        results["decision_cost"]["machine_note"] = "2 shared cores, busy; interleaved rounds"
    if "live1" in parts:
        print(f"live: {live_policies} at 80% load, {duration:g} s each, scale {args.scale:g}")
        results["live"] = routing.live_sync(
            live_policies, scale=args.scale, duration=duration, seed=1, failure=True
        )
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "routing.json"
    # Parts not run this time keep their last figures.
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(results)
    merged.setdefault("parts_generated_at", {}).update({p: results["generated_at"] for p in parts})
    path.write_text(json.dumps(_clean(merged), indent=1) + "\n")
    gridreport.plot(merged, args.out / "routing.png")
    plot(merged, args.out / "routing-model.png")
    print()
    print(gridreport.table(merged))
    print(table(merged))
    print(f"\nwrote {args.out / 'routing.json'} and routing.png in {results['elapsed_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
