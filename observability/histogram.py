"""A lock-free histogram for the event loop's hottest paths (every request, every store call).

prometheus_client's Histogram takes a lock per bucket and per sum (~1.5 us an observation,
more with cold caches; ten observations per submit, five of them store calls). Here
`observe` is a bisect and two additions: safe because every observation is made on the
event loop's thread. It is exported through the registry as a custom collector, with the
same series as a Histogram (`_bucket`, `_count`, `_sum`, `_created`).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString


class LoopHistogram(Collector):
    """Labelled like a prometheus_client Histogram (`labels(...).observe(v)`, or `observe`
    without labels). `observe(value, times)` counts equal observations in one step (the
    store calls sent in one round trip share its duration)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name, self._documentation = name, documentation
        self._labelnames = tuple(labelnames)
        self._bounds = [*buckets, float("inf")]
        self._children: dict[tuple[str, ...], LoopChild] = {}
        if not self._labelnames:
            self.labels()  # exported (at zero) from the start, as prometheus_client does
        registry.register(self)

    def labels(self, *values: str) -> LoopChild:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name}: expected labels {self._labelnames}")
            child = self._children[values] = LoopChild(self._bounds)
        return child

    def observe(self, value: float, times: int = 1) -> None:
        """For a histogram without labels."""
        self.labels().observe(value, times)

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        les = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        for values, child in list(self._children.items()):
            counts, total = list(child.counts), child.sum
            cumulative, acc = [], 0
            for le, count in zip(les, counts, strict=True):
                acc += count
                cumulative.append((le, float(acc)))
            family.add_metric(list(values), cumulative, total)
            labels = dict(zip(self._labelnames, values, strict=True))
            family.samples.append(Sample(f"{self._name}_created", labels, child.created))
        return [family]


class LoopChild:
    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += times  # le: value <= bound
        self.sum += value * times
