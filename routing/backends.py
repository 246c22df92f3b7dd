"""A routable backend: its static description plus the adapter that speaks to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.base import Adapter, Plan


@dataclass(frozen=True, eq=False)
class Backend:
    name: str
    adapter: Adapter
    max_concurrency: int | None  # hard limit on jobs in flight there; None: none known
    parallelism: int = 0  # jobs it runs at once, as configured; 0: not configured
    weight: float = 1.0
    tags: frozenset[str] = field(default_factory=frozenset)
    models: Mapping[str, str] = field(default_factory=dict)
    order: int = 0  # position in the config: the preference order for `priority`

    @property
    def kind(self) -> str:
        return self.adapter.kind

    @property
    def limit(self) -> int | None:
        """The configured hard limit, else the adapter's (a hosted API's default)."""
        return self.max_concurrency or self.adapter.capacity.max_concurrency

    @property
    def learns_parallelism(self) -> bool:
        """Neither the config nor the adapter says what it runs at once: learn it."""
        capacity = self.adapter.capacity
        return not self.parallelism and capacity.parallelism is None and not capacity.hosted

    @property
    def runs_at_once(self) -> int:
        """What it runs at once before anything is learned: configured, else the adapter's
        default, else (a hosted API) its limit, else one."""
        capacity = self.adapter.capacity
        if self.parallelism:
            return self.parallelism
        if capacity.parallelism is not None:
            return capacity.parallelism
        if capacity.hosted:
            return self.limit or 1
        return 1


@dataclass(frozen=True)
class Candidate:
    """A backend that can serve one request, with the plan it would follow."""

    backend: Backend
    plan: Plan

    @property
    def need(self) -> int:
        """Slots this job takes there: one per submission, never more than the limit."""
        return min(len(self.plan.submissions), self.backend.limit or len(self.plan.submissions))

    @property
    def work_per_slot(self) -> float:
        return self.plan.work / self.need
