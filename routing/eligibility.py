"""Which backends may serve a request: the tenant's allowance, model, capability, strict."""

from __future__ import annotations

import fnmatch
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from adapters.base import Plan
from adapters.errors import Unsupported
from adapters.normalized import GenerationRequest
from routing.backends import Backend, Candidate


@dataclass
class Eligible:
    candidates: list[Candidate]
    # backend name -> {field: why it cannot serve it}
    rejected: dict[str, dict[str, str]] = field(default_factory=dict)


class NotAllowed(Exception):
    """The request names backends the tenant may not use (or that do not exist)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def matches(backend: Backend, pattern: str) -> bool:
    """A pattern is a backend name, a glob over names, or a tag."""
    return fnmatch.fnmatchcase(backend.name, pattern) or pattern in backend.tags


class Eligibility:
    def __init__(
        self, backends: Sequence[Backend], allowances: Mapping[str, Iterable[str]]
    ) -> None:
        self._allowed = {
            tenant: [b for b in backends if any(matches(b, p) for p in patterns)]
            for tenant, patterns in allowances.items()
        }

    def allowed(self, tenant: str) -> list[Backend]:
        return self._allowed.get(tenant, [])

    def evaluate(self, tenant: str, request: GenerationRequest) -> Eligible:
        pool = self.allowed(tenant)
        if request.backends:
            unknown = [p for p in request.backends if not any(matches(b, p) for b in pool)]
            if unknown:
                raise NotAllowed(unknown)
            pool = [b for b in pool if any(matches(b, p) for p in request.backends)]
        result = Eligible(candidates=[])
        shared: dict[Hashable, Plan] = {}  # many keys of one provider: planned once
        for backend in pool:
            key = backend.adapter.plan_key
            try:
                plan = shared.get(key) if key is not None else None
                if plan is None:
                    plan = backend.adapter.plan(request)
                    if key is not None:
                        shared[key] = plan
            except Unsupported as exc:
                result.rejected[backend.name] = exc.reasons
                continue
            if request.strict and not plan.exact:
                result.rejected[backend.name] = {
                    name: "cannot be honoured exactly" for name in plan.inexact
                }
                continue
            result.candidates.append(Candidate(backend, plan))
        return result
