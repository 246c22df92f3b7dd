"""Point 2 alone, sampled often: added latency at a fixed rate, gateway against direct.

`python -m bench latency [--rate 500] [--rounds 8] [--seconds 5]` (`make bench-latency`, part of
`make bench`; about 2 minutes): one
gateway on a real Redis (pinned as in the overhead bench), then rounds that each send the
open-loop client at `--rate` straight to the mock and then through the gateway, and report
that round's added p50 / p99 and the gateway's CPU per request during it. On this kind of
VM the latency moves with the host's state from one minute to the next, so the full
bench's single window per rate can land in a slow minute; short interleaved rounds show
the spread. Writes bench/results/latency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.overhead import Target, opened
from bench.overhead_report import QUIET_STEAL_PCT, is_quiet
from bench.rig import AUTH, DIRECT_BODY, GATEWAY_BODY, Rig

RESULTS = Path(__file__).resolve().parent / "results"
WARM_UP = 3.0  # seconds at the rate before the first round


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench latency", description=__doc__)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="per target per round")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    return parser.parse_args(argv)


def _latency(rig: Rig, target: Target, rate: float, seconds: float) -> dict[str, Any]:
    """Latency percentiles (ms) at `rate`, and the CPU per request of the target's processes."""
    result = opened(rig, target, rate, seconds)
    return {
        **{k: round(v, 3) for k, v in result["latency_ms"].items()},
        "cpu_us": result["cpu_us_per_request"],
        "host_steal_pct": result["host_steal_pct"],
    }


def _median_added(rounds: list[dict[str, Any]]) -> dict[str, float]:
    return {q: round(statistics.median(r["added"][q] for r in rounds), 3) for q in ("p50", "p99")}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    workdir = RESULTS / "tmp" / "latency"  # git-ignored
    workdir.mkdir(parents=True, exist_ok=True)
    rounds: list[dict[str, Any]] = []
    with Rig(workdir) as rig:
        url = rig.start_gateway("gateway-1", rig.gw_ports[0], rig.redis_url)
        gateway = Target(
            "gateway", f"{url}/v1/generations", GATEWAY_BODY, AUTH, ["gateway-1", "redis"]
        )
        direct = Target("direct", rig.mock_url() + "/text2img", DIRECT_BODY, {}, ["mock"])
        _latency(rig, gateway, args.rate, WARM_UP)
        for n in range(1, args.rounds + 1):
            when = time.strftime("%H:%M:%S")
            mock = _latency(rig, direct, args.rate, args.seconds)
            gw = _latency(rig, gateway, args.rate, args.seconds)
            added = {q: round(gw[q] - mock[q], 3) for q in ("p50", "p99")}
            rounds.append({"at": when, "direct": mock, "gateway": gw, "added": added})
            cpu = gw["cpu_us"].get("gateway-1")
            print(f"round {n} ({when}): direct p50 {mock['p50']} p99 {mock['p99']} ms; "
                  f"added p50 +{added['p50']} p99 +{added['p99']} ms; gateway CPU {cpu} us; "
                  f"host steal {gw['host_steal_pct']}%",
                  flush=True)  # fmt: skip
    results = {
        "benchmark": "latency",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rate": args.rate,
        "seconds": args.seconds,
        "rounds": rounds,
        "median_added": _median_added(rounds),
    }
    quiet = [r for r in rounds if is_quiet(r["direct"], r["gateway"])]
    if quiet:
        results["quiet"] = {"rounds": len(quiet), "median_added": _median_added(quiet)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"median added p50 +{results['median_added']['p50']} p99 "
          f"+{results['median_added']['p99']} ms; wrote {args.out}")  # fmt: skip
    if quiet:
        print(f"quiet rounds only (host steal <= {QUIET_STEAL_PCT:g}%, {len(quiet)} of "
              f"{len(rounds)}): median added p50 +{results['quiet']['median_added']['p50']} "
              f"p99 +{results['quiet']['median_added']['p99']} ms")  # fmt: skip
    return 0
