"""The normalized generation request: the one format every tenant sends (PRODUCT.md)."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

MAX_METADATA_BYTES = 16 * 1024
MAX_URL_LENGTH = 2048


class Scheduler(StrEnum):
    EULER = "euler"
    EULER_A = "euler_a"
    HEUN = "heun"
    LMS = "lms"
    DPM2 = "dpm2"
    DPM2_A = "dpm2_a"
    DPMPP_2M = "dpmpp_2m"
    DPMPP_2M_KARRAS = "dpmpp_2m_karras"
    DPMPP_SDE = "dpmpp_sde"
    DPMPP_SDE_KARRAS = "dpmpp_sde_karras"
    DPMPP_2M_SDE = "dpmpp_2m_sde"
    DDIM = "ddim"
    DDPM = "ddpm"
    PNDM = "pndm"
    UNIPC = "unipc"
    DEIS = "deis"
    LCM = "lcm"
    TCD = "tcd"


class AspectRatio(StrEnum):
    R1_1 = "1:1"
    R16_9 = "16:9"
    R9_16 = "9:16"
    R21_9 = "21:9"
    R9_21 = "9:21"
    R3_2 = "3:2"
    R2_3 = "2:3"
    R5_4 = "5:4"
    R4_5 = "4:5"
    R4_3 = "4:3"
    R3_4 = "3:4"

    @property
    def ratio(self) -> float:
        w, h = self.value.split(":")
        return int(w) / int(h)


class ControlNetType(StrEnum):
    """Astria's controlnet list (seeds/001, the newer page)."""

    COMPOSITION = "composition"
    REFERENCE = "reference"
    SEGROOM = "segroom"
    IPADAPTER = "ipadapter"
    LINEART = "lineart"
    CANNY = "canny"
    DEPTH = "depth"
    MLSD = "mlsd"
    HED = "hed"
    POSE = "pose"
    TILE = "tile"
    QR = "qr"


class Style(StrEnum):
    """Astria's style enum (seeds/001)."""

    CINEMATIC = "Cinematic"
    ANIMATED = "Animated"
    DIGITAL_ART = "Digital Art"
    PHOTOGRAPHIC = "Photographic"
    FANTASY_ART = "Fantasy art"
    NEONPUNK = "Neonpunk"
    ENHANCE = "Enhance"
    COMIC_BOOK = "Comic book"
    LOWPOLY = "Lowpoly"
    LINE_ART = "Line art"


class ColorGrading(StrEnum):
    FILM_VELVIA = "Film Velvia"
    FILM_PORTRA = "Film Portra"
    EKTAR = "Ektar"


# The URL and `data:` URI forms the API accepts. The same patterns go into the OpenAPI
# document (gateway/api/openapi.py), so they stay within what both Python's `re` and
# ECMA-262 (JSON Schema) read the same way; matched with fullmatch, so `$` means the end.
DATA_URI_PATTERN = r"^data:image/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=\r\n]+$"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(\[[0-9A-Fa-f:.]+\]|{_LABEL}(\.{_LABEL})*\.?)"
_PORT = r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
_REST = r"([/?#][^\s\\\x00-\x1f\x7f]*)?"


def url_pattern(https_only: bool) -> str:
    """An absolute http(s) URL with a plain host (name or bracketed IPv6), no userinfo."""
    return rf"^{'https' if https_only else 'https?'}://{_HOST}{_PORT}{_REST}$"


_DATA_URI = re.compile(DATA_URI_PATTERN)
_HTTP_URL = re.compile(url_pattern(https_only=False))


def _image_ref(value: str) -> str:
    if value.startswith("data:"):
        if not _DATA_URI.fullmatch(value):
            raise ValueError("data URI must look like data:image/<type>;base64,<data>")
        return value
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"URL longer than {MAX_URL_LENGTH} characters")
    if not _HTTP_URL.fullmatch(value):
        raise ValueError(
            "must be an http(s) URL (host, optional port, no user@) "
            "or a data:image/<type>;base64, URI"
        )
    return value


ImageRef = Annotated[str, AfterValidator(_image_ref)]


def check_webhook_url(value: str | None, info: ValidationInfo) -> str | None:
    """A callback URL: absolute https, or http where the validation context allows it."""
    if value is None:
        return None
    allow_http = bool(info.context and info.context.get("allow_http"))
    if not _HTTP_URL.fullmatch(value):
        raise ValueError("must be an absolute https URL (host, optional port, no user@)")
    if not value.startswith("https") and not allow_http:
        raise ValueError("must use https (plain http is not allowed by this gateway)")
    return value


def dump_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """orjson, or the standard library for what orjson refuses (integers past 64 bits, which
    JSON allows and tenants' metadata may carry)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:
        text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
        return text.encode()


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(dump_json(value)) > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


Name = Annotated[str, Field(min_length=1, max_length=200)]

# Gateway queue classes, highest first; adapters ignore the field.
Priority = Literal["interactive", "batch"]
PRIORITY_CLASSES: tuple[Priority, ...] = ("interactive", "batch")


def _integral(value: Any) -> Any:
    """JSON Schema counts 512.0 as an integer; so does the API (the body is read strictly)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Placed after a field's constraints (Annotated[int, Field(...), INTEGRAL]), so that the
# JSON schema keeps them as minimum/maximum/multipleOf.
INTEGRAL = BeforeValidator(_integral)
# A backend name, tag or glob over names, as a request's `backends` gives them.
BACKEND_REF_PATTERN = r"^[A-Za-z0-9*?][A-Za-z0-9_.*?-]{0,62}$"
BackendRef = Annotated[str, Field(pattern=BACKEND_REF_PATTERN)]


class Strict(BaseModel):
    """Reject unknown fields and wrong types instead of guessing."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class ControlNet(Strict):
    type: ControlNetType
    image: ImageRef
    conditioning_scale: float = Field(default=1.0, ge=0, le=1)
    txt2img: bool = False


class Lora(Strict):
    name: Name
    strength: float = Field(default=1.0, ge=0.1, le=1)


class Enhance(Strict):
    super_resolution: bool = False
    face_correct: bool = False
    hires_fix: bool = False
    inpaint_faces: bool = False
    face_swap: bool = False
    film_grain: bool = False


class GenerationRequest(Strict):
    """Body of `POST /v1/generations`."""

    prompt: str = Field(min_length=1, max_length=10_000)
    negative_prompt: str | None = Field(default=None, max_length=10_000)
    model: Name = Field(
        default="default",
        description="Logical model name; each backend's `models` map turns it into its own id.",
    )
    num_images: Annotated[int, Field(ge=1, le=8), INTEGRAL] = 1
    width: Annotated[int, Field(ge=64, le=2048, multiple_of=8), INTEGRAL] | None = None
    height: Annotated[int, Field(ge=64, le=2048, multiple_of=8), INTEGRAL] | None = None
    aspect_ratio: AspectRatio | None = None
    steps: Annotated[int, Field(ge=1, le=100), INTEGRAL] | None = None
    guidance_scale: float | None = Field(default=None, ge=0, le=30)
    seed: Annotated[int, Field(ge=0, le=2**32 - 1), INTEGRAL] | None = None
    scheduler: Scheduler | None = None
    init_image: ImageRef | None = None
    mask_image: ImageRef | None = None
    strength: float | None = Field(default=None, ge=0, le=1)
    controlnet: ControlNet | None = None
    loras: list[Lora] | None = Field(default=None, max_length=8)
    enhance: Enhance | None = None
    style: Style | None = None
    color_grading: ColorGrading | None = None
    safety_checker: bool | None = None
    webhook_url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    metadata: dict[str, Any] | None = None
    strict: bool = False
    backends: list[BackendRef] | None = Field(default=None, min_length=1, max_length=64)
    priority: Priority | None = Field(
        default=None,
        description="Gateway queue class; the tenant's default when absent, never above its max.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_webhook_url(value, info)

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_metadata(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.width is None) != (self.height is None):
            missing = "height" if self.height is None else "width"
            raise _field_error(missing, "width and height must be given together")
        if self.width is not None and self.aspect_ratio is not None:
            raise _field_error("aspect_ratio", "give either width/height or aspect_ratio, not both")
        if self.mask_image is not None and self.init_image is None:
            raise _field_error("mask_image", "inpainting needs init_image as well")
        if self.strength is not None and self.init_image is None:
            raise _field_error("strength", "strength applies to img2img and needs init_image")
        return self

    # -- derived facts adapters and routing share ------------------------------------

    @property
    def kind(self) -> str:
        """The kind of work: txt2img, img2img or inpaint."""
        if self.mask_image is not None:
            return "inpaint"
        if self.init_image is not None:
            return "img2img"
        return "txt2img"

    def urls(self) -> dict[str, str | None]:
        """Every URL or `data:` URI in the request, by field name."""
        return {
            "webhook_url": self.webhook_url,
            "init_image": self.init_image,
            "mask_image": self.mask_image,
            "controlnet.image": self.controlnet.image if self.controlnet else None,
        }

    def data_uri_bytes(self) -> int:
        """How many characters of the request are `data:` images."""
        return sum(len(v) for v in self.urls().values() if v is not None and v.startswith("data:"))

    def size(self, default_long_side: int = 1024) -> tuple[int, int]:
        """Requested width and height; from aspect_ratio (long side given) when not explicit."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        ratio = (self.aspect_ratio or AspectRatio.R1_1).ratio
        if ratio >= 1:
            return default_long_side, _round8(default_long_side / ratio)
        return _round8(default_long_side * ratio), default_long_side


def _round8(value: float) -> int:
    return max(8, round(value / 8) * 8)


class FieldError(ValueError):
    """A model-level validation failure that names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field_error(field: str, message: str) -> FieldError:
    return FieldError(field, message)
