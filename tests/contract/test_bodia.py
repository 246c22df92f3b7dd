"""Bodia contract: exact prompt objects (golden files), warnings, answers, and real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from adapters.base import Callback, ProviderResult, ResultState, SimulatorSettings, Target
from adapters.bodia import FACTORY, tables
from adapters.bodia.answers import provider_id, read_created, read_prompt, split_provider_id
from adapters.bodia.convert import BodiaOptions, endpoint_for, finetune_of, orientation
from adapters.bodia.simulator import validate
from adapters.errors import (
    ProviderAuthFailed,
    ProviderBadAnswer,
    ProviderMisconfigured,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    Unsupported,
)
from adapters.httpclient import HttpClient
from adapters.normalized import AspectRatio, GenerationRequest
from tests.contract.golden import check_golden, plan_document

MODELS = {"default": "ft-690204", "portrait": "ft-portrait-11", "team": "team/ft 7"}
KEY = "sk-bodia-sim-key-0001"
IMG = "https://images.example.com/in.png"
CALLBACK = Callback(url="https://gateway.example/webhooks/bodia-1/gen_abc.0", track_id="gen_abc.0")

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "minimal": ({"prompt": "a car on the route 99 road"}, {}),
    "doc_example": (
        {"prompt": "A car on the route 99 road", "negative_prompt": "stones",
         "guidance_scale": 7.5, "steps": 35, "seed": 2323, "aspect_ratio": "1:1",
         "enhance": {"super_resolution": True}},
        {},
    ),
    "negative_prompt": ({"prompt": "a portrait", "negative_prompt": "hands, rocks"}, {}),
    "empty_negative_prompt": ({"prompt": "x", "negative_prompt": ""}, {}),
    "aspect_16_9": ({"prompt": "x", "aspect_ratio": "16:9"}, {}),
    "aspect_9_16": ({"prompt": "x", "aspect_ratio": "9:16"}, {}),
    "aspect_4_5": ({"prompt": "x", "aspect_ratio": "4:5"}, {}),
    "size_landscape": ({"prompt": "x", "width": 768, "height": 512}, {}),
    "size_portrait": ({"prompt": "x", "width": 512, "height": 768}, {}),
    "size_square": ({"prompt": "x", "width": 1024, "height": 1024}, {}),
    "cfg_clamp_low": ({"prompt": "x", "guidance_scale": 0.5}, {}),
    "cfg_clamp_high": ({"prompt": "x", "guidance_scale": 25}, {}),
    "cfg_exact_bounds": ({"prompt": "x", "guidance_scale": 20, "steps": 1}, {}),
    "steps_clamp": ({"prompt": "x", "steps": 80}, {}),
    "super_resolution": ({"prompt": "x", "enhance": {"super_resolution": True}}, {}),
    "super_resolution_off": ({"prompt": "x", "enhance": {"super_resolution": False}}, {}),
    "dropped_fields": (
        {"prompt": "x", "scheduler": "dpmpp_2m_karras", "style": "Cinematic",
         "color_grading": "Ektar", "safety_checker": True,
         "enhance": {"super_resolution": True, "face_correct": True, "hires_fix": True}},
        {},
    ),
    "split_3_per_1": ({"prompt": "x", "num_images": 3, "seed": 10}, {}),
    "split_5_per_2_seed_wraps": (
        {"prompt": "x", "num_images": 5, "seed": 4294967294},
        {"images_per_prompt": 2},
    ),
    "split_4_per_2": ({"prompt": "x", "num_images": 4}, {"images_per_prompt": 2}),
    "one_of_2_per_prompt": ({"prompt": "x", "num_images": 1}, {"images_per_prompt": 2}),
    "eight_in_one_prompt": ({"prompt": "x", "num_images": 8}, {"images_per_prompt": 8}),
    "model_map": ({"prompt": "ohwx woman, studio light", "model": "portrait"}, {}),
    "finetune_id_quoted": ({"prompt": "x", "model": "team"}, {}),
}  # fmt: skip


def target(
    base_url: str = "http://sim", options: dict[str, Any] | None = None, **changes: Any
) -> Target:
    fields: dict[str, Any] = {
        "name": "bodia-1",
        "base_url": base_url,
        "api_key": SecretStr(KEY),
        "models": MODELS,
        "options": options or {},
        **changes,
    }
    return Target(**fields)


def make(options: dict[str, Any] | None = None) -> Any:
    return FACTORY.create(target(options=options))


def with_metadata(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What submit puts on the wire for one submission."""
    return [{**body, "metadata": {"gateway_track_id": CALLBACK.track_id}}]


# -- conversion -----------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_conversion_matches_golden_and_simulator_accepts(case: str) -> None:
    request, options = CASES[case]
    plan = make(options).plan(GenerationRequest.model_validate(request))
    check_golden("bodia", case, plan_document(request, options, plan))
    assert plan.submissions
    for submission in plan.submissions:
        assert validate(with_metadata(submission.body)) is None
        assert finetune_of(submission.endpoint) == plan.model_id


def test_doc_example_converts_to_the_docs_own_prompt() -> None:
    request, _ = CASES["doc_example"]
    plan = make().plan(GenerationRequest.model_validate(request))
    assert plan.submissions[0].body == {
        "prompt": "A car on the route 99 road",
        "negative_prompt": "stones",
        "cfg": 7.5,
        "steps": 35,
        "seed": 2323,
        "high_resolution": True,
        "aspect_ratio": "square",
    }
    assert plan.exact
    assert plan.warnings == []


@pytest.mark.parametrize(("total", "per_prompt"), [(n, p) for n in range(1, 9) for p in (1, 2, 3)])
def test_split_asks_for_each_image_exactly_once(total: int, per_prompt: int) -> None:
    plan = make({"images_per_prompt": per_prompt}).plan(
        GenerationRequest(prompt="x", num_images=total, seed=100)
    )
    counts = [s.images for s in plan.submissions]
    assert sum(counts) == total
    assert all(1 <= c <= per_prompt for c in counts)
    assert len(counts) == -(-total // per_prompt)
    seeds = [s.body["seed"] for s in plan.submissions]
    assert seeds == [100 + i * per_prompt for i in range(len(counts))]
    assert ("num_images" in plan.inexact) == (len(counts) > 1)


def test_work_counts_surplus_images_and_high_resolution() -> None:
    base = make().plan(GenerationRequest(prompt="x", steps=30)).work
    assert base == pytest.approx(1024 * 1024 * 30 / 1e6)
    doubled = make({"images_per_prompt": 2}).plan(GenerationRequest(prompt="x", steps=30)).work
    assert doubled == pytest.approx(2 * base)
    hires = make().plan(GenerationRequest(prompt="x", steps=30, enhance={"super_resolution": True}))
    assert hires.work == pytest.approx(tables.HIGH_RESOLUTION_COST * base)


@pytest.mark.parametrize("ratio", list(AspectRatio))
def test_every_aspect_ratio_lands_on_its_orientation(ratio: AspectRatio) -> None:
    plan = make().plan(GenerationRequest(prompt="x", aspect_ratio=ratio))
    sent = plan.submissions[0].body["aspect_ratio"]
    expected = "square" if ratio.ratio == 1 else "landscape" if ratio.ratio > 1 else "portrait"
    assert sent == tables.ASPECTS[ratio].value == expected
    assert plan.exact == (ratio is AspectRatio.R1_1)
    if not plan.exact:
        assert plan.warnings == [
            f"aspect_ratio {ratio.value} → {expected} (bodia offers square, portrait, landscape)"
        ]


def test_aspect_table_covers_every_normalized_ratio() -> None:
    assert set(tables.ASPECTS) == set(AspectRatio)
    assert set(tables.ASPECTS.values()) == set(tables.BodiaAspect)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (512, 512, "square"),
        (2048, 64, "landscape"),
        (64, 2048, "portrait"),
        (520, 512, "landscape"),
    ],
)
def test_explicit_sizes_are_approximated_by_orientation(
    width: int, height: int, expected: str
) -> None:
    assert orientation(width, height).value == expected
    plan = make().plan(GenerationRequest(prompt="x", width=width, height=height))
    assert plan.submissions[0].body["aspect_ratio"] == expected
    assert plan.inexact == ["width", "height"]
    assert plan.warnings == [
        f"size {width}x{height} → {expected} "
        "(bodia offers square, portrait, landscape and picks the pixel size)"
    ]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"init_image": IMG}, "init_image"),
        ({"init_image": IMG, "strength": 0.5}, "init_image"),
        ({"init_image": IMG, "mask_image": IMG}, "mask_image"),
        ({"controlnet": {"type": "canny", "image": IMG}}, "controlnet"),
        ({"loras": [{"name": "detail", "strength": 0.5}]}, "loras"),
        ({"model": "anime"}, "model"),
    ],
)
def test_unsupported_requests_name_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(Unsupported) as refused:
        make().plan(GenerationRequest.model_validate({"prompt": "x", **extra}))
    assert field in refused.value.reasons


def test_unsupported_table_is_exactly_what_raises() -> None:
    assert set(tables.UNSUPPORTED_FEATURES) == {"init_image", "mask_image", "controlnet", "loras"}
    everything = {
        "prompt": "x",
        "model": "anime",
        "init_image": IMG,
        "mask_image": IMG,
        "controlnet": {"type": "depth", "image": IMG},
        "loras": [{"name": "a"}],
    }
    with pytest.raises(Unsupported) as refused:
        make().plan(GenerationRequest.model_validate(everything))
    assert set(refused.value.reasons) == {"model", *tables.UNSUPPORTED_FEATURES}


@pytest.mark.parametrize("flag", tables.DROPPED_ENHANCE)
def test_every_other_enhancement_is_dropped_with_a_warning(flag: str) -> None:
    plan = make().plan(GenerationRequest.model_validate({"prompt": "x", "enhance": {flag: True}}))
    assert plan.warnings == [f"enhance.{flag} true dropped (bodia does not support it)"]
    assert plan.inexact == [f"enhance.{flag}"]
    assert "high_resolution" not in plan.submissions[0].body


def test_endpoint_round_trips_and_refuses_other_paths() -> None:
    for finetune in ("690204", "team/ft 7", "a%b"):
        assert finetune_of(endpoint_for(finetune)) == finetune
    for bad in ("v1/finetunes//prompts", "v1/tunes/1/prompts", "v1/finetunes/a/b/prompts"):
        with pytest.raises(ValueError, match="not a bodia prompts endpoint"):
            finetune_of(bad)


def test_options_defaults_suit_a_poll_only_provider() -> None:
    options = BodiaOptions()
    assert 2 <= options.poll_interval <= 5
    assert options.images_per_prompt == 1
    with pytest.raises(ValueError, match="images_per_prompt"):
        BodiaOptions.model_validate({"images_per_prompt": 0})


# -- answers ----------------------------------------------------------------------------

DOC_CREATED = {
    "id": "ui7xBN30TS8_xZeR-I4QbJv3",
    "prompt": "A car on the route 99 road",
    "negative_prompt": "stones",
    "cfg": "7.50",
    "steps": 35,
    "seed": "2323",
    "error_message": None,
    "images": [],
    "metadata": {"info": "example info I want to include"},
    "created_at": "2023-02-15T12:41:19.178Z",
    "high_resolution": True,
    "aspect_ratio": "square",
}
DOC_RETRIEVED = {
    **DOC_CREATED,
    "id": "WAz8eIbvDR60rouK",
    "cfg": 7.5,
    "seed": 11,
    "images": ["https://images.bodia.ai/gen1.jpg", "https://images.bodia.ai/gen2.jpg"],
}


def test_the_docs_create_answer_is_pending() -> None:
    result = read_created([DOC_CREATED], "690204")
    assert result == ProviderResult(
        ResultState.PENDING, provider_id="690204/ui7xBN30TS8_xZeR-I4QbJv3"
    )


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        (DOC_RETRIEVED, ResultState.SUCCEEDED),
        ({**DOC_CREATED, "cfg": "abc", "seed": None, "steps": "45"}, ResultState.PROCESSING),
        ({**DOC_CREATED, "images": None}, ResultState.PROCESSING),
        ({**DOC_CREATED, "error_message": ""}, ResultState.PROCESSING),
        ({**DOC_CREATED, "error_message": "NSFW content detected"}, ResultState.FAILED),
        ({**DOC_CREATED, "error_message": "x", "images": ["https://i/1"]}, ResultState.SUCCEEDED),
        ({"id": 42, "images": [], "error_message": None, "x": 1}, ResultState.PROCESSING),
    ],
)  # fmt: skip
def test_prompt_objects_are_read_leniently(answer: dict[str, Any], state: ResultState) -> None:
    result = read_prompt(answer, "ft 1")
    assert result.state is state
    assert result.provider_id == f"ft%201/{answer['id']}"
    if state is ResultState.SUCCEEDED:
        assert result.images == tuple(answer["images"])
    if state is ResultState.FAILED:
        assert result.error_message == "NSFW content detected"
        assert result.error_code == "provider_error"


@pytest.mark.parametrize(
    "answer",
    [None, "text", 3, [], [DOC_CREATED], {}, {"id": None, "images": []},
     {"id": True, "images": []}, {"id": "  ", "images": []}, {"id": {"a": 1}, "images": []},
     {"id": "p1"}, {"id": "p1", "images": "https://i/1.jpg"}, {"id": "p1", "images": [3]},
     {"id": "p1", "images": ["/relative.jpg"]}, {"id": "p1", "images": {"0": "https://i"}},
     {"id": "p1", "images": [], "error_message": 500},
     {"id": "p1", "images": [], "error_message": ["oops"]}],
)  # fmt: skip
def test_malformed_prompt_objects_are_bad_answers(answer: Any) -> None:
    with pytest.raises(ProviderBadAnswer):
        read_prompt(answer, "690204")


@pytest.mark.parametrize(
    "answer",
    [None, {}, DOC_CREATED, [], [DOC_CREATED, DOC_CREATED], [None], ["ui7xBN30"],
     [{**DOC_CREATED, "images": "pending"}], {"0": DOC_CREATED}],
)  # fmt: skip
def test_malformed_create_answers_are_bad_answers(answer: Any) -> None:
    with pytest.raises(ProviderBadAnswer):
        read_created(answer, "690204")


def test_a_retrieval_of_another_prompt_is_a_bad_answer() -> None:
    with pytest.raises(ProviderBadAnswer, match="asked for prompt"):
        read_prompt(DOC_RETRIEVED, "690204", expected_id="someone-else")


def test_provider_ids_round_trip() -> None:
    for finetune, prompt in (("690204", "ui7xBN30TS8_xZeR-I4QbJv3"), ("team/ft 7", "a/b")):
        assert split_provider_id(provider_id(finetune, prompt)) == (finetune, prompt)
    for bad in ("", "690204", "/p", "ft/", "a/b/c"):
        with pytest.raises(ProviderBadAnswer):
            split_provider_id(bad)


def test_bodia_has_no_webhook() -> None:
    with pytest.raises(ProviderBadAnswer, match="no webhooks"):
        make().parse_webhook(b'{"id": "x", "images": []}')


# -- simulator validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"prompt": "x"}, "non-empty JSON array"),
        ([], "non-empty JSON array"),
        (["x"], "must be an object"),
        ([{"negative_prompt": "y"}], "prompt is required"),
        ([{"prompt": "  "}], "prompt is required"),
        ([{"prompt": "x", "cfg": 0.5}], "cfg must be between 1 and 20"),
        ([{"prompt": "x", "cfg": "7.5"}], "cfg must be a number"),
        ([{"prompt": "x", "steps": 51}], "steps must be between 1 and 50"),
        ([{"prompt": "x", "steps": 30.5}], "steps must be an integer"),
        ([{"prompt": "x", "seed": -1}], "seed must be between"),
        ([{"prompt": "x", "high_resolution": "yes"}], "high_resolution must be true or false"),
        ([{"prompt": "x", "aspect_ratio": "16:9"}], "aspect_ratio must be square"),
        ([{"prompt": "x", "metadata": "info"}], "metadata must be a JSON object"),
        ([{"prompt": "x", "num_images": 2}], "unknown field(s): num_images"),
        ([{"prompt": "x"}, {"prompt": "y", "cfg": True}], "prompt 1: cfg must be a number"),
    ],
)
def test_simulator_refuses_what_the_doc_forbids(body: Any, problem: str) -> None:
    found = validate(body)
    assert found is not None
    assert problem in found


def test_simulator_accepts_the_docs_own_request() -> None:
    doc_request = [
        {"prompt": "A car on the route 99 road", "negative_prompt": "stones", "cfg": 7.5,
         "steps": 35, "seed": 2323, "high_resolution": True, "aspect_ratio": "square",
         "metadata": {"info": "example info I want to include"}},
        {"prompt": "A mediterranean portrait of a car driving in the mediterranean sea"},
    ]  # fmt: skip
    assert validate(doc_request) is None


# -- over real HTTP -------------------------------------------------------------------------

Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def bodia() -> AsyncIterator[Start]:
    """Start Bodia simulators on free ports; returns their base URL."""
    servers: list[TestServer] = []

    async def start(**settings: Any) -> str:
        sim = SimulatorSettings(**{"speed": 0.05, "api_keys": [KEY], "seed": 7, **settings})
        server = TestServer(FACTORY.simulator(sim), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}{FACTORY.simulator_base_path(sim)}"

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def configure(session: aiohttp.ClientSession, base: str, **changes: Any) -> None:
    async with session.post(f"{base}/_sim/config", json=changes) as resp:
        assert resp.status == 200, await resp.text()


async def until_final(
    adapter: Any, http: HttpClient, pid: str, limit: float = 10.0
) -> ProviderResult:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        result: ProviderResult = await adapter.poll(http, pid)
        if result.state.final:
            return result
        assert result.state is ResultState.PROCESSING
        await asyncio.sleep(0.05)
    raise AssertionError(f"{pid} did not finish within {limit}s")


async def test_submit_then_poll_until_succeeded(
    http: HttpClient, bodia: Start, session: aiohttp.ClientSession
) -> None:
    base = await bodia()
    adapter = FACTORY.create(target(base))
    request, _ = CASES["doc_example"]
    plan = adapter.plan(GenerationRequest.model_validate(request))
    accepted = await adapter.submit(http, plan.submissions[0], CALLBACK)
    assert accepted.state is ResultState.PENDING
    assert accepted.provider_id is not None
    finetune, prompt_id = split_provider_id(accepted.provider_id)
    assert finetune == "ft-690204"
    assert len(prompt_id) == 24

    done = await until_final(adapter, http, accepted.provider_id)
    assert done.state is ResultState.SUCCEEDED
    assert done.provider_id == accepted.provider_id
    assert len(done.images) == 1
    assert done.images[0].startswith(f"{base}/_sim/images/")
    async with session.get(done.images[0]) as image:
        assert image.status == 200
        assert image.content_type == "image/png"

    # The prompt as Bodia keeps it: the plan's fields and the track id in its metadata.
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{base}/v1/finetunes/ft-690204/prompts/{prompt_id}"
    async with session.get(url, headers=headers) as resp:
        stored = await resp.json()
    assert stored["metadata"] == {"gateway_track_id": CALLBACK.track_id}
    for name, value in plan.submissions[0].body.items():
        assert stored[name] == value, name


async def test_a_split_submits_one_prompt_per_part(
    http: HttpClient, bodia: Start, session: aiohttp.ClientSession
) -> None:
    base = await bodia()
    adapter = FACTORY.create(target(base))
    plan = adapter.plan(GenerationRequest(prompt="x", num_images=3, model="team", seed=5))
    results = [await adapter.submit(http, s, CALLBACK) for s in plan.submissions]
    ids = {r.provider_id for r in results}
    assert len(ids) == 3
    for pid in ids:
        assert pid is not None
        assert pid.startswith("team%2Fft%207/")
        assert (await until_final(adapter, http, pid)).state is ResultState.SUCCEEDED
    listing = f"{base}/{endpoint_for('team/ft 7')}"
    async with session.get(listing, headers={"Authorization": f"Bearer {KEY}"}) as resp:
        assert sorted(p["seed"] for p in await resp.json()) == [5, 6, 7]


async def test_generation_failure_is_a_failed_result(http: HttpClient, bodia: Start) -> None:
    base = await bodia(generation_fail_rate=1.0)
    adapter = FACTORY.create(target(base))
    plan = adapter.plan(GenerationRequest(prompt="x", steps=5))
    accepted = await adapter.submit(http, plan.submissions[0], CALLBACK)
    assert accepted.provider_id is not None
    failed = await until_final(adapter, http, accepted.provider_id)
    assert failed.state is ResultState.FAILED
    assert failed.error_message == "simulated generation failure"
    assert failed.images == ()


async def test_probe_is_a_cheap_authenticated_listing(
    http: HttpClient, bodia: Start, session: aiohttp.ClientSession
) -> None:
    base = await bodia()
    healthy = await FACTORY.create(target(base)).probe(http)
    assert healthy.healthy
    assert healthy.queue_depth is None
    async with session.get(f"{base}/_sim/stats") as resp:
        assert (await resp.json())["submitted"] == 0  # never a generation

    wrong_key = await FACTORY.create(target(base, api_key=SecretStr("sk-wrong-0002"))).probe(http)
    assert not wrong_key.healthy
    assert "401" in wrong_key.detail
    assert "sk-wrong-0002" not in wrong_key.detail
    missing = await FACTORY.create(target(base, models={"default": "missing-ft"})).probe(http)
    assert not missing.healthy
    assert "missing-ft not found" in missing.detail
    no_models = await FACTORY.create(target(base, models={})).probe(http)
    assert not no_models.healthy


async def test_probe_of_an_unreachable_backend_is_unhealthy(
    http: HttpClient,
) -> None:
    server = TestServer(FACTORY.simulator(SimulatorSettings()), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    await server.close()
    probe = await FACTORY.create(target(base)).probe(http)
    assert not probe.healthy
    assert "cannot reach" in probe.detail


async def test_a_body_bodia_refuses_is_rejected_with_its_reason(
    http: HttpClient, bodia: Start
) -> None:
    adapter = FACTORY.create(target(await bodia()))
    invalid = adapter.plan(GenerationRequest(prompt="x")).submissions[0]
    invalid = type(invalid)(invalid.endpoint, {**invalid.body, "cfg": 50}, 1)
    with pytest.raises(ProviderRejected, match="cfg must be between 1 and 20") as refused:
        await adapter.submit(http, invalid, CALLBACK)
    assert "422" in refused.value.message
    assert not refused.value.retryable


async def test_status_mapping_of_submit(
    http: HttpClient, bodia: Start, session: aiohttp.ClientSession
) -> None:
    base = await bodia()
    adapter = FACTORY.create(target(base))
    submission = adapter.plan(GenerationRequest(prompt="x")).submissions[0]

    await configure(session, base, rate_limit_rate=1.0, retry_after=7)
    with pytest.raises(ProviderRateLimited) as limited:
        await adapter.submit(http, submission, CALLBACK)
    assert limited.value.retry_after == 7

    await configure(session, base, rate_limit_rate=0.0, fail_rate=1.0)
    statuses = set()
    for _ in range(12):
        with pytest.raises(ProviderServerError) as failed:
            await adapter.submit(http, submission, CALLBACK)
        statuses.add(failed.value.message[:8])
    assert statuses == {"HTTP 500", "HTTP 503"}

    await configure(session, base, fail_rate=0.0, malformed_rate=1.0)
    shapes = set()
    for _ in range(12):
        with pytest.raises(ProviderBadAnswer) as garbled:
            await adapter.submit(http, submission, CALLBACK)
        shapes.add("not JSON" if "not JSON" in garbled.value.message else "wrong type")
    assert shapes == {"not JSON", "wrong type"}

    await configure(session, base, malformed_rate=0.0)
    assert (await adapter.submit(http, submission, CALLBACK)).state is ResultState.PENDING


async def test_wrong_key_is_an_auth_failure_without_the_key(http: HttpClient, bodia: Start) -> None:
    base = await bodia()
    adapter = FACTORY.create(target(base, api_key=SecretStr("sk-wrong-key-9999")))
    submission = adapter.plan(GenerationRequest(prompt="x")).submissions[0]
    with pytest.raises(ProviderAuthFailed) as refused:
        await adapter.submit(http, submission, CALLBACK)
    assert "401" in refused.value.message
    assert "sk-wrong-key-9999" not in str(refused.value)
    assert refused.value.retryable  # the backend's fault: another key may take it


async def test_a_missing_finetune_fails_over_clearly(http: HttpClient, bodia: Start) -> None:
    base = await bodia()
    adapter = FACTORY.create(target(base, models={"default": "missing-42"}))
    submission = adapter.plan(GenerationRequest(prompt="x")).submissions[0]
    with pytest.raises(ProviderMisconfigured) as refused:
        await adapter.submit(http, submission, CALLBACK)
    assert refused.value.message == "fine-tune missing-42 not found on backend bodia-1 (HTTP 404)"
    assert refused.value.retryable  # another key's account may have it


async def test_a_hanging_submit_times_out(http: HttpClient, bodia: Start) -> None:
    base = await bodia(timeout_rate=1.0)
    adapter = FACTORY.create(target(base, options={"timeout": 0.3}))
    submission = adapter.plan(GenerationRequest(prompt="x")).submissions[0]
    with pytest.raises(ProviderTimeout):
        await adapter.submit(http, submission, CALLBACK)


async def test_polling_a_deleted_or_unknown_prompt_ends_it(
    http: HttpClient, bodia: Start, session: aiohttp.ClientSession
) -> None:
    base = await bodia()
    adapter = FACTORY.create(target(base))
    accepted = await adapter.submit(
        http, adapter.plan(GenerationRequest(prompt="x")).submissions[0], CALLBACK
    )
    assert accepted.provider_id is not None
    finetune, prompt_id = split_provider_id(accepted.provider_id)
    url = f"{base}/{endpoint_for(finetune)}/{prompt_id}"
    async with session.delete(url, headers={"Authorization": f"Bearer {KEY}"}) as resp:
        assert await resp.json() == {"delete": "it has been deleted successfully"}
    lost = await adapter.poll(http, accepted.provider_id)
    assert lost.state is ResultState.FAILED
    assert lost.error_code == "provider_lost"
    # The same prompt id under another fine-tune is not that prompt.
    other = await adapter.poll(http, provider_id("ft-portrait-11", prompt_id))
    assert other.error_code == "provider_lost"
