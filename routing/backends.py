"""A routable backend: its static description plus the adapter that speaks to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.base import Adapter, Plan


@dataclass(frozen=True, eq=False)
class Backend:
    name: str
    adapter: Adapter
    max_concurrency: int
    parallelism: int = 0  # jobs it runs at once; 0 means max_concurrency
    weight: float = 1.0
    tags: frozenset[str] = field(default_factory=frozenset)
    models: Mapping[str, str] = field(default_factory=dict)
    order: int = 0  # position in the config: the preference order for `priority`

    @property
    def kind(self) -> str:
        return self.adapter.kind

    @property
    def runs_at_once(self) -> int:
        return self.parallelism or self.max_concurrency


@dataclass(frozen=True)
class Candidate:
    """A backend that can serve one request, with the plan it would follow."""

    backend: Backend
    plan: Plan

    @property
    def need(self) -> int:
        """Slots this job takes there: one per submission, never more than the capacity."""
        return min(len(self.plan.submissions), self.backend.max_concurrency)

    @property
    def work_per_slot(self) -> float:
        return self.plan.work / self.need
