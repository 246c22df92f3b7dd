"""`/v1/deliveries`: dead-lettered client webhooks, listed and replayed.

Admins see and replay any tenant's; a tenant key sees and replays its own.
"""

from __future__ import annotations

import re
from datetime import datetime

from aiohttp import web

from gateway import ids
from gateway.api.bodies import query_number, read_model
from gateway.api.callers import acting_for
from gateway.api.openapi import EPOCH_PATTERN
from gateway.api.schemas import DeadLetterList, DeadLetterView, ReplayRequest, ReplayResult
from gateway.context import services
from gateway.errors import BadRequest, Conflict, NotFound, field_detail
from gateway.relay.dead_letters import NotReplayable

MAX_LIMIT = 1000


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/deliveries/dead", list_dead)
    app.router.add_post("/v1/deliveries/replay", replay_since)
    app.router.add_post("/v1/deliveries/{id}/replay", replay_one)


_EPOCH = re.compile(EPOCH_PATTERN)
_RFC3339 = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _since(raw: str | None) -> float:
    """An RFC 3339 time or epoch seconds, as the OpenAPI document says; nothing looser."""
    if raw is None:
        return 0.0
    if _EPOCH.fullmatch(raw):
        return float(raw)
    match = _RFC3339.fullmatch(raw)
    if match:
        date, hours_minutes, seconds, fraction, zone = match.groups()
        # Python's parser takes at most 6 fractional digits and no leap second.
        seconds = min(seconds, "59")
        fraction = (fraction or "")[:7]
        zone = "+00:00" if zone in ("Z", "z") else zone
        try:
            return datetime.fromisoformat(
                f"{date}T{hours_minutes}:{seconds}{fraction}{zone}"
            ).timestamp()
        except ValueError:
            pass
    raise BadRequest(
        "since: an RFC 3339 time or epoch seconds",
        details=[field_detail("since", "not a time", "query")],
    )


async def list_dead(request: web.Request) -> web.Response:
    tenants = acting_for(request, request.query.get("tenant"))
    since = _since(request.query.get("since"))
    limit = int(query_number(request, "limit", 1, MAX_LIMIT, integer=True) or 100)
    letters = []
    for tenant in tenants:
        letters += await services(request).dead_letters.list(tenant, since, limit)
    letters.sort(key=lambda letter: letter.dead_at)
    body = DeadLetterList(
        dead_letters=[
            DeadLetterView.model_validate(letter, from_attributes=True)
            for letter in letters[:limit]
        ]
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
