"""Eligibility plans a request once for backends alike (many keys of one provider)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

import adapters.modelslab.adapter as modelslab_adapter
from adapters import comfyui, modelslab
from adapters.base import Target
from adapters.normalized import GenerationRequest
from routing.backends import Backend
from routing.eligibility import Eligibility

MODELS = {"default": "sdxl", "flux": "flux-dev"}


def _backend(factory: Any, name: str, models: dict[str, str], **options: Any) -> Backend:
    target = Target(name, f"http://{name}.test", SecretStr(f"secret-{name}"), models, options)
    return Backend(name, factory.create(target), 4)


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The backend names ModelsLab's converter was called for."""
    calls: list[str] = []
    convert = modelslab_adapter.plan

    def counting(request: GenerationRequest, target: Target, options: Any) -> Any:
        calls.append(target.name)
        return convert(request, target, options)

    monkeypatch.setattr(modelslab_adapter, "plan", counting)
    return calls


def test_keys_alike_share_one_plan_and_others_get_their_own(planned: list[str]) -> None:
    keys = [_backend(modelslab.FACTORY, f"ml-{n}", MODELS) for n in range(20)]
    other_models = _backend(modelslab.FACTORY, "ml-other", {"default": "sd15"})
    enterprise = _backend(modelslab.FACTORY, "ml-gpu", MODELS, enterprise=True)
    eligibility = Eligibility([*keys, other_models, enterprise], {"acme": ["*"]})
    request = GenerationRequest(prompt="a lighthouse", width=1024, height=768, steps=30)

    eligible = eligibility.evaluate("acme", request)

    assert planned == ["ml-0", "ml-other", "ml-gpu"]
    assert [c.backend.name for c in eligible.candidates] == [
        b.name for b in eligibility.allowed("acme")
    ]
    plans = {c.backend.name: c.plan for c in eligible.candidates}
    for backend in [*keys, other_models, enterprise]:  # each the plan it would make alone
        assert plans[backend.name] == backend.adapter.plan(request), backend.name
    assert plans["ml-other"].model_id == "sd15"
    assert plans["ml-gpu"] != plans["ml-0"]  # the enterprise API's body differs


def test_a_rejection_names_each_backend_it_concerns(planned: list[str]) -> None:
    keys = [_backend(modelslab.FACTORY, f"ml-{n}", MODELS) for n in range(3)]
    eligibility = Eligibility(keys, {"acme": ["*"]})

    eligible = eligibility.evaluate("acme", GenerationRequest(prompt="x", model="sd3"))

    assert eligible.candidates == []
    assert {name: why["model"] for name, why in eligible.rejected.items()} == {
        f"ml-{n}": f"backend ml-{n} has no model 'sd3'" for n in range(3)
    }


def test_servers_whose_plans_draw_a_seed_are_planned_apart() -> None:
    servers = [
        _backend(comfyui.FACTORY, f"gpu-{n}", {"default": "sdxl.safetensors"}) for n in range(8)
    ]
    eligibility = Eligibility(servers, {"acme": ["*"]})

    eligible = eligibility.evaluate("acme", GenerationRequest(prompt="x"))

    plans = [c.plan for c in eligible.candidates]
    assert len(plans) == 8
    assert len({id(p) for p in plans}) == 8
