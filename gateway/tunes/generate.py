"""Generating with a tune: `model: "tune:<id>"` narrows the choice to the backend that owns it.

A tune lives in the account of the key that trained it, so its generations may go to that
backend only, and only for the tune's tenant. This resolves the tune before routing runs,
into one candidate (the owning backend, prompting `/tunes/{provider_tune_id}/prompts`
through the adapter's `plan_on_tune`); routing then reserves, submits and fails over as
for any job, with nowhere else to fail over to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from adapters.base import trainer_of
from adapters.errors import Unsupported
from adapters.normalized import GenerationRequest
from gateway import ids
from gateway.tunes.model import MODEL_PREFIX, TuneRecord, TuneStatus
from gateway.tunes.store import TuneStore
from routing.backends import Backend, Candidate
from routing.eligibility import Eligibility, Eligible, matches


class TuneUnusable(Exception):
    """The tune named in `model` cannot serve this request; `field` says which field is at fault."""

    def __init__(self, message: str, field: str = "model") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def is_tune_model(model: str) -> bool:
    return model.startswith(MODEL_PREFIX)


class TuneModels:
    def __init__(
        self, *, tunes: TuneStore, eligibility: Eligibility, backends: Mapping[str, Backend]
    ) -> None:
        self._tunes = tunes
        self._eligibility = eligibility
        self._backends = backends

    async def evaluate(self, tenant: str, request: GenerationRequest) -> Eligible:
        """What a later dispatch (gateway queue, poller) sees: no candidate when unusable."""
        if not is_tune_model(request.model):
            return self._eligibility.evaluate(tenant, request)
        try:
            return await self.require(tenant, request)
        except TuneUnusable as exc:
            return Eligible(candidates=[], rejected={"tune": {exc.field: exc.message}})

    async def require(self, tenant: str, request: GenerationRequest) -> Eligible:
        """The owning backend as the one candidate; `TuneUnusable` when there is none."""
        tune_id = request.model.removeprefix(MODEL_PREFIX)
        current = await self._tunes.get(tune_id) if ids.is_tune_id(tune_id) else None
        # Another tenant's tune reads exactly like a missing one: nothing leaks.
        if current is None or current.record.tenant != tenant:
            raise TuneUnusable(f"no tune {tune_id!r} for this tenant")
        tune = current.record
        backend = self._usable_backend(tenant, tune)
        if request.backends and not any(matches(backend, p) for p in request.backends):
            raise TuneUnusable(
                f"the tune lives on backend {backend.name}, which `backends` leaves out",
                "backends",
            )
        trainer = trainer_of(backend.adapter)
        if trainer is None or tune.provider_tune_id is None:
            raise TuneUnusable(f"backend {backend.name} cannot prompt tunes")
        try:
            plan = trainer.plan_on_tune(request, tune.provider_tune_id)
        except Unsupported as exc:
            return Eligible(candidates=[], rejected={backend.name: exc.reasons})
        if request.strict and not plan.exact:
            reasons = {name: "cannot be honoured exactly" for name in plan.inexact}
            return Eligible(candidates=[], rejected={backend.name: reasons})
        if tune.token and not re.search(rf"\b{re.escape(tune.token)}\b", request.prompt, re.I):
            plan.warnings.append(
                f"prompt lacks the tune's token {tune.token!r}; the tune's subject may not show"
            )
        return Eligible(candidates=[Candidate(backend, plan)])

    def _usable_backend(self, tenant: str, tune: TuneRecord) -> Backend:
        if tune.status is not TuneStatus.SUCCEEDED:
            raise TuneUnusable(f"tune {tune.id} is {tune.status.value}, not succeeded")
        if tune.expires_at is not None and tune.expires_at <= datetime.now(UTC):
            raise TuneUnusable(f"tune {tune.id} expired at the provider on {tune.expires_at}")
        backend = self._backends.get(tune.backend or "")
        if backend is None or backend not in self._eligibility.allowed(tenant):
            raise TuneUnusable(f"tune {tune.id}'s backend {tune.backend} is no longer available")
        return backend
