"""A ModelsLab simulator: the v6 images API or an enterprise server, as documented.

It validates bodies the way the provider does (key, ranges, 21/31/41 steps on enterprise,
samples at most 4, sides at most 1024), answers `success` or `processing` with `eta`,
`fetch_result` and `future_links`, calls the `webhook` with the `track_id`, and serves
`fetch` and `system_details`. It is stricter than the provider in one way: fields the
documentation does not list are refused, so adapter typos surface in tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Any

from aiohttp import web

from adapters.base import SimulatorSettings
from adapters.modelslab import tables
from adapters.simkit import Engine, Fault, SimJob, base_app, engine_key, pick_fault
from adapters.simkit.faults import generic_fault_response
from adapters.simkit.routes import PNG

PNG_BASE64 = base64.b64encode(PNG).decode()
CLOUD_PREFIX = "/api/v6/images"
ENTERPRISE_PREFIX = "/api/v1/enterprise"

_KNOWN_FIELDS = {
    "key", "model_id", "prompt", "negative_prompt", "init_image", "mask_image", "width",
    "height", "samples", "num_inference_steps", "safety_checker", "safety_checker_type",
    "enhance_prompt", "guidance_scale", "strength", "tomesd", "use_karras_sigmas",
    "algorithm_type", "vae", "lora_strength", "lora_model", "scheduler", "seed", "webhook",
    "track_id", "clip_skip", "base64", "temp",
}  # fmt: skip


def create_simulator(settings: SimulatorSettings) -> web.Application:
    prefix = ENTERPRISE_PREFIX if settings.enterprise else CLOUD_PREFIX

    async def on_finish(engine: Engine, job: SimJob) -> None:
        webhook = job.body.get("webhook")
        if webhook:
            engine.send_callback(webhook, _status_body(engine, job, prefix))

    app = base_app(settings, "modelslab", on_finish=on_finish)
    for endpoint in tables.ENDPOINTS.values():
        app.router.add_post(f"{prefix}/{endpoint}", _generate(endpoint, prefix))
    app.router.add_post(f"{prefix}/fetch/{{id}}", _fetch(prefix))
    app.router.add_post(f"{prefix}/fetch", _fetch(prefix))
    if settings.enterprise:
        app.router.add_post(f"{prefix}/system_details", _system_details)
    return app


def _error(text: str, *, typo: bool = False) -> web.Response:
    # The real API answers most errors with HTTP 200 and a status field, and sometimes
    # spells the field `messege`.
    return web.json_response({"status": "error", ("messege" if typo else "message"): text})


async def _keyed_body(request: web.Request, engine: Engine) -> dict[str, Any] | web.Response:
    """The request's JSON object if its `key` is known, else the provider's error answer."""
    try:
        body = await request.json()
    except ValueError:
        return _error("Invalid JSON body")
    if not isinstance(body, dict):
        return _error("Invalid JSON body")
    if body.get("key") not in engine.settings.api_keys:
        return _error("Invalid Api Key")
    return body


def _generate(endpoint: str, prefix: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        engine = request.app[engine_key]
        fault = pick_fault(engine)
        if fault is not None:
            if fault is Fault.SERVER_ERROR:
                return web.json_response({"status": "error", "message": "Server Error"}, status=500)
            return await generic_fault_response(engine, fault)
        body = await _keyed_body(request, engine)
        if isinstance(body, web.Response):
            engine.stats["rejected"] += 1
            return body
        problem = validate(body, endpoint, enterprise=engine.settings.enterprise)
        if problem:
            engine.stats["rejected"] += 1
            return _error(problem, typo=True)

        samples = int(body.get("samples", 1))
        width, height = int(body.get("width", 512)), int(body.get("height", 512))
        steps = int(body.get("num_inference_steps", 30))
        job = engine.enqueue(
            SimJob(engine.new_id(), float(width * height * steps * samples), samples, body)
        )
        if engine.duration(job.work) <= engine.settings.instant_threshold and engine.queued == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.done.wait(), timeout=60)
        if job.state in ("success", "failed"):
            return web.json_response(_status_body(engine, job, prefix))
        return web.json_response(_processing_body(engine, job, prefix))

    return handler


def _processing_body(engine: Engine, job: SimJob, prefix: str) -> dict[str, Any]:
    base = engine.base_url
    return {
        "status": "processing",
        "tip": "Your image is processing in background, you can get it by fetch API",
        "eta": f"{engine.eta(job):.2f}",  # ModelsLab sends numbers as strings at times
        "messege": "Try to fetch request after given estimated time",
        "fetch_result": f"{base}{prefix}/fetch/{job.id}",
        "id": int(job.id),
        "output": [],
        "future_links": [f"{base}/_sim/images/{job.id}-{n}.png" for n in range(job.images)],
        "meta": _meta(job),
        "track_id": job.body.get("track_id"),
    }


def _status_body(engine: Engine, job: SimJob, prefix: str) -> dict[str, Any]:
    if job.state == "success":
        elapsed = (job.finished or time.monotonic()) - (job.started or job.created)
        # base64 mode answers the images themselves, as bare base64 strings.
        output = [PNG_BASE64] * len(job.outputs) if job.body.get("base64") == "yes" else job.outputs
        return {
            "status": "success",
            "generationTime": round(elapsed, 3),
            "id": int(job.id),
            "output": output,
            "proxy_links": job.outputs,
            "nsfw_content_detected": False,
            "meta": _meta(job),
            "track_id": job.body.get("track_id"),
            "webhook_status": "sent",
        }
    if job.state == "failed":
        return {
            "status": "failed",
            "id": int(job.id),
            "message": job.error or "generation failed",
            "output": [],
            "track_id": job.body.get("track_id"),
        }
    return _processing_body(engine, job, prefix)


def _meta(job: SimJob) -> dict[str, Any]:
    keep = ("model_id", "prompt", "negative_prompt", "width", "height", "samples", "seed",
            "num_inference_steps", "guidance_scale", "scheduler")  # fmt: skip
    return {k: job.body[k] for k in keep if k in job.body}


def _fetch(prefix: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        engine = request.app[engine_key]
        body = await _keyed_body(request, engine)
        if isinstance(body, web.Response):
            return body
        job_id = request.match_info.get("id") or str(body.get("request_id", ""))
        job = engine.jobs.get(job_id)
        if job is None:
            return _error("Request not found")
        return web.json_response(_status_body(engine, job, prefix))

    return handler


async def _system_details(request: web.Request) -> web.Response:
    engine = request.app[engine_key]
    rejected = await _keyed_body(request, engine)
    if isinstance(rejected, web.Response):
        return rejected
    return web.json_response(
        {
            "status": "success",
            "system_details": {
                "gpu": "SIMULATED-A100-80GB",
                "queue": engine.queued,
                "active": engine.active,
                "concurrency": engine.settings.concurrency,
                "queue_time": round(engine.queue_seconds(), 2),
            },
        }
    )


# -- validation, as the provider documents it ------------------------------------------


def _int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number") from None
    if not number.is_integer():
        raise ValueError(f"{name} must be a whole number")
    return int(number)


def _float(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number") from None


def validate(body: dict[str, Any], endpoint: str, *, enterprise: bool) -> str | None:
    """The provider's own checks; returns the error text or None."""
    try:
        _validate(body, endpoint, enterprise)
    except ValueError as exc:
        return str(exc)
    return None


def _validate(body: dict[str, Any], endpoint: str, enterprise: bool) -> None:
    unknown = sorted(set(body) - _KNOWN_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    for name in ("model_id", "prompt"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            raise ValueError(f"The {name} field is required.")
    for side in ("width", "height"):
        value = _int(body, side)
        if value is not None and not tables.MIN_SIDE <= value <= tables.MAX_SIDE:
            raise ValueError(f"Max Height: Width: 1024x1024 ({side} {value})")
    samples = _int(body, "samples")
    if samples is not None and not 1 <= samples <= tables.MAX_SAMPLES:
        raise ValueError(f"samples must be 1 to {tables.MAX_SAMPLES}")
    steps = _int(body, "num_inference_steps")
    if steps is not None:
        if enterprise and steps not in tables.ENTERPRISE_STEPS:
            raise ValueError("num_inference_steps accepts 21, 31, 41")
        if not enterprise and not tables.CLOUD_STEPS[0] <= steps <= tables.CLOUD_STEPS[1]:
            raise ValueError("num_inference_steps must be 1 to 50")
    guidance = _float(body, "guidance_scale")
    if guidance is not None and not tables.GUIDANCE[0] <= guidance <= tables.GUIDANCE[1]:
        raise ValueError("guidance_scale must be 1 to 20")
    strength = _float(body, "strength")
    if strength is not None and not 0 <= strength <= 1:
        raise ValueError("strength must be 0 to 1")
    seed = body.get("seed")
    if seed is not None and (_int(body, "seed") or 0) < 0:
        raise ValueError("seed must be a positive number or null")
    clip = _int(body, "clip_skip")
    if clip is not None and not tables.CLIP_SKIP[0] <= clip <= tables.CLIP_SKIP[1]:
        raise ValueError("clip_skip must be 1 to 8")
    for name in tables.YES_NO_FIELDS:
        if name in body and body[name] not in tables.YES_NO:
            raise ValueError(f"{name} accepts yes or no")
    if "scheduler" in body and body["scheduler"] not in tables.SCHEDULER_CLASSES:
        raise ValueError(f"scheduler {body['scheduler']!r} is not available")
    if "algorithm_type" in body and body["algorithm_type"] not in ("none", "dpmsolver+++"):
        raise ValueError("algorithm_type accepts none or dpmsolver+++")
    if "safety_checker_type" in body and body["safety_checker_type"] not in (
        tables.SAFETY_CHECKER_TYPES
    ):
        raise ValueError(
            "safety_checker_type accepts blur, sensitive_content_text, pixelate, black"
        )
    _validate_loras(body)
    if endpoint in ("img2img", "inpaint") and not body.get("init_image"):
        raise ValueError("init_image is required")
    if endpoint == "inpaint" and not body.get("mask_image"):
        raise ValueError("mask_image is required")
    webhook = body.get("webhook")
    if webhook is not None and not (
        isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
    ):
        raise ValueError("webhook must be a URL")


def _validate_loras(body: dict[str, Any]) -> None:
    models, strengths = body.get("lora_model"), body.get("lora_strength")
    if models is None and strengths is None:
        return
    if not isinstance(models, str) or not models:
        raise ValueError("lora_strength given without lora_model")
    names = models.split(",")
    if strengths is None:
        return
    values = str(strengths).split(",")
    if len(values) != len(names):
        raise ValueError("lora_strength needs one value per lora_model")
    for value in values:
        try:
            number = float(value)
        except ValueError:
            raise ValueError("lora_strength values must be numbers") from None
        if not 0.1 <= number <= 1:
            raise ValueError("lora_strength values must be 0.1 to 1")
