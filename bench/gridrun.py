"""Running issue 9's grid: the model over every cell, the live run over the chosen cells."""

from __future__ import annotations

import asyncio
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench import grid
from bench.fleet import ISSUE_MIX
from bench.livegrid import LiveGrid

# The acceptance points' cells, run live by default: per fleet, least_loaded in the minimal
# and the given config at 80% and 95% load, and round_robin in the minimal one at 80%.
ACCEPTANCE_CELLS: tuple[tuple[str, str, float], ...] = (
    ("minimal", "least_loaded", 0.8),
    ("minimal", "round_robin", 0.8),
    (grid.GIVEN, "least_loaded", 0.8),
    ("minimal", "least_loaded", 0.95),
    (grid.GIVEN, "least_loaded", 0.95),
)
LIVE_FLEETS = ("issue6", "hetero10")


def model_grid(count: int, seed: int, workers: int) -> dict[str, Any]:
    tasks = grid.model_tasks((0.5, 0.8, 0.95), count, seed)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(grid.model_cell, tasks))
    return {
        "note": "p99 / the free oracle's p99 (greedy earliest finish, exact slots, no "
        "admission limit) on the same arrivals; 10% warm-up not measured",
        "jobs_per_run": count,
        "seed": seed,
        "mix": [f"{j.images} x {j.side}^2 x {j.steps} steps" for j in ISSUE_MIX],
        "fleets": {
            name: [
                {
                    "name": b.name,
                    "reference_seconds": b.reference_seconds,
                    "parallelism": b.parallelism,
                    "kind": b.kind,
                }
                for b in fleet
            ]
            for name, fleet in grid.FLEETS.items()
        },
        "results": grid.model_table(tasks, results),
    }


async def _live(
    fleets: tuple[str, ...],
    cells: tuple[tuple[str, str, float], ...],
    *,
    scale: float,
    duration: float,
    seed: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {"scale": scale, "duration_live_seconds": duration, "cells": []}
    async with LiveGrid(scale, seed) as bench:
        for fleet in fleets:
            await bench.use_fleet(fleet)
            for config, policy, load in cells:
                print(f"  live: {fleet} {config} {policy} {load:g} ...", flush=True)
                cell = await bench.run(config, policy, load=load, duration=duration, drain=30)
                print(f"    p99 / free oracle = {cell['ratio_to_oracle_free']}", flush=True)
                out["cells"].append(cell)
    return out


# Point 2's cells live: per fleet, both policies in the configurations where the model has
# round_robin closest to least_loaded (admission at what a server runs at once, or twice it).
CONFIG_CELLS: tuple[tuple[str, str, float], ...] = tuple(
    (config, policy, 0.8)
    for config in ("cap1x-given", "cap1x-learned", "cap2x-learned")
    for policy in ("least_loaded", "round_robin")
)


def live_grid(
    *,
    quick: bool,
    scale: float,
    duration: float | None,
    seed: int,
    every: bool,
    configs: bool = False,
    other_fleets: bool = False,
) -> dict[str, Any]:
    fleets = tuple(grid.FLEETS) if every else LIVE_FLEETS[:1] if quick else LIVE_FLEETS
    cells = ACCEPTANCE_CELLS[:3] if quick else ACCEPTANCE_CELLS
    if configs:
        cells = CONFIG_CELLS
    if other_fleets:
        # The fleets the acceptance cells leave out, minimal config at 80%: both policies.
        fleets = tuple(f for f in grid.FLEETS if f not in LIVE_FLEETS)
        cells = ACCEPTANCE_CELLS[:2]
    if every:
        cells = tuple(
            (config, policy, load)
            for load in (0.5, 0.8, 0.95)
            for config in grid.CONFIGS
            for policy in ("least_loaded", "round_robin")
        )
    return asyncio.run(
        _live(fleets, cells, scale=scale, duration=duration or (20.0 if quick else 90.0), seed=seed)
    )
