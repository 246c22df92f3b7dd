"""Reading JSON bodies into models, with 4xx errors that name the field."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from adapters.normalized import FieldError
from gateway.errors import BadRequest, InvalidRequest, UnsupportedMediaType, field_detail

M = TypeVar("M", bound=BaseModel)


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


async def read_model(
    request: web.Request, model: type[M], context: dict[str, Any] | None = None
) -> M:
    if request.content_type not in ("application/json",) and not request.content_type.endswith(
        "+json"
    ):
        raise UnsupportedMediaType(
            f"Content-Type: expected application/json, got {request.content_type or 'nothing'}",
            details=[field_detail("Content-Type", "must be application/json", "content_type")],
        )
    raw = await request.read()
    if not raw.strip():
        raise BadRequest(
            "body: the request body is empty",
            details=[field_detail("body", "a JSON object is required", "missing")],
        )
    try:
        return model.model_validate_json(raw, context=context)
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
