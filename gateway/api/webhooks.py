"""`/webhooks/{backend}/{track_id}`: where providers call the gateway back."""

from __future__ import annotations

import structlog
from aiohttp import web

from adapters.http import MAX_ANSWER_BYTES
from gateway import ids
from gateway.api.bodies import read_raw
from gateway.context import services
from gateway.errors import NotFound, Unauthorized
from gateway.inbound import Received

MAX_CALLBACK_BYTES = MAX_ANSWER_BYTES  # a callback carries what a poll answer would


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/{backend}/{track_id}", receive)


async def receive(request: web.Request) -> web.Response:
    track = request.match_info["track_id"]
    parsed = ids.parse_track_id(track)
    structlog.contextvars.bind_contextvars(
        backend=request.match_info["backend"], track_id=track, job_id=parsed[0] if parsed else None
    )
    body = await read_raw(request, MAX_CALLBACK_BYTES, "provider callbacks")
    s = services(request)
    # A tune's training callback (track `tune_….n`) goes to the tunes' inbound.
    inbound = s.tunes.inbound if ids.parse_tune_track_id(track) else s.inbound
    outcome = await inbound.receive(
        request.match_info["backend"],
        request.match_info["track_id"],
        request.query.get("token", ""),
        body,
    )
    if outcome is Received.BAD_TOKEN:
        raise Unauthorized("invalid callback token")
    if outcome is Received.UNKNOWN:
        raise NotFound("no such submission")
    # Everything else is acknowledged: the provider has nothing better to do with an error.
    return web.json_response({"status": outcome.value})
