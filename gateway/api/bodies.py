"""Reading JSON bodies into models, with 4xx errors that name the field."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from adapters.http import read_limited
from adapters.httpconn import BodyTooLarge
from adapters.normalized import FieldError
from gateway.context import SETTINGS, services
from gateway.errors import (
    BadRequest,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    UrlRefused,
    field_detail,
)
from gateway.relay.guard import Refused

M = TypeVar("M", bound=BaseModel)
# Plain digits: float() and int() would also take "nan", "1_0", " 5" or other scripts' digits.
_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?")
_INTEGER = re.compile(r"[0-9]+")


def query_number(
    request: web.Request, name: str, low: float, high: float, *, integer: bool = False
) -> float | None:
    """A numeric query parameter within [low, high], as the OpenAPI document describes it."""
    raw = request.query.get(name)
    if raw is None:
        return None
    pattern = _INTEGER if integer else _NUMBER
    value = float(raw) if pattern.fullmatch(raw) else low - 1
    if not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise BadRequest(
            f"{name}: must be {kind} from {low:g} to {high:g}",
            details=[field_detail(name, "out of range", "query")],
        )
    return value


def field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for step in loc:
        if isinstance(step, int):
            name += f"[{step}]"
        else:
            name += f".{step}" if name else step
    return name or "body"


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors(include_url=False):
        cause = (error.get("ctx") or {}).get("error")
        field = cause.field if isinstance(cause, FieldError) else field_name(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        details.append(field_detail(field, message, str(error["type"])))
    return details


def too_large(limit: int, setting: str, size: int | None = None) -> PayloadTooLarge:
    """413 naming the limit and the setting that holds it."""
    what = f"{size} bytes is" if size is not None else "the body is"
    message = f"body: {what} over the limit of {limit} bytes ({setting})"
    detail = {**field_detail("body", message, "too_large"), "limit": limit, "setting": setting}
    return PayloadTooLarge(message, details=[detail])


async def read_raw(request: web.Request, limit: int, setting: str) -> bytes:
    """The request body, refused with 413 (before reading, when it says its size) past `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, setting, request.content_length)
    try:
        return await read_limited(request.content, limit)
    except BodyTooLarge:
        raise too_large(limit, setting) from None


async def read_model(
    request: web.Request,
    model: type[M],
    context: dict[str, Any] | None = None,
    *,
    image_bytes: Callable[[M], int] | None = None,
) -> M:
    """Read and validate a JSON body. Bodies are limited to `jobs.max_body_bytes`; where
    `image_bytes` says how many bytes of the model are `data:` images, those bytes may take the
    body up to `jobs.max_image_body_bytes` instead."""
    if request.content_type not in ("application/json",) and not request.content_type.endswith(
        "+json"
    ):
        raise UnsupportedMediaType(
            f"Content-Type: expected application/json, got {request.content_type or 'nothing'}",
            details=[field_detail("Content-Type", "must be application/json", "content_type")],
        )
    jobs = request.app[SETTINGS].jobs
    plain = ("jobs.max_body_bytes", jobs.max_body_bytes)
    larger = ("jobs.max_image_body_bytes", max(jobs.max_image_body_bytes, jobs.max_body_bytes))
    setting, limit = larger if image_bytes is not None else plain
    raw = await read_raw(request, limit, setting)
    if len(raw) > plain[1] and (image_bytes is None or b"data:" not in raw):
        raise too_large(plain[1], plain[0], len(raw))
    if not raw.strip():
        raise BadRequest(
            "body: the request body is empty",
            details=[field_detail("body", "a JSON object is required", "missing")],
        )
    try:
        # Strict: JSON types as documented ("5" is not an integer, "yes" not a boolean).
        parsed = model.model_validate_json(raw, strict=True, context=context)
    except ValidationError as exc:
        details = validation_details(exc)
        if any(d["type"] == "json_invalid" for d in details):
            raise BadRequest(
                f"body: malformed JSON ({details[0]['message']})",
                details=[field_detail("body", details[0]["message"], "json_invalid")],
            ) from None
        if any(d["type"] == "model_type" and d["field"] == "body" for d in details):
            raise InvalidRequest(
                "body: must be a JSON object",
                details=[field_detail("body", "must be a JSON object", "model_type")],
            ) from None
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        raise InvalidRequest(summary, details=details) from None
    rest = len(raw) - image_bytes(parsed) if image_bytes is not None else 0
    if rest > plain[1]:
        raise too_large(plain[1], plain[0] + " (data: images aside)", rest)
    return parsed


async def screen_urls(request: web.Request, urls: Mapping[str, str | None]) -> None:
    """422 naming the field when a URL the gateway would call or hand on is not allowed."""
    guard = services(request).guard
    for field, url in urls.items():
        if url is None or url.startswith("data:"):
            continue
        try:
            await guard.screen(url)
        except Refused as exc:
            raise UrlRefused(
                f"{field}: URL refused: {exc}",
                details=[field_detail(field, f"URL refused: {exc}", "url_refused")],
            ) from None
