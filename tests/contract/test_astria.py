"""Astria contract: exact prompt fields (golden files), warnings, answers, and the simulator."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from adapters.astria import FACTORY, checks, tables, wire
from adapters.astria.answers import read_prompt, split_provider_id
from adapters.astria.simulator import SERVER_ERROR_CYCLE
from adapters.base import (
    Adapter,
    Callback,
    ResultState,
    SimulatorSettings,
    Submission,
    Target,
)
from adapters.errors import (
    ProviderAuthFailed,
    ProviderBadAnswer,
    ProviderMaybeAccepted,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    Unsupported,
)
from adapters.httpclient import HttpClient
from adapters.normalized import (
    AspectRatio,
    ColorGrading,
    ControlNetType,
    GenerationRequest,
    Scheduler,
    Style,
)
from adapters.simkit.routes import PNG
from tests.contract.golden import check_golden, plan_document
from tests.helpers import eventually

MODELS = {"default": "690204", "portrait": "1504944"}
IMG = "https://images.example.com/in.png"
MASK = "https://images.example.com/mask.png"
DATA = "data:image/png;base64," + base64.b64encode(PNG).decode()
DATA_MASK = "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ=="
CALLBACK = "https://gateway.example/webhooks/astria-1/trk_1.0?token=t0k"

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "minimal": ({"prompt": "a cat"}, {}),
    "full_txt2img": (
        {"prompt": "ohwx man in a suit", "negative_prompt": "blurry, old", "num_images": 4,
         "width": 768, "height": 1024, "steps": 30, "guidance_scale": 7.5, "seed": 1234,
         "scheduler": "dpmpp_2m_karras", "style": "Photographic"},
        {},
    ),
    "aspect_ratio": ({"prompt": "a landscape", "aspect_ratio": "21:9"}, {}),
    "size": ({"prompt": "a tower", "width": 512, "height": 1536}, {}),
    "num_images_8_one_prompt": ({"prompt": "x", "num_images": 8, "seed": 10}, {}),
    "enhance_all": (
        {"prompt": "a face", "enhance": {"super_resolution": True, "face_correct": True,
         "hires_fix": True, "inpaint_faces": True, "face_swap": True, "film_grain": True}},
        {},
    ),
    "enhance_without_super_resolution": (
        {"prompt": "a face", "enhance": {"hires_fix": True, "inpaint_faces": True,
         "face_correct": True}},
        {},
    ),
    "style_and_color_grading": (
        {"prompt": "a street", "style": "Fantasy art", "color_grading": "Film Portra"}, {},
    ),
    "controlnet_txt2img": (
        {"prompt": "a dancer", "controlnet": {"type": "pose", "image": IMG,
         "conditioning_scale": 0.7, "txt2img": True}},
        {},
    ),
    "controlnet_img2img": (
        {"prompt": "a sketch", "init_image": IMG, "strength": 0.55,
         "controlnet": {"type": "lineart", "image": IMG}},
        {},
    ),
    "img2img_strength": ({"prompt": "oil painting", "init_image": IMG, "strength": 0.3}, {}),
    "inpainting": ({"prompt": "a red hat", "init_image": IMG, "mask_image": MASK}, {}),
    "loras": (
        {"prompt": "ohwx woman", "loras": [{"name": "123456", "strength": 0.8},
                                           {"name": "88001", "strength": 1}]},
        {},
    ),
    "data_uri_inpainting": ({"prompt": "a hat", "init_image": DATA, "mask_image": DATA_MASK}, {}),
    "data_uri_controlnet": (
        {"prompt": "a room", "controlnet": {"type": "segroom", "image": DATA}}, {},
    ),
    "clamps": ({"prompt": "x", "guidance_scale": 22.5, "steps": 80}, {}),
    "scheduler_heun_approximated": ({"prompt": "x", "scheduler": "heun"}, {}),
    "scheduler_ddim_approximated": ({"prompt": "x", "scheduler": "ddim"}, {}),
    "scheduler_tcd_exact": ({"prompt": "x", "scheduler": "tcd"}, {}),
    "portrait_model": ({"prompt": "ohwx woman", "model": "portrait"}, {}),
    "safety_checker_dropped": ({"prompt": "x", "safety_checker": True}, {}),
    "provider_options": ({"prompt": "x"}, {"use_lpw": True, "backend_version": 1}),
}  # fmt: skip


def make(
    options: dict[str, Any] | None = None, base: str = "http://sim", key: str = "sim-key"
) -> Adapter:
    return FACTORY.create(Target("astria-1", base, SecretStr(key), MODELS, options or {}))


def plan_body(**request: Any) -> dict[str, Any]:
    plan = make().plan(GenerationRequest.model_validate(request))
    assert len(plan.submissions) == 1
    return plan.submissions[0].body


def as_received(body: dict[str, Any], *, multipart: bool) -> dict[str, Any]:
    """The fields as the simulator sees them: uploads as bytes, form values as strings."""
    plain, uploads = wire.split_uploads({**body, "callback": CALLBACK})
    if multipart:
        plain = {k: wire.form_value(v) for k, v in plain.items()}
    return {**plain, **{k: u.data for k, u in uploads.items()}}


# -- conversion: golden files --------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_conversion_matches_golden_and_simulator_accepts(case: str) -> None:
    request, options = CASES[case]
    plan = make(options).plan(GenerationRequest.model_validate(request))
    check_golden("astria", case, plan_document(request, options, plan))
    assert len(plan.submissions) == 1
    submission = plan.submissions[0]
    assert submission.endpoint == f"tunes/{plan.model_id}/prompts"
    assert submission.images == request.get("num_images", 1)
    assert "callback" not in submission.body
    for multipart in (False, True):
        assert checks.validate(as_received(submission.body, multipart=multipart)) is None
    assert plan.exact == (not plan.warnings)


def test_enhancements_needing_super_resolution_are_dropped_with_a_reason() -> None:
    plan = make().plan(GenerationRequest(prompt="x", enhance={"hires_fix": True}))
    assert "hires_fix" not in plan.submissions[0].body
    assert plan.warnings == ["enhance.hires_fix true dropped (astria applies it only with "
                             "super_resolution)"]  # fmt: skip
    assert plan.inexact == ["enhance.hires_fix"]


def test_clamps_warn_with_before_and_after() -> None:
    plan = make().plan(GenerationRequest(prompt="x", guidance_scale=30, steps=100))
    assert plan.submissions[0].body["cfg_scale"] == 15
    assert plan.submissions[0].body["steps"] == 50
    assert plan.warnings == [
        "guidance_scale 30 → 15 (astria allows 0–15)",
        "steps 100 → 50 (astria allows 0–50)",
    ]
    assert plan.inexact == ["guidance_scale", "steps"]


def test_work_follows_size_steps_and_images() -> None:
    small = make().plan(GenerationRequest(prompt="x"))
    big = make().plan(GenerationRequest(prompt="x", width=1024, height=1024, steps=30))
    many = make().plan(GenerationRequest(prompt="x", num_images=4))
    assert small.work == pytest.approx(512 * 512 * 30 / 1e6)
    assert big.work == pytest.approx(4 * small.work)
    assert many.work == pytest.approx(4 * small.work)


def test_unsupported_requests_name_the_field() -> None:
    with pytest.raises(Unsupported) as missing:
        make().plan(GenerationRequest(prompt="x", model="anime"))
    assert "model" in missing.value.reasons
    bad_tune = FACTORY.create(Target("a", "http://sim", None, {"default": "sdxl"}))
    with pytest.raises(Unsupported) as not_a_tune:
        bad_tune.plan(GenerationRequest(prompt="x"))
    assert "model" in not_a_tune.value.reasons
    with pytest.raises(Unsupported) as two_images:
        make().plan(
            GenerationRequest(
                prompt="x", init_image=IMG, controlnet={"type": "canny", "image": MASK}
            )
        )
    assert list(two_images.value.reasons) == ["controlnet.image"]
    with pytest.raises(Unsupported) as mixed:
        make().plan(GenerationRequest(prompt="x", init_image=DATA, mask_image=MASK))
    assert list(mixed.value.reasons) == ["mask_image"]
    with pytest.raises(Unsupported) as lora:
        make().plan(GenerationRequest(prompt="x", loras=[{"name": "1"}, {"name": "film-look"}]))
    assert list(lora.value.reasons) == ["loras"]
    assert "'film-look'" in lora.value.reasons["loras"]
    broken = "data:image/png;base64,abc"
    for request, name in (
        ({"init_image": broken}, "init_image"),
        ({"init_image": DATA, "mask_image": broken}, "mask_image"),
        ({"controlnet": {"type": "canny", "image": broken}}, "controlnet.image"),
    ):
        with pytest.raises(Unsupported) as undecodable:
            make().plan(GenerationRequest.model_validate({"prompt": "x", **request}))
        assert list(undecodable.value.reasons) == [name]


# -- every table entry ---------------------------------------------------------------------


EXACT_SCHEDULERS = {
    Scheduler.EULER: "euler",
    Scheduler.EULER_A: "euler_a",
    Scheduler.DPMPP_2M_KARRAS: "dpm++2m_karras",
    Scheduler.DPMPP_SDE_KARRAS: "dpm++sde_karras",
    Scheduler.DPMPP_2M: "dpm++2m",
    Scheduler.DPMPP_SDE: "dpm++sde",
    Scheduler.LCM: "lcm",
    Scheduler.TCD: "tcd",
}


@pytest.mark.parametrize("scheduler", list(Scheduler))
def test_every_scheduler_maps_to_an_astria_scheduler(scheduler: Scheduler) -> None:
    choice = tables.SCHEDULERS[scheduler]
    assert choice.name in tables.SCHEDULER_NAMES
    plan = make().plan(GenerationRequest(prompt="x", scheduler=scheduler))
    assert plan.submissions[0].body["scheduler"] == choice.name
    if choice.approximation is None:
        assert plan.exact
        assert EXACT_SCHEDULERS[scheduler] == choice.name
    else:
        assert plan.warnings == [
            f"scheduler {scheduler.value} → {choice.name} "
            f"(astria has no {scheduler.value}; {choice.approximation})"
        ]
        assert plan.inexact == ["scheduler"]
    assert checks.validate(as_received(plan.submissions[0].body, multipart=False)) is None


def test_scheduler_table_covers_both_vocabularies() -> None:
    assert set(tables.SCHEDULERS) == set(Scheduler)
    exact = {s for s, c in tables.SCHEDULERS.items() if c.approximation is None}
    assert exact == set(EXACT_SCHEDULERS)
    assert set(EXACT_SCHEDULERS.values()) == set(tables.SCHEDULER_NAMES)


@pytest.mark.parametrize("ratio", list(AspectRatio))
def test_every_aspect_ratio_is_sent_as_astria_enum(ratio: AspectRatio) -> None:
    body = plan_body(prompt="x", aspect_ratio=ratio)
    assert body["aspect_ratio"] == ratio.value == tables.ASPECT_RATIOS[ratio]
    assert "w" not in body
    assert checks.validate(body) is None
    w, h = tables.aspect_size(ratio.value)
    assert abs(w / h - ratio.ratio) < 0.05


@pytest.mark.parametrize("style", list(Style))
def test_every_style(style: Style) -> None:
    body = plan_body(prompt="x", style=style)
    assert body["style"] == tables.STYLES[style] == style.value
    assert checks.validate(body) is None


@pytest.mark.parametrize("grading", list(ColorGrading))
def test_every_color_grading(grading: ColorGrading) -> None:
    body = plan_body(prompt="x", color_grading=grading)
    assert body["color_grading"] == tables.COLOR_GRADINGS[grading] == grading.value
    assert checks.validate(body) is None


@pytest.mark.parametrize("kind", list(ControlNetType))
def test_every_controlnet_type(kind: ControlNetType) -> None:
    body = plan_body(prompt="x", controlnet={"type": kind, "image": IMG})
    assert body["controlnet"] == tables.CONTROLNETS[kind] == kind.value
    assert body["input_image_url"] == IMG
    assert checks.validate(body) is None


@pytest.mark.parametrize("flag", [*tables.ENHANCE_FLAGS, *tables.NEEDS_SUPER_RESOLUTION])
def test_every_enhancement(flag: str) -> None:
    body = plan_body(prompt="x", enhance={flag: True, "super_resolution": True})
    assert body[flag] is True
    assert body["super_resolution"] is True
    assert checks.validate(body) is None


# -- the simulator's checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "text"),
        ({"text": "  "}, "text"),
        ({"text": "x", "steps": 51}, "steps"),
        ({"text": "x", "steps": "2.5"}, "steps"),
        ({"text": "x", "cfg_scale": 15.5}, "cfg_scale"),
        ({"text": "x", "num_images": 9}, "num_images"),
        ({"text": "x", "num_images": 0}, "num_images"),
        ({"text": "x", "seed": 2**32 + 1}, "seed"),
        ({"text": "x", "seed": -1}, "seed"),
        ({"text": "x", "w": 500, "h": 512}, "w"),
        ({"text": "x", "scheduler": "heun"}, "scheduler"),
        ({"text": "x", "aspect_ratio": "1:2"}, "aspect_ratio"),
        ({"text": "x", "style": "Pixel"}, "style"),
        ({"text": "x", "color_grading": "Kodachrome"}, "color_grading"),
        ({"text": "x", "controlnet": "pose_with_hand", "input_image_url": IMG}, "controlnet"),
        ({"text": "x", "controlnet": "pose"}, "controlnet"),
        ({"text": "x", "hires_fix": True}, "hires_fix"),
        ({"text": "x", "inpaint_faces": "true", "super_resolution": "false"}, "inpaint_faces"),
        ({"text": "x", "face_correct": "maybe"}, "face_correct"),
        ({"text": "x", "denoising_strength": 1.5, "input_image_url": IMG}, "denoising_strength"),
        ({"text": "x", "controlnet_conditioning_scale": -0.1}, "controlnet_conditioning_scale"),
        ({"text": "x", "mask_image_url": MASK}, "mask_image_url"),
        ({"text": "x", "input_image": "not-a-file"}, "input_image"),
        ({"text": "x", "input_image_url": "ftp://x"}, "input_image_url"),
        ({"text": "x", "backend_version": 2}, "backend_version"),
        ({"text": "x", "lora_scale": 0.5}, "lora_scale"),
        ({"text": "x", "prompt": "typo"}, "prompt"),
    ],
)
def test_simulator_refuses_what_the_docs_refuse(fields: dict[str, Any], field: str) -> None:
    problem = checks.validate(fields)
    assert problem is not None
    assert problem.field == field


# -- answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "state", "provider_id"),
    [
        ({"id": 7, "tune_id": 690204, "images": []}, ResultState.PENDING, "690204/7"),
        ({"prompt": {"id": "7", "tune_id": "690204", "images": None}}, ResultState.PENDING,
         "690204/7"),
        ({"id": 7, "url": "https://api.astria.ai/tunes/5/prompts/7.json"}, ResultState.PENDING,
         "5/7"),
        ({"id": 7, "tune_id": 5, "started_training_at": "2024-01-01T00:00:00Z"},
         ResultState.PROCESSING, "5/7"),
        ({"prompt": {"id": 7, "tune_id": 5, "images": ["https://cdn/1.jpg", "https://cdn/2.jpg"],
                     "trained_at": "2024-01-01T00:00:09Z"}}, ResultState.SUCCEEDED, "5/7"),
        ({"id": 7, "tune_id": 5, "images": [{"url": "https://cdn/1.jpg"}]},
         ResultState.SUCCEEDED, "5/7"),
        ({"id": 7, "tune_id": 5, "user_error": "NSFW content detected", "images": []},
         ResultState.FAILED, "5/7"),
        ({"id": 7, "tune_id": 5, "images": [], "trained_at": "2024-01-01T00:00:09Z",
          "user_error": None}, ResultState.FAILED, "5/7"),
    ],
)  # fmt: skip
def test_prompt_objects_are_read_leniently(
    answer: dict[str, Any], state: ResultState, provider_id: str
) -> None:
    result = read_prompt(answer)
    assert result.state is state
    assert result.provider_id == provider_id
    if state is ResultState.SUCCEEDED:
        assert result.images
        assert all(i.startswith("https://cdn/") for i in result.images)
    if state is ResultState.FAILED:
        assert result.error_message in (
            "NSFW content detected",
            "the prompt finished without images",
        )


def test_tune_id_from_caller_when_the_object_has_none() -> None:
    assert read_prompt({"id": 9}, "42").provider_id == "42/9"
    assert read_prompt({"id": 9, "tune_id": 1}, "42").provider_id == "1/9"
    assert read_prompt({"id": 9}).provider_id == "9"


@pytest.mark.parametrize(
    "answer",
    [None, [], "text", 3, {}, {"prompt": "x"}, {"prompt": []}, {"id": None},
     {"id": True}, {"id": 1.5}, {"id": "a b"}, {"id": {"x": 1}}, {"id": 1, "tune_id": [1]},
     {"id": 1, "images": "https://cdn/1.jpg"}, {"id": 1, "images": [3]},
     {"id": 1, "images": ["not a url"]}, {"id": 1, "images": [{"href": "https://x"}]},
     {"id": 1, "user_error": 5}, {"id": 1, "trained_at": 5}, {"id": 1, "started_training_at": ""}],
)  # fmt: skip
def test_malformed_prompt_objects_are_bad_answers(answer: Any) -> None:
    with pytest.raises(ProviderBadAnswer):
        read_prompt(answer)


def test_webhook_bodies() -> None:
    adapter = make()
    body = {"prompt": {"id": 3, "tune_id": 690204, "images": ["https://cdn/a.png"]}}
    result = adapter.parse_webhook(orjson.dumps(body))
    assert result.state is ResultState.SUCCEEDED
    assert result.provider_id == "690204/3"
    for broken in (b"", b'{"prompt": {"id": 3, "ima', b"[1, 2]"):
        with pytest.raises(ProviderBadAnswer):
            adapter.parse_webhook(broken)


@pytest.mark.parametrize("value", ["", "5", "/5", "5/", "a b/5", "5/6/7"])
def test_provider_ids_without_tune_and_prompt_are_refused(value: str) -> None:
    with pytest.raises(ProviderBadAnswer):
        split_provider_id(value)


def test_wire_json_and_multipart() -> None:
    json_body, form = wire.encode({"text": "x", "super_resolution": True, "input_image_url": IMG})
    assert form is None
    assert json_body == {"prompt": {"text": "x", "super_resolution": True, "input_image_url": IMG}}
    json_body, form = wire.encode({"text": "x", "super_resolution": True, "input_image": DATA})
    assert json_body is None
    assert form is not None
    assert [wire.form_value(v) for v in (True, False, 0.5, 8, "a b")] == [
        "true",
        "false",
        "0.5",
        "8",
        "a b",
    ]
    upload = wire.decode_data_uri(DATA)
    assert upload.data == PNG
    assert upload.content_type == "image/png"
    assert upload.filename == "image.png"
    assert wire.decode_data_uri("data:image/svg+xml;base64,PHN2Zz4=").filename == "image.svg"
    with pytest.raises(ValueError, match="base64"):
        wire.decode_data_uri("data:image/png;base64,abc")


# -- over real HTTP ------------------------------------------------------------------------


@dataclass
class Hooks:
    """The gateway's side of Astria's callbacks."""

    bodies: list[bytes] = field(default_factory=list)
    url: str = ""

    async def receive(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(status=200)


@dataclass
class Sim:
    server: TestServer
    base: str
    adapter: Adapter
    session: aiohttp.ClientSession  # for the simulator's own endpoints
    http: HttpClient  # for the adapter

    async def configure(self, **changes: Any) -> None:
        async with self.session.post(f"{self.base}/_sim/config", json=changes) as resp:
            assert resp.status == 200, await resp.text()

    async def stats(self) -> dict[str, Any]:
        async with self.session.get(f"{self.base}/_sim/stats") as resp:
            data: dict[str, Any] = await resp.json()
            return data


StartSim = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    hooks = Hooks()
    app = web.Application()
    app.router.add_post("/hook/{track}", hooks.receive)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hooks.url = f"http://127.0.0.1:{server.port}/hook"
    yield hooks
    await server.close()


@pytest.fixture
async def start_sim(session: aiohttp.ClientSession, http: HttpClient) -> AsyncIterator[StartSim]:
    servers: list[TestServer] = []

    async def start(
        options: dict[str, Any] | None = None, key: str = "sim-key", **settings: Any
    ) -> Sim:
        sim_settings = SimulatorSettings(**{"speed": 0.05, "seed": 7, **settings})
        server = TestServer(FACTORY.simulator(sim_settings), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        base = f"http://127.0.0.1:{server.port}{FACTORY.simulator_base_path(sim_settings)}"
        return Sim(server, base, make(options, base, key), session, http)

    yield start
    for server in servers:
        await server.close()


def callback(hooks: Hooks, n: int = 0) -> Callback:
    return Callback(f"{hooks.url}/trk_{n}?token=secret-token", f"trk_{n}")


def submission(**request: Any) -> Submission:
    return make().plan(GenerationRequest.model_validate(request)).submissions[0]


async def test_submit_callback_poll_and_probe(
    http: HttpClient, start_sim: StartSim, hooks: Hooks, session: aiohttp.ClientSession
) -> None:
    sim = await start_sim()
    enhance = {"super_resolution": True, "hires_fix": True}
    sub = submission(
        prompt="a cat", num_images=2, width=256, height=256, scheduler="euler_a", enhance=enhance
    )
    accepted = await sim.adapter.submit(http, sub, callback(hooks))
    assert accepted.state in (ResultState.PENDING, ResultState.PROCESSING)
    assert accepted.provider_id is not None
    assert split_provider_id(accepted.provider_id)[0] == MODELS["default"]
    await eventually(lambda: len(hooks.bodies) == 1, timeout=5)
    done = sim.adapter.parse_webhook(hooks.bodies[0])
    assert done.state is ResultState.SUCCEEDED
    assert done.provider_id == accepted.provider_id
    assert len(done.images) == 2
    assert all(url.startswith(f"{sim.base}/_sim/images/") for url in done.images)
    echoed = orjson.loads(hooks.bodies[0])["prompt"]
    assert echoed["callback"] == callback(hooks).url
    assert echoed["hires_fix"] is True
    assert echoed["scheduler"] == "euler_a"
    polled = await sim.adapter.poll(http, accepted.provider_id)
    assert polled == done
    async with session.get(done.images[0]) as resp:
        assert resp.status == 200
    probe = await sim.adapter.probe(http)
    assert probe.healthy, probe.detail


async def test_data_uri_images_go_as_multipart_files(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim()
    sub = submission(prompt="a hat", init_image=DATA, mask_image=DATA_MASK, strength=0.4)
    accepted = await sim.adapter.submit(http, sub, callback(hooks))
    assert accepted.provider_id is not None
    await eventually(lambda: len(hooks.bodies) == 1, timeout=5)
    echoed = orjson.loads(hooks.bodies[0])["prompt"]
    assert echoed["input_image"].endswith("-input_image.png")
    assert echoed["mask_image"].endswith("-mask_image.png")
    assert echoed["denoising_strength"] == 0.4
    assert "input_image_url" not in echoed


async def test_queue_follows_concurrency_and_reports_progress(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim(speed=0.6, concurrency=1)
    sub = submission(prompt="x")
    first = await sim.adapter.submit(http, sub, callback(hooks, 1))
    second = await sim.adapter.submit(http, sub, callback(hooks, 2))
    first_id, second_id = first.provider_id, second.provider_id
    assert first_id is not None
    assert second_id is not None
    await eventually(lambda: _has_state(sim, first_id, ResultState.PROCESSING), timeout=1)
    assert (await sim.adapter.poll(http, second_id)).state is ResultState.PENDING
    await eventually(lambda: len(hooks.bodies) == 2, timeout=5)
    assert (await sim.stats())["max_active"] == 1


async def _has_state(sim: Sim, provider_id: str, state: ResultState) -> bool:
    return (await sim.adapter.poll(sim.http, provider_id)).state is state


async def test_generation_failure_sets_user_error(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim(generation_fail_rate=1.0)
    accepted = await sim.adapter.submit(http, submission(prompt="x"), callback(hooks))
    await eventually(lambda: len(hooks.bodies) == 1, timeout=5)
    failed = sim.adapter.parse_webhook(hooks.bodies[0])
    assert failed.state is ResultState.FAILED
    assert failed.error_message == "simulated generation failure"
    assert accepted.provider_id is not None
    assert (await sim.adapter.poll(http, accepted.provider_id)) == failed


async def test_duplicate_and_dropped_callbacks(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim(duplicate_webhook_rate=1.0)
    await sim.adapter.submit(http, submission(prompt="x"), callback(hooks))
    await eventually(lambda: len(hooks.bodies) == 2, timeout=5)
    assert hooks.bodies[0] == hooks.bodies[1]
    await sim.configure(duplicate_webhook_rate=0.0, drop_webhook_rate=1.0)
    dropped = await sim.adapter.submit(http, submission(prompt="y"), callback(hooks, 1))
    pid = dropped.provider_id
    assert pid is not None
    # No callback comes; polling is the fallback.
    await eventually(lambda: _has_state(sim, pid, ResultState.SUCCEEDED), timeout=5)
    assert len(hooks.bodies) == 2


async def test_invalid_prompts_are_rejected_with_422(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim()
    endpoint = f"tunes/{MODELS['default']}/prompts"
    for body, field_name in (
        ({"text": "x", "steps": 60}, "steps"),
        ({"text": "x", "hires_fix": True}, "hires_fix"),
        ({"text": "x", "cfg_scale_typo": 3}, "cfg_scale_typo"),
        ({"text": "x", "controlnet": "canny", "input_image": DATA, "mask_image_url": MASK},
         "mask_image_url"),
    ):  # fmt: skip
        with pytest.raises(ProviderRejected) as rejected:
            await sim.adapter.submit(http, Submission(endpoint, body, 1), callback(hooks))
        assert "HTTP 422" in rejected.value.message
        assert field_name in rejected.value.message
        assert not rejected.value.retryable
    assert (await sim.stats())["submitted"] == 0


async def test_wrong_key_is_auth_failure_and_never_leaks(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim(key="wrong-secret-key")
    with pytest.raises(ProviderAuthFailed) as refused:
        await sim.adapter.submit(http, submission(prompt="x"), callback(hooks))
    assert "wrong-secret-key" not in str(refused.value)
    with pytest.raises(ProviderAuthFailed):
        await sim.adapter.poll(http, f"{MODELS['default']}/1")
    probe = await sim.adapter.probe(http)
    assert not probe.healthy
    assert "401" in probe.detail
    assert "wrong-secret-key" not in probe.detail


async def test_rate_limit_carries_retry_after(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim(rate_limit_rate=1.0, retry_after=2.5)
    with pytest.raises(ProviderRateLimited) as limited:
        await sim.adapter.submit(http, submission(prompt="x"), callback(hooks))
    assert limited.value.retry_after == 2.5
    assert limited.value.retryable


async def test_server_errors_cycle_and_504_is_maybe_accepted(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim()
    await sim.configure(fail_rate=1.0)
    outcomes: list[type[Exception]] = []
    for n in range(len(SERVER_ERROR_CYCLE)):
        with pytest.raises((ProviderServerError, ProviderMaybeAccepted)) as failed:
            await sim.adapter.submit(http, submission(prompt="x"), callback(hooks, n))
        outcomes.append(type(failed.value))
        assert f"HTTP {SERVER_ERROR_CYCLE[n]}" in failed.value.message
    expected = [
        ProviderMaybeAccepted if status == 504 else ProviderServerError
        for status in SERVER_ERROR_CYCLE
    ]
    assert outcomes == expected
    maybe = SERVER_ERROR_CYCLE.index(504)
    assert not ProviderMaybeAccepted("x").retryable
    # The 504'd prompt was created after all: its callback arrives, and only that one.
    await eventually(lambda: len(hooks.bodies) == 1, timeout=5)
    result = sim.adapter.parse_webhook(hooks.bodies[0])
    assert result.state is ResultState.SUCCEEDED
    assert orjson.loads(hooks.bodies[0])["prompt"]["callback"] == callback(hooks, maybe).url
    assert (await sim.stats())["submitted"] == 1


async def test_malformed_answer_is_bad_answer(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim(malformed_rate=1.0)
    with pytest.raises(ProviderBadAnswer):
        await sim.adapter.submit(http, submission(prompt="x"), callback(hooks))


async def test_hanging_provider_times_out(
    http: HttpClient, start_sim: StartSim, hooks: Hooks
) -> None:
    sim = await start_sim(options={"timeout": 0.2}, timeout_rate=1.0)
    with pytest.raises(ProviderTimeout):
        await sim.adapter.submit(http, submission(prompt="x"), callback(hooks))


async def test_unknown_prompt_and_tune(http: HttpClient, start_sim: StartSim) -> None:
    sim = await start_sim()
    with pytest.raises(ProviderRejected, match="404"):
        await sim.adapter.poll(http, f"{MODELS['default']}/999")
    with pytest.raises(ProviderBadAnswer):
        await sim.adapter.poll(http, "999")
    no_models = FACTORY.create(Target("a", sim.base, SecretStr("sim-key"), {}))
    assert (await no_models.probe(http)).healthy
    bad_tune = FACTORY.create(Target("a", sim.base, SecretStr("sim-key"), {"x": "nope"}))
    assert not (await bad_tune.probe(http)).healthy


async def test_probe_reports_a_dead_backend(http: HttpClient) -> None:
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    await server.close()
    probe = await make(base=base).probe(http)
    assert not probe.healthy


async def test_simulator_refuses_malformed_envelopes(
    start_sim: StartSim, session: aiohttp.ClientSession
) -> None:
    sim = await start_sim()
    url = f"{sim.base}/tunes/{MODELS['default']}/prompts"
    auth = {"Authorization": "Bearer sim-key"}
    form = aiohttp.FormData({"text": "x"})
    for kwargs, status in (
        ({"json": {"prompt": {"text": "x"}}}, 401),
        ({"json": {"text": "x"}, "headers": auth}, 422),
        ({"json": {"prompt": {"text": "x"}, "extra": 1}, "headers": auth}, 422),
        ({"data": b"{", "headers": {**auth, "Content-Type": "application/json"}}, 422),
        ({"data": form, "headers": auth}, 422),
    ):
        async with session.post(url, **kwargs) as resp:
            assert resp.status == status, kwargs
    async with session.post(f"{sim.base}/tunes/abc/prompts", json={}, headers=auth) as resp:
        assert resp.status == 404
    async with session.get(f"{sim.base}/tunes/{MODELS['default']}", headers=auth) as resp:
        assert (await resp.json())["id"] == int(MODELS["default"])
    assert (await sim.stats())["submitted"] == 0
