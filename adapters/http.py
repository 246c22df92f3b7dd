"""One HTTP call to a provider, with transport failures translated at the boundary.

The call goes through `adapters/httpclient.py` (not aiohttp's client: a tenth of its CPU).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import orjson

from adapters.errors import (
    ProviderAuthFailed,
    ProviderBadAnswer,
    ProviderError,
    ProviderMisconfigured,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from adapters.httpclient import HttpClient
from adapters.httpconn import BadAnswer, BodyTooLarge, ConnectFailed
from observability.redaction import scrub_text

MAX_ANSWER_BYTES = 4 * 1024 * 1024


def without_frames(exc: BaseException) -> BaseException:
    """`exc`, its causes and contexts with their tracebacks' frames cleared; returns it.

    A transport error keeps the frames it was raised through, and their locals lead
    back to the error: ~70 objects in reference cycles per failed call, freed only by the
    cyclic collector (a provider or a client endpoint that is down fails every call, and
    the collector's pauses grow with it). The message and the traceback's lines stay."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__
    return exc


async def read_limited(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, or `BodyTooLarge` once it passes `limit` bytes.

    `StreamReader.read(n)` returns whatever has arrived (often one chunk), not n bytes, so a
    single call would silently truncate a large answer; this reads until the end.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)


async def call_json(
    session: HttpClient,
    method: str,
    url: str,
    *,
    timeout: float,
    json: Any = None,
    data: bytes | aiohttp.FormData | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    accept_statuses: Iterable[int] = (),
) -> tuple[int, Any]:
    """Send a request and decode a JSON answer; raise `ProviderError`s for everything else.

    `data` is a body as bytes, or a form (aiohttp's `FormData` encodes it).
    `secrets` are scrubbed from every error message raised from here.
    `accept_statuses` are non-2xx statuses the caller wants to interpret itself.
    """
    try:
        return await _call_json(
            session, method, url, timeout, json, data, headers, accept_statuses, secrets
        )
    except ProviderError as exc:
        exc.message = scrub_text(exc.message, secrets)
        exc.args = (exc.message,)
        raise


async def _call_json(
    session: HttpClient,
    method: str,
    url: str,
    timeout: float,
    json: Any,
    data: bytes | aiohttp.FormData | None,
    headers: Mapping[str, str] | None,
    accept_statuses: Iterable[int],
    secrets: Iterable[str],
) -> tuple[int, Any]:
    body: bytes | None
    if json is not None:
        body, content_type = orjson.dumps(json), "application/json"
    elif isinstance(data, aiohttp.FormData):
        form = data()
        body, content_type = await form.as_bytes(), form.content_type
    else:
        body, content_type = data, ""
    send_headers = {"Content-Type": content_type, **(headers or {})} if content_type else headers
    try:
        answer = await session.request(
            method, url, body=body, headers=send_headers, timeout=timeout, limit=MAX_ANSWER_BYTES
        )
    except TimeoutError as expired:
        raise ProviderTimeout(f"no answer within {timeout:g}s") from without_frames(expired)
    except ConnectFailed as unreachable:
        raise ProviderUnavailable(str(unreachable)) from without_frames(unreachable)
    except BadAnswer as bad:
        raise ProviderBadAnswer(str(bad)) from without_frames(bad)
    except BodyTooLarge as too_large:
        raise ProviderBadAnswer(f"answer larger than {too_large.limit} bytes") from too_large
    except ValueError as unsendable:  # a URL or header from this backend's config cannot be sent
        raise ProviderMisconfigured(f"cannot send the request: {unsendable}") from unsendable
    except OSError as lost:  # ConnectionLost, or the resolver's failure
        raise ProviderUnavailable(f"connection lost: {lost}") from without_frames(lost)

    status, raw = answer.status, answer.body
    parsed: Any = None
    decode_error: str | None = None
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as unreadable:
        decode_error = f"answer is not JSON ({unreadable.msg})"

    if status in set(accept_statuses) or 200 <= status < 300:
        if decode_error is not None:
            raise ProviderBadAnswer(decode_error)
        return status, parsed
    detail = scrub_text(_error_text(parsed, raw), secrets)
    retry_after = _retry_after(answer.headers.get("retry-after"), parsed)
    raise status_error(status, detail, retry_after)


def status_error(status: int, detail: str, retry_after: float | None = None) -> ProviderError:
    """The provider error for a non-success HTTP status."""
    text = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if status == 429:
        return ProviderRateLimited(text, retry_after=retry_after, status=status)
    if status in (401, 403):
        return ProviderAuthFailed(text, status=status)
    if status >= 500:
        return ProviderServerError(text, retry_after=retry_after, status=status)
    if 300 <= status < 400:
        return ProviderServerError(f"unexpected redirect ({text})", status=status)
    return ProviderRejected(text, status=status)


def _error_text(parsed: Any, raw: bytes) -> str:
    if isinstance(parsed, dict):
        for key in ("message", "messege", "error", "detail", "error_message"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                return value[:300]
            if isinstance(value, dict | list):
                return orjson.dumps(value).decode()[:300]
    return raw[:200].decode("utf-8", "replace")


def _retry_after(header: str | None, parsed: Any) -> float | None:
    candidates: list[Any] = [header]
    if isinstance(parsed, dict):
        candidates += [parsed.get("retry_after"), parsed.get("retryAfter")]
    for value in candidates:
        try:
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            continue
    return None
