"""The gateway's error hierarchy: each error carries its HTTP status and a stable code."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class InvalidRequest(GatewayError):
    """The body parsed but a field is wrong; `details` name each field."""

    status = 422
    code = "invalid_request"


class UrlRefused(InvalidRequest):
    """A URL the gateway would call or hand to a backend points somewhere it must not."""

    code = "url_refused"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str = "missing or invalid API key") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class NoEligibleBackend(GatewayError):
    """No backend the tenant may use can serve this request (model, features, strict)."""

    status = 422
    code = "no_eligible_backend"


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"


class QuotaExceeded(GatewayError):
    """Over a tenant quota; `details[0]` is {limit, value, resets_at}."""

    status = 429
    code = "quota_exceeded"


class QueueFull(GatewayError):
    status = 429
    code = "queue_full"


class ProviderRefused(GatewayError):
    """A provider refused what the gateway asked on the tenant's behalf (e.g. a delete)."""

    status = 502
    code = "provider_refused"


class ServiceUnavailable(GatewayError):
    status = 503
    code = "unavailable"


def field_detail(field: str, message: str, kind: str = "invalid") -> dict[str, Any]:
    return {"field": field, "message": message, "type": kind}
