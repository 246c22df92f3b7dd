"""Keep secrets out of log lines: a structlog processor and a text scrubber."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

REDACTED = "***"

# Keys whose values are secrets wherever they appear in an event.
_SECRET_KEYS = re.compile(
    r"(authorization|api[_-]?key|^key$|secret|password|token|whsec|signature)", re.IGNORECASE
)
# Secret-looking fragments inside free text.
_SECRET_TEXT = (
    re.compile(r"whsec_[A-Za-z0-9+/=_-]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(\b(?:token|key|api_key|apikey|secret|password)=)[^&\s]+"),
)


def scrub_text(text: str, known: Iterable[str] = ()) -> str:
    """Remove secret-looking fragments and any of the `known` secret values from `text`."""
    for secret in known:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_TEXT:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEYS.search(k) else _scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_processor(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named fields and secret-looking text."""
    for key in list(event):
        if _SECRET_KEYS.search(key):
            event[key] = REDACTED
        else:
            event[key] = _scrub(event[key])
    return event
