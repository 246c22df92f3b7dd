"""The Astria simulator's fine-tunes: `POST /tunes`, `GET /tunes/{id}`, `DELETE /tunes/{id}`.

Training runs on the simulator's engine like a generation, costing `TRAINING_WORK[branch]`
reference images; `branch=fast` costs one (seeds/002: "use branch=fast for mock testing"),
so with a small `speed` a tune trains in well under a second. When done, the tune's
`callback` receives `{"tune": {...}}` with `trained_at` and `expires_at` (30 days later,
as in the seed's example). A title already used with the same key answers the existing
tune: the seed recommends unique titles for idempotency.

`GET /_sim/tunes` shows what each tune was created with: the field names exactly as
received (`tune[title]`, `tune[images][]`, ...) and the prompts made on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from adapters.astria import tune_checks
from adapters.astria.checks import Invalid
from adapters.simkit import Engine, SimJob, engine_key
from adapters.simkit.engine import REFERENCE_WORK

TRAINING_WORK = {"fast": 1, "sd15": 20, "sdxl1": 40, None: 20}
LIFETIME = timedelta(days=30)


@dataclass
class SimTune:
    job: SimJob
    fields: dict[str, Any]
    received: list[str]  # field names as they arrived
    key: str
    deleted: bool = False
    prompts: list[str] = field(default_factory=list)


@dataclass
class TuneBook:
    tunes: dict[str, SimTune] = field(default_factory=dict)
    titles: dict[tuple[str, str], str] = field(default_factory=dict)


tunes_key = web.AppKey("astria_tunes", TuneBook)


def add_tune_routes(app: web.Application) -> None:
    app[tunes_key] = TuneBook()
    app.router.add_get("/_sim/tunes", _sim_tunes)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _wall(monotonic: float | None) -> datetime | None:
    if monotonic is None:
        return None
    return datetime.now(UTC) - timedelta(seconds=time.monotonic() - monotonic)


async def read_tune_fields(request: web.Request) -> tuple[dict[str, Any], list[str]]:
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        items = [(k, v.file.read() if isinstance(v, web.FileField) else v) for k, v in form.items()]
        return tune_checks.read_form(items), [k for k, _ in items]
    try:
        body = await request.json()
    except ValueError:
        raise Invalid("tune", "body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("tune"), dict):
        raise Invalid("tune", "param is missing or the value is empty")
    extra = sorted(set(body) - {"tune"})
    if extra:
        raise Invalid(extra[0], "is not a known parameter")
    fields: dict[str, Any] = body["tune"]
    return fields, [f"tune[{name}]" for name in fields]


def create_tune(
    request: web.Request, key: str, fields: dict[str, Any], received: list[str]
) -> dict[str, Any]:
    """Start training (or find the tune this title already made); the tune object."""
    engine, book = request.app[engine_key], request.app[tunes_key]
    existing = book.titles.get((key, str(fields["title"])))
    if existing is not None and existing in book.tunes:
        return tune_object(engine, book.tunes[existing])
    job_id = engine.new_id()
    branch = fields.get("branch")
    work = REFERENCE_WORK * TRAINING_WORK.get(branch, TRAINING_WORK[None])
    created = datetime.now(UTC)
    job = SimJob(job_id, work, 0, {"kind": "tune", "created": _iso(created)})
    tune = SimTune(job, fields, received, key)
    book.tunes[job_id] = tune
    book.titles[(key, str(fields["title"]))] = job_id
    engine.enqueue(job)
    job.body["eta"] = _iso(created + timedelta(seconds=engine.eta(job)))
    return tune_object(engine, tune)


def tune_object(engine: Engine, tune: SimTune) -> dict[str, Any]:
    fields, job = tune.fields, tune.job
    branch = fields.get("branch") or "sd15"
    finished = _wall(job.finished) if job.state == "success" else None
    started = _wall(job.started)
    return {
        "id": int(job.id),
        "title": fields.get("title"),
        "name": fields.get("name"),
        "token": fields.get("token") or ("ohwx" if branch == "sdxl1" else "sks"),
        "base_tune_id": _int(fields.get("base_tune_id")),
        "args": None,
        "steps": _int(fields.get("steps")),
        "face_crop": fields.get("face_crop"),
        "training_face_correct": fields.get("training_face_correct"),
        "auto_extend": fields.get("auto_extend"),
        "characteristics": fields.get("characteristics"),
        "ckpt_url": f"{engine.base_url}/_sim/ckpt/{job.id}.safetensors" if finished else "",
        "eta": job.body["eta"],
        "trained_at": _iso(finished) if finished else None,
        "started_training_at": _iso(started) if started else None,
        "expires_at": _iso(finished + LIFETIME) if finished else None,
        "created_at": job.body["created"],
        "updated_at": _iso(finished or started or datetime.now(UTC)),
        "branch": branch,
        "model_type": fields.get("model_type"),
        "preset": fields.get("preset"),
        "callback": fields.get("callback"),
        "url": f"{engine.base_url}/tunes/{job.id}.json",
        "user_error": job.error if job.state == "failed" else None,
    }


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def finished_tune(app: web.Application, job: SimJob) -> None:
    """The engine finished a training: call the tune's callback, unless it was deleted."""
    engine, tune = app[engine_key], app[tunes_key].tunes.get(job.id)
    if tune is None or tune.deleted:
        return
    callback = tune.fields.get("callback")
    if callback:
        engine.send_callback(callback, {"tune": tune_object(engine, tune)})


def find_tune(request: web.Request, tune_id: str) -> SimTune | None:
    return request.app[tunes_key].tunes.get(tune_id)


def delete_tune(request: web.Request, tune_id: str) -> dict[str, Any] | None:
    """Forget a tune (a training one is stopped: no callback); its last object, if any."""
    book = request.app[tunes_key]
    tune = book.tunes.pop(tune_id, None)
    if tune is None:
        return None
    tune.deleted = True
    book.titles.pop((tune.key, str(tune.fields["title"])), None)
    return tune_object(request.app[engine_key], tune)


async def _sim_tunes(request: web.Request) -> web.Response:
    book = request.app[tunes_key]
    return web.json_response(
        [
            {
                "id": int(tune_id),
                "title": tune.fields.get("title"),
                "received": tune.received,
                "image_files": len(tune.fields.get("images") or []),
                "image_urls": len(tune.fields.get("image_urls") or []),
                "state": tune.job.state,
                "prompts": tune.prompts,
            }
            for tune_id, tune in book.tunes.items()
        ]
    )
