"""`/v1/tunes`: train (with Idempotency-Key), read (with long-poll), list, cancel or delete.

The providers' tune callbacks arrive at `/webhooks/{backend}/{tune id}.{n}` (webhooks.py)."""

from __future__ import annotations

import hashlib
import time

import structlog
from aiohttp import web

from adapters.base import trainer_of
from adapters.errors import ProviderError
from adapters.normalized import dump_json
from adapters.normalized_tune import TuneRequest
from gateway import ids
from gateway.api.bodies import query_number, read_model, screen_urls
from gateway.context import services
from gateway.errors import (
    BadRequest,
    Conflict,
    InvalidRequest,
    NoEligibleBackend,
    NotFound,
    ProviderRefused,
    RateLimited,
    ServiceUnavailable,
    field_detail,
)
from gateway.jobs.model import utcnow
from gateway.store.jobs import PollChange
from gateway.tunes import transitions
from gateway.tunes.model import MODEL_PREFIX, Tune, TuneList, TuneRecord
from gateway.tunes.placement import NoTrainer, TrainingCandidate
from gateway.tunes.store import VersionedTune
from observability.logging import get_logger
from routing.eligibility import NotAllowed

log = get_logger(__name__)

MAX_IDEMPOTENCY_KEY = 255
DEFAULT_PAGE, MAX_PAGE = 20, 100


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/tunes", submit)
    app.router.add_get("/v1/tunes", list_tunes)
    app.router.add_get("/v1/tunes/{id}", read)
    app.router.add_delete("/v1/tunes/{id}", delete)


def tune_response(
    tune: Tune, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=tune.model_dump_json(), status=status, content_type="application/json", headers=headers
    )


async def submit(request: web.Request) -> web.Response:
    s = services(request)
    tenant = s.directory.tenant(request)
    structlog.contextvars.bind_contextvars(tenant=tenant.name)
    body = await read_model(
        request,
        TuneRequest,
        context={"allow_http": s.settings.outbound.allow_http},
        image_bytes=TuneRequest.data_uri_bytes,
    )
    low, high = s.settings.tunes.min_images, s.settings.tunes.max_images
    if not low <= len(body.images) <= high:
        message = f"give {low} to {high} training images (got {len(body.images)})"
        raise InvalidRequest(f"images: {message}", details=[field_detail("images", message)])
    if tenant.rate_limit is not None:
        wait = await s.rate.acquire(
            tenant.name, tenant.rate_limit.per_second, tenant.rate_limit.burst
        )
        if wait > 0:
            s.metrics.rate_limited.labels(tenant.name).inc()
            raise RateLimited(
                f"tenant {tenant.name} is over its rate limit",
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )
    await screen_urls(request, body.urls())
    idempotency = _idempotency(request, body)
    shard = ids.shard_for(tenant.name, idempotency[0]) if idempotency else None
    tune_id = ids.new_tune_id(shard)
    # The seed recommends a unique title per tune (Astria's idempotency): the tune's id.
    body = body.model_copy(update={"title": body.title or tune_id})
    _trainable(request, tenant.name, body)

    now = utcnow()
    record = TuneRecord(
        id=tune_id,
        status="queued",
        tenant=tenant.name,
        name=body.name,
        title=body.title or tune_id,
        model=f"{MODEL_PREFIX}{tune_id}",
        metadata=body.metadata,
        webhook_url=body.webhook_url,
        created_at=now,
        updated_at=now,
        secret=ids.new_job_secret(),
        request=body.model_dump(
            mode="json", exclude_none=True, exclude={"webhook_url", "metadata"}
        ),
        deadline=time.time() + s.settings.tunes.training_timeout,
    )
    structlog.contextvars.bind_contextvars(tune_id=tune_id)
    existing = await s.tunes.store.create(
        record,
        poll_due=time.time() + s.settings.jobs.dispatch_timeout,
        idempotency=(idempotency[0], f"{tune_id} {idempotency[1]}") if idempotency else None,
        ttl=s.settings.jobs.idempotency_ttl,
    )
    if existing is not None:
        return await _replay(request, existing, idempotency[1] if idempotency else "")
    s.metrics.tunes.labels(tenant.name, "accepted").inc()
    saved = await s.tunes.dispatcher.dispatch(VersionedTune(1, record))
    tune = (saved.record if saved else record).public()
    return tune_response(tune, 202, {"Location": f"/v1/tunes/{tune.id}"})


def _idempotency(request: web.Request, body: TuneRequest) -> tuple[str, str] | None:
    """(key digest, body hash) when the request carries an Idempotency-Key."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(
            f"Idempotency-Key: must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
            details=[field_detail("Idempotency-Key", "wrong length", "header")],
        )
    body_hash = hashlib.sha256(dump_json(body.model_dump(mode="json"), sort_keys=True)).hexdigest()
    return hashlib.sha256(key.encode()).hexdigest(), body_hash


def _trainable(request: web.Request, tenant: str, body: TuneRequest) -> list[TrainingCandidate]:
    s = services(request)
    try:
        candidates = s.tunes.placement.candidates(tenant, body)
    except NotAllowed as exc:
        raise NoEligibleBackend(
            f"backends: {', '.join(exc.names)} not available to this tenant",
            details=[
                field_detail("backends", f"{n} is not available to this tenant") for n in exc.names
            ],
        ) from None
    except NoTrainer as exc:
        details = [
            {"field": f, "backend": b, "message": why, "type": "unsupported"}
            for b, reasons in exc.reasons.items()
            for f, why in reasons.items()
        ] or [field_detail("backends", exc.message, "unsupported")]
        raise NoEligibleBackend(exc.message, details=details) from None
    if not any(s.view.routable(c.backend.name) for c in candidates):
        raise ServiceUnavailable(
            "every backend that can train is ejected or drained; try again shortly",
            headers={"Retry-After": "5"},
        )
    return candidates


async def _replay(request: web.Request, existing: str, body_hash: str) -> web.Response:
    tune_id, _, stored_hash = existing.partition(" ")
    if stored_hash != body_hash:
        raise Conflict(
            "Idempotency-Key was already used with a different request body",
            details=[field_detail("Idempotency-Key", "reused with another body", "conflict")],
        )
    current = await services(request).tunes.store.get(tune_id)
    if current is None:
        raise Conflict("Idempotency-Key refers to a tune that no longer exists")
    return tune_response(
        current.record.public(),
        202,
        {"Idempotent-Replayed": "true", "Location": f"/v1/tunes/{tune_id}"},
    )


async def _owned(request: web.Request) -> VersionedTune:
    s = services(request)
    tenant = s.directory.tenant(request)
    tune_id = request.match_info["id"]
    structlog.contextvars.bind_contextvars(tenant=tenant.name, tune_id=tune_id)
    current = await s.tunes.store.get(tune_id) if ids.is_tune_id(tune_id) else None
    if current is None or current.record.tenant != tenant.name:
        raise NotFound(f"no tune {tune_id}")
    return current


async def read(request: web.Request) -> web.Response:
    s = services(request)
    wait = query_number(request, "wait", 0, s.settings.tunes.max_wait) or 0.0
    current = await _owned(request)
    deadline = time.monotonic() + wait
    while not current.record.status.final:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # Re-read at least every second: notifications are best-effort.
        await s.events.wait(current.record.id, min(remaining, 1.0))
        fresh = await s.tunes.store.get(current.record.id)
        if fresh is None:
            break
        current = fresh
    return tune_response(current.record.public())


async def list_tunes(request: web.Request) -> web.Response:
    s = services(request)
    tenant = s.directory.tenant(request)
    limit = int(query_number(request, "limit", 1, MAX_PAGE, integer=True) or DEFAULT_PAGE)
    before = query_number(request, "cursor", 0, 1e12)
    found, cursor = await s.tunes.store.page(tenant.name, before=before, limit=limit)
    page = TuneList(
        data=[record.public() for record in found],
        next_cursor=repr(cursor) if cursor is not None else None,
    )
    return web.Response(body=page.model_dump_json(), content_type="application/json")


async def delete(request: web.Request) -> web.Response:
    """Cancel a tune still training (and stop it at the provider); delete a finished one."""
    current = await _owned(request)
    s = services(request)
    record = current.record
    backend = s.backends.get(record.backend or "")
    trainer = trainer_of(backend.adapter) if backend is not None else None
    if not record.status.final:

        def cancel(record: TuneRecord) -> PollChange | None:
            return "remove" if transitions.cancel(record, utcnow()) else None

        saved = await s.tunes.updater.update(record.id, cancel, current=current)
        record = saved.record if saved else record
        if record.status.value != "canceled":
            raise Conflict(f"tune {record.id} already {record.status.value}")
        if trainer is not None and record.provider_tune_id:
            try:
                await trainer.delete_tune(s.provider_session, record.provider_tune_id)
            except ProviderError as exc:
                log.warning("tune_cancel_failed", tune_id=record.id, error=exc.message)
        return tune_response(record.public())
    if trainer is not None and record.provider_tune_id:
        try:
            await trainer.delete_tune(s.provider_session, record.provider_tune_id)
        except ProviderError as exc:
            raise ProviderRefused(
                f"{record.backend} did not delete tune {record.provider_tune_id}: {exc.message}"
            ) from None
    await s.tunes.store.delete(record)
    return web.Response(status=204)
