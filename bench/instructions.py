"""Instructions per submit under callgrind: a before/after that machine noise cannot blur.

On a shared 2-vCPU machine the same gateway's CPU per submit moves 15-25% from one run to
the next (wrk's own CPU per request moves with it), which hides a 10% change. valgrind's
callgrind counts instructions instead: the same code on the same requests gives the same
count whatever else the machine does. It counts user-space instructions only (no kernel
time: the syscalls of sockets and epoll are not in it), so it ranks changes to our Python;
it does not replace the overhead bench's seconds.

`python -m bench instructions --against REV` checks REV out into a temporary git worktree
and, for it and for the working tree, runs one `gateway serve` under callgrind (core 0; the
mock and Redis on core 1, as in the overhead bench), sends 50 submits to warm up, zeroes
the counters, sends N submits (one at a time, then 16 at a time), dumps; then the same
over an idle window, for the background loops' rate, which is subtracted. About 2 minutes
per source and concurrency. Writes bench/results/instructions.json.

`--in-flight 0,10000` measures point 3a instead (does a submit cost more with more jobs in
flight?) for the working tree: per level, one gateway whose mocks answer `processing`
(every job stays in flight), the level's jobs loaded with instrumentation off, then an
idle window and the counted submits in that same process, each counted from zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench import servers
from bench.procs import wait_ready
from bench.rig import AUTH, GATEWAY_BODY, MEASURED, Rig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WARM_UP = 50


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench instructions", description=__doc__)
    parser.add_argument("--against", default="", help="a git revision to compare with")
    parser.add_argument("--submits", type=int, default=480, help="submits counted per run")
    parser.add_argument("--concurrency", default="1,16", help="comma list")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument(
        "--in-flight", default="", help="comma list of jobs in flight (point 3a), e.g. 0,10000"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "instructions.json")
    return parser.parse_args(argv)


async def _submit(url: str, count: int, concurrency: int) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with session.post(url, data=GATEWAY_BODY, headers=headers) as resp:
                await resp.read()
                if resp.status != 202:
                    raise RuntimeError(f"submit answered {resp.status}")

        for _ in range(count // concurrency):
            await asyncio.gather(*(one() for _ in range(concurrency)))


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"{dump}: no instruction total")


def measure(rig: Rig, source: Path, work: Path, submits: int, concurrency: int | None,
            idle: float) -> dict[str, Any]:  # fmt: skip
    """One gateway from `source` under callgrind: counted submits, or an idle window."""
    rig.flush()  # every run starts from an empty store
    port = rig.gw_ports[0]
    config = work / "gateway.yaml"
    config.write_text(yaml.safe_dump(rig.gateway_config(port, rig.redis_url)))
    out = work / "callgrind.out"
    argv = ["taskset", "-c", MEASURED, "valgrind", "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable, "-m", "gateway", "serve", "--config", str(config)]  # fmt: skip
    with open(work / "gateway.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=source, env={**os.environ, "PYTHONPATH": str(source)},
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_ready(f"{url}/readyz", timeout=600))  # ~50x slower under valgrind
        asyncio.run(_submit(f"{url}/v1/generations", WARM_UP, 1))
        if concurrency is None:
            return _counted(proc.pid, work, lambda: time.sleep(idle))
        return _counted(
            proc.pid, work,
            lambda: asyncio.run(_submit(f"{url}/v1/generations", submits, concurrency)),
        )  # fmt: skip
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=300)  # valgrind writes its last dump on the way out
    except subprocess.TimeoutExpired:
        proc.kill()


def _counted(pid: int, work: Path, action: Callable[[], None]) -> dict[str, Any]:
    """Instructions while `action` runs: counters zeroed before, dumped after."""
    for old in work.glob("callgrind.out.*"):
        old.unlink()
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    started = time.monotonic()
    action()
    seconds = time.monotonic() - started
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    time.sleep(1)
    dump = next(work.glob("callgrind.out.*"))
    return {"instructions": _total(dump), "seconds": round(seconds, 2)}


def measure_in_flight(
    rig: Rig, work: Path, preload: int, submits: int, concurrency: int, idle: float
) -> dict[str, Any]:
    """Instructions per submit with `preload` jobs in flight (the working tree's gateway)."""
    rig.flush()
    port = rig.gw_ports[0]
    config = rig.gateway_config(port, rig.redis_url, mode=servers.PROCESSING_PATH)
    for backend in config["backends"]:  # no polls of the loaded jobs while counting
        backend["options"] = {"webhook_deadline": 86400}
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = ["taskset", "-c", MEASURED, "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={work / 'callgrind.out'}",
            sys.executable, "-m", "gateway", "serve", "--config", str(path)]  # fmt: skip
    with open(work / "gateway.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_ready(f"{url}/readyz", timeout=600))
        asyncio.run(_submit(f"{url}/v1/generations", preload + WARM_UP, 16))
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                       capture_output=True)  # fmt: skip
        quiet = _counted(proc.pid, work, lambda: time.sleep(idle))
        run = _counted(
            proc.pid, work,
            lambda: asyncio.run(_submit(f"{url}/v1/generations", submits, concurrency)),
        )  # fmt: skip
        rate = quiet["instructions"] / quiet["seconds"]
        busy = run["instructions"] - rate * run["seconds"]
        return {
            "in_flight": preload + WARM_UP,
            "idle_instructions_per_second": round(rate),
            **run,
            "per_submit": round(run["instructions"] / submits),
            "per_submit_less_idle": round(busy / submits),
        }
    finally:
        _stop(proc)


def _in_flight_main(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(n) for n in args.in_flight.split(",") if n]
    concurrency = int(args.concurrency.split(",")[-1])
    tmp = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    runs = []
    try:
        with Rig(tmp / "rig") as rig:
            for level in levels:
                print(f"{level} jobs in flight: {args.submits} submits, {concurrency} at a time",
                      flush=True)  # fmt: skip
                runs.append(measure_in_flight(
                    rig, tmp, level, args.submits, concurrency, args.idle_seconds
                ))  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first, last = runs[0]["per_submit_less_idle"], runs[-1]["per_submit_less_idle"]
    return {
        "benchmark": "instructions in flight (point 3a)",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "submits": args.submits,
        "concurrency": concurrency,
        "runs": runs,
        "last_over_first": round(last / first, 3),
    }


def _sources(against: str, tmp: Path) -> dict[str, Path]:
    sources = {"working tree": ROOT}
    if against:
        tree = tmp / "against"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), against],
                       check=True, capture_output=True)  # fmt: skip
        sources = {against: tree, **sources}
    return sources


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (Debian's valgrind package)")
    if args.in_flight:
        flight = _in_flight_main(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(flight, indent=1) + "\n")
        print(json.dumps(flight, indent=1))
        return 0
    levels = [int(c) for c in args.concurrency.split(",") if c]
    tmp = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    results: dict[str, Any] = {
        "benchmark": "instructions",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "submits": args.submits,
        "sources": {},
    }
    try:
        sources = _sources(args.against, tmp)
        with Rig(tmp / "rig") as rig:
            for name, source in sources.items():
                print(f"{name}: idle window", flush=True)
                work = tmp / name.replace(" ", "-")
                work.mkdir(exist_ok=True)
                idle = measure(rig, source, work, 0, None, args.idle_seconds)
                rate = idle["instructions"] / idle["seconds"]
                entry: dict[str, Any] = {"idle_instructions_per_second": round(rate)}
                for level in levels:
                    print(f"{name}: {args.submits} submits, {level} at a time", flush=True)
                    run = measure(rig, source, work, args.submits, level, 0)
                    busy = run["instructions"] - rate * run["seconds"]
                    entry[f"concurrency_{level}"] = {
                        **run,
                        "per_submit": round(run["instructions"] / args.submits),
                        "per_submit_less_idle": round(busy / args.submits),
                    }
                results["sources"][name] = entry
    finally:
        if args.against:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tmp / "against")], capture_output=True)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)
    names = list(results["sources"])
    if len(names) == 2:
        before, after = (results["sources"][n] for n in names)
        results["after_over_before"] = {
            key: round(after[key]["per_submit_less_idle"] / before[key]["per_submit_less_idle"], 3)
            for key in before
            if key.startswith("concurrency_")
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0
