"""structlog configured once: JSON lines, contextvars-bound ids, secrets redacted."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

from observability.redaction import redact_processor

# Valid unescaped inside JSON strings, yet line breaks to str.splitlines() and to some log
# tools: escaped, so a hostile value cannot start a forged line.
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def _json_line(obj: object, **_: object) -> str:
    text = orjson.dumps(obj).decode()
    if not text.isascii():
        for raw, escaped in _LINE_BREAKS.items():
            text = text.replace(raw, escaped)
    return text


_level = logging.INFO


def log_sampled(logger: Any, sampled: bool, event: str, **fields: Any) -> None:
    """A hot path's per-item line: at info when `sampled`, else at debug, and not built at
    all when debug lines are not written (a module-level logger is a lazy proxy that binds
    on every call, only for the level filter to drop the line)."""
    if sampled:
        logger.info(event, **fields)
    elif _level <= logging.DEBUG:
        logger.debug(event, **fields)


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    """Configure structlog and the stdlib root logger; safe to call more than once."""
    global _level
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    _level = numeric
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # aiohttp's access log and library warnings go through the stdlib at the same level.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
