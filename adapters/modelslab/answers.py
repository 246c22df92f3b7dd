"""Reading ModelsLab's answers, fetch results and webhooks into `ProviderResult`s.

ModelsLab is loose with types: ids come as numbers or strings, `eta` as "12.5", errors
sometimes carry `messege` instead of `message`. All of that is accepted here; anything
else unexpected is a `ProviderBadAnswer` with a message that says what was wrong.
"""

from __future__ import annotations

import time
from typing import Any

from adapters.base import ProviderResult, ResultState
from adapters.errors import (
    ProviderAuthFailed,
    ProviderBadAnswer,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
)


def number(value: Any) -> float | None:
    """A number that may arrive as a string; None when absent or unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def message(data: dict[str, Any]) -> str:
    for key in ("message", "messege", "error", "tip"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value[:500]
        if isinstance(value, dict | list) and value:
            return str(value)[:500]
    return "no message"


def _provider_id(data: dict[str, Any]) -> str | None:
    value = data.get("id", data.get("request_id"))
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str) and str(value):
        return str(value)
    raise ProviderBadAnswer(f"'id' has the wrong type ({type(value).__name__})")


def _images(data: dict[str, Any]) -> tuple[str, ...]:
    output = data.get("output")
    if isinstance(output, str):
        output = [output]
    if not isinstance(output, list) or not all(isinstance(x, str) for x in output):
        raise ProviderBadAnswer("'output' is not a list of image URLs")
    if not output:
        raise ProviderBadAnswer("status is success but 'output' is empty")
    return tuple(_image(x) for x in output)


def _image(value: str) -> str:
    if value.startswith(("http://", "https://", "data:")):
        return value
    # base64 mode returns bare base64 strings.
    return f"data:image/png;base64,{value}"


def read_result(data: Any) -> ProviderResult:
    """Any ModelsLab status object (submit answer, fetch answer, webhook body)."""
    if not isinstance(data, dict):
        raise ProviderBadAnswer(f"expected a JSON object, got {type(data).__name__}")
    status = data.get("status")
    if not isinstance(status, str):
        raise ProviderBadAnswer("answer has no 'status'")
    status = status.strip().lower()
    if status == "success":
        return ProviderResult(
            ResultState.SUCCEEDED,
            provider_id=_provider_id(data),
            images=_images(data),
            service=_ran(data),
        )
    if status in ("processing", "queued", "pending"):
        provider_id = _provider_id(data)
        if provider_id is None:
            raise ProviderBadAnswer("'processing' answer without an 'id'")
        return ProviderResult(
            ResultState.PROCESSING, provider_id=provider_id, eta=number(data.get("eta"))
        )
    if status in ("error", "failed"):
        return ProviderResult(
            ResultState.FAILED,
            provider_id=_provider_id(data),
            error_code="provider_error",
            error_message=message(data),
        )
    raise ProviderBadAnswer(f"unknown status {status!r}")


def _ran(data: dict[str, Any]) -> tuple[float, float] | None:
    """`generationTime` (seconds the generation took) as an interval ending now: the answer
    or webhook comes as the generation ends."""
    took = number(data.get("generationTime"))
    if took is None or not 0 < took < 86400:
        return None
    now = time.time()
    return (now - took, now)


def submit_error(data: dict[str, Any]) -> ProviderError:
    """An `error` answer to a submit: decide whether another backend could do better."""
    text = message(data)
    lowered = text.lower()
    if "rate limit" in lowered or "too many" in lowered:
        return ProviderRateLimited(text, retry_after=number(data.get("retry_after")))
    if "api key" in lowered or "apikey" in lowered or "unauthor" in lowered:
        return ProviderAuthFailed(text)
    if "busy" in lowered or "overload" in lowered or "try again" in lowered:
        return ProviderServerError(text)
    return ProviderRejected(text)
