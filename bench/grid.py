"""Issue 9's grid: fleets x operator configurations x loads, against the free oracle.

The reference is `oracle_free`: greedy earliest finish with exact knowledge of every slot
and speed, per-slot FIFO, and no admission limit (bench/placers.py). It needs no live run:
it is computed on the live run's own arrivals (times and sizes) with the fleet's true
speeds. Configurations are what an operator might write for the GPU servers:

- `minimal`: neither max_concurrency nor parallelism (the gateway's defaults apply);
- `cap<k>x-given`: max_concurrency = k x what the server runs at once, parallelism given;
- `cap<k>x-learned`: the same cap, parallelism not given (learned from service times).

`given` in issue 9's sense ("both given as what each server runs at once") is `cap1x-given`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bench.fleet import FLEET, ISSUE_MIX, BackendSpec
from bench.placers import FREE_ORACLE, run_model
from bench.stats import percentile

# Model seconds: a reference image (512x512, 30 steps) on one worker of the fastest server
# takes 1 s. Live runs compress time so that the smallest job (21 steps, 0.7 of a
# reference image) takes 0.21 s on the fastest server.
LIVE_SCALE = 0.3

# Issue 9's fleet: speeds 1, 1, 2, 2, 4, 4 running 2, 2, 2, 2, 1, 1 jobs at once.
ISSUE6: tuple[BackendSpec, ...] = tuple(
    BackendSpec(f"gpu-{i}", ref, par, None)
    for i, (ref, par) in enumerate(((4.0, 2), (4.0, 2), (2.0, 2), (2.0, 2), (1.0, 1), (1.0, 1)))
)
FLEETS: dict[str, tuple[BackendSpec, ...]] = {
    "issue6": ISSUE6,
    # Ten servers, 4:1 speeds, 1, 2 or 4 at once (bench/fleet.py).
    "hetero10": tuple(replace(b, max_concurrency=None) for b in FLEET),
    "homogeneous6": tuple(BackendSpec(f"gpu-{i}", 2.0, 2, None) for i in range(6)),
    # A ComfyUI server (one prompt at a time, its adapter says so) among ModelsLab ones.
    "comfy-mix": (*ISSUE6[:5], BackendSpec("comfy-0", 1.0, 1, None, kind="comfyui")),
}


@dataclass(frozen=True)
class Config:
    name: str
    cap: int | None  # max_concurrency as a multiple of what a server runs at once
    given: bool  # parallelism in the config


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in [
        Config("minimal", None, False),
        *(
            Config(f"cap{k}x-{g}", k, g == "given")
            for k in (1, 2, 10)
            for g in ("given", "learned")
        ),
    ]
}
GIVEN = "cap1x-given"


def configure(fleet: Sequence[BackendSpec], config: Config) -> tuple[BackendSpec, ...]:
    """The fleet as the operator's config describes it (ComfyUI's parallelism is its
    adapter's default either way)."""
    return tuple(
        replace(
            b,
            max_concurrency=None if config.cap is None else config.cap * b.parallelism,
            parallelism_given=config.given,
        )
        for b in fleet
    )


def p99_measured(result: Any, warmup: float = 0.1) -> float:
    """p99 completion of succeeded jobs after the first `warmup` share of arrivals."""
    skip = int(len(result.latency) * warmup)
    ok = [
        lat
        for i, (lat, status) in enumerate(zip(result.latency, result.status, strict=True))
        if i >= skip and status == "succeeded"
    ]
    return percentile(ok, 99)


def model_cell(task: tuple[str, str, str, float, int, int]) -> dict[str, Any]:
    """One model run: (fleet, config, policy, load, jobs, seed) -> p99 and placement."""
    fleet_name, config_name, policy, load, count, seed = task
    fleet = configure(FLEETS[fleet_name], CONFIGS[config_name])
    if policy == FREE_ORACLE:
        fleet = configure(FLEETS[fleet_name], CONFIGS["minimal"])
    result = run_model(policy, load, count, seed, fleet=fleet, mix=ISSUE_MIX)
    return {"p99": p99_measured(result), "lost": result.pending}


def model_tasks(
    loads_all: Sequence[float], count: int, seed: int
) -> list[tuple[str, str, str, float, int, int]]:
    """Every config at 80%; minimal and given also at every other load."""
    tasks = []
    for fleet in FLEETS:
        for load in loads_all:
            tasks.append((fleet, "minimal", FREE_ORACLE, load, count, seed))
            configs = CONFIGS if load == 0.8 else (("minimal", GIVEN))
            for config in configs:
                for policy in ("least_loaded", "round_robin"):
                    tasks.append((fleet, config, policy, load, count, seed))
    return tasks


def model_table(
    tasks: Sequence[tuple[str, str, str, float, int, int]], results: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """fleet -> load -> config -> policy -> {p99, ratio to the free oracle}."""
    oracle = {
        (t[0], t[3]): r["p99"] for t, r in zip(tasks, results, strict=True) if t[2] == FREE_ORACLE
    }
    out: dict[str, Any] = {}
    for t, r in zip(tasks, results, strict=True):
        fleet, config, policy, load = t[:4]
        if policy == FREE_ORACLE:
            out.setdefault(fleet, {}).setdefault(f"{load:g}", {})["oracle_free_p99"] = r["p99"]
            continue
        cell = out.setdefault(fleet, {}).setdefault(f"{load:g}", {}).setdefault(config, {})
        cell[policy] = {
            "p99": r["p99"],
            "ratio_to_oracle_free": r["p99"] / oracle[(fleet, load)],
            "lost": r["lost"],
        }
    return out
