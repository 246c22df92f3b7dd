"""`/v1/deliveries`: dead-lettered client webhooks, listed and replayed.

Admins see and replay any tenant's; a tenant key sees and replays its own.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from gateway import ids
from gateway.api.bodies import read_model
from gateway.api.callers import acting_for
from gateway.api.schemas import DeadLetterList, DeadLetterView, ReplayRequest, ReplayResult
from gateway.context import services
from gateway.errors import BadRequest, Conflict, NotFound, field_detail
from gateway.relay.dead_letters import NotReplayable

MAX_LIMIT = 1000


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/deliveries/dead", list_dead)
    app.router.add_post("/v1/deliveries/replay", replay_since)
    app.router.add_post("/v1/deliveries/{id}/replay", replay_one)


def _since(raw: str | None) -> float:
    if raw is None:
        return 0.0
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            raise BadRequest(
                "since: an ISO 8601 time or epoch seconds",
                details=[field_detail("since", "not a time", "query")],
            ) from None


def _limit(raw: str | None) -> int:
    try:
        limit = int(raw) if raw is not None else 100
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(
            f"limit: 1 to {MAX_LIMIT}", details=[field_detail("limit", "out of range", "query")]
        )
    return limit


async def list_dead(request: web.Request) -> web.Response:
    tenants = acting_for(request, request.query.get("tenant"))
    since, limit = _since(request.query.get("since")), _limit(request.query.get("limit"))
    letters = []
    for tenant in tenants:
        letters += await services(request).dead_letters.list(tenant, since, limit)
    letters.sort(key=lambda letter: letter.dead_at)
    body = DeadLetterList(
        dead_letters=[DeadLetterView(**vars(letter)) for letter in letters[:limit]]
    )
    return web.Response(body=body.model_dump_json(), content_type="application/json")


async def replay_one(request: web.Request) -> web.Response:
    s = services(request)
    job_id = request.match_info["id"]
    known = ids.is_job_id(job_id) or ids.is_tune_id(job_id)
    current = await s.deliveries.get(job_id) if known else None
    if current is None:
        raise NotFound(f"no job {job_id}")
    try:
        acting_for(request, current.record.tenant)
    except NotFound:
        raise NotFound(f"no job {job_id}") from None  # another tenant's: not even its name
    try:
        record = await s.dead_letters.replay(current)
    except NotReplayable as exc:
        raise Conflict(f"job {job_id} has no dead-lettered delivery ({exc})") from None
    return web.Response(
        body=record.public().model_dump_json(), status=202, content_type="application/json"
    )


async def replay_since(request: web.Request) -> web.Response:
    body = await read_model(request, ReplayRequest)
    replayed = 0
    for tenant in acting_for(request, body.tenant):
        replayed += await services(request).dead_letters.replay_since(
            tenant, body.since.timestamp()
        )
    return web.Response(
        body=ReplayResult(replayed=replayed).model_dump_json(),
        status=202,
        content_type="application/json",
    )
