"""Which backend trains a tune: the tenant's backends whose adapter can train, by health and load.

Only adapters with the training capability (`adapters.base.Trainer`) are candidates. Of
those the tenant may use (narrowed by the request's `backends`), the ones that can plan
the request (e.g. they map its `base_model`) and are routable (not ejected, drained or
cooling down) are ordered by their training queue: how long until the last training the
gateway handed them should end, from the provider's `eta` (Astria's queue signal), shared
by every instance in the `{fleet}` slot.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from adapters.base import Trainer, TunePlan, TuneResult, trainer_of
from adapters.errors import Unsupported
from adapters.normalized_tune import TuneRequest
from gateway.store import keys
from gateway.store.connect import Store
from routing.backends import Backend
from routing.eligibility import Eligibility, NotAllowed, matches
from routing.view import FleetView


@dataclass(frozen=True)
class TrainingCandidate:
    backend: Backend
    trainer: Trainer
    plan: TunePlan


class NoTrainer(Exception):
    """No backend the request may use can train it; `reasons` per backend, by field."""

    def __init__(self, message: str, reasons: dict[str, dict[str, str]]) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = reasons


class Placement:
    def __init__(
        self,
        *,
        store: Store,
        backends: Mapping[str, Backend],
        eligibility: Eligibility,
        view: FleetView,
    ) -> None:
        self._store = store
        self._backends = backends
        self._eligibility = eligibility
        self._view = view

    def candidates(self, tenant: str, request: TuneRequest) -> list[TrainingCandidate]:
        """Every backend that could train this request, healthy or not, in config order.

        Raises `NotAllowed` for `backends` the tenant may not use, `NoTrainer` when none
        of the rest can train it.
        """
        pool = self._eligibility.allowed(tenant)
        if request.backends:
            unknown = [p for p in request.backends if not any(matches(b, p) for b in pool)]
            if unknown:
                raise NotAllowed(unknown)
            pool = [b for b in pool if any(matches(b, p) for p in request.backends)]
        found, reasons = [], {}
        for backend in pool:
            trainer = trainer_of(backend.adapter)
            if trainer is None:
                reasons[backend.name] = {"backends": f"{backend.kind} backends cannot train"}
                continue
            try:
                found.append(TrainingCandidate(backend, trainer, trainer.plan_tune(request)))
            except Unsupported as exc:
                reasons[backend.name] = exc.reasons
        if not found:
            trainers = [b for b in pool if trainer_of(b.adapter) is not None]
            message = (
                "no backend this request may use can train a tune"
                if not trainers
                else "no backend that can train supports: "
                + ", ".join(sorted({f for r in reasons.values() for f in r}))
            )
            raise NoTrainer(message, reasons)
        return found

    async def order(self, candidates: list[TrainingCandidate]) -> list[TrainingCandidate]:
        """The routable candidates, shortest training queue first (config order on ties)."""
        routable = [c for c in candidates if self._view.routable(c.backend.name)]
        if len(routable) < 2:
            return routable
        raw = await self._store.redis.hgetall(keys.tune_load())
        busy_until = {_text(k): int(v) / 1000 for k, v in raw.items()}
        now = time.time()

        def wait(candidate: TrainingCandidate) -> tuple[float, int]:
            name = candidate.backend.name
            queued = max(0.0, busy_until.get(name, 0.0) - now) / candidate.backend.weight
            return queued, candidate.backend.order

        return sorted(routable, key=wait)

    async def note_accepted(self, backend: str, result: TuneResult) -> None:
        """The provider's eta for a tune it took: that backend's training queue from now."""
        if result.eta is None:
            return
        until_ms = int(result.eta.timestamp() * 1000)
        await self._store.run("TUNE_LOAD", [keys.tune_load()], [backend, until_ms])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
