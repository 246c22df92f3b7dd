"""ModelsLab contract: exact bodies (golden files), warnings, and the simulator accepting them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from adapters.base import ResultState, Target
from adapters.errors import ProviderBadAnswer, Unsupported
from adapters.modelslab import FACTORY, tables
from adapters.modelslab.answers import read_result, submit_error
from adapters.modelslab.simulator import validate
from adapters.normalized import AspectRatio, GenerationRequest, Scheduler
from tests.contract.golden import check_golden, plan_document

MODELS = {"default": "sdxl", "portrait": "realistic-vision-v51"}
IMG = "https://images.example.com/in.png"
MASK = "https://images.example.com/mask.png"
DATA = "data:image/png;base64,iVBORw0KGgo="

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "minimal": ({"prompt": "a cat"}, {}),
    "full_text2img": (
        {"prompt": "a cat", "negative_prompt": "blurry", "width": 768, "height": 512,
         "steps": 30, "guidance_scale": 7.5, "seed": 1234, "scheduler": "dpmpp_2m_karras",
         "safety_checker": False},
        {},
    ),
    "portrait_model": ({"prompt": "a face", "model": "portrait"}, {}),
    "enterprise_steps_snap": ({"prompt": "x", "steps": 30}, {"enterprise": True}),
    "enterprise_steps_low": ({"prompt": "x", "steps": 5}, {"enterprise": True}),
    "enterprise_steps_exact": ({"prompt": "x", "steps": 41}, {"enterprise": True}),
    "cloud_steps_clamp": ({"prompt": "x", "steps": 80}, {}),
    "oversize": ({"prompt": "x", "width": 2048, "height": 1536}, {}),
    "aspect_16_9": ({"prompt": "x", "aspect_ratio": "16:9"}, {}),
    "aspect_21_9": ({"prompt": "x", "aspect_ratio": "21:9"}, {}),
    "guidance_clamp": ({"prompt": "x", "guidance_scale": 0.5}, {}),
    "split_8": ({"prompt": "x", "num_images": 8, "seed": 10}, {}),
    "split_6_no_seed": ({"prompt": "x", "num_images": 6}, {}),
    "img2img": ({"prompt": "x", "init_image": IMG, "strength": 0.6}, {}),
    "inpaint": ({"prompt": "x", "init_image": IMG, "mask_image": MASK}, {}),
    "base64_images": ({"prompt": "x", "init_image": DATA, "mask_image": DATA}, {}),
    "loras": ({"prompt": "x", "loras": [{"name": "contrast-fix", "strength": 0.5},
                                         {"name": "yae-miko", "strength": 1}]}, {}),
    "dropped_features": (
        {"prompt": "x", "enhance": {"super_resolution": True, "face_correct": True},
         "style": "Cinematic", "color_grading": "Ektar"},
        {},
    ),
    "tcd_approximated": ({"prompt": "x", "scheduler": "tcd"}, {}),
    "sde_with_algorithm": ({"prompt": "x", "scheduler": "dpmpp_2m_sde"}, {}),
    "provider_options": (
        {"prompt": "x"},
        {"enhance_prompt": True, "safety_checker_type": "blur", "clip_skip": 2, "tomesd": True,
         "temp": False, "vae": "sdxl-vae"},
    ),
}  # fmt: skip


def make(options: dict[str, Any]) -> Any:
    return FACTORY.create(Target("ml", "http://sim/api/v6/images", SecretStr("k"), MODELS, options))


@pytest.mark.parametrize("case", sorted(CASES))
def test_conversion_matches_golden_and_simulator_accepts(case: str) -> None:
    request, options = CASES[case]
    plan = make(options).plan(GenerationRequest.model_validate(request))
    check_golden("modelslab", case, plan_document(request, options, plan))
    for submission in plan.submissions:
        body = {**submission.body, "key": "k", "webhook": "https://gw/cb", "track_id": "t.0"}
        assert (
            validate(body, submission.endpoint, enterprise=options.get("enterprise", False)) is None
        )


def test_split_covers_every_image_once() -> None:
    plan = make({}).plan(GenerationRequest(prompt="x", num_images=8, seed=10))
    assert [s.body["samples"] for s in plan.submissions] == [4, 4]
    assert [s.body["seed"] for s in plan.submissions] == [10, 14]
    assert "num_images" in plan.inexact


def test_every_scheduler_maps_to_a_documented_class() -> None:
    assert set(tables.SCHEDULERS) == set(Scheduler)
    for scheduler, choice in tables.SCHEDULERS.items():
        assert choice.name in tables.SCHEDULER_CLASSES, scheduler
        plan = make({}).plan(GenerationRequest(prompt="x", scheduler=scheduler))
        assert plan.submissions[0].body["scheduler"] == choice.name
        assert plan.submissions[0].body["use_karras_sigmas"] == ("yes" if choice.karras else "no")
        assert plan.exact == (choice.approximation is None), scheduler


@pytest.mark.parametrize("ratio", list(AspectRatio))
def test_every_aspect_ratio_fits_and_is_multiple_of_8(ratio: AspectRatio) -> None:
    body = make({}).plan(GenerationRequest(prompt="x", aspect_ratio=ratio)).submissions[0].body
    assert max(body["width"], body["height"]) == 1024
    assert body["width"] % 8 == 0
    assert body["height"] % 8 == 0
    assert abs(body["width"] / body["height"] - ratio.ratio) < 0.02


@pytest.mark.parametrize("steps", range(1, 101))
def test_enterprise_steps_always_land_on_an_allowed_value(steps: int) -> None:
    body = (
        make({"enterprise": True})
        .plan(GenerationRequest(prompt="x", steps=steps))
        .submissions[0]
        .body
    )
    assert body["num_inference_steps"] in tables.ENTERPRISE_STEPS


def test_unsupported_requests_name_the_field() -> None:
    with pytest.raises(Unsupported) as missing:
        make({}).plan(GenerationRequest(prompt="x", model="anime"))
    assert "model" in missing.value.reasons
    with pytest.raises(Unsupported) as controlnet:
        make({}).plan(GenerationRequest(prompt="x", controlnet={"type": "canny", "image": IMG}))
    assert "controlnet" in controlnet.value.reasons
    with pytest.raises(Unsupported):
        make({}).plan(GenerationRequest(prompt="x", init_image=DATA, mask_image=MASK))


@pytest.mark.parametrize(
    ("answer", "state", "extra"),
    [
        ({"status": "success", "id": 5, "output": ["https://x/1.png"]}, ResultState.SUCCEEDED, {}),
        (
            {"status": "processing", "id": "77", "eta": "12.5"},
            ResultState.PROCESSING,
            {"eta": 12.5},
        ),
        ({"status": "processing", "id": 77, "eta": 3}, ResultState.PROCESSING, {"eta": 3.0}),
        ({"status": "error", "messege": "Model not found"}, ResultState.FAILED, {}),
        ({"status": "failed", "id": 1, "message": "NSFW"}, ResultState.FAILED, {}),
        ({"status": "success", "id": 5, "output": "https://x/1.png"}, ResultState.SUCCEEDED, {}),
        ({"status": "success", "id": 5, "output": ["aGVsbG8="]}, ResultState.SUCCEEDED, {}),
    ],
)
def test_answers_are_read_leniently(
    answer: dict[str, Any], state: ResultState, extra: dict[str, Any]
) -> None:
    result = read_result(answer)
    assert result.state is state
    for key, value in extra.items():
        assert getattr(result, key) == value
    if state is ResultState.FAILED:
        assert result.error_message in ("Model not found", "NSFW")
    if state is ResultState.SUCCEEDED:
        assert result.images[0].startswith(("https://", "data:image/png;base64,"))


@pytest.mark.parametrize(
    "answer",
    [None, [], "text", {}, {"status": 3}, {"status": "weird"}, {"status": "processing"},
     {"status": "success", "id": 1}, {"status": "success", "id": 1, "output": []},
     {"status": "success", "id": 1, "output": [3]},
     {"status": "success", "id": {"a": 1}, "output": ["u"]}],
)  # fmt: skip
def test_malformed_answers_are_bad_answers(answer: Any) -> None:
    with pytest.raises(ProviderBadAnswer):
        read_result(answer)


def test_submit_errors_decide_failover() -> None:
    assert submit_error({"message": "Rate limit exceeded"}).retryable
    assert submit_error({"message": "Invalid Api Key"}).outcome == "auth_failed"
    assert submit_error({"messege": "Server is busy, try again"}).retryable
    rejected = submit_error({"message": "The prompt field is required."})
    assert not rejected.retryable
    assert rejected.outcome == "rejected"
