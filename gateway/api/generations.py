"""`/v1/generations`: submit, read (with long-poll), cancel."""

from __future__ import annotations

import hashlib
import time

import structlog
from aiohttp import web

from adapters.normalized import PRIORITY_CLASSES, GenerationRequest, Priority, dump_json
from gateway import ids
from gateway.api.bodies import query_number, read_model, screen_urls
from gateway.config import Tenant
from gateway.context import services
from gateway.dispatch import Dispatched
from gateway.errors import (
    BadRequest,
    Conflict,
    InvalidRequest,
    NoEligibleBackend,
    NotFound,
    QueueFull,
    QuotaExceeded,
    ServiceUnavailable,
    field_detail,
)
from gateway.jobs import transitions
from gateway.jobs.model import Job, JobRecord, JobStatus, public_json, utcnow
from gateway.jobs.updater import Change
from gateway.store.jobs import Versioned
from gateway.tunes.generate import TuneUnusable, is_tune_model
from observability.metrics import provider_clock
from routing.eligibility import Eligible, NotAllowed

MAX_WAIT = 60.0
MAX_IDEMPOTENCY_KEY = 255


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/generations", submit)
    app.router.add_get("/v1/generations/{id}", read)
    app.router.add_delete("/v1/generations/{id}", cancel)


def job_response(
    job: Job, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A job answer; a stored record is answered with its public fields only."""
    body = public_json(job)
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


async def submit(request: web.Request) -> web.Response:
    """Accept a job; its gateway overhead (all but the provider calls) is measured here."""
    started = time.perf_counter()
    with provider_clock() as provider:
        response = await _submit(request)
    if response.status == 202:
        services(request).metrics.submit_overhead.observe(
            time.perf_counter() - started - provider[0]
        )
    return response


async def _submit(request: web.Request) -> web.Response:
    s = services(request)
    tenant = s.directory.tenant(request)
    structlog.contextvars.bind_contextvars(tenant=tenant.name)
    body = await read_model(
        request,
        GenerationRequest,
        context={"allow_http": s.settings.outbound.allow_http},
        image_bytes=GenerationRequest.data_uri_bytes,
    )
    priority = _priority(tenant, body)
    if tenant.rate_limit is not None:
        wait = await s.rate.acquire(
            tenant.name, tenant.rate_limit.per_second, tenant.rate_limit.burst
        )
        if wait > 0:
            s.metrics.rate_limited.labels(tenant.name).inc()
            raise s.quotas.refuse(
                tenant.name, "rate_limit", tenant.rate_limit.per_second, time.time() + wait, wait
            )
    await screen_urls(request, body.urls())
    eligible = await _eligible(request, tenant.name, body)

    idempotency = request.headers.get("Idempotency-Key")
    shard = None
    key_digest = body_hash = ""
    if idempotency is not None:
        # "The same body" means the same request once parsed: key order and spacing aside.
        body_hash = hashlib.sha256(
            dump_json(body.model_dump(mode="json"), sort_keys=True)
        ).hexdigest()
        if not 1 <= len(idempotency) <= MAX_IDEMPOTENCY_KEY:
            raise BadRequest(
                f"Idempotency-Key: must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                details=[field_detail("Idempotency-Key", "wrong length", "header")],
            )
        key_digest = hashlib.sha256(idempotency.encode()).hexdigest()
        shard = ids.shard_for(tenant.name, key_digest)

    now = utcnow()
    record = JobRecord(
        id=ids.new_job_id(shard),
        status=JobStatus.QUEUED,
        tenant=tenant.name,
        metadata=body.metadata,
        webhook_url=body.webhook_url,
        created_at=now,
        updated_at=now,
        secret=ids.new_job_secret(),
        # What dispatch needs again; webhook_url and metadata live on the job itself.
        request=body.model_dump(
            mode="json", exclude_none=True, exclude={"webhook_url", "metadata"}
        ),
        deadline=time.time() + s.settings.jobs.result_timeout,
        priority=priority,
    )
    structlog.contextvars.bind_contextvars(job_id=record.id)
    try:
        await s.quotas.admit(tenant, record.id, body.num_images, record.deadline)
    except QuotaExceeded:
        # A replay of a request already accepted is answered as such, quota or not.
        if idempotency is not None and (
            found := await s.jobs.idempotent(shard, tenant.name, key_digest)
        ):
            return await _replay(request, found, body_hash)
        raise
    create = s.jobs.create(
        record,
        poll_due=time.time() + s.settings.jobs.dispatch_timeout,
        idempotency=(key_digest, f"{record.id} {body_hash}") if idempotency is not None else None,
        idempotency_ttl=s.settings.jobs.idempotency_ttl,
    )
    # Jobs of this class or a higher one already wait: this one joins the line.
    behind = s.queue.behind(priority)
    if idempotency is None and not behind:
        # Nothing to replay: the job's write (sent already) goes out with its first
        # reservation (one round trip); dispatch awaits it before the provider hears of it.
        try:
            dispatched = await s.dispatcher.dispatch(Versioned(1, record), eligible, stored=create)
        finally:
            await create
    else:
        existing = await create
        if existing is not None:
            await s.quotas.undo(tenant, record.id, body.num_images)
            return await _replay(request, existing.decode(), body_hash)
        if behind:
            dispatched = Dispatched(None, placed=False)
        else:
            dispatched = await s.dispatcher.dispatch(Versioned(1, record), eligible)
    if dispatched.placed:
        pass
    elif await s.queue.push(record.id, tenant.name, priority):
        if behind:
            s.runner.wake()  # it was not tried here: let the runner see whether there is room
    else:
        await s.jobs.forget(record.id, tenant.name, key_digest if idempotency else None)
        await s.quotas.undo(tenant, record.id, body.num_images)
        raise QueueFull(
            f"every eligible backend is busy and the gateway queue is full "
            f"({s.queue.bound} jobs); try again shortly",
            headers={"Retry-After": "2"},
        )
    s.metrics.jobs.labels(tenant.name, "accepted").inc()
    job = dispatched.job.record if dispatched.job else record
    return job_response(job, 202, {"Location": f"/v1/generations/{job.id}"})


def _priority(tenant: Tenant, body: GenerationRequest) -> Priority:
    """The request's class, or the tenant's default; never above the tenant's maximum."""
    wanted = body.priority or tenant.priority.default
    if PRIORITY_CLASSES.index(wanted) < PRIORITY_CLASSES.index(tenant.priority.max):
        raise InvalidRequest(
            f"priority: {wanted} is above this tenant's maximum ({tenant.priority.max})",
            details=[field_detail("priority", f"at most {tenant.priority.max} for this tenant")],
        )
    return wanted


async def _eligible(request: web.Request, tenant: str, body: GenerationRequest) -> Eligible:
    s = services(request)
    try:
        if is_tune_model(body.model):
            eligible = await s.tunes.models.require(tenant, body)
        else:
            eligible = s.eligibility.evaluate(tenant, body)
    except TuneUnusable as exc:
        raise InvalidRequest(
            f"{exc.field}: {exc.message}", details=[field_detail(exc.field, exc.message)]
        ) from None
    except NotAllowed as exc:
        names = ", ".join(exc.names)
        raise NoEligibleBackend(
            f"backends: {names} not available to this tenant",
            details=[
                field_detail("backends", f"{n} is not available to this tenant") for n in exc.names
            ],
        ) from None
    if not eligible.candidates:
        fields = sorted({f for reasons in eligible.rejected.values() for f in reasons})
        details = [
            {"field": f, "backend": b, "message": why, "type": "unsupported"}
            for b, reasons in eligible.rejected.items()
            for f, why in reasons.items()
        ]
        raise NoEligibleBackend(
            f"no eligible backend supports: {', '.join(fields) or 'this request'}", details=details
        )
    if not any(s.view.routable(c.backend.name) for c in eligible.candidates):
        raise ServiceUnavailable(
            "every eligible backend is ejected or drained; try again shortly",
            headers={"Retry-After": "5"},
        )
    return eligible


async def _replay(request: web.Request, existing: str, body_hash: str) -> web.Response:
    job_id, _, stored_hash = existing.partition(" ")
    if stored_hash != body_hash:
        raise Conflict(
            "Idempotency-Key was already used with a different request body",
            details=[field_detail("Idempotency-Key", "reused with another body", "conflict")],
        )
    current = await services(request).jobs.get(job_id)
    if current is None:
        raise Conflict("Idempotency-Key refers to a job that no longer exists")
    return job_response(
        current.record,
        202,
        {"Idempotent-Replayed": "true", "Location": f"/v1/generations/{job_id}"},
    )


async def _owned(request: web.Request) -> Versioned:
    s = services(request)
    tenant = s.directory.tenant(request)
    job_id = request.match_info["id"]
    structlog.contextvars.bind_contextvars(tenant=tenant.name, job_id=job_id)
    current = await s.jobs.get(job_id) if ids.is_job_id(job_id) else None
    if current is None or current.record.tenant != tenant.name:
        raise NotFound(f"no job {job_id}")
    return current


def _wait_seconds(request: web.Request) -> float:
    return query_number(request, "wait", 0, MAX_WAIT) or 0.0


async def read(request: web.Request) -> web.Response:
    wait = _wait_seconds(request)
    current = await _owned(request)
    s = services(request)
    deadline = time.monotonic() + wait
    while not current.record.status.final and not s.drain.draining:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # Re-read at least every second: notifications are best-effort.
        await s.events.wait(current.record.id, min(remaining, 1.0))
        fresh = await s.jobs.get(current.record.id)
        if fresh is None:
            break
        current = fresh
    return job_response(current.record)


async def cancel(request: web.Request) -> web.Response:
    current = await _owned(request)
    s = services(request)
    if current.record.status.final:
        raise Conflict(f"job {current.record.id} already {current.record.status.value}")

    def mutate(record: JobRecord) -> Change | None:
        return Change() if transitions.cancel(record, utcnow()) else None

    saved = await s.updater.update(current.record.id, mutate, current=current)
    await s.queue.remove(current.record.id)  # if it was waiting there
    record = saved.record if saved else current.record
    if record.status is not JobStatus.CANCELED:
        raise Conflict(f"job {record.id} already {record.status.value}")
    return job_response(record)
