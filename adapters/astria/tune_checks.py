"""The checks Astria's `POST /tunes` makes (seeds/002), for the simulator.

Fields arrive as JSON `{"tune": {...}}` or as multipart `tune[field]`, `tune[images][]`
(files), `tune[image_urls][]` and `tune[characteristics][key]`. As for prompts, fields
the seed does not list are refused so that adapter typos surface in tests.
"""

from __future__ import annotations

from typing import Any

from adapters.astria.checks import Invalid, boolean, first_problem, number, one_of, url_field

KNOWN_FIELDS = frozenset(
    {
        "title", "name", "images", "image_urls", "callback", "branch", "steps", "token",
        "face_crop", "training_face_correct", "base_tune_id", "model_type", "auto_extend",
        "preset", "characteristics", "prompts_attributes",
    }
)  # fmt: skip
BRANCHES = ("sd15", "sdxl1", "fast")
MODEL_TYPES = ("lora", "pti", "faceid")
PRESETS = ("flux-lora-focus", "flux-lora-portrait", "flux-lora-fast")
BOOLEAN_FIELDS = ("face_crop", "training_face_correct", "auto_extend")


def read_form(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """Rails-style multipart keys into fields; files become bytes."""
    fields: dict[str, Any] = {}
    for key, value in items:
        if not (key.startswith("tune[") and key.endswith("]")):
            raise Invalid(key, "is not a tune[...] field")
        name, _, rest = key[len("tune[") : -1].partition("][")
        if key.endswith("[]"):
            name = key[len("tune[") : -len("][]")]
            fields.setdefault(name, []).append(value)
        elif rest:
            fields.setdefault(name, {})[rest] = value
        else:
            fields[name] = value
    return fields


def validate(fields: dict[str, Any]) -> Invalid | None:
    return first_problem(_validate, fields)


def _validate(fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - KNOWN_FIELDS)
    if unknown:
        raise Invalid(unknown[0], "is not a tune attribute")
    for name in ("title", "name"):
        if not isinstance(fields.get(name), str) or not fields[name].strip():
            raise Invalid(name, "can't be blank")
    files, urls = fields.get("images") or [], fields.get("image_urls") or []
    if not isinstance(files, list) or not isinstance(urls, list) or not files + urls:
        raise Invalid("images", "can't be blank")
    if any(not isinstance(f, bytes) or not f for f in files):
        raise Invalid("images", "must be multipart file uploads")
    for url in urls:
        url_field({"image_urls": url}, "image_urls")
    one_of(fields, "branch", BRANCHES, True)
    one_of(fields, "model_type", MODEL_TYPES, True)
    one_of(fields, "preset", PRESETS, True)
    steps = number(fields, "steps", whole=True)
    if steps is not None and steps <= 0:
        raise Invalid("steps", "must be greater than 0")
    base = fields.get("base_tune_id")
    if base is not None and not str(base).isdigit():
        raise Invalid("base_tune_id", "must be a tune id")
    token = fields.get("token")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise Invalid("token", "must be short text")
    characteristics = fields.get("characteristics")
    if characteristics is not None and not isinstance(characteristics, dict):
        raise Invalid("characteristics", "must be an object")
    for name in BOOLEAN_FIELDS:
        boolean(fields, name)
    url_field(fields, "callback")
