"""Reading Bodia's prompt objects (create answers and retrievals) into `ProviderResult`s.

A prompt object has no status field: it is finished when `images` is non-empty or
`error_message` is set. Bodia's types are loose (the create answer sends `cfg` and `seed` as
strings like "7.50", a retrieval sends numbers), so fields the gateway does not read are not
type-checked: a quirk there must not fail a finished job. What it does read (`id`, `images`,
`error_message`) must make sense, or the answer is a `ProviderBadAnswer`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from adapters.base import ProviderResult, ResultState
from adapters.errors import ProviderBadAnswer

MAX_MESSAGE = 500


def provider_id(finetune_id: str, prompt_id: str) -> str:
    """The id the gateway keeps: a retrieval needs both the fine-tune and the prompt."""
    # Quoting keeps the single "/" an unambiguous separator.
    return f"{quote(finetune_id, safe='')}/{quote(prompt_id, safe='')}"


def split_provider_id(value: str) -> tuple[str, str]:
    """(finetune_id, prompt_id) from a `provider_id`."""
    finetune, sep, prompt = value.partition("/")
    if not (sep and finetune and prompt) or "/" in prompt:
        raise ProviderBadAnswer(f"provider id {value!r} is not '<finetune>/<prompt>'")
    return unquote(finetune), unquote(prompt)


def read_created(data: Any, finetune_id: str) -> ProviderResult:
    """The answer to creating one prompt: an array holding exactly that prompt."""
    if not isinstance(data, list):
        raise ProviderBadAnswer(f"create answer is {_kind(data)}, not an array of prompts")
    if len(data) != 1:
        raise ProviderBadAnswer(f"create answer holds {len(data)} prompts; one was sent")
    # Freshly created: accepted, with nothing yet to say it is being worked on.
    return read_prompt(data[0], finetune_id, unfinished=ResultState.PENDING)


def read_prompt(
    data: Any,
    finetune_id: str,
    *,
    unfinished: ResultState = ResultState.PROCESSING,
    expected_id: str | None = None,
) -> ProviderResult:
    """One prompt object; `unfinished` is the state to report while it has no outcome."""
    if not isinstance(data, dict):
        raise ProviderBadAnswer(f"expected a prompt object, got {_kind(data)}")
    prompt_id = _prompt_id(data)
    if expected_id is not None and prompt_id != expected_id:
        raise ProviderBadAnswer(f"asked for prompt {expected_id!r}, got {prompt_id!r}")
    pid = provider_id(finetune_id, prompt_id)
    images = _images(data)
    error = _error_message(data)
    # Images win over an error message: whatever was delivered is worth keeping.
    if images:
        return ProviderResult(ResultState.SUCCEEDED, provider_id=pid, images=images)
    if error is not None:
        return ProviderResult(
            ResultState.FAILED, provider_id=pid, error_code="provider_error", error_message=error
        )
    return ProviderResult(unfinished, provider_id=pid)


def _prompt_id(data: dict[str, Any]) -> str:
    value = data.get("id")
    # The doc shows string ids; a serializer that turns a numeric one into a number is
    # still unambiguous.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ProviderBadAnswer(f"prompt object has no usable 'id' (got {_kind(value)})")


def _images(data: dict[str, Any]) -> tuple[str, ...]:
    if "images" not in data:
        raise ProviderBadAnswer("prompt object has no 'images'")
    value = data["images"]
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ProviderBadAnswer(f"'images' is {_kind(value)}, not a list of URLs")
    for item in value:
        if not (isinstance(item, str) and item.startswith(("https://", "http://"))):
            shown = repr(item[:80]) if isinstance(item, str) else _kind(item)
            raise ProviderBadAnswer(f"'images' holds {shown}, not an image URL")
    return tuple(value)


def _error_message(data: dict[str, Any]) -> str | None:
    value = data.get("error_message")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProviderBadAnswer(f"'error_message' is {_kind(value)}, not text")
    # An empty message is how some serializers write "no error".
    return value.strip()[:MAX_MESSAGE] or None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    return {dict: "an object", list: "an array", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )
