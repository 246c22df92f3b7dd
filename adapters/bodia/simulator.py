"""A Bodia simulator: the fine-tune prompts API of seeds/003, at the origin's root.

It takes a JSON array of prompt objects, validates each the way the doc describes (prompt
required, cfg 1–20, steps 1–50, aspect_ratio square/portrait/landscape), answers with the
array of created prompts shaped like the doc's example (cfg and seed as strings), runs them
through the engine, and serves retrieval (numbers as numbers, as the doc's GET example
shows), listing and deletion. Two liberties: fields the doc does not list are refused with
422, so adapter typos surface in tests; and every fine-tune id exists except those starting
with `missing`, which answer 404, so that path can be exercised.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapters.base import SimulatorSettings
from adapters.bodia import tables
from adapters.simkit import Engine, Fault, SimJob, base_app, engine_key, pick_fault
from adapters.simkit.faults import generic_fault_response

MISSING_FINETUNE_PREFIX = "missing"
_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
_ID_LENGTH = 24
_FINETUNE = "/v1/finetunes/{finetune}/prompts"


@dataclass
class Record:
    """One created prompt: what was asked, where, and the engine job doing it."""

    finetune: str
    prompt: dict[str, Any]
    created_at: str
    job: SimJob


records_key = web.AppKey("bodia_records", dict[str, Record])


def create_simulator(settings: SimulatorSettings) -> web.Application:
    app = base_app(settings, "bodia")
    app[records_key] = {}
    app.router.add_post(_FINETUNE, _create)
    app.router.add_get(_FINETUNE, _list)
    app.router.add_get(_FINETUNE + "/{prompt_id}", _retrieve)
    app.router.add_delete(_FINETUNE + "/{prompt_id}", _delete)
    return app


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _refusal(request: web.Request) -> web.Response | None:
    """401 for a wrong key, 404 for an unknown fine-tune; None when the call may proceed."""
    engine = request.app[engine_key]
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or key.strip() not in engine.settings.api_keys:
        engine.stats["rejected"] += 1
        return _error(401, "Unauthorized")
    if request.match_info["finetune"].startswith(MISSING_FINETUNE_PREFIX):
        return _error(404, "Fine-Tune not found")
    return None


async def _create(request: web.Request) -> web.Response:
    engine = request.app[engine_key]
    fault = pick_fault(engine)
    if fault is not None:
        return await _fault(engine, fault)
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body is not JSON")
    problem = validate(body)
    if problem:
        engine.stats["rejected"] += 1
        return _error(422, problem)
    records = request.app[records_key]
    created = []
    for prompt in body:
        record = _start(engine, request.match_info["finetune"], prompt)
        records[record.job.id] = record
        created.append(_prompt_object(record, numbers_as_text=True))
    return web.json_response(created)


def _start(engine: Engine, finetune: str, prompt: dict[str, Any]) -> Record:
    settled = {
        "cfg": float(prompt.get("cfg", tables.DEFAULT_CFG)),
        "steps": int(prompt.get("steps", tables.DEFAULT_STEPS)),
        "seed": int(prompt["seed"]) if "seed" in prompt else engine.random.randrange(2**32),
        "high_resolution": bool(prompt.get("high_resolution", False)),
        "aspect_ratio": prompt.get("aspect_ratio", tables.DEFAULT_ASPECT.value),
    }
    full = {**prompt, **settled}
    cost = tables.HIGH_RESOLUTION_COST if full["high_resolution"] else 1.0
    work = tables.NOMINAL_PIXELS * full["steps"] * cost
    prompt_id = "".join(engine.random.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
    job = engine.enqueue(SimJob(prompt_id, work, 1, full))
    created_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Record(finetune, full, created_at, job)


def _prompt_object(record: Record, *, numbers_as_text: bool) -> dict[str, Any]:
    prompt, job = record.prompt, record.job
    cfg: float | str = prompt["cfg"]
    seed: int | str = prompt["seed"]
    if numbers_as_text:
        # The doc's create answer sends these as strings ("7.50", "2323").
        cfg, seed = f"{prompt['cfg']:.2f}", str(prompt["seed"])
    return {
        "id": job.id,
        "prompt": prompt["prompt"],
        "negative_prompt": prompt.get("negative_prompt"),
        "cfg": cfg,
        "steps": prompt["steps"],
        "seed": seed,
        "error_message": job.error if job.state == "failed" else None,
        "images": list(job.outputs) if job.state == "success" else [],
        "metadata": prompt.get("metadata"),
        "created_at": record.created_at,
        "high_resolution": prompt["high_resolution"],
        "aspect_ratio": prompt["aspect_ratio"],
    }


async def _fault(engine: Engine, fault: Fault) -> web.Response:
    if fault is Fault.SERVER_ERROR and engine.random.random() < 0.5:
        return _error(500, "Internal Server Error")
    if fault is Fault.RATE_LIMITED:
        return web.json_response(
            {"error": "Too many requests", "retry_after": engine.settings.retry_after},
            status=429,
            headers={"Retry-After": f"{engine.settings.retry_after:g}"},
        )
    if fault is Fault.MALFORMED and engine.random.random() < 0.5:
        # Well-formed JSON of the wrong shape: one prompt object instead of an array.
        return web.json_response({"id": "ui7xBN30TS8_xZeR-I4QbJv3", "images": "pending"})
    return await generic_fault_response(engine, fault)


def _found(request: web.Request) -> Record | web.Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    record = request.app[records_key].get(request.match_info["prompt_id"])
    if record is None or record.finetune != request.match_info["finetune"]:
        return _error(404, "Prompt not found")
    return record


async def _retrieve(request: web.Request) -> web.Response:
    found = _found(request)
    if isinstance(found, web.Response):
        return found
    return web.json_response(_prompt_object(found, numbers_as_text=False))


async def _delete(request: web.Request) -> web.Response:
    found = _found(request)
    if isinstance(found, web.Response):
        return found
    del request.app[records_key][found.job.id]
    return web.json_response({"delete": "it has been deleted successfully"})


async def _list(request: web.Request) -> web.Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    finetune = request.match_info["finetune"]
    return web.json_response(
        [
            _prompt_object(record, numbers_as_text=False)
            for record in request.app[records_key].values()
            if record.finetune == finetune
        ]
    )


# -- validation, as the doc describes it ----------------------------------------------


def validate(body: Any) -> str | None:
    """The provider's checks on a create body; returns the error text or None."""
    if not isinstance(body, list) or not body:
        return "body must be a non-empty JSON array of prompt objects"
    for index, prompt in enumerate(body):
        try:
            _validate_prompt(prompt)
        except ValueError as exc:
            return f"prompt {index}: {exc}"
    return None


def _number(prompt: dict[str, Any], name: str, low: float, high: float, *, whole: bool) -> None:
    value = prompt.get(name)
    if value is None:
        return
    kind = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{name} must be {'an integer' if whole else 'a number'}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}")


def _validate_prompt(prompt: Any) -> None:
    if not isinstance(prompt, dict):
        raise ValueError("must be an object")
    unknown = sorted(set(prompt) - tables.PROMPT_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    text = prompt.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("prompt is required")
    negative = prompt.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise ValueError("negative_prompt must be a string")
    _number(prompt, "cfg", *tables.CFG, whole=False)
    _number(prompt, "steps", *tables.STEPS, whole=True)
    _number(prompt, "seed", 0, 2**32 - 1, whole=True)
    high_resolution = prompt.get("high_resolution")
    if high_resolution is not None and not isinstance(high_resolution, bool):
        raise ValueError("high_resolution must be true or false")
    aspect = prompt.get("aspect_ratio")
    if aspect is not None and aspect not in {a.value for a in tables.BodiaAspect}:
        raise ValueError("aspect_ratio must be square, portrait or landscape")
    metadata = prompt.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("metadata must be a JSON object")
