"""ComfyUI contract: exact graphs (golden files), warnings, answers, and the simulator over HTTP."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from adapters.base import Callback, ProviderResult, ResultState, SimulatorSettings, Target
from adapters.comfyui import FACTORY, tables
from adapters.comfyui.adapter import ComfyAdapter
from adapters.comfyui.answers import (
    ProviderMisconfigured,
    queue_remaining,
    queue_state,
    read_history,
    read_submit,
    rejection,
)
from adapters.comfyui.graph import IMAGE_LOADERS
from adapters.comfyui.simulator import state_key
from adapters.comfyui.uploads import decode
from adapters.comfyui.validate import validate_prompt
from adapters.errors import (
    ProviderAuthFailed,
    ProviderBadAnswer,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
    Unsupported,
)
from adapters.httpclient import HttpClient
from adapters.normalized import AspectRatio, ControlNetType, GenerationRequest, Scheduler
from adapters.simkit.routes import PNG
from tests.contract.golden import check_golden, plan_document

MODELS = {"default": "sd_xl_base_1.0.safetensors", "portrait": "realisticVision_v51.safetensors"}
DATA = "data:image/png;base64," + base64.b64encode(PNG).decode()
MASK = "data:image/png;base64,iVBORw0KGgo="
URL = "https://images.example.com/in.png"
CONTROLNETS = {"canny": "control_v11p_sd15_canny.safetensors", "depth": "depth-xl.safetensors"}
SEED = 1234  # what the adapter draws when a request has no seed

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "minimal": ({"prompt": "a cat"}, {}),
    "full_text2img": (
        {"prompt": "a cat", "negative_prompt": "blurry", "width": 768, "height": 512,
         "steps": 28, "guidance_scale": 7.5, "seed": 42, "scheduler": "dpmpp_2m_karras",
         "safety_checker": False},
        {},
    ),
    "portrait_model": ({"prompt": "a face", "model": "portrait"}, {}),
    "aspect_16_9": ({"prompt": "x", "aspect_ratio": "16:9"}, {}),
    "aspect_21_9_inexact": ({"prompt": "x", "aspect_ratio": "21:9"}, {}),
    "aspect_2_3_long_side": ({"prompt": "x", "aspect_ratio": "2:3"}, {"long_side": 768}),
    "option_defaults": (
        {"prompt": "x"},
        {"default_width": 512, "default_height": 768, "default_steps": 25, "default_cfg": 5.5,
         "default_scheduler": "dpmpp_2m_karras"},
    ),
    "batch_4": ({"prompt": "x", "num_images": 4, "seed": 5}, {}),
    "split_8_seed_wraps": ({"prompt": "x", "num_images": 8, "seed": 4294967294}, {}),
    "split_5_max_batch_2": ({"prompt": "x", "num_images": 5}, {"max_batch": 2}),
    "scheduler_euler_a": ({"prompt": "x", "scheduler": "euler_a", "steps": 20}, {}),
    "scheduler_ddim": ({"prompt": "x", "scheduler": "ddim"}, {}),
    "scheduler_lcm": ({"prompt": "x", "scheduler": "lcm", "steps": 6, "guidance_scale": 1.5}, {}),
    "scheduler_pndm_approximated": ({"prompt": "x", "scheduler": "pndm"}, {}),
    "scheduler_tcd_approximated": ({"prompt": "x", "scheduler": "tcd"}, {}),
    "lora_one": ({"prompt": "x", "loras": [{"name": "contrast-fix", "strength": 0.5}]}, {}),
    "loras_two_mapped": (
        {"prompt": "x", "loras": [{"name": "yae-miko", "strength": 1},
                                   {"name": "detail.safetensors", "strength": 0.3}]},
        {"loras": {"yae-miko": "characters/yae_miko_v2.safetensors"}},
    ),
    "img2img": ({"prompt": "x", "init_image": DATA, "strength": 0.6}, {}),
    "img2img_sized_default_strength": (
        {"prompt": "x", "init_image": DATA, "width": 768, "height": 768}, {},
    ),
    "img2img_batch_3": ({"prompt": "x", "init_image": DATA, "num_images": 3, "seed": 9}, {}),
    "inpaint": ({"prompt": "x", "init_image": DATA, "mask_image": MASK}, {}),
    "inpaint_strength_aspect": (
        {"prompt": "x", "init_image": DATA, "mask_image": MASK, "strength": 0.5,
         "aspect_ratio": "4:3"},
        {},
    ),
    "controlnet_txt2img": (
        {"prompt": "x", "controlnet": {"type": "canny", "image": DATA, "conditioning_scale": 0.8,
                                        "txt2img": True}},
        {"controlnets": CONTROLNETS},
    ),
    "controlnet_image_as_init": (
        {"prompt": "x", "controlnet": {"type": "depth", "image": DATA}},
        {"controlnets": CONTROLNETS},
    ),
    "controlnet_with_init": (
        {"prompt": "x", "init_image": MASK, "strength": 0.4,
         "controlnet": {"type": "canny", "image": DATA, "conditioning_scale": 0.5}},
        {"controlnets": CONTROLNETS},
    ),
    "dropped_features": (
        {"prompt": "x", "enhance": {"super_resolution": True, "face_correct": True},
         "style": "Cinematic", "color_grading": "Ektar", "safety_checker": True},
        {},
    ),
    "filename_prefix": ({"prompt": "x"}, {"filename_prefix": "team-a/comfy"}),
}  # fmt: skip


def make(options: dict[str, Any], base: str = "http://sim", key: str | None = None) -> ComfyAdapter:
    target = Target("comfy-a", base, SecretStr(key) if key else None, MODELS, options)
    return ComfyAdapter(target, seeds=lambda: SEED)


def with_uploads(graph: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The graph as submit sends it (loaders name uploaded files) and those file names."""
    names: set[str] = set()
    out = {}
    for node_id, node in graph.items():
        image = node["inputs"].get("image")
        if node["class_type"] in IMAGE_LOADERS and str(image).startswith("data:"):
            name = decode(image)[1]
            names.add(name)
            node = {**node, "inputs": {**node["inputs"], "image": name}}
        out[node_id] = node
    return out, names


def ksampler(graph: dict[str, Any]) -> dict[str, Any]:
    [node] = [n for n in graph.values() if n["class_type"] == "KSampler"]
    inputs: dict[str, Any] = node["inputs"]
    return inputs


# -- conversion ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_conversion_matches_golden_and_simulator_accepts(case: str) -> None:
    request, options = CASES[case]
    plan = make(options).plan(GenerationRequest.model_validate(request))
    check_golden("comfyui", case, plan_document(request, options, plan))
    assert sum(s.images for s in plan.submissions) == request.get("num_images", 1)
    for submission in plan.submissions:
        assert submission.endpoint == "prompt"
        assert set(submission.body) == {"prompt"}
        graph, names = with_uploads(submission.body["prompt"])
        verdict = validate_prompt(graph, names)
        assert verdict.ok, (verdict.error, verdict.node_errors)
        assert verdict.outputs


def test_exact_values_reach_the_sampler() -> None:
    request = GenerationRequest(
        prompt="p", negative_prompt="n", width=832, height=1216, steps=47, guidance_scale=13.25,
        seed=4294967295, scheduler=Scheduler.HEUN,
    )  # fmt: skip
    plan = make({}).plan(request)
    graph = plan.submissions[0].body["prompt"]
    sampler = ksampler(graph)
    assert (sampler["steps"], sampler["cfg"], sampler["seed"]) == (47, 13.25, 4294967295)
    assert (sampler["sampler_name"], sampler["scheduler"], sampler["denoise"]) == (
        "heun",
        "normal",
        1.0,
    )
    [latent] = [n["inputs"] for n in graph.values() if n["class_type"] == "EmptyLatentImage"]
    assert (latent["width"], latent["height"], latent["batch_size"]) == (832, 1216, 1)
    texts = [n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"]
    assert texts == ["p", "n"]
    assert plan.exact
    assert plan.warnings == []


def test_split_covers_every_image_once_with_distinct_seeds() -> None:
    plan = make({"max_batch": 3}).plan(GenerationRequest(prompt="x", num_images=8, seed=10))
    graphs = [s.body["prompt"] for s in plan.submissions]
    assert [s.images for s in plan.submissions] == [3, 3, 2]
    assert [ksampler(g)["seed"] for g in graphs] == [10, 13, 16]
    assert "num_images" in plan.inexact
    assert plan.warnings == [
        "num_images 8 → 3 + 3 + 2 (3 submissions merged; this comfyui server renders at most "
        "3 per prompt)"
    ]


def test_a_request_without_seed_gets_a_fresh_one_per_plan() -> None:
    adapter = FACTORY.create(Target("c", "http://sim", None, MODELS))
    request = GenerationRequest(prompt="x")
    seeds = {
        ksampler(adapter.plan(request).submissions[0].body["prompt"])["seed"] for _ in range(8)
    }
    assert len(seeds) > 1
    assert all(0 <= s < 2**32 for s in seeds)


def test_every_scheduler_maps_to_valid_comfy_names() -> None:
    assert set(tables.SCHEDULERS) == set(Scheduler)
    for scheduler, choice in tables.SCHEDULERS.items():
        assert choice.sampler_name in tables.SAMPLER_NAMES, scheduler
        assert choice.scheduler in tables.SCHEDULER_NAMES, scheduler
        plan = make({}).plan(GenerationRequest(prompt="x", scheduler=scheduler))
        sampler = ksampler(plan.submissions[0].body["prompt"])
        assert (sampler["sampler_name"], sampler["scheduler"]) == choice[:2], scheduler
        assert plan.exact == (choice.approximation is None), scheduler
        assert validate_prompt(plan.submissions[0].body["prompt"], set()).ok, scheduler
    approximated = {s for s, c in tables.SCHEDULERS.items() if c.approximation}
    assert approximated == {Scheduler.PNDM, Scheduler.TCD}


@pytest.mark.parametrize("long_side", [512, 768, 1024, 2048])
@pytest.mark.parametrize("ratio", list(AspectRatio))
def test_every_aspect_ratio_gives_multiples_of_8(ratio: AspectRatio, long_side: int) -> None:
    plan = make({"long_side": long_side}).plan(GenerationRequest(prompt="x", aspect_ratio=ratio))
    graph = plan.submissions[0].body["prompt"]
    [latent] = [n["inputs"] for n in graph.values() if n["class_type"] == "EmptyLatentImage"]
    width, height = latent["width"], latent["height"]
    assert max(width, height) == long_side
    assert width % 8 == 0
    assert height % 8 == 0
    exact_short = long_side / max(ratio.ratio, 1 / ratio.ratio)
    assert abs(min(width, height) - exact_short) <= 4  # the nearest multiple of 8
    assert ("aspect_ratio" in plan.inexact) == (width / height != ratio.ratio)
    assert validate_prompt(graph, set()).ok


@pytest.mark.parametrize("kind", list(ControlNetType))
def test_every_controlnet_type_with_a_model_builds_a_valid_graph(kind: ControlNetType) -> None:
    options = {"controlnets": {kind.value: f"{kind.value}.safetensors"}}
    request = GenerationRequest(
        prompt="x", controlnet={"type": kind, "image": DATA, "txt2img": True}
    )
    graph = make(options).plan(request).submissions[0].body["prompt"]
    [loader] = [n["inputs"] for n in graph.values() if n["class_type"] == "ControlNetLoader"]
    assert loader["control_net_name"] == f"{kind.value}.safetensors"
    graph, names = with_uploads(graph)
    assert validate_prompt(graph, names).ok


def test_one_image_used_twice_is_loaded_once() -> None:
    request = GenerationRequest(prompt="x", controlnet={"type": "canny", "image": DATA})
    graph = make({"controlnets": CONTROLNETS}).plan(request).submissions[0].body["prompt"]
    loaders = [n for n in graph.values() if n["class_type"] == "LoadImage"]
    assert len(loaders) == 1
    assert ksampler(graph)["denoise"] == 0.75  # the control image is the init image


def test_unsupported_requests_name_the_field() -> None:
    cases: list[tuple[dict[str, Any], dict[str, Any], set[str]]] = [
        ({"prompt": "x", "model": "anime"}, {}, {"model"}),
        ({"prompt": "x", "controlnet": {"type": "pose", "image": DATA}},
         {"controlnets": CONTROLNETS}, {"controlnet"}),
        ({"prompt": "x", "controlnet": {"type": "canny", "image": DATA}}, {}, {"controlnet"}),
        ({"prompt": "x", "init_image": URL}, {}, {"init_image"}),
        ({"prompt": "x", "init_image": DATA, "mask_image": URL}, {}, {"mask_image"}),
        ({"prompt": "x", "init_image": URL, "mask_image": URL}, {}, {"init_image", "mask_image"}),
        ({"prompt": "x", "controlnet": {"type": "canny", "image": URL}},
         {"controlnets": CONTROLNETS}, {"controlnet.image"}),
    ]  # fmt: skip
    for request, options, fields in cases:
        with pytest.raises(Unsupported) as info:
            make(options).plan(GenerationRequest.model_validate(request))
        assert set(info.value.reasons) == fields, request
    with pytest.raises(Unsupported) as url:
        make({}).plan(GenerationRequest(prompt="x", init_image=URL))
    assert url.value.reasons["init_image"] == "comfyui needs the image inline as a data: URI"


def test_options_are_validated() -> None:
    for bad in ({"max_batch": 0}, {"default_width": 100}, {"controlnets": {"sketch": "a"}},
                {"unknown": 1}, {"long_side": 4096}):  # fmt: skip
        with pytest.raises(ValueError, match="validation error"):
            make(bad)
    assert make({"poll_interval": "500ms"}).options.poll_interval == 0.5
    assert make({}).options.poll_interval == 1.0


# -- the simulator's validation can fail ----------------------------------------------------


def _valid_graph() -> dict[str, Any]:
    request = GenerationRequest(
        prompt="x", init_image=DATA, mask_image=MASK, width=512, height=512, num_images=2
    )
    graph, _ = with_uploads(make({}).plan(request).submissions[0].body["prompt"])
    return graph


def _node(graph: dict[str, Any], class_type: str) -> dict[str, Any]:
    return next(n for n in graph.values() if n["class_type"] == class_type)


def _set(class_type: str, name: str, value: Any) -> Any:
    def mutate(graph: dict[str, Any]) -> None:
        _node(graph, class_type)["inputs"][name] = value

    return mutate


def _drop(class_type: str, name: str) -> Any:
    def mutate(graph: dict[str, Any]) -> None:
        del _node(graph, class_type)["inputs"][name]

    return mutate


def _retype(graph: dict[str, Any]) -> None:
    _node(graph, "CheckpointLoaderSimple")["class_type"] = "NoSuchNode"


def _no_output(graph: dict[str, Any]) -> None:
    for node_id in [k for k, v in graph.items() if v["class_type"] == "SaveImage"]:
        del graph[node_id]


def _cycle(graph: dict[str, Any]) -> None:
    decode_id = next(k for k, v in graph.items() if v["class_type"] == "VAEDecode")
    _node(graph, "VAEEncode")["inputs"]["pixels"] = [decode_id, 0]


@pytest.mark.parametrize(
    ("mutate", "kind"),
    [
        (_retype, "invalid_prompt"),
        (_no_output, "prompt_no_outputs"),
        (_set("KSampler", "sampler_name", "euler_a"), "value_not_in_list"),
        (_set("KSampler", "scheduler", "karras_x"), "value_not_in_list"),
        (_set("KSampler", "steps", 0), "value_smaller_than_min"),
        (_set("KSampler", "denoise", 1.5), "value_bigger_than_max"),
        (_set("KSampler", "seed", "42"), "invalid_input_type"),
        (_set("KSampler", "cfg", True), "invalid_input_type"),
        (_set("KSampler", "latent_image", ["99", 0]), "bad_linked_input"),
        (_set("KSampler", "latent_image", ["1", 0]), "return_type_mismatch"),
        (_set("KSampler", "latent_image", ["1", 7]), "return_type_mismatch"),
        (_set("KSampler", "model", "sdxl"), "bad_linked_input"),
        (_set("ImageScale", "crop", "top"), "value_not_in_list"),
        (_set("LoadImage", "image", "never-uploaded.png"), "custom_validation_failed"),
        (_set("LoadImageMask", "channel", "purple"), "value_not_in_list"),
        (_set("CheckpointLoaderSimple", "ckpt_name", "sdxl"), "value_not_in_list"),
        (_set("KSampler", "cfg_rescale", 0.7), "unknown_input"),
        (_drop("KSampler", "negative"), "required_input_missing"),
        (_cycle, "dependency_cycle"),
    ],
)
def test_simulator_refuses_invalid_graphs(mutate: Any, kind: str) -> None:
    graph = _valid_graph()
    names = {n["inputs"]["image"] for n in graph.values() if n["class_type"] in IMAGE_LOADERS}
    assert validate_prompt(graph, names).ok
    mutate(graph)
    verdict = validate_prompt(graph, names)
    assert not verdict.ok
    assert verdict.error is not None
    found = {verdict.error["type"]} | {
        e["type"] for n in verdict.node_errors.values() for e in n["errors"]
    }
    assert kind in found, (verdict.error, verdict.node_errors)


def test_simulator_checks_empty_latent_sides() -> None:
    graph = make({}).plan(GenerationRequest(prompt="x")).submissions[0].body["prompt"]
    _node(graph, "EmptyLatentImage")["inputs"]["width"] = 1020
    verdict = validate_prompt(graph, set())
    assert not verdict.ok
    assert "multiple of 8" in str(verdict.node_errors)


# -- answers --------------------------------------------------------------------------------

BASE = "http://gpu-1:8188"
PID = "6f962d0e-40d9-45e8-b378-7247258cadde"


def _entry(outputs: Any, status: Any = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"prompt": [0, PID, {}, {}, ["9"]], "outputs": outputs, **extra}
    if status is not None:
        entry["status"] = status
    return {PID: entry}


OK = {"status_str": "success", "completed": True, "messages": [["execution_success", {}]]}
IMAGE = {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}


@pytest.mark.parametrize(
    "answer",
    [
        {"prompt_id": PID, "number": 3, "node_errors": {}},
        {"prompt_id": PID, "number": 3.0},
        {"prompt_id": PID},
        {"prompt_id": PID, "number": 0, "node_errors": []},
    ],
)
def test_submit_answers_are_read_leniently(answer: dict[str, Any]) -> None:
    assert read_submit(answer) == PID


@pytest.mark.parametrize(
    "answer",
    [None, [], "text", {}, {"prompt_id": 5}, {"prompt_id": ""}, {"prompt_id": PID, "number": "3"},
     {"prompt_id": PID, "number": True}, {"prompt_id": PID, "node_errors": "none"}],
)  # fmt: skip
def test_malformed_submit_answers_are_bad_answers(answer: Any) -> None:
    with pytest.raises(ProviderBadAnswer):
        read_submit(answer)


def _node_error(kind: str, details: str, extra: Any = None, node: str = "4") -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": "Value not in list", "details": details}
    if extra is not None:
        error["extra_info"] = extra
    return {node: {"errors": [error], "dependent_outputs": ["9"], "class_type": "KSampler"}}


FAILED = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
          "details": "", "extra_info": {}}  # fmt: skip


def test_rejections_say_which_node_and_why() -> None:
    error = rejection(
        {
            "error": FAILED,
            "node_errors": _node_error("value_not_in_list", "sampler_name: 'x' not in"),
        }
    )
    assert type(error) is ProviderRejected
    assert not error.retryable
    assert error.message == (
        "Prompt outputs failed validation; KSampler (node 4): Value not in list: "
        "sampler_name: 'x' not in"
    )
    no_prompt = rejection({"error": "no prompt", "node_errors": []})
    assert type(no_prompt) is ProviderRejected
    assert no_prompt.message == "no prompt"
    invalid = rejection(
        {"error": {"type": "invalid_prompt", "message": "Cannot execute because node X does not "
                   "exist.", "details": "Node ID '#3'"}, "node_errors": {}}
    )  # fmt: skip
    assert invalid.message.endswith("does not exist.: Node ID '#3'")


def test_missing_model_files_may_fail_over() -> None:
    for node_errors in (
        _node_error("value_not_in_list", "ckpt_name: 'a.safetensors' not in []",
                    {"input_name": "ckpt_name"}),
        _node_error("value_not_in_list", "lora_name: 'b.safetensors' not in []"),
        {**_node_error("value_not_in_list", "x", {"input_name": "control_net_name"}, node="7"),
         **_node_error("value_not_in_list", "y", {"input_name": "lora_name"}, node="2")},
    ):  # fmt: skip
        error = rejection({"error": FAILED, "node_errors": node_errors})
        assert isinstance(error, ProviderMisconfigured)
        assert error.retryable
        assert error.outcome == "misconfigured"
    mixed = {
        **_node_error("value_not_in_list", "x", {"input_name": "ckpt_name"}, node="1"),
        **_node_error("value_not_in_list", "sampler_name: 'y' not in", node="5"),
    }
    assert type(rejection({"error": FAILED, "node_errors": mixed})) is ProviderRejected


@pytest.mark.parametrize(
    "answer",
    [None, [], {"node_errors": {}}, {"error": 5}, {"error": FAILED, "node_errors": "x"},
     {"error": FAILED, "node_errors": {"4": []}},
     {"error": FAILED, "node_errors": {"4": {"errors": [3]}}},
     {"error": FAILED, "node_errors": {"4": {"errors": "bad"}}}],
)  # fmt: skip
def test_malformed_rejections_are_bad_answers(answer: Any) -> None:
    with pytest.raises(ProviderBadAnswer):
        rejection(answer)


def test_history_is_empty_until_done() -> None:
    assert read_history({}, PID, BASE) is None
    assert read_history({"another-id": {"outputs": {}}}, PID, BASE) is None


def test_history_success_lists_view_urls_in_node_order() -> None:
    outputs = {
        "10": {"images": [{"filename": "b c.png", "subfolder": "team a/x", "type": "output"}]},
        "9": {"images": [IMAGE, {**IMAGE, "filename": "ComfyUI_00002_.png"}]},
        "11": {"text": ["not an image output"]},
    }
    result = read_history(_entry(outputs, OK), PID, BASE)
    assert result == ProviderResult(
        ResultState.SUCCEEDED,
        provider_id=PID,
        images=(
            f"{BASE}/view?subfolder=&type=output&filename=ComfyUI_00001_.png",
            f"{BASE}/view?subfolder=&type=output&filename=ComfyUI_00002_.png",
            f"{BASE}/view?subfolder=team%20a%2Fx&type=output&filename=b%20c.png",
        ),
    )


@pytest.mark.parametrize(
    ("messages", "text"),
    [
        ([["execution_start", {}], ["execution_error", {"node_id": "5", "node_type": "KSampler",
          "exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory"}]],
         "KSampler (node 5): torch.OutOfMemoryError: CUDA out of memory"),
        ([["execution_interrupted", {"node_id": "5"}]], "generation was interrupted on the server"),
        ([], "generation failed (no error message in the history)"),
        ([["execution_error", "odd"], 3], "generation failed (no error message in the history)"),
    ],
)  # fmt: skip
def test_history_errors_are_failures_with_the_reason(messages: list[Any], text: str) -> None:
    status = {"status_str": "error", "completed": False, "messages": messages}
    result = read_history(_entry({}, status), PID, BASE)
    assert result is not None
    assert result.state is ResultState.FAILED
    assert result.error_message == text
    assert result.provider_id == PID


def test_history_without_status_from_older_servers() -> None:
    done = read_history(_entry({"9": {"images": [IMAGE]}}), PID, BASE)
    assert done is not None
    assert done.state is ResultState.SUCCEEDED
    failed = read_history(_entry({}), PID, BASE)
    assert failed is not None
    assert failed.state is ResultState.FAILED


@pytest.mark.parametrize(
    "answer",
    [None, [], "text", {PID: []}, {PID: {"outputs": {}, "status": "success"}},
     _entry({}, {"status_str": "running", "completed": False}),
     _entry({"9": {"images": [IMAGE]}}, {"status_str": "success"}),
     _entry({"9": {"images": [IMAGE]}}, {"status_str": "success", "completed": False}),
     _entry({"9": {"images": [IMAGE]}}, {**OK, "messages": "none"}),
     _entry({"9": {"images": []}}, OK), _entry([], OK), _entry(None, OK), {PID: {"status": OK}},
     _entry({"9": []}, OK), _entry({"9": {"images": "ComfyUI_00001_.png"}}, OK),
     _entry({"9": {"images": ["ComfyUI_00001_.png"]}}, OK),
     _entry({"9": {"images": [{"subfolder": "", "type": "output"}]}}, OK),
     _entry({"9": {"images": [{**IMAGE, "filename": 3}]}}, OK),
     _entry({"9": {"images": [{**IMAGE, "subfolder": None}]}}, OK),
     _entry({"9": {"images": [{**IMAGE, "type": 1}]}}, OK),
     _entry({"9": {"images": [{**IMAGE, "filename": ""}]}}, OK)],
)  # fmt: skip
def test_malformed_history_is_a_bad_answer(answer: Any) -> None:
    with pytest.raises(ProviderBadAnswer):
        read_history(answer, PID, BASE)


def test_queue_and_prompt_info() -> None:
    queue = {"queue_running": [[3, "a", {}, {}, ["9"]]], "queue_pending": [[4, PID, {}, {}, []]]}
    assert queue_state(queue, "a") is ResultState.PROCESSING
    assert queue_state(queue, PID) is ResultState.PENDING
    assert queue_state(queue, "gone") is None
    assert queue_remaining({"exec_info": {"queue_remaining": 2}}) == 2
    bad_queues: list[Any] = [
        None, {}, {"queue_running": [], "queue_pending": "x"},
        {"queue_running": [[1]], "queue_pending": []}, {"queue_running": [7], "queue_pending": []},
    ]  # fmt: skip
    for bad_queue in bad_queues:
        with pytest.raises(ProviderBadAnswer):
            queue_state(bad_queue, PID)
    bad_infos: list[Any] = [
        None, {}, {"exec_info": {}}, {"exec_info": {"queue_remaining": "3"}},
        {"exec_info": {"queue_remaining": -1}}, {"exec_info": {"queue_remaining": True}},
    ]  # fmt: skip
    for bad_info in bad_infos:
        with pytest.raises(ProviderBadAnswer):
            queue_remaining(bad_info)


def test_comfyui_sends_no_webhooks() -> None:
    with pytest.raises(ProviderBadAnswer):
        make({}).parse_webhook(b'{"prompt_id": "x"}')


def test_a_corrupt_inline_image_is_refused_before_upload() -> None:
    with pytest.raises(ProviderRejected):
        decode("data:image/png;base64,iVBORw0KGgo")  # bad padding
    raw, name, media = decode(DATA)
    assert (raw, media) == (PNG, "image/png")
    assert name.startswith("gw-")
    assert name.endswith(".png")
    assert decode("data:image/jpeg;base64,/9j/4AAQ")[1].endswith(".jpg")


# -- over real HTTP against the simulator -------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    sim = TestServer(
        FACTORY.simulator(SimulatorSettings(speed=0.05, concurrency=1)), host="127.0.0.1"
    )
    await sim.start_server()
    yield sim
    await sim.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def origin(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def configure(session: aiohttp.ClientSession, server: TestServer, **changes: Any) -> None:
    async with session.post(f"{origin(server)}/_sim/config", json=changes) as resp:
        assert resp.status == 200, await resp.text()


async def finish(adapter: ComfyAdapter, http: HttpClient, prompt_id: str) -> ProviderResult:
    for _ in range(400):
        result = await adapter.poll(http, prompt_id)
        if result.state.final:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("the prompt did not finish")


async def submit(
    adapter: ComfyAdapter, http: HttpClient, request: GenerationRequest, n: int = 0
) -> list[str]:
    ids = []
    for i, submission in enumerate(adapter.plan(request).submissions):
        result = await adapter.submit(http, submission, Callback("unused", f"gen_x.{n + i}"))
        assert result.state is ResultState.PENDING
        assert result.provider_id
        ids.append(result.provider_id)
    return ids


async def test_txt2img_and_img2img_round_trip(
    http: HttpClient, server: TestServer, session: aiohttp.ClientSession
) -> None:
    adapter = make({"max_batch": 2}, base=origin(server))
    requests = [
        GenerationRequest(prompt="a cat", width=512, height=512, num_images=3),
        GenerationRequest(prompt="a cat", init_image=DATA, mask_image=MASK, strength=0.5),
    ]
    images: list[str] = []
    for n, request in enumerate(requests):
        for prompt_id in await submit(adapter, http, request, n * 10):
            result = await finish(adapter, http, prompt_id)
            assert result.state is ResultState.SUCCEEDED, result
            assert result.provider_id == prompt_id
            images += result.images
    assert len(images) == 4
    assert len(set(images)) == 4
    for url in images:
        assert url.startswith(f"{origin(server)}/view?")
        async with session.get(url) as resp:
            assert resp.status == 200
            assert resp.content_type == "image/png"
            assert (await resp.read()).startswith(b"\x89PNG")
    # Both inline images were uploaded under content-addressed names, once each.
    inputs = server.app[state_key].inputs()
    assert inputs == {decode(DATA)[1]: PNG, decode(MASK)[1]: base64.b64decode(MASK[22:])}
    for prompt_id, item in (await _history(session, server)).items():
        assert item["prompt"][3]["client_id"].startswith("imagegen-gateway:gen_x."), prompt_id


async def _history(session: aiohttp.ClientSession, server: TestServer) -> dict[str, Any]:
    async with session.get(f"{origin(server)}/history") as resp:
        data: dict[str, Any] = await resp.json()
        return data


async def test_simulator_accepts_every_golden_case_over_http(
    http: HttpClient, server: TestServer, session: aiohttp.ClientSession
) -> None:
    await configure(session, server, speed=0.001)
    for n, case in enumerate(sorted(CASES)):
        request, options = CASES[case]
        adapter = make(options, base=origin(server))
        await submit(adapter, http, GenerationRequest.model_validate(request), n * 10)


async def test_probe_sees_the_queue_grow(
    http: HttpClient, server: TestServer, session: aiohttp.ClientSession
) -> None:
    await configure(session, server, speed=30)  # nothing finishes during the test
    adapter = make({}, base=origin(server))
    probe = await adapter.probe(http)
    assert probe.healthy
    assert probe.queue_depth == 0
    assert "GiB VRAM free" in probe.detail
    depths, ids = [], []
    for n in range(3):
        ids += await submit(adapter, http, GenerationRequest(prompt="x"), n)
        depths.append((await adapter.probe(http)).queue_depth)
    assert depths == [1, 2, 3]
    states = [(await adapter.poll(http, i)).state for i in ids]
    assert states == [ResultState.PROCESSING, ResultState.PENDING, ResultState.PENDING]


async def test_interrupt_fails_the_running_prompt(
    http: HttpClient, server: TestServer, session: aiohttp.ClientSession
) -> None:
    await configure(session, server, speed=0.3)
    adapter = make({}, base=origin(server))
    [prompt_id] = await submit(adapter, http, GenerationRequest(prompt="x", width=512, height=512))
    assert (await adapter.poll(http, prompt_id)).state is ResultState.PROCESSING
    async with session.post(f"{origin(server)}/interrupt") as resp:
        assert resp.status == 200
    result = await finish(adapter, http, prompt_id)
    assert result.state is ResultState.FAILED
    assert result.error_message == "generation was interrupted on the server"


async def test_generation_failures_come_back_as_failed(
    http: HttpClient, server: TestServer, session: aiohttp.ClientSession
) -> None:
    await configure(session, server, generation_fail_rate=1.0)
    adapter = make({}, base=origin(server))
    [prompt_id] = await submit(adapter, http, GenerationRequest(prompt="x", width=256, height=256))
    result = await finish(adapter, http, prompt_id)
    assert result.state is ResultState.FAILED
    assert result.error_message == "KSampler (node 5): RuntimeError: simulated generation failure"


async def test_an_unknown_prompt_is_lost(http: HttpClient, server: TestServer) -> None:
    result = await make({}, base=origin(server)).poll(http, PID)
    assert result.state is ResultState.FAILED
    assert result.error_code == "provider_lost"


@pytest.mark.parametrize(
    ("changes", "error", "retryable"),
    [
        ({"fail_rate": 1.0}, ProviderServerError, True),
        ({"rate_limit_rate": 1.0, "retry_after": 2.5}, ProviderRateLimited, True),
        ({"malformed_rate": 1.0}, ProviderBadAnswer, False),
        ({"timeout_rate": 1.0}, ProviderTimeout, True),
    ],
)
async def test_faults_map_to_provider_errors(
    http: HttpClient,
    server: TestServer,
    session: aiohttp.ClientSession,
    changes: dict[str, Any],
    error: type[ProviderError],
    retryable: bool,
) -> None:
    await configure(session, server, **changes)
    adapter = make({"timeout": 0.3}, base=origin(server))
    with pytest.raises(error) as info:
        await submit(adapter, http, GenerationRequest(prompt="x"))
    assert info.value.retryable is retryable
    if error is ProviderRateLimited:
        assert info.value.retry_after == 2.5
    assert (await adapter.probe(http)).healthy  # reads stay reliable


async def test_invalid_graphs_and_missing_models_are_told_apart(
    http: HttpClient, server: TestServer
) -> None:
    adapter = make({}, base=origin(server))
    submission = adapter.plan(GenerationRequest(prompt="x")).submissions[0]
    callback = Callback("unused", "gen_x.0")
    graph = submission.body["prompt"]
    bad = {**graph, "5": {**graph["5"], "inputs": {**graph["5"]["inputs"], "sampler_name": "nope"}}}
    with pytest.raises(ProviderRejected) as rejected:
        await adapter.submit(http, type(submission)("prompt", {"prompt": bad}, 1), callback)
    assert "KSampler (node 5): Value not in list: sampler_name: 'nope'" in rejected.value.message
    # The model map names a checkpoint file this server does not have.
    absent = Target("comfy-a", origin(server), None, {"default": "not-installed"}, {})
    with pytest.raises(ProviderMisconfigured) as lacking:
        await submit(ComfyAdapter(absent), http, GenerationRequest(prompt="x"))
    assert "ckpt_name: 'not-installed'" in lacking.value.message


async def test_credentials_are_sent_and_never_leaked(http: HttpClient, server: TestServer) -> None:
    good = make({}, base=origin(server), key="sim-key")
    [prompt_id] = await submit(good, http, GenerationRequest(prompt="x", width=256, height=256))
    assert (await finish(good, http, prompt_id)).state is ResultState.SUCCEEDED
    wrong = make({}, base=origin(server), key="wrong-secret-key")
    with pytest.raises(ProviderAuthFailed) as refused:
        await submit(wrong, http, GenerationRequest(prompt="x"))
    assert "wrong-secret-key" not in refused.value.message
    probe = await wrong.probe(http)
    assert not probe.healthy
    assert "wrong-secret-key" not in probe.detail


async def test_an_unreachable_server_is_unavailable(http: HttpClient) -> None:
    sim = TestServer(FACTORY.simulator(SimulatorSettings()), host="127.0.0.1")
    await sim.start_server()
    base = origin(sim)
    await sim.close()
    adapter = make({"timeout": 2, "poll_timeout": 2}, base=base)
    probe = await adapter.probe(http)
    assert not probe.healthy
    with pytest.raises(ProviderUnavailable):
        await submit(adapter, http, GenerationRequest(prompt="x"))


async def test_simulator_uploads_and_views_like_comfyui(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async def upload(raw: bytes, **fields: str) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("image", raw, filename="in.png", content_type="image/png")
        for name, value in fields.items():
            form.add_field(name, value)
        async with session.post(f"{origin(server)}/upload/image", data=form) as resp:
            return resp.status, await resp.json() if resp.status == 200 else None

    assert await upload(PNG) == (200, {"name": "in.png", "subfolder": "", "type": "input"})
    assert (await upload(PNG))[1]["name"] == "in.png"  # identical bytes keep the name
    assert (await upload(b"other"))[1]["name"] == "in (1).png"
    assert (await upload(b"again", overwrite="true"))[1]["name"] == "in.png"
    assert (await upload(PNG, subfolder="masks"))[1] == {
        "name": "in.png", "subfolder": "masks", "type": "input"
    }  # fmt: skip
    assert (await upload(PNG, subfolder="../etc"))[0] == 400
    view = f"{origin(server)}/api/view?filename=in.png&type=input&subfolder=masks"
    async with session.get(view) as resp:
        assert resp.status == 200
        assert await resp.read() == PNG
    async with session.get(f"{origin(server)}/view?filename=missing.png") as resp:
        assert resp.status == 404
    async with session.get(f"{origin(server)}/api/prompt") as resp:
        assert await resp.json() == {"exec_info": {"queue_remaining": 0}}
