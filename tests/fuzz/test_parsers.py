"""hypothesis over what a hostile tenant or provider can send: the normalized request model,
every adapter's conversion, and every adapter's answer, poll and webhook parsing.

The only exceptions allowed out are the ones the callers handle: `ValidationError` from the
model, `Unsupported` from a conversion, a `ProviderError` from a parser. Anything else would
be a 500 or a crashed loop. Fixed seed (derandomize) so CI sees the same examples every run.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from adapters.astria import FACTORY as ASTRIA
from adapters.astria import answers as astria_answers
from adapters.base import ProviderResult, ResultState, Target
from adapters.bodia import FACTORY as BODIA
from adapters.bodia import answers as bodia_answers
from adapters.comfyui import FACTORY as COMFYUI
from adapters.comfyui import answers as comfy_answers
from adapters.errors import ProviderError, Unsupported
from adapters.modelslab import FACTORY as MODELSLAB
from adapters.modelslab import answers as modelslab_answers
from adapters.normalized import GenerationRequest

EXAMPLES = 1000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "42", "yes", "success", "error", "https://x/1.png", "\n\x00"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def shaped(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A provider-like object: its keys, each with a plausible or an arbitrary value."""
    return st.fixed_dictionaries({}, optional={k: v | json_values for k, v in keys.items()})


urls = st.lists(st.sampled_from(["https://cdn/1.png", "http://x/2.jpg", "x", ""]), max_size=3)
ids = st.integers(min_value=-5, max_value=10**12) | st.text(max_size=10)

MODELSLAB_ANSWER = shaped({
    "status": st.sampled_from(["success", "processing", "error", "failed", "queued"]),
    "id": ids, "track_id": ids, "output": urls, "future_links": urls, "proxy_links": urls,
    "message": st.text(max_size=20), "messege": st.text(max_size=20), "eta": scalars,
    "fetch_result": st.text(max_size=20), "retry_after": scalars, "generationTime": scalars,
})  # fmt: skip
ASTRIA_PROMPT = shaped({
    "id": ids, "tune_id": ids, "images": urls | st.lists(st.fixed_dictionaries({"url": st.text()})),
    "user_error": st.text(max_size=20), "trained_at": st.text(max_size=30),
    "started_training_at": st.text(max_size=30), "url": st.text(max_size=40),
})  # fmt: skip
ASTRIA_ANSWER = ASTRIA_PROMPT | st.fixed_dictionaries({"prompt": ASTRIA_PROMPT | json_values})
ASTRIA_TUNE = shaped({
    "id": ids, "title": st.text(max_size=10), "token": st.text(max_size=5),
    "trained_at": st.text(max_size=30), "started_training_at": st.text(max_size=30),
    "expires_at": st.text(max_size=30), "eta": st.text(max_size=30), "orig_images": urls,
})  # fmt: skip
BODIA_PROMPT = shaped({
    "id": ids, "images": urls, "error_message": st.text(max_size=20), "prompt": st.text(),
    "cfg": scalars, "steps": scalars, "seed": scalars, "metadata": json_values,
})  # fmt: skip
COMFY_HISTORY = st.dictionaries(
    st.sampled_from(["p1", "p2"]),
    shaped({
        "outputs": st.dictionaries(st.sampled_from(["9", "10"]), shaped({
            "images": st.lists(shaped({"filename": st.text(max_size=10),
                                       "subfolder": st.text(max_size=5),
                                       "type": st.sampled_from(["output", "temp"])}))})),
        "status": shaped({"status_str": st.sampled_from(["success", "error"]),
                          "completed": st.booleans(), "messages": json_values}),
    }),
    max_size=2,
)  # fmt: skip
COMFY_QUEUE = shaped({
    "queue_running": st.lists(st.lists(scalars | st.just("p1"), max_size=3), max_size=2),
    "queue_pending": st.lists(st.lists(scalars | st.just("p1"), max_size=3), max_size=2),
    "exec_info": shaped({"queue_remaining": scalars}),
    "prompt_id": ids, "number": scalars, "node_errors": json_values, "error": json_values,
})  # fmt: skip


def target(name: str, **options: Any) -> Target:
    return Target(name, "http://sim", SecretStr("k"), {"default": "m", "x": "1"}, options)


ADAPTERS = {
    "modelslab": MODELSLAB.create(target("ml")),
    "modelslab-enterprise": MODELSLAB.create(target("gpu", enterprise=True)),
    "astria": ASTRIA.create(Target("a", "http://sim", SecretStr("k"), {"default": "690204"})),
    "bodia": BODIA.create(Target("b", "http://sim", SecretStr("k"), {"default": "ft-1"})),
    "comfyui": COMFYUI.create(Target("c", "http://sim", None, {"default": "sdxl.safetensors"})),
}


def survives(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a parser; a `ProviderError` is its way of saying no, anything else is a bug."""
    with contextlib.suppress(ProviderError):
        result = call(*args, **kwargs)
        if isinstance(result, ProviderResult):
            assert isinstance(result.state, ResultState)
            assert all(isinstance(url, str) for url in result.images)
        return result
    return None


def as_body(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATACLASS) if _fits(value) else b"{"


def _fits(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


@FUZZ
@given(data=MODELSLAB_ANSWER | json_values, raw=st.binary(max_size=40))
def test_modelslab_answers_and_webhooks(data: Any, raw: bytes) -> None:
    adapter = ADAPTERS["modelslab"]
    survives(modelslab_answers.read_result, data)
    if isinstance(data, dict):
        survives(modelslab_answers.submit_error, data)
        survives(modelslab_answers.message, data)
    survives(modelslab_answers.number, data)
    survives(adapter.parse_webhook, as_body(data))
    survives(adapter.parse_webhook, raw)


@FUZZ
@given(data=ASTRIA_ANSWER | json_values, tune=ASTRIA_TUNE | json_values, raw=st.binary(max_size=40))
def test_astria_answers_and_webhooks(data: Any, tune: Any, raw: bytes) -> None:
    adapter = ADAPTERS["astria"]
    survives(astria_answers.read_prompt, data)
    survives(astria_answers.read_prompt, data, "690204")
    survives(adapter.parse_webhook, as_body(data))
    survives(adapter.parse_webhook, raw)
    survives(adapter.parse_tune_webhook, as_body(tune))
    survives(adapter.parse_tune_webhook, raw)
    if isinstance(data, str):
        survives(astria_answers.split_provider_id, data)


@FUZZ
@given(data=BODIA_PROMPT | json_values, prompt_id=st.text(max_size=8))
def test_bodia_answers(data: Any, prompt_id: str) -> None:
    survives(bodia_answers.read_created, data, "ft-1")
    survives(bodia_answers.read_prompt, data, "ft-1", expected_id=prompt_id or None)
    survives(bodia_answers.split_provider_id, prompt_id)
    survives(ADAPTERS["bodia"].parse_webhook, as_body(data))


@FUZZ
@given(history=COMFY_HISTORY | json_values, queue=COMFY_QUEUE | json_values)
def test_comfyui_answers(history: Any, queue: Any) -> None:
    survives(comfy_answers.read_history, history, "p1", "http://sim")
    survives(comfy_answers.queue_state, queue, "p1")
    survives(comfy_answers.queue_remaining, queue)
    survives(comfy_answers.read_submit, queue)
    survives(comfy_answers.rejection, queue)


# -- the normalized request, and every adapter's conversion of it -------------------------

IMAGES = ["https://cdn.example.com/a.png", "data:image/png;base64,iVBORw0KGgo="]
request_fields = st.fixed_dictionaries(
    {"prompt": st.text(min_size=1, max_size=40)},
    optional={
        "negative_prompt": st.text(max_size=20) | st.none(),
        "model": st.sampled_from(["default", "x", "missing"]),
        "num_images": st.integers(0, 9),
        "width": st.integers(0, 300).map(lambda n: n * 8),
        "height": st.integers(0, 300).map(lambda n: n * 8),
        "aspect_ratio": st.sampled_from(["1:1", "16:9", "9:21", "4:3", "7:3"]),
        "steps": st.integers(0, 101),
        "guidance_scale": st.floats(-1, 31),
        "seed": st.integers(-1, 2**32),
        "scheduler": st.sampled_from(["euler", "dpmpp_2m_karras", "tcd", "lcm", "bogus"]),
        "init_image": st.sampled_from(IMAGES),
        "mask_image": st.sampled_from(IMAGES),
        "strength": st.floats(0, 1),
        "controlnet": st.fixed_dictionaries(
            {"type": st.sampled_from(["canny", "pose", "qr"]), "image": st.sampled_from(IMAGES)},
            optional={"conditioning_scale": st.floats(0, 1), "txt2img": st.booleans()},
        ),
        "loras": st.lists(
            st.fixed_dictionaries({"name": st.text(min_size=1, max_size=8)},
                                  optional={"strength": st.floats(0.1, 1)}),
            max_size=3,
        ),
        "enhance": st.dictionaries(
            st.sampled_from(["super_resolution", "face_correct", "hires_fix", "film_grain"]),
            st.booleans(),
        ),
        "style": st.sampled_from(["Cinematic", "Line art"]),
        "color_grading": st.sampled_from(["Ektar"]),
        "safety_checker": st.booleans(),
        "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        "strict": st.booleans(),
        "backends": st.lists(st.sampled_from(["ml", "gpu", "*"]), min_size=1, max_size=2),
        "priority": st.sampled_from(["interactive", "batch"]),
    },
)  # fmt: skip


@FUZZ
@given(fields=request_fields | json_values)
def test_request_model_and_every_conversion(fields: Any) -> None:
    try:
        request = GenerationRequest.model_validate_json(as_body(fields), strict=True)
    except ValidationError:
        return
    # What the API stores for dispatch must read back as the same request.
    stored = request.model_dump(mode="json", exclude_none=True)
    assert GenerationRequest.model_validate(stored) == request
    for adapter in ADAPTERS.values():
        with contextlib.suppress(Unsupported):
            plan = adapter.plan(request)
            assert plan.submissions, adapter
