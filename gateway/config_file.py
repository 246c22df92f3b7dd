"""Reading a config file: YAML, `${ENV}` and `${ENV:-default}` expansion, readable errors."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.config import Settings

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config could not be loaded; `problems` say where and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def expand_env(value: Any, environ: Mapping[str, str], path: str, missing: list[str]) -> Any:
    """Replace `${NAME}` and `${NAME:-default}` in every string of a loaded YAML tree."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            missing.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, environ, _join(path, str(k)), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ, f"{path}[{i}]", missing) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_config(text: str, environ: Mapping[str, str] | None = None) -> Settings:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(["the config must be a YAML mapping at the top level"])
    missing: list[str] = []
    expanded = expand_env(raw, os.environ if environ is None else environ, "", missing)
    if missing:
        raise ConfigError(missing)
    try:
        return Settings.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, expanded)) from None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}"]) from None
    return parse_config(text, environ)


def describe_errors(exc: ValidationError, raw: Any) -> list[str]:
    """Readable `where: what` lines, naming list entries by their `name` when they have one."""
    lines = []
    for error in exc.errors(include_url=False):
        where = _location(error["loc"], raw)
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return lines


def _location(loc: tuple[int | str, ...], raw: Any) -> str:
    parts: list[str] = []
    node = raw
    for step in loc:
        if isinstance(step, int):
            named = (
                node[step].get("name")
                if isinstance(node, list) and step < len(node) and isinstance(node[step], dict)
                else None
            )
            parts[-1:] = [
                f"{parts[-1] if parts else ''}[{step}]" + (f" ({named})" if named else "")
            ]
        else:
            parts.append(str(step))
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts)
