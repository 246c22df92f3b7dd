"""The benchmark's fleet and job mix: shared by the discrete-event model and the live run.

Times here are "model seconds": a reference image (512x512, 30 steps, 1 image) takes 1 s on
the fastest backends and 4 s on the slowest (a 4:1 spread). The live run compresses time by
a constant factor (see bench/live.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from routing.load import REFERENCE_WORK


@dataclass(frozen=True)
class BackendSpec:
    name: str
    reference_seconds: float  # seconds for one reference image on one worker
    parallelism: int  # workers: jobs it runs at once
    max_concurrency: int | None  # the gateway's hard limit (in service + queued); None: none
    parallelism_given: bool = True  # whether the gateway's config says `parallelism`
    kind: str = "modelslab"  # "comfyui": a one-at-a-time server (its adapter says so)

    @property
    def seconds_per_unit(self) -> float:
        return self.reference_seconds / REFERENCE_WORK

    @property
    def weight(self) -> float:
        """What an operator would set for weighted_random: speed x parallelism."""
        return self.parallelism / self.reference_seconds


# Config order is fastest first: the order an operator would give `priority`. Admission is
# what the README recommends for GPU servers, max_concurrency = 2 x parallelism: a short
# queue there keeps the GPU fed and lets routing wait for a fast backend instead of taking
# any free slow one (least_loaded's own p99 is ~30% lower than at 1x; see `admission`).
FLEET: tuple[BackendSpec, ...] = (
    BackendSpec("gpu-a1", 1.0, 4, 8),
    BackendSpec("gpu-a2", 1.0, 2, 4),
    BackendSpec("gpu-b1", 1.5, 2, 4),
    BackendSpec("gpu-b2", 1.5, 1, 2),
    BackendSpec("gpu-c1", 2.0, 4, 8),
    BackendSpec("gpu-c2", 2.0, 1, 2),
    BackendSpec("gpu-d1", 3.0, 2, 4),
    BackendSpec("gpu-d2", 3.0, 4, 8),
    BackendSpec("gpu-e1", 4.0, 1, 2),
    BackendSpec("gpu-e2", 4.0, 2, 4),
)

# The first headline fleet (before the recommendation above): admission mixing "no queue
# at the backend" (1x) with "a short queue" (up to 2x). Kept as a sensitivity case.
MIXED_ADMISSION: tuple[int, ...] = (6, 3, 4, 1, 4, 2, 3, 6, 2, 2)

# The job mix: independent choices of side, steps and image count, with these weights.
SIDES: tuple[tuple[int, float], ...] = ((512, 0.40), (768, 0.35), (1024, 0.25))
STEPS: tuple[tuple[int, float], ...] = ((20, 0.25), (30, 0.35), (40, 0.20), (50, 0.20))
IMAGES: tuple[tuple[int, float], ...] = ((1, 0.60), (2, 0.25), (4, 0.15))


@dataclass(frozen=True)
class JobSpec:
    side: int
    steps: int
    images: int

    @property
    def work(self) -> float:
        """Megapixel-steps, as adapters.conversion.work_units computes it."""
        return self.side * self.side * self.steps * self.images / 1_000_000


@dataclass(frozen=True)
class Arrival:
    index: int
    at: float  # model seconds
    job: JobSpec


def _pick(rng: random.Random, table: tuple[tuple[int, float], ...]) -> int:
    values = [v for v, _ in table]
    return rng.choices(values, [w for _, w in table])[0]


# Issue 9's mix: five sizes of 512x512 jobs at a dedicated server's steps (21/31/41), from
# 1 image at 21 steps to 4 at 41, equally likely.
ISSUE_MIX: tuple[JobSpec, ...] = (
    JobSpec(512, 21, 1),
    JobSpec(512, 41, 1),
    JobSpec(512, 31, 2),
    JobSpec(512, 21, 4),
    JobSpec(512, 41, 4),
)

Mix = tuple[JobSpec, ...] | None  # None: the independent choices above


def sample_job(rng: random.Random, mix: Mix = None) -> JobSpec:
    if mix:
        return rng.choice(mix)
    return JobSpec(_pick(rng, SIDES), _pick(rng, STEPS), _pick(rng, IMAGES))


def _mean(table: tuple[tuple[int, float], ...], f: float = 1.0) -> float:
    return float(sum(v**f * w for v, w in table) / sum(w for _, w in table))


def mean_work(mix: Mix = None) -> float:
    if mix:
        return sum(j.work for j in mix) / len(mix)
    return _mean(SIDES, 2) * _mean(STEPS) * _mean(IMAGES) / 1_000_000


def capacity(fleet: tuple[BackendSpec, ...] = FLEET, mix: Mix = None) -> float:
    """Jobs per model second the fleet completes when every worker is busy."""
    return sum(b.parallelism / (b.seconds_per_unit * mean_work(mix)) for b in fleet)


def arrivals(rate: float, count: int, seed: int, mix: Mix = None) -> list[Arrival]:
    """Poisson arrivals at `rate` jobs per model second, each with a job from the mix."""
    rng = random.Random(seed)
    at, out = 0.0, []
    for index in range(count):
        at += rng.expovariate(rate)
        out.append(Arrival(index, at, sample_job(rng, mix)))
    return out


def describe() -> dict[str, object]:
    """The inputs, for routing.json."""
    return {
        "time_unit": "model seconds (reference image = 512x512, 30 steps, 1 image)",
        "reference_work_units": REFERENCE_WORK,
        "backends": [
            {
                "name": b.name,
                "reference_seconds": b.reference_seconds,
                "seconds_per_unit": round(b.seconds_per_unit, 5),
                "parallelism": b.parallelism,
                "max_concurrency": b.max_concurrency,
                "weight": round(b.weight, 4),
                "order": i,
            }
            for i, b in enumerate(FLEET)
        ],
        "job_mix": {
            "side_px (square)": dict(SIDES),
            "steps": dict(STEPS),
            "images": dict(IMAGES),
            "work_units": "side^2 x steps x images / 1e6",
            "mean_work_units": round(mean_work(), 4),
            "min_work_units": round(JobSpec(512, 20, 1).work, 4),
            "max_work_units": round(JobSpec(1024, 50, 4).work, 4),
        },
        "capacity_jobs_per_second": round(capacity(), 4),
    }
