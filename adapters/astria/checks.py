"""The checks Astria's create-prompt endpoint makes, as its documentation states them.

Fields arrive typed (JSON) or as strings (multipart `prompt[field]`), so values are read
leniently, the way a Rails app casts form fields. Stricter than Astria in one way: fields
the documentation does not list are refused, so adapter typos surface in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.astria import tables

KNOWN_FIELDS = frozenset(
    {
        "text", "negative_prompt", "callback", "num_images", "seed", "super_resolution",
        "inpaint_faces", "hires_fix", "face_correct", "face_swap", "cfg_scale", "steps",
        "use_lpw", "aspect_ratio", "w", "h", "scheduler", "backend_version", "style",
        "color_grading", "film_grain", "controlnet", "denoising_strength",
        "controlnet_conditioning_scale", "controlnet_txt2img", "input_image",
        "input_image_url", "mask_image", "mask_image_url",
    }
)  # fmt: skip
BOOLEAN_FIELDS = (
    "super_resolution", "inpaint_faces", "hires_fix", "face_correct", "face_swap", "use_lpw",
    "film_grain", "controlnet_txt2img",
)  # fmt: skip
_TRUE, _FALSE = ("true", "1", "t", "on"), ("false", "0", "f", "off", "")


class Invalid(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


def boolean(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise Invalid(name, "must be true or false")


def number(fields: dict[str, Any], name: str, *, whole: bool = False) -> float | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(name, "is not a number")
    try:
        parsed = float(value)
    except ValueError:
        raise Invalid(name, "is not a number") from None
    if whole and not parsed.is_integer():
        raise Invalid(name, "must be an integer")
    return parsed


def _in_range(fields: dict[str, Any], name: str, bounds: tuple[float, float], whole: bool) -> None:
    value = number(fields, name, whole=whole)
    low, high = bounds
    if value is not None and not low <= value <= high:
        raise Invalid(name, f"must be in the range {low:g}-{high:g}")


def one_of(fields: dict[str, Any], name: str, allowed: tuple[str, ...], nullable: bool) -> None:
    value = fields.get(name)
    if value is None and nullable:
        return
    if value not in allowed:
        raise Invalid(name, f"must be one of: {', '.join(allowed)}")


def url_field(fields: dict[str, Any], name: str) -> None:
    value = fields.get(name)
    if value in (None, ""):
        return
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise Invalid(name, "must be an http(s) URL")


def present(fields: dict[str, Any], name: str) -> bool:
    return fields.get(name) not in (None, "", b"")


def validate(fields: dict[str, Any]) -> Invalid | None:
    """Astria's own checks of one prompt's fields; file fields hold the uploaded bytes."""
    return first_problem(_validate, fields)


def first_problem(
    check: Callable[[dict[str, Any]], None], fields: dict[str, Any]
) -> Invalid | None:
    try:
        check(fields)
    except Invalid as exc:
        return exc
    return None


def _validate(fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - KNOWN_FIELDS)
    if unknown:
        raise Invalid(unknown[0], "is not a prompt attribute")
    text = fields.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Invalid("text", "can't be blank")
    for name in ("negative_prompt",):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise Invalid(name, "must be text")
    _in_range(fields, "num_images", tables.NUM_IMAGES, True)
    _in_range(fields, "seed", tables.SEED, True)
    _in_range(fields, "cfg_scale", tables.CFG_SCALE, False)
    _in_range(fields, "steps", tables.STEPS, True)
    _in_range(fields, "denoising_strength", tables.DENOISING_STRENGTH, False)
    _in_range(fields, "controlnet_conditioning_scale", tables.CONDITIONING_SCALE, False)
    for side in ("w", "h"):
        value = number(fields, side, whole=True)
        if value is not None and (value <= 0 or value % tables.SIDE_MULTIPLE):
            raise Invalid(side, f"must be a positive multiple of {tables.SIDE_MULTIPLE}")
    flags = {name: boolean(fields, name) for name in BOOLEAN_FIELDS}
    for name in tables.NEEDS_SUPER_RESOLUTION:
        if flags[name] and not boolean(fields, "super_resolution"):
            raise Invalid(name, "requires super_resolution")
    one_of(fields, "aspect_ratio", tuple(tables.ASPECT_RATIOS.values()), True)
    one_of(fields, "scheduler", tables.SCHEDULER_NAMES, True)
    one_of(fields, "style", tuple(tables.STYLES.values()), True)
    one_of(fields, "color_grading", tuple(tables.COLOR_GRADINGS.values()), True)
    one_of(fields, "controlnet", tuple(tables.CONTROLNETS.values()), True)
    if fields.get("backend_version") is not None:
        version = number(fields, "backend_version", whole=True)
        if version not in tables.BACKEND_VERSIONS:
            raise Invalid("backend_version", "must be null or 1")
    for name in ("callback", "input_image_url", "mask_image_url"):
        url_field(fields, name)
    _images(fields)


def _images(fields: dict[str, Any]) -> None:
    for name in tables.FILE_FIELDS:
        value = fields.get(name)
        if value is not None and not (isinstance(value, bytes) and value):
            raise Invalid(name, "must be a multipart file upload")
    has_input = present(fields, "input_image") or present(fields, "input_image_url")
    if present(fields, "controlnet") and not has_input:
        raise Invalid("controlnet", "requires input_image or input_image_url")
    if present(fields, "mask_image") and not present(fields, "input_image"):
        raise Invalid("mask_image", "is used in conjunction with input_image")
    if present(fields, "mask_image_url") and not present(fields, "input_image_url"):
        raise Invalid("mask_image_url", "is used in conjunction with input_image_url")
    if present(fields, "input_image") and present(fields, "input_image_url"):
        raise Invalid("input_image", "give input_image or input_image_url, not both")
