"""Reading Astria's prompt object (create answer, poll answer, callback) into a result.

The prompt object has `id`, `tune_id`, `text`, ..., `started_training_at`, `trained_at`,
`url` and `images`; callbacks wrap it as `{"prompt": {...}}`. The seeds document no failure
field; Astria's own tooling waits for a prompt "until rendered (or user_error)", so a
non-empty `user_error` string is read as a failed generation. A prompt that has
`trained_at` but no images and no `user_error` finished without output: also a failure.

The provider id is `<tune_id>/<prompt_id>`, because a prompt is only addressable under its
tune (`GET /tunes/{tune_id}/prompts/{id}`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from adapters.base import ProviderResult, ResultState
from adapters.errors import ProviderBadAnswer

_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_URL_IDS = re.compile(r"/tunes/([0-9]+)/prompts/([0-9]+)")


def unwrap(data: Any, wrapper: str = "prompt") -> dict[str, Any]:
    """The prompt (or tune) object, whether bare or wrapped as `{"prompt": {...}}`."""
    if not isinstance(data, dict):
        raise ProviderBadAnswer(f"expected a JSON object, got {type(data).__name__}")
    if wrapper in data and "id" not in data:
        inner = data[wrapper]
        if not isinstance(inner, dict):
            raise ProviderBadAnswer(f"'{wrapper}' is not an object ({type(inner).__name__})")
        return inner
    return data


def _identifier(data: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ProviderBadAnswer(f"prompt object has no '{name}'")
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProviderBadAnswer(f"'{name}' has the wrong type ({type(value).__name__})")
    text = str(value).strip()
    if not _ID.match(text):
        raise ProviderBadAnswer(f"'{name}' is not an id: {text[:40]!r}")
    return text


def _images(data: dict[str, Any]) -> tuple[str, ...]:
    images = data.get("images")
    if images is None:
        return ()
    if not isinstance(images, list):
        raise ProviderBadAnswer(f"'images' is not a list ({type(images).__name__})")
    urls = []
    for item in images:
        # Some answers carry image objects rather than bare URLs.
        url = item.get("url") if isinstance(item, dict) else item
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ProviderBadAnswer("'images' holds something other than image URLs")
        urls.append(url)
    return tuple(urls)


def _timestamp(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and value):
        return value
    raise ProviderBadAnswer(f"'{name}' is not a timestamp")


def _epoch(timestamp: str | None) -> float | None:
    """`trained_at` as epoch seconds; None when absent or not ISO 8601 (it is only a metric)."""
    if timestamp is None:
        return None
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _user_error(data: dict[str, Any]) -> str | None:
    value = data.get("user_error")
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value[:500]
    raise ProviderBadAnswer(f"'user_error' has the wrong type ({type(value).__name__})")


def provider_id(data: dict[str, Any], tune_id: str | None = None) -> str:
    """`<tune_id>/<id>`; the tune comes from the object, its url, or the caller."""
    prompt_id = _identifier(data, "id", required=True)
    tune = _identifier(data, "tune_id", required=False)
    if tune is None:
        url = data.get("url")
        match = _URL_IDS.search(url) if isinstance(url, str) else None
        tune = match.group(1) if match else tune_id
    return f"{tune}/{prompt_id}" if tune else str(prompt_id)


def read_prompt(data: Any, tune_id: str | None = None) -> ProviderResult:
    """Any Astria prompt object; `tune_id` fills in when the object does not say."""
    prompt = unwrap(data)
    pid = provider_id(prompt, tune_id)
    images = _images(prompt)
    error = _user_error(prompt)
    started = _timestamp(prompt, "started_training_at")
    finished = _timestamp(prompt, "trained_at")
    done = _epoch(finished)
    if images:
        return ProviderResult(
            ResultState.SUCCEEDED, provider_id=pid, images=images, finished_at=done
        )
    if error is not None:
        return ProviderResult(
            ResultState.FAILED,
            provider_id=pid,
            error_code="provider_error",
            error_message=error,
            finished_at=done,
        )
    if finished is not None:
        return ProviderResult(
            ResultState.FAILED,
            provider_id=pid,
            error_code="provider_error",
            error_message="the prompt finished without images",
            finished_at=done,
        )
    state = ResultState.PROCESSING if started is not None else ResultState.PENDING
    return ProviderResult(state, provider_id=pid)


def split_provider_id(value: str) -> tuple[str, str]:
    """(tune_id, prompt_id) from a provider id made by `provider_id`."""
    tune, _, prompt = value.partition("/")
    if not tune or not prompt or not _ID.match(tune) or not _ID.match(prompt):
        raise ProviderBadAnswer(f"provider id {value!r} does not name a tune and a prompt")
    return tune, prompt
