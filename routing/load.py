"""How long a job would take on a backend: the load model every policy and the oracle share.

A backend runs `parallelism` jobs at once, each at `seconds_per_unit` per megapixel-step
(one unit = 1e6 pixels x steps x images). What the gateway has reserved there is known
exactly (work and start time of every slot, across instances); what others queued there
is what the backend reports. Then a new job of `work` units completes after

    max(own service time, (remaining work there + this job) / aggregate speed) + reported wait

which is "(work queued there + this job) / speed", floored by the job's own service time
so an idle backend with many slow slots does not look fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

REFERENCE_WORK = 512 * 512 * 30 / 1_000_000  # one 512x512 image at 30 steps, in units


MAX_OVERSHOOT = 4.0  # as routing.load.ewma bounds one observation


@dataclass(frozen=True)
class Slot:
    """One reservation on a backend: its work (units), when it started and was expected to
    end (epoch s), and its track id (so the reserving instance can drop it on release)."""

    work: float
    started: float
    expected_end: float = 0.0  # 0: unknown
    track: str = ""


def overshoot(slots: Iterable[Slot], now: float) -> float:
    """How far running jobs are past their expected end: >1 means the backend slowed down.

    Completions teach speed only once slow jobs finish; a job running past its estimate
    says so while it runs.
    """
    worst = 1.0
    for slot in slots:
        if now > slot.expected_end > slot.started:
            worst = max(worst, (now - slot.started) / (slot.expected_end - slot.started))
    return min(worst, MAX_OVERSHOOT)


def remaining_work(
    slots: Iterable[Slot], seconds_per_unit: float, parallelism: int, now: float
) -> float:
    """Work still to do there: the first `parallelism` slots are in service, the rest wait."""
    ordered = sorted(slots, key=lambda s: s.started)
    total = 0.0
    for index, slot in enumerate(ordered):
        if index < parallelism and seconds_per_unit > 0:
            done = max(0.0, now - slot.started) / seconds_per_unit
            # A job past its estimate is not finished; assume a little is left.
            total += max(slot.work - done, 0.1 * slot.work)
        else:
            total += slot.work
    return total


def expected_completion(
    work: float,
    *,
    seconds_per_unit: float,
    parallelism: int,
    backlog: float,
    reported_wait: float = 0.0,
) -> float:
    """Seconds until a job of `work` units would finish there."""
    own = seconds_per_unit * work
    shared = seconds_per_unit * (backlog + work) / max(1, parallelism)
    return max(own, shared) + max(0.0, reported_wait)


def median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ewma(previous: float | None, observed: float, alpha: float) -> float:
    if previous is None:
        return observed
    # One wild observation (a stuck callback, a cold start) must not swing routing.
    bounded = min(max(observed, previous / 4), previous * 4)
    return (1 - alpha) * previous + alpha * bounded
