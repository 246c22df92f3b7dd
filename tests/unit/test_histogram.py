"""LoopHistogram exports what prometheus_client's Histogram would for the same observations."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from observability.histogram import LoopHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = [0.0005, 0.001, 0.003, 0.01, 0.02, 0.5, 1.0, 7.0, 0.0]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_the_same_series_and_values_as_a_prometheus_histogram() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopHistogram("x_seconds", "doc", ["op"], buckets=BUCKETS, registry=ours)
    reference = Histogram("x_seconds", "doc", ["op"], buckets=BUCKETS, registry=theirs)
    for n, value in enumerate(VALUES):
        loop.labels(f"o{n % 2}").observe(value)
        reference.labels(f"o{n % 2}").observe(value)
    loop.labels("o1").observe(0.05, 3)  # three at once (a batch's calls)
    for _ in range(3):
        reference.labels("o1").observe(0.05)
    assert samples(ours) == pytest.approx(samples(theirs))  # sums: 3 x 0.05 vs 0.05 + ...
    created = [s for m in ours.collect() for s in m.samples if s.name == "x_seconds_created"]
    assert sorted(s.labels["op"] for s in created) == ["o0", "o1"]


def test_without_labels_it_is_exported_at_zero_from_the_start() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    LoopHistogram("y_seconds", "doc", buckets=BUCKETS, registry=ours)
    Histogram("y_seconds", "doc", buckets=BUCKETS, registry=theirs)
    assert samples(ours) == samples(theirs)
