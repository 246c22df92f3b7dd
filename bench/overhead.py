"""The overhead benchmark: the gateway's own cost beside direct calls, nginx and LiteLLM.

`python -m bench overhead` (or `make bench`). Parts:
- submit: the same request (a) straight to a mock ModelsLab that answers `success` at once,
  (b) through nginx least_conn, (c) through one gateway on a real Redis, (d) through two
  gateways behind that nginx, (e) through LiteLLM's proxy to the same kind of mock; wrk for
  closed-loop throughput, the open-loop client (bench/openloop.py) at fixed rates for
  latency from the scheduled send time; CPU per request of every process from /proc.
- floor: the same building blocks with none of the gateway's logic (bench/floor.py).
- cluster: the gateway on a 3-master Redis Cluster beside single-node Redis.
- inflight: CPU per submit as jobs pile up in flight (0 -> 10,000), RSS and Redis bytes.
- webhooks: provider webhooks in -> signed, durable client deliveries out (bench/webhookpath.py).
Writes bench/results/overhead.json and overhead.png; see bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import floor, loadgen, servers
from bench.overhead_report import markdown, plot, summarize, table
from bench.rig import (
    AUTH,
    DIRECT_BODY,
    GATEWAY_BODY,
    LITELLM_BODY,
    MEASURED,
    OTHER,
    CpuWindow,
    Rig,
    host_ticks,
    steal_pct,
)
from bench.webhookpath import inflight_and_webhooks

RESULTS = Path(__file__).resolve().parent / "results"
WORKDIR = RESULTS / "tmp" / "overhead"  # git-ignored
RATES = (50, 200, 500, 1000)
PARTS = ("submit", "floor", "cluster", "inflight")
CONNECTIONS = 32


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench overhead", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians reported)")
    parser.add_argument("--seconds", type=float, default=5.0, help="closed-loop seconds")
    parser.add_argument("--open-seconds", type=float, default=4.0, help="seconds per rate")
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {PARTS}")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument("--inflight", type=int, default=10_000, help="jobs loaded in flight")
    parser.add_argument("--quick", action="store_true", help="1 run, short windows (~3 min)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.seconds, args.open_seconds, args.inflight = 1, 3.0, 2.0, 3000
    return args


class Target:
    def __init__(self, name: str, url: str, body: str, headers: dict[str, str], procs: list[str]):
        self.name, self.url, self.body, self.headers, self.procs = name, url, body, headers, procs


def closed(rig: Rig, target: Target, seconds: float) -> dict[str, Any]:
    script = loadgen.wrk_script(rig.workdir, target.name, target.body, target.headers)
    with CpuWindow(rig, target.procs) as window:
        result = loadgen.closed_loop(
            target.url, script, seconds=seconds, connections=CONNECTIONS, cpu=OTHER
        )
    result["cpu_us_per_request"] = window.per_request_us(result["ok"])
    result["host_steal_pct"] = window.steal_pct
    result["rss_mib"] = {n: round(rig.rss(n) / 2**20, 1) for n in target.procs}
    return result


def opened(rig: Rig, target: Target, rate: float, seconds: float) -> dict[str, Any]:
    with CpuWindow(rig, target.procs) as window:
        result = loadgen.open_loop(
            target.url, target.body, target.headers, rate=rate, seconds=seconds, cpu=OTHER
        )
    result["cpu_us_per_request"] = window.per_request_us(result["answered"])
    result["host_steal_pct"] = window.steal_pct
    return result


def submit_part(rig: Rig, args: argparse.Namespace, rates: list[float]) -> list[dict[str, Any]]:
    direct = Target("direct", rig.mock_url() + "/text2img", DIRECT_BODY, {}, ["mock"])
    nginx = Target(
        "nginx",
        f"http://127.0.0.1:{rig.proxy_port}{servers.SUCCESS_PATH}/text2img",
        DIRECT_BODY,
        {},
        ["proxy", "mock"],
    )
    litellm: Target | None = None
    if not args.no_litellm:
        try:
            url = rig.start_litellm()
            litellm = Target(
                "litellm",
                f"{url}/v1/images/generations",
                LITELLM_BODY,
                {"Authorization": f"Bearer {servers.LITELLM_KEY}"},
                ["litellm", "mock"],
            )
            loadgen.closed_loop(
                litellm.url,
                loadgen.wrk_script(rig.workdir, "litellm", LITELLM_BODY, litellm.headers),
                seconds=2,
                connections=4,
                cpu=OTHER,
            )  # warm-up
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            print(f"  LiteLLM unavailable, skipped: {exc}", flush=True)
    runs = []
    for run in range(1, args.runs + 1):
        print(f"submit path, run {run}/{args.runs}", flush=True)
        rig.flush()
        url = rig.start_gateway("gateway-1", rig.gw_ports[0], rig.redis_url)
        gateway = Target(
            "gateway", f"{url}/v1/generations", GATEWAY_BODY, AUTH, ["gateway-1", "redis", "mock"]
        )
        closed(rig, gateway, 1.0)  # warm-up: connections, caches
        out: dict[str, Any] = {"run": run, "closed": {}, "open": {}}
        for target in (direct, nginx, gateway):
            out["closed"][target.name] = closed(rig, target, args.seconds)
        if litellm is not None:
            out["closed"]["litellm"] = closed(rig, litellm, args.seconds)
        for rate in rates:
            out["open"][str(rate)] = {
                t.name: opened(rig, t, rate, args.open_seconds) for t in (direct, nginx, gateway)
            }
            lite = out["closed"].get("litellm")
            if litellm is not None and lite and rate <= 0.8 * lite["rps"]:
                out["open"][str(rate)]["litellm"] = opened(rig, litellm, rate, args.open_seconds)
        # Two instances behind the same nginx (both pinned to core 0: see README).
        rig.start_gateway("gateway-2", rig.gw_ports[1], rig.redis_url)
        pair = Target(
            "gateway_x2",
            f"http://127.0.0.1:{rig.gw_proxy_port}/v1/generations",
            GATEWAY_BODY,
            AUTH,
            ["gateway-1", "gateway-2", "proxy", "redis", "mock"],
        )
        closed(rig, pair, 1.0)
        out["closed"]["gateway_x2"] = closed(rig, pair, args.seconds)
        rig.stop("gateway-2")
        rig.stop("gateway-1")
        runs.append(out)
    return runs


def floor_part(rig: Rig, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each floor mode on core 0 under the same closed loop as the gateway."""
    port = rig.gw_ports[0]
    runs = []
    for run in range(1, args.runs + 1):
        print(f"floor, run {run}/{args.runs}", flush=True)
        out: dict[str, Any] = {"run": run}
        for mode in floor.MODES:
            name = f"floor-{mode}"
            argv = [sys.executable, "-m", "bench.floor", mode, str(port),
                    rig.mock_url() + "/text2img", str(rig.redis_port)]  # fmt: skip
            rig.procs.start(name, ["taskset", "-c", MEASURED, *argv])
            try:
                servers.wait_port(port)
                target = Target(mode, f"http://127.0.0.1:{port}/v1/generations", GATEWAY_BODY,
                                AUTH, [name, "redis", "mock"])  # fmt: skip
                closed(rig, target, 1.0)
                result = closed(rig, target, args.seconds)
                result["cpu_us_per_request"]["floor"] = result["cpu_us_per_request"].pop(name)
                out[mode] = result
            finally:
                rig.stop(name)
        runs.append(out)
    return runs


def cluster_part(rig: Rig, args: argparse.Namespace) -> list[dict[str, Any]]:
    cluster_url = rig.start_cluster()
    runs = []
    for run in range(1, args.runs + 1):
        print(f"cluster beside single-node, run {run}/{args.runs}", flush=True)
        out: dict[str, Any] = {"run": run}
        for name, store, procs in (
            ("single", rig.redis_url, ["gateway-1", "redis"]),
            ("cluster", cluster_url, ["gateway-1", "cluster"]),
        ):
            if name == "single":
                rig.flush()
            url = rig.start_gateway("gateway-1", rig.gw_ports[0], store)
            target = Target(name, f"{url}/v1/generations", GATEWAY_BODY, AUTH, procs)
            closed(rig, target, 1.0)
            out[name] = closed(rig, target, args.seconds)
            rig.stop("gateway-1")
        runs.append(out)
    return runs


def inflight_runs(rig: Rig, args: argparse.Namespace) -> dict[str, Any]:
    """The in-flight and webhook part `--runs` times: the run with the median relayed rate
    stands for them (its curve, memory and webhooks); every run's headline figures are kept
    under `webhook_runs`."""
    runs = []
    for run in range(1, args.runs + 1):
        print(f"in flight and webhooks, run {run}/{args.runs}", flush=True)
        runs.append(inflight_and_webhooks(rig, args.inflight))
    ranked = sorted(runs, key=lambda r: r["webhooks"]["relayed_per_second"])
    median = ranked[(len(ranked) - 1) // 2]
    median["webhook_runs"] = [
        {
            "relayed_per_second": r["webhooks"]["relayed_per_second"],
            "cpu_us_per_webhook": r["webhooks"]["cpu_us_per_webhook"],
            "lag_ms_p99_below_saturation": r["webhooks"]
            .get("below_saturation", {})
            .get("lag_ms", {})
            .get("p99"),
            "submit_cpu_us_first_last": [
                r["inflight"][0]["cpu_us_per_submit"].get("gateway-1"),
                r["inflight"][-1]["cpu_us_per_submit"].get("gateway-1"),
            ],
        }
        for r in runs
    ]
    return median


def _interpreter() -> Path:
    """The interpreter behind the bench's virtualenv (an optimized build or not)."""
    return Path(getattr(sys, "_base_executable", sys.executable)).resolve()


def _versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "missing"
        return (done.stdout + done.stderr).strip().splitlines()[0]

    return {
        # Which interpreter: an optimized (PGO + LTO) build is what the container runs.
        "python": f"{platform.python_version()} ({_interpreter()})",
        "redis": first_line(["redis-server", "--version"]),
        "nginx": first_line([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
        "wrk": first_line(["wrk", "--version"]),
        "litellm": servers.LITELLM_VERSION,
    }


def _machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.machine(),
    )  # fmt: skip
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {"cpu": model, "cores": len(__import__("os").sched_getaffinity(0)) or 2,
            "loadavg_at_start": load, "kernel": platform.release()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    parts = set(args.parts.split(","))
    rates = [float(r) for r in args.rates.split(",") if r]
    started = time.monotonic()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    machine = _machine()  # before the rig pins this process to one core
    ticks = host_ticks()
    results: dict[str, Any] = {
        "benchmark": "overhead",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "versions": _versions(),
        "settings": {
            "runs": args.runs,
            "closed_seconds": args.seconds,
            "open_seconds": args.open_seconds,
            "rates": rates,
            "wrk": f"-t1 -c{CONNECTIONS}",
            "pinning": "core 0: gateway / nginx proxy / "
            "LiteLLM; core 1: Redis, mocks, load generators, the bench",
        },
    }
    with Rig(WORKDIR) as rig:
        # A part that fails is reported as failed; the others' figures are still written.
        for part, run in (
            ("submit", lambda: {"submit": submit_part(rig, args, rates)}),
            ("floor", lambda: {"floor": floor_part(rig, args)}),
            ("cluster", lambda: {"cluster": cluster_part(rig, args)}),
            ("inflight", lambda: inflight_runs(rig, args)),
        ):
            if part not in parts:
                continue
            try:
                results.update(run())
            except Exception as exc:  # recorded in the results; the run goes on
                print(f"  part {part} failed: {exc!r}", flush=True)
                results.setdefault("failed_parts", {})[part] = repr(exc)
                for name in ("gateway-1", "gateway-2"):
                    rig.stop(name)
    results["machine"]["host_steal_pct"] = steal_pct(ticks, host_ticks())
    results["summary"] = summarize(results)
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    plot(results, args.out / "overhead.png")
    (args.out / "overhead.md").write_text(markdown(results))
    print()
    print(table(results))
    print(f"\nwrote {args.out / 'overhead.json'} and .png in {results['elapsed_seconds']} s")
    return 0
