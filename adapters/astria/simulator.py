"""An Astria simulator: create, read and call back prompts the way the API documents them.

Routes sit at the origin root, as on api.astria.ai: `POST /tunes/{id}/prompts` (JSON
`{"prompt": {...}}` or multipart `prompt[field]` with image files), `GET
/tunes/{id}/prompts/{prompt_id}`, `POST /tunes`, `GET /tunes/{id}`, `DELETE /tunes/{id}`
and `GET /tunes` (training: see sim_tunes.py). Every call needs
`Authorization: Bearer <one of settings.api_keys>`.

A prompt is answered at once with `images: []` and generated on the engine's queue; when
done, its `callback` receives `{"prompt": {...}}` with `images`, or with `user_error` when
the generation failed. `instant_threshold` is ignored: Astria never answers with images.

Faults: of the submits `fail_rate` picks, the answers cycle through `SERVER_ERROR_CYCLE`.
A 504 is Astria's "probably accepted": the prompt (or tune) is created and called back
exactly as without the fault, but the client gets a gateway-timeout page instead.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapters.astria import checks, sim_tunes, tables, tune_checks
from adapters.base import SimulatorSettings
from adapters.simkit import Engine, Fault, SimJob, base_app, engine_key, pick_fault
from adapters.simkit.faults import generic_fault_response

SERVER_ERROR_CYCLE = (503, 504, 500, 502)
_GATEWAY_TIMEOUT_PAGE = "<html><body><h1>504 Gateway Time-out</h1></body></html>"
server_errors_key = web.AppKey("astria_server_errors", Iterator[int])


def create_simulator(settings: SimulatorSettings) -> web.Application:
    async def on_finish(engine: Engine, job: SimJob) -> None:
        if job.body.get("kind") == "tune":
            sim_tunes.finished_tune(app, job)
            return
        callback = job.body["fields"].get("callback")
        if callback:
            engine.send_callback(callback, {"prompt": prompt_object(engine, job)})

    app = base_app(settings, "astria", on_finish=on_finish)
    app[server_errors_key] = itertools.cycle(SERVER_ERROR_CYCLE)
    app.router.add_post("/tunes/{tune_id}/prompts", _create_prompt)
    app.router.add_get("/tunes/{tune_id}/prompts/{prompt_id}", _get_prompt)
    app.router.add_post("/tunes", _create_tune)
    app.router.add_get("/tunes/{tune_id}", _get_tune)
    app.router.add_delete("/tunes/{tune_id}", _delete_tune)
    sim_tunes.add_tune_routes(app)
    app.router.add_get("/tunes", _list_tunes)
    return app


def _authorized(request: web.Request) -> bool:
    return _api_key(request) is not None


def _api_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    keys = request.app[engine_key].settings.api_keys
    if scheme.lower() == "bearer" and token.strip() in keys:
        return token.strip()
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _invalid(problem: checks.Invalid) -> web.Response:
    # Rails-style validation errors: {"field": ["message"]}.
    return web.json_response({problem.field: [problem.message]}, status=422)


async def _create_prompt(request: web.Request) -> web.Response:
    return await _with_faults(request, _accept)


async def _create_tune(request: web.Request) -> web.Response:
    return await _with_faults(request, _accept_tune)


async def _with_faults(
    request: web.Request, accept: Callable[[web.Request, Engine], Awaitable[web.Response]]
) -> web.Response:
    engine = request.app[engine_key]
    gateway_timeout = False
    fault = pick_fault(engine)
    if fault is Fault.SERVER_ERROR:
        statuses: Iterator[int] = request.app[server_errors_key]
        status = next(statuses)
        if status != 504:
            return _error(status, "Internal Server Error")
        gateway_timeout = True
    elif fault is Fault.RATE_LIMITED:
        wait = engine.settings.retry_after
        return web.json_response(
            {"error": "Too many requests"}, status=429, headers={"Retry-After": f"{wait:g}"}
        )
    elif fault is not None:
        return await generic_fault_response(engine, fault)

    answer = await accept(request, engine)
    if gateway_timeout:
        # The work (if valid) is done; only the answer is lost on its way back.
        return web.Response(status=504, text=_GATEWAY_TIMEOUT_PAGE, content_type="text/html")
    return answer


async def _accept(request: web.Request, engine: Engine) -> web.Response:
    if not _authorized(request):
        return _error(401, "Unauthorized")
    tune_id = request.match_info["tune_id"]
    if not tune_id.isdigit():
        return _error(404, "Tune not found")
    try:
        fields = await _read_fields(request)
    except checks.Invalid as unreadable:
        engine.stats["rejected"] += 1
        return _invalid(unreadable)
    problem = checks.validate(fields)
    if problem is not None:
        engine.stats["rejected"] += 1
        return _invalid(problem)

    job_id = engine.new_id()
    stored = _stored_fields(engine, job_id, fields)
    images = int(checks.number(fields, "num_images") or 1)
    work = float(_pixels(stored) * _steps(stored) * images)
    now = _iso(time.time())
    job = engine.enqueue(
        SimJob(job_id, work, images, {"tune_id": int(tune_id), "fields": stored, "created": now})
    )
    trained = sim_tunes.find_tune(request, tune_id)
    if trained is not None:
        trained.prompts.append(job_id)
    return web.json_response(prompt_object(engine, job))


async def _accept_tune(request: web.Request, engine: Engine) -> web.Response:
    key = _api_key(request)
    if key is None:
        return _error(401, "Unauthorized")
    try:
        fields, received = await sim_tunes.read_tune_fields(request)
    except checks.Invalid as unreadable:
        engine.stats["rejected"] += 1
        return _invalid(unreadable)
    problem = tune_checks.validate(fields)
    if problem is not None:
        engine.stats["rejected"] += 1
        return _invalid(problem)
    return web.json_response(sim_tunes.create_tune(request, key, fields, received))


async def _delete_tune(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _error(401, "Unauthorized")
    gone = sim_tunes.delete_tune(request, request.match_info["tune_id"].removesuffix(".json"))
    if gone is None:
        return _error(404, "Tune not found")
    return web.json_response(gone)


async def _read_fields(request: web.Request) -> dict[str, Any]:
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        fields: dict[str, Any] = {}
        for key, value in form.items():
            if not (key.startswith("prompt[") and key.endswith("]")):
                raise checks.Invalid(key, "is not a prompt[...] field")
            name = key[len("prompt[") : -1]
            fields[name] = value.file.read() if isinstance(value, web.FileField) else value
        return fields
    try:
        body = await request.json()
    except ValueError:
        raise checks.Invalid("prompt", "body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict):
        raise checks.Invalid("prompt", "param is missing or the value is empty")
    extra = sorted(set(body) - {"prompt"})
    if extra:
        raise checks.Invalid(extra[0], "is not a known parameter")
    prompt: dict[str, Any] = body["prompt"]
    return prompt


def _stored_fields(engine: Engine, job_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields as Astria would echo them: cast, with uploads replaced by their URLs."""
    stored: dict[str, Any] = {}
    for name, value in fields.items():
        if name in tables.FILE_FIELDS:
            stored[name] = f"{engine.base_url}/_sim/images/{job_id}-{name}.png"
        elif name in checks.BOOLEAN_FIELDS:
            stored[name] = checks.boolean(fields, name)
        elif name in ("num_images", "seed", "steps", "w", "h", "backend_version"):
            parsed = checks.number(fields, name, whole=True)
            stored[name] = None if parsed is None else int(parsed)
        elif name in ("cfg_scale", "denoising_strength", "controlnet_conditioning_scale"):
            stored[name] = checks.number(fields, name)
        else:
            stored[name] = value
    return stored


def _pixels(fields: dict[str, Any]) -> int:
    if fields.get("w") and fields.get("h"):
        return int(fields["w"]) * int(fields["h"])
    if fields.get("aspect_ratio"):
        w, h = tables.aspect_size(fields["aspect_ratio"])
        return w * h
    return tables.DEFAULT_SIDE * tables.DEFAULT_SIDE


def _steps(fields: dict[str, Any]) -> int:
    # 0 steps (allowed by the docs) means the default.
    return int(fields.get("steps") or tables.DEFAULT_STEPS)


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _wall(monotonic: float | None) -> str | None:
    if monotonic is None:
        return None
    return _iso(time.time() - (time.monotonic() - monotonic))


def prompt_object(engine: Engine, job: SimJob) -> dict[str, Any]:
    fields: dict[str, Any] = job.body["fields"]
    tune_id: int = job.body["tune_id"]
    finished = _wall(job.finished)
    return {
        "id": int(job.id),
        "callback": fields.get("callback"),
        "text": fields.get("text"),
        "negative_prompt": fields.get("negative_prompt"),
        "cfg_scale": fields.get("cfg_scale"),
        "steps": fields.get("steps"),
        "seed": fields.get("seed"),
        **{k: v for k, v in fields.items() if k != "callback"},
        "trained_at": finished,
        "started_training_at": _wall(job.started),
        "created_at": job.body["created"],
        "updated_at": finished or _wall(job.started) or job.body["created"],
        "tune_id": tune_id,
        "url": f"{engine.base_url}/tunes/{tune_id}/prompts/{job.id}.json",
        "images": list(job.outputs) if job.state == "success" else [],
        "user_error": job.error if job.state == "failed" else None,
    }


async def _get_prompt(request: web.Request) -> web.Response:
    engine = request.app[engine_key]
    if not _authorized(request):
        return _error(401, "Unauthorized")
    prompt_id = request.match_info["prompt_id"].removesuffix(".json")
    job = engine.jobs.get(prompt_id)
    if job is None or str(job.body.get("tune_id")) != request.match_info["tune_id"]:
        return _error(404, "Prompt not found")
    return web.json_response(prompt_object(engine, job))


async def _get_tune(request: web.Request) -> web.Response:
    engine = request.app[engine_key]
    if not _authorized(request):
        return _error(401, "Unauthorized")
    tune_id = request.match_info["tune_id"].removesuffix(".json")
    if not tune_id.isdigit():
        return _error(404, "Tune not found")
    trained = sim_tunes.find_tune(request, tune_id)
    if trained is not None:
        return web.json_response(sim_tunes.tune_object(engine, trained))
    # Any other id stands for a gallery or operator-made tune that exists already.
    return web.json_response(
        {
            "id": int(tune_id),
            "title": f"simulated tune {tune_id}",
            "name": "person",
            "branch": "sdxl1",
            "model_type": None,
            "trained_at": "2024-01-01T00:00:00.000Z",
            "url": f"{engine.base_url}/tunes/{tune_id}.json",
        }
    )


async def _list_tunes(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _error(401, "Unauthorized")
    engine, book = request.app[engine_key], request.app[sim_tunes.tunes_key]
    newest_first = reversed(list(book.tunes.values()))
    return web.json_response([sim_tunes.tune_object(engine, tune) for tune in newest_first])
