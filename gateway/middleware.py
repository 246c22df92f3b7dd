"""Middlewares: request ids and log context, metrics, and the one JSON error shape."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from redis.exceptions import RedisClusterException, RedisError

from gateway.context import SERVICES
from gateway.errors import (
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from observability.logging import get_logger
from observability.metrics import Metrics

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: GatewayError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def draining(request: web.Request) -> bool:
    """New work is refused while the instance drains (gateway/drain.py)."""
    services = request.app.get(SERVICES)
    return services is not None and services.drain.draining


def make_middlewares(metrics: Metrics) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    @web.middleware
    async def context(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-Id"] = request_id
            return response
        finally:
            route = _route(request)
            metrics.http_requests.labels(request.method, route, str(status)).inc()
            metrics.http_duration.labels(request.method, route).observe(
                time.perf_counter() - started
            )

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.method == "POST" and request.path.startswith("/v1/") and draining(request):
                raise ServiceUnavailable(
                    "this instance is shutting down; retry the request (another instance "
                    "will take it)",
                    headers={"Retry-After": "1", "Connection": "close"},
                )
            return await handler(request)
        except GatewayError as failure:
            return error_response(failure)
        except (RedisError, RedisClusterException):  # the latter: a cluster's slot map away
            # The store is away (restarting, unreachable): nothing was decided; try again.
            log.warning("store_unavailable", path=request.path)
            metrics.store_outage_responses.labels(_route(request)).inc()
            return error_response(
                ServiceUnavailable(
                    "the gateway's store is unavailable; try again shortly",
                    headers={"Retry-After": "1"},
                )
            )
        except web.HTTPRequestEntityTooLarge as too_large:
            return error_response(
                PayloadTooLarge(f"the body is larger than {too_large.text or 'allowed'}")
            )
        except web.HTTPNotFound:
            return error_response(NotFound(f"no route {request.method} {request.path}"))
        except web.HTTPMethodNotAllowed as not_allowed:
            error = MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
            error.headers["Allow"] = ",".join(sorted(not_allowed.allowed_methods))
            return error_response(error)
        except web.HTTPException as http:
            if http.status < 400:
                raise
            generic = GatewayError(http.reason)
            generic.status, generic.code = http.status, http.reason.lower().replace(" ", "_")
            return error_response(generic)
        except Exception:
            log.exception("unhandled_error", path=request.path)
            return error_response(GatewayError("internal error; see the gateway log"))

    return [context, errors]
