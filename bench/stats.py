"""Percentiles, summaries and the failure scenario's windows: pure functions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(latencies),
        "mean": statistics.fmean(latencies) if latencies else math.nan,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def windows(
    arrival: Sequence[float],
    latency: Sequence[float],
    start: float,
    stop: float,
    width: float,
) -> list[list[float]]:
    """Latencies grouped by the window [start + k*width, ...) their job arrived in."""
    count = math.ceil((stop - start) / width)
    out: list[list[float]] = [[] for _ in range(count)]
    for at, lat in zip(arrival, latency, strict=True):
        if start <= at < stop and not math.isnan(lat):
            out[int((at - start) // width)].append(lat)
    return out


def recovery(
    starts: Sequence[float],
    ratios: Sequence[float],
    event: float,
    width: float,
    threshold: float,
    hold: int,
) -> float | None:
    """Seconds after `event` until the windowed ratio is within `threshold` and stays so.

    Recovered at the start of the first window that begins a run of `hold` consecutive
    windows at or under the threshold (jobs arriving from then on do as well as the oracle's
    within the threshold); None if that never happens in the horizon. The window holding
    the event counts as after it, so an undisturbed run recovers at 0.
    """
    after = [(s, r) for s, r in zip(starts, ratios, strict=True) if s + width > event]
    for i in range(len(after) - hold + 1):
        if all(r <= threshold for _, r in after[i : i + hold]):
            return max(0.0, after[i][0] - event)
    return None
