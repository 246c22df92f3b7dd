"""A ComfyUI server simulator: the HTTP API a stock ComfyUI exposes, on a simulated GPU.

`POST /prompt` validates the graph (see validate.py) and queues it on the engine;
`GET /history/{id}` is `{}` until the prompt ran, then lists SaveImage's files, which
`GET /view` serves. `/upload/image` stores input files LoadImage can name. Every route is
also served under `/api`, as ComfyUI does.

Auth: plain ComfyUI has none, so requests without `Authorization` are served; a request
that carries one (an auth proxy in front) must present `Bearer <one of api_keys>`.
Faults (`fail_rate` and friends) hit `POST /prompt`, the submit; reads stay reliable so
polls and probes see the queue as it is.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.base import SimulatorSettings
from adapters.comfyui import workload
from adapters.comfyui.validate import validate_prompt
from adapters.simkit import Engine, Fault, SimJob, base_app, engine_key, pick_fault
from adapters.simkit.faults import generic_fault_response
from adapters.simkit.routes import PNG, Handler

GiB = 2**30


@dataclass
class ComfyState:
    """What a ComfyUI server keeps in memory: files, queue numbers, history."""

    number: int = 0
    counter: int = 0  # SaveImage's running file counter
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)  # (type, sub, name)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupted: set[str] = field(default_factory=set)

    def inputs(self) -> dict[str, bytes]:
        """Input files under the names LoadImage takes (`sub/name` inside a subfolder)."""
        return {
            (f"{sub}/{name}" if sub else name): raw
            for (kind, sub, name), raw in self.files.items()
            if kind == "input"
        }


state_key = web.AppKey("comfy_state", ComfyState)


def create_simulator(settings: SimulatorSettings) -> web.Application:
    state = ComfyState()

    async def on_finish(engine: Engine, job: SimJob) -> None:
        state.history[job.id] = _history_entry(state, job)

    app = base_app(settings, "comfyui", on_finish=on_finish)
    app[state_key] = state
    app.middlewares.append(_auth)
    for prefix in ("", "/api"):
        app.router.add_post(f"{prefix}/prompt", _post_prompt)
        app.router.add_get(f"{prefix}/prompt", _get_prompt)
        app.router.add_get(f"{prefix}/queue", _get_queue)
        app.router.add_get(f"{prefix}/history", _get_history)
        app.router.add_get(f"{prefix}/history/{{prompt_id}}", _get_history_item)
        app.router.add_get(f"{prefix}/view", _view)
        app.router.add_post(f"{prefix}/upload/image", _upload)
        app.router.add_get(f"{prefix}/system_stats", _system_stats)
        app.router.add_post(f"{prefix}/interrupt", _interrupt)
    return app


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization")
    if header is not None and not request.path.startswith("/_sim/"):
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or key not in request.app[engine_key].settings.api_keys:
            return web.json_response({"error": "invalid credentials"}, status=401)
    return await handler(request)


def _invalid(message: str) -> web.Response:
    error = {"type": "invalid_prompt", "message": message, "details": "", "extra_info": {}}
    return web.json_response({"error": error, "node_errors": {}}, status=400)


async def _post_prompt(request: web.Request) -> web.StreamResponse:
    engine, state = request.app[engine_key], request.app[state_key]
    fault = pick_fault(engine)
    if fault is Fault.SERVER_ERROR:
        return web.Response(
            status=500, text="500 Internal Server Error\n\nServer got itself in trouble"
        )
    if fault is Fault.MALFORMED:
        return web.Response(text='{"prompt_id": "9f1c', content_type="application/json")
    if fault is not None:
        return await generic_fault_response(engine, fault)
    try:
        body = await request.json()
    except ValueError:
        return _invalid("Invalid JSON body")
    if not isinstance(body, dict):
        return _invalid("The body must be a JSON object")
    if "prompt" not in body:
        return web.json_response({"error": "no prompt", "node_errors": []}, status=400)
    graph = body["prompt"]
    inputs = state.inputs()
    verdict = validate_prompt(graph, inputs)
    if not verdict.ok:
        engine.stats["rejected"] += 1
        return web.json_response(
            {"error": verdict.error, "node_errors": verdict.node_errors}, status=400
        )

    given = body.get("extra_data")
    extra: dict[str, Any] = given if isinstance(given, dict) else {}
    if "client_id" in body:
        extra = {**extra, "client_id": body["client_id"]}
    number = state.number
    state.number += 1
    prompt_id = str(uuid.UUID(int=engine.random.getrandbits(128), version=4))
    images = sum(workload.batch(graph, out) for out in verdict.outputs)
    job_body = {"number": number, "prompt": graph, "extra_data": extra, "outputs": verdict.outputs}
    engine.enqueue(SimJob(prompt_id, workload.work(graph, inputs), images, job_body))
    return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})


def _queue_item(job: SimJob) -> list[Any]:
    body = job.body
    return [body["number"], job.id, body["prompt"], body["extra_data"], body["outputs"]]


async def _get_prompt(request: web.Request) -> web.Response:
    engine = request.app[engine_key]
    remaining = sum(1 for job in engine.jobs.values() if job.state in ("queued", "processing"))
    return web.json_response({"exec_info": {"queue_remaining": remaining}})


async def _get_queue(request: web.Request) -> web.Response:
    jobs = request.app[engine_key].jobs.values()
    return web.json_response(
        {
            "queue_running": [_queue_item(j) for j in jobs if j.state == "processing"],
            "queue_pending": [_queue_item(j) for j in jobs if j.state == "queued"],
        }
    )


async def _get_history(request: web.Request) -> web.Response:
    history = request.app[state_key].history
    try:
        most = int(request.query.get("max_items", len(history)))
    except ValueError:
        return web.Response(status=400)
    items = list(history.items())[-most:] if most > 0 else []
    return web.json_response(dict(items))


async def _get_history_item(request: web.Request) -> web.Response:
    prompt_id = request.match_info["prompt_id"]
    entry = request.app[state_key].history.get(prompt_id)
    return web.json_response({prompt_id: entry} if entry is not None else {})


def _history_entry(state: ComfyState, job: SimJob) -> dict[str, Any]:
    now = int(time.time() * 1000)
    graph: dict[str, Any] = job.body["prompt"]
    # As ComfyUI does: when the prompt began executing (the engine's clock is monotonic).
    began = now - int((time.monotonic() - (job.started or time.monotonic())) * 1000)
    started = ["execution_start", {"prompt_id": job.id, "timestamp": began}]
    cached = ["execution_cached", {"nodes": [], "prompt_id": job.id, "timestamp": now}]
    entry: dict[str, Any] = {"prompt": _queue_item(job), "meta": {}, "outputs": {}}
    interrupted = job.id in state.interrupted
    if job.state == "failed" or interrupted:
        failure = _failure(job, graph, interrupted, now)
        messages = [started, cached, failure]
        entry["status"] = {"status_str": "error", "completed": False, "messages": messages}
        return entry
    for node_id in job.body["outputs"]:
        entry["outputs"][node_id] = {"images": _save(state, graph, node_id)}
        entry["meta"][node_id] = {
            "node_id": node_id,
            "display_node": node_id,
            "parent_node": None,
            "real_node_id": node_id,
        }
    done = ["execution_success", {"prompt_id": job.id, "timestamp": now}]
    entry["status"] = {
        "status_str": "success",
        "completed": True,
        "messages": [started, cached, done],
    }
    return entry


def _failure(job: SimJob, graph: dict[str, Any], interrupted: bool, now: int) -> list[Any]:
    """The history message ComfyUI records when the sampler stops: interrupted or crashed."""
    sampler = next((n for n, v in graph.items() if v["class_type"] == "KSampler"), "")
    where = {"prompt_id": job.id, "node_id": sampler, "node_type": "KSampler", "executed": []}
    if interrupted:
        return ["execution_interrupted", {**where, "timestamp": now}]
    return [
        "execution_error",
        {
            **where,
            "exception_message": job.error or "generation failed",
            "exception_type": "RuntimeError",
            "traceback": ['  File "execution.py", line 327, in execute\n'],
            "current_inputs": {},
            "current_outputs": {},
            "timestamp": now,
        },
    ]


def _save(state: ComfyState, graph: dict[str, Any], node_id: str) -> list[dict[str, str]]:
    """The files one output node writes, as SaveImage names them (`<prefix>_00001_.png`)."""
    node = graph[node_id]
    if node["class_type"] == "SaveImage":
        kind = "output"
        subfolder, _, prefix = str(node["inputs"]["filename_prefix"]).rpartition("/")
    else:
        kind, subfolder, prefix = "temp", "", "ComfyUI_temp"
    images = []
    for _ in range(workload.batch(graph, node_id)):
        state.counter += 1
        name = f"{prefix}_{state.counter:05}_.png"
        state.files[(kind, subfolder, name)] = PNG
        images.append({"filename": name, "subfolder": subfolder, "type": kind})
    return images


def _unsafe(*parts: str) -> bool:
    return any(p.startswith("/") or ".." in p or "\\" in p for p in parts)


async def _view(request: web.Request) -> web.Response:
    query = request.query
    name, kind, subfolder = (
        query.get("filename"),
        query.get("type", "output"),
        query.get("subfolder", ""),
    )
    if not name:
        return web.Response(status=404)
    if _unsafe(name, subfolder):
        return web.Response(status=400)
    raw = request.app[state_key].files.get((kind, subfolder, name))
    if raw is None:
        return web.Response(status=404)
    return web.Response(
        body=raw, content_type="image/png", headers={"Content-Disposition": f'filename="{name}"'}
    )


async def _upload(request: web.Request) -> web.Response:
    state = request.app[state_key]
    post = await request.post()
    image = post.get("image")
    if not isinstance(image, web.FileField) or not image.filename:
        return web.Response(status=400)
    kind = str(post.get("type") or "input")
    subfolder = str(post.get("subfolder") or "")
    if kind not in ("input", "temp", "output") or _unsafe(image.filename, subfolder):
        return web.Response(status=400)
    raw = image.file.read()
    name = image.filename
    if str(post.get("overwrite", "")) not in ("true", "1"):
        # ComfyUI keeps an identical file under its name and renames a different one.
        stem, dot, suffix = name.rpartition(".")
        n = 1
        while (kind, subfolder, name) in state.files and state.files[
            (kind, subfolder, name)
        ] != raw:
            name = f"{stem} ({n}){dot}{suffix}" if dot else f"{suffix} ({n})"
            n += 1
    state.files[(kind, subfolder, name)] = raw
    return web.json_response({"name": name, "subfolder": subfolder, "type": kind})


async def _system_stats(request: web.Request) -> web.Response:
    engine = request.app[engine_key]
    vram_total = 24 * GiB
    vram_free = vram_total - (6 * GiB if engine.active else 2 * GiB)
    return web.json_response(
        {
            "system": {
                "os": "posix",
                "ram_total": 64 * GiB,
                "ram_free": 48 * GiB,
                "comfyui_version": "0.3.40-simulated",
                "python_version": sys.version,
                "pytorch_version": "2.5.1+cu124",
                "embedded_python": False,
                "argv": ["main.py", "--port", "8188"],
            },
            "devices": [
                {
                    "name": "cuda:0 SIMULATED GeForce RTX 4090 : cudaMallocAsync",
                    "type": "cuda",
                    "index": 0,
                    "vram_total": vram_total,
                    "vram_free": vram_free,
                    "torch_vram_total": vram_total - vram_free,
                    "torch_vram_free": 512 * 2**20,
                }
            ],
        }
    )


async def _interrupt(request: web.Request) -> web.Response:
    # Like ComfyUI: the running prompt ends with an execution_interrupted history entry.
    engine, state = request.app[engine_key], request.app[state_key]
    state.interrupted.update(j.id for j in engine.jobs.values() if j.state == "processing")
    return web.Response(status=200)
