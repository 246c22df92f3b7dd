"""Reading ComfyUI's answers (`/prompt`, `/history/{id}`, `/queue`) into `ProviderResult`s.

Anything that is not shaped like ComfyUI's answers is a `ProviderBadAnswer` that says what
was wrong; nothing here guesses at a result it cannot see.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from adapters.base import ProviderResult, ResultState
from adapters.errors import (
    ProviderBadAnswer,
    ProviderError,
    ProviderMisconfigured,
    ProviderRejected,
)

MAX_MESSAGE = 500
# Inputs that name a file in the server's models folders.
MODEL_INPUTS = frozenset({"ckpt_name", "lora_name", "control_net_name"})


def read_submit(data: Any) -> str:
    """A `POST /prompt` success answer → the prompt_id."""
    if not isinstance(data, dict):
        raise ProviderBadAnswer(f"prompt answer is not a JSON object ({type(data).__name__})")
    prompt_id = data.get("prompt_id")
    if not isinstance(prompt_id, str) or not prompt_id.strip():
        raise ProviderBadAnswer("prompt answer has no 'prompt_id' string")
    number = data.get("number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)):
        raise ProviderBadAnswer(f"'number' has the wrong type ({type(number).__name__})")
    node_errors = data.get("node_errors")
    if node_errors is not None and not isinstance(node_errors, dict | list):
        raise ProviderBadAnswer(f"'node_errors' has the wrong type ({type(node_errors).__name__})")
    return prompt_id


def rejection(data: Any) -> ProviderError:
    """A `POST /prompt` 400: the graph failed validation; say which node and why."""
    if not isinstance(data, dict) or "error" not in data:
        raise ProviderBadAnswer("400 answer to a prompt without an 'error'")
    error = data["error"]
    if isinstance(error, str):
        headline = error
    elif isinstance(error, dict):
        headline = _text(error.get("message")) or _text(error.get("type")) or "invalid prompt"
        details = _text(error.get("details"))
        node_errors = data.get("node_errors")
        if not node_errors and details:
            headline = f"{headline}: {details}"
    else:
        raise ProviderBadAnswer(f"'error' has the wrong type ({type(error).__name__})")
    problems = _node_problems(data.get("node_errors"))
    text = "; ".join([headline, *(p for p, _ in problems)])[:MAX_MESSAGE]
    if problems and all(missing for _, missing in problems):
        return ProviderMisconfigured(text)
    return ProviderRejected(text)


def _node_problems(node_errors: Any) -> list[tuple[str, bool]]:
    """(`<class> (node <id>): <message>: <details>`, is it a missing model file) per error."""
    if node_errors is None or node_errors == []:
        return []
    if not isinstance(node_errors, dict):
        raise ProviderBadAnswer(f"'node_errors' has the wrong type ({type(node_errors).__name__})")
    problems = []
    for node_id, entry in node_errors.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("errors", []), list):
            raise ProviderBadAnswer(f"node_errors[{node_id!r}] is not a node error object")
        where = f"{_text(entry.get('class_type')) or 'node'} (node {node_id})"
        for error in entry.get("errors", []):
            if not isinstance(error, dict):
                raise ProviderBadAnswer(f"node_errors[{node_id!r}] has a malformed error")
            message = _text(error.get("message")) or _text(error.get("type")) or "invalid"
            details = _text(error.get("details"))
            problems.append(
                (f"{where}: {message}" + (f": {details}" if details else ""), _missing(error))
            )
    return problems


def _missing(error: dict[str, Any]) -> bool:
    if error.get("type") != "value_not_in_list":
        return False
    extra = error.get("extra_info")
    name = extra.get("input_name") if isinstance(extra, dict) else None
    if not isinstance(name, str):
        # Older servers send no extra_info; the details start with "<input>: ...".
        name = (_text(error.get("details")) or "").split(":", 1)[0].strip()
    return name in MODEL_INPUTS


def read_history(data: Any, prompt_id: str, base_url: str) -> ProviderResult | None:
    """A `GET /history/{id}` answer; None while the prompt is not in the history yet."""
    if not isinstance(data, dict):
        raise ProviderBadAnswer(f"history answer is not a JSON object ({type(data).__name__})")
    entry = data.get(prompt_id)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ProviderBadAnswer(f"history entry is not an object ({type(entry).__name__})")
    status = entry.get("status")
    if status is None:
        # Servers from before `status` existed: a run that wrote no image failed.
        images = _images(entry.get("outputs"), base_url)
        if not images:
            return _failed(prompt_id, "generation produced no images")
        return ProviderResult(ResultState.SUCCEEDED, provider_id=prompt_id, images=images)
    if not isinstance(status, dict):
        raise ProviderBadAnswer("history 'status' is not an object")
    status_str, completed = status.get("status_str"), status.get("completed")
    messages = status.get("messages", [])
    if not isinstance(messages, list):
        raise ProviderBadAnswer("history 'status.messages' is not a list")
    if status_str not in ("success", "error") or not isinstance(completed, bool):
        raise ProviderBadAnswer(f"unknown history status {status_str!r}")
    if status_str == "error":
        return _failed(prompt_id, _failure(messages))
    if not completed:
        raise ProviderBadAnswer("history status is success but not completed")
    images = _images(entry.get("outputs"), base_url)
    if not images:
        raise ProviderBadAnswer("history says success but lists no images")
    return ProviderResult(
        ResultState.SUCCEEDED, provider_id=prompt_id, images=images, service=_ran(messages)
    )


def _ran(messages: list[Any]) -> tuple[float, float] | None:
    """When the prompt executed, from its execution_start and execution_success messages
    (timestamps in epoch ms); None when either is missing or unreadable."""
    times: dict[str, float] = {}
    for item in messages:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict):
            stamp = item[1].get("timestamp")
            if isinstance(stamp, int | float) and not isinstance(stamp, bool):
                times[str(item[0])] = stamp / 1000
    start, end = times.get("execution_start"), times.get("execution_success")
    return (start, end) if start is not None and end is not None and end >= start else None


def _failed(prompt_id: str, message: str) -> ProviderResult:
    return ProviderResult(
        ResultState.FAILED,
        provider_id=prompt_id,
        error_code="provider_error",
        error_message=message,
    )


def _images(outputs: Any, base_url: str) -> tuple[str, ...]:
    if not isinstance(outputs, dict):
        raise ProviderBadAnswer("history entry has no 'outputs' object")
    urls = []
    for node_id in sorted(outputs, key=_node_order):
        output = outputs[node_id]
        if not isinstance(output, dict):
            raise ProviderBadAnswer(f"outputs[{node_id!r}] is not an object")
        images = output.get("images", [])
        if not isinstance(images, list):
            raise ProviderBadAnswer(f"outputs[{node_id!r}].images is not a list")
        for image in images:
            urls.append(_view_url(image, base_url))
    return tuple(urls)


def _view_url(image: Any, base_url: str) -> str:
    if not isinstance(image, dict):
        raise ProviderBadAnswer("an output image is not an object")
    # filename last, so the URL ends in the file's extension for clients that look at it.
    fields = {k: image.get(k, "" if k == "subfolder" else None) for k in ("subfolder", "type")}
    fields["filename"] = image.get("filename")
    if not all(isinstance(v, str) for v in fields.values()) or not fields["filename"]:
        raise ProviderBadAnswer("an output image lacks filename, subfolder or type strings")
    return f"{base_url}/view?{urlencode(fields, quote_via=quote, safe='')}"


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def _failure(messages: list[Any]) -> str:
    for item in messages:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)):
            continue
        kind, info = item
        if kind == "execution_error":
            where = f"{_text(info.get('node_type')) or 'node'} (node {info.get('node_id')})"
            kind_text = _text(info.get("exception_type")) or "error"
            message = _text(info.get("exception_message")) or "no message"
            return f"{where}: {kind_text}: {message}"[:MAX_MESSAGE]
        if kind == "execution_interrupted":
            return "generation was interrupted on the server"
    return "generation failed (no error message in the history)"


def queue_state(data: Any, prompt_id: str) -> ResultState | None:
    """Where a prompt stands in `GET /queue`; None when it is in neither list."""
    if not isinstance(data, dict):
        raise ProviderBadAnswer(f"queue answer is not a JSON object ({type(data).__name__})")
    for key, state in (
        ("queue_running", ResultState.PROCESSING),
        ("queue_pending", ResultState.PENDING),
    ):
        items = data.get(key)
        if not isinstance(items, list):
            raise ProviderBadAnswer(f"queue answer has no '{key}' list")
        for item in items:
            # Each item is [number, prompt_id, prompt, extra_data, outputs_to_execute, ...].
            if not isinstance(item, list) or len(item) < 2:
                raise ProviderBadAnswer(f"a '{key}' item is not a queue entry")
            if item[1] == prompt_id:
                return state
    return None


def queue_remaining(data: Any) -> int:
    """`GET /prompt` → exec_info.queue_remaining (running plus waiting prompts)."""
    info = data.get("exec_info") if isinstance(data, dict) else None
    remaining = info.get("queue_remaining") if isinstance(info, dict) else None
    if isinstance(remaining, bool) or not isinstance(remaining, int) or remaining < 0:
        raise ProviderBadAnswer("prompt info has no exec_info.queue_remaining count")
    return remaining


def _text(value: Any) -> str | None:
    return value[:MAX_MESSAGE] if isinstance(value, str) and value else None
