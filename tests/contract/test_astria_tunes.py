"""Astria fine-tune contract (seeds/002): exact `tune[...]` fields (golden files), each one
accepted by the simulator over real HTTP, and the tune object read back."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from adapters.astria import FACTORY
from adapters.astria.training import read_tune
from adapters.base import Callback, ResultState, SimulatorSettings, Target, Trainer, trainer_of
from adapters.errors import ProviderBadAnswer, ProviderRejected, Unsupported
from adapters.httpclient import HttpClient
from adapters.normalized_tune import TuneRequest
from adapters.simkit.routes import PNG
from tests.contract.golden import check_golden
from tests.helpers import eventually

MODELS = {"realistic": "690204", "flux": "1504944"}
URL = "https://images.example.com/face-{}.jpg"
DATA = "data:image/png;base64," + base64.b64encode(PNG).decode()
URLS = [URL.format(n) for n in range(4)]

CASES: dict[str, dict[str, Any]] = {
    "urls_minimal": {"name": "man", "images": URLS},
    "data_uris_multipart": {"name": "woman", "images": [DATA] * 4},
    "mixed_files_and_urls": {"name": "cat", "images": [DATA, DATA, *URLS[:2]]},
    "branch_sd15_default_token": {"name": "dog", "branch": "sd15", "images": URLS},
    "branch_sdxl1_default_token": {"name": "man", "branch": "sdxl1", "images": URLS},
    "branch_fast": {"name": "man", "branch": "fast", "images": URLS},
    "model_type_lora": {"name": "woman", "branch": "sd15", "model_type": "lora", "images": URLS},
    "model_type_faceid": {"name": "woman", "model_type": "faceid", "images": URLS},
    "model_type_pti_sdxl1": {"name": "man", "branch": "sdxl1", "model_type": "pti", "images": URLS},
    "model_type_lora_on_sdxl1_becomes_pti": {
        "name": "man", "branch": "sdxl1", "model_type": "lora", "images": URLS,
    },
    "model_type_checkpoint_is_null": {"name": "boy", "model_type": "checkpoint", "images": URLS},
    "preset_flux_lora_focus": {"name": "girl", "preset": "flux-lora-focus", "images": URLS},
    "preset_flux_lora_portrait": {"name": "man", "preset": "flux-lora-portrait", "images": URLS},
    "preset_flux_lora_fast": {"name": "man", "preset": "flux-lora-fast", "images": URLS},
    "custom_token_and_steps": {"name": "man", "token": "zwx", "steps": 1200, "images": URLS},
    "face_options": {
        "name": "woman", "face_crop": True, "training_face_correct": False, "images": [DATA] * 4,
    },
    "base_model_mapped_to_base_tune_id": {"name": "man", "base_model": "realistic", "images": URLS},
    "characteristics_json": {
        "name": "woman", "characteristics": {"eye_color": "blue eyes", "hair": "red"},
        "images": URLS,
    },
    "characteristics_multipart": {
        "name": "woman", "characteristics": {"eye_color": "blue eyes"}, "images": [DATA] * 4,
    },
    "auto_extend": {"name": "style", "auto_extend": True, "images": URLS},
    "title_given": {"name": "man", "title": "John Doe - 1234-6789", "images": URLS},
}  # fmt: skip


def trainer(base: str = "http://sim") -> Trainer:
    adapter = FACTORY.create(Target("astria-1", base, SecretStr("sim-key"), MODELS, {}))
    found = trainer_of(adapter)
    assert found is not None
    return found


def request_of(case: dict[str, Any]) -> TuneRequest:
    return TuneRequest.model_validate({"title": "tune_0123", **case})


def golden_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """data: URIs abbreviated: the golden file shows where each image goes, not its bytes."""
    shown = dict(fields)
    if "images" in shown:
        shown["images"] = [uri[:22] + "…" for uri in shown["images"]]
    return shown


def expected_wire_names(fields: dict[str, Any]) -> set[str]:
    """The field names Astria receives, as the seed spells them for each encoding."""
    names = {"tune[callback]"}
    for name, value in fields.items():
        if isinstance(value, list):
            names.add(f"tune[{name}][]")
        elif isinstance(value, dict):
            names |= {f"tune[{name}][{key}]" for key in value}
        else:
            names.add(f"tune[{name}]")
    return names


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    settings = SimulatorSettings(speed=0.02, seed=3)
    server = TestServer(FACTORY.simulator(settings), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield f"http://127.0.0.1:{server.port}", session
    await server.close()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_tune_conversion_matches_golden_and_simulator_accepts(
    http: HttpClient, case: str, sim: tuple[str, aiohttp.ClientSession]
) -> None:
    base, session = sim
    plan = trainer(base).plan_tune(request_of(CASES[case]))
    document = {
        "request": {k: v for k, v in CASES[case].items() if k != "images"},
        "images": ["data" if i.startswith("data:") else "url" for i in CASES[case]["images"]],
        "fields": golden_fields(plan.fields),
        "token": plan.token,
        "warnings": plan.warnings,
    }
    check_golden("astria_tunes", case, document)
    callback = Callback("https://gateway.example/webhooks/astria-1/tune_x.0?token=t", "tune_x.0")
    accepted = await trainer(base).submit_tune(http, plan, callback)
    assert accepted.state in (ResultState.PENDING, ResultState.PROCESSING)
    assert accepted.token == plan.token
    async with session.get(f"{base}/_sim/tunes") as resp:
        (received,) = await resp.json()
    assert set(received["received"]) == expected_wire_names(plan.fields)
    assert received["image_files"] == sum(i.startswith("data:") for i in CASES[case]["images"])


def test_base_model_without_a_mapping_is_unsupported() -> None:
    with pytest.raises(Unsupported) as info:
        trainer().plan_tune(request_of({"name": "man", "base_model": "anime", "images": URLS}))
    assert "base_model" in info.value.reasons


async def test_training_calls_back_and_polls(
    http: HttpClient, sim: tuple[str, aiohttp.ClientSession]
) -> None:
    base, _ = sim
    bodies: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        plan = trainer(base).plan_tune(
            request_of({"name": "man", "branch": "fast", "images": URLS})
        )
        url = f"http://127.0.0.1:{server.port}/hook"
        accepted = await trainer(base).submit_tune(http, plan, Callback(url, "t.0"))
        assert accepted.eta is not None
        await eventually(lambda: len(bodies) == 1, timeout=5)
    finally:
        await server.close()
    done = trainer(base).parse_tune_webhook(bodies[0])
    assert done.state is ResultState.SUCCEEDED
    assert done.provider_id == accepted.provider_id
    assert done.trained_at is not None
    assert done.expires_at is not None
    assert done.expires_at > done.trained_at
    assert accepted.provider_id is not None
    assert await trainer(base).poll_tune(http, accepted.provider_id) == done
    # The same title again is the same tune (Astria's idempotency by title).
    again = await trainer(base).submit_tune(http, plan, Callback(url, "t.1"))
    assert again.provider_id == accepted.provider_id
    await trainer(base).delete_tune(http, accepted.provider_id)
    await trainer(base).delete_tune(http, accepted.provider_id)  # gone already: fine


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"branch": "sd3"}, "branch"),
        ({"model_type": "dreambooth"}, "model_type"),
        ({"preset": "flux-lora-slow"}, "preset"),
        ({"image_urls": []}, "images"),
        ({"steps": 0}, "steps"),
        ({"base_tune_id": "abc"}, "base_tune_id"),
        ({"callbak": "https://x"}, "callbak"),
    ],
)
async def test_simulator_refuses_what_the_seed_refuses(
    fields: dict[str, Any], field: str, sim: tuple[str, aiohttp.ClientSession]
) -> None:
    base, session = sim
    body = {"tune": {"title": "t", "name": "man", "image_urls": URLS, **fields}}
    headers = {"Authorization": "Bearer sim-key"}
    async with session.post(f"{base}/tunes", json=body, headers=headers) as resp:
        assert resp.status == 422
        assert field in await resp.json()


async def test_a_refused_tune_is_a_rejection(
    http: HttpClient, sim: tuple[str, aiohttp.ClientSession]
) -> None:
    base, _ = sim
    plan = trainer(base).plan_tune(request_of({"name": "man", "images": URLS}))
    plan.fields["branch"] = "sd3"  # what a future adapter bug would send
    with pytest.raises(ProviderRejected, match="branch"):
        await trainer(base).submit_tune(http, plan, Callback("https://g/x", "x.0"))


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        ({"id": 5, "eta": "2026-01-01T00:00:00Z"}, ResultState.PENDING),
        ({"tune": {"id": "5", "started_training_at": "2026-01-01T00:00Z"}}, ResultState.PROCESSING),
        ({"id": 5, "trained_at": "2026-01-01T00:00Z", "expires_at": None}, ResultState.SUCCEEDED),
        ({"id": 5, "user_error": "faces not found"}, ResultState.FAILED),
    ],
)  # fmt: skip
def test_tune_objects_are_read(answer: dict[str, Any], state: ResultState) -> None:
    assert read_tune(answer).state is state
    assert read_tune(orjson.loads(orjson.dumps(answer))).provider_id == "5"


@pytest.mark.parametrize(
    "answer",
    [[], {"id": None}, {"id": "x1"}, {"tune": 3}, {"id": 1, "eta": 5}, {"id": 1, "token": 9}],
)
def test_malformed_tune_objects_are_bad_answers(answer: Any) -> None:
    with pytest.raises(ProviderBadAnswer):
        read_tune(answer)
