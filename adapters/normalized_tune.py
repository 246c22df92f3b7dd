"""The normalized fine-tune request: the body of `POST /v1/tunes`.

Field names follow PRODUCT.md ("Fine-tunes"); values and enums follow Astria's `POST /tunes`
(seeds/002), the one provider that trains today. Limits the seed leaves open are the
gateway's own and documented in the README: 1–50 images (a config may ask for fewer),
`steps` 1–10000, a `token` of 1–16 lowercase letters or digits.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from adapters.normalized import (
    INTEGRAL,
    MAX_URL_LENGTH,
    BackendRef,
    ImageRef,
    Name,
    Strict,
    check_metadata,
    check_webhook_url,
)

MAX_IMAGES = 50
STEPS = (1, 10_000)
MAX_CHARACTERISTICS = 20
# Also the OpenAPI document's patterns (gateway/api/openapi_tunes.py); matched whole.
CLASS_WORD_PATTERN = r"^[A-Za-z][A-Za-z _-]{0,39}$"
TOKEN_PATTERN = r"^[a-z0-9]{1,16}$"  # noqa: S105 - a pattern, not a secret
CHARACTERISTIC_PATTERN = r"^[a-z_][a-z0-9_]{0,63}$"
_CLASS_WORD = re.compile(CLASS_WORD_PATTERN)
_TOKEN = re.compile(TOKEN_PATTERN)
_CHARACTERISTIC = re.compile(CHARACTERISTIC_PATTERN)


class Branch(StrEnum):
    SD15 = "sd15"
    SDXL1 = "sdxl1"
    FAST = "fast"  # Astria's mock branch for testing: trains in moments, bills nothing


class ModelType(StrEnum):
    LORA = "lora"
    PTI = "pti"
    FACEID = "faceid"
    CHECKPOINT = "checkpoint"  # Astria's `null`: a full checkpoint


class Preset(StrEnum):
    FLUX_LORA_FOCUS = "flux-lora-focus"
    FLUX_LORA_PORTRAIT = "flux-lora-portrait"
    FLUX_LORA_FAST = "flux-lora-fast"


def _class_word(value: str) -> str:
    if not _CLASS_WORD.fullmatch(value):
        raise ValueError("a class word of letters (e.g. man, woman, cat, style), at most 40")
    return value


def _token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError("1 to 16 lowercase letters or digits, e.g. ohwx or sks")
    return value


class TuneRequest(Strict):
    """Body of `POST /v1/tunes`."""

    name: Annotated[str, AfterValidator(_class_word)]
    title: str | None = Field(default=None, min_length=1, max_length=255)
    images: list[ImageRef] = Field(min_length=1, max_length=MAX_IMAGES)
    base_model: Name | None = None
    branch: Branch | None = None
    model_type: ModelType | None = None
    preset: Preset | None = None
    token: Annotated[str, AfterValidator(_token)] | None = None
    face_crop: bool | None = None
    training_face_correct: bool | None = None
    steps: Annotated[int, Field(ge=STEPS[0], le=STEPS[1]), INTEGRAL] | None = None
    characteristics: dict[str, Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=MAX_CHARACTERISTICS
    )
    auto_extend: bool | None = None
    webhook_url: Annotated[str | None, AfterValidator(check_webhook_url)] = Field(
        default=None, max_length=MAX_URL_LENGTH
    )
    metadata: Annotated[dict[str, Any] | None, AfterValidator(check_metadata)] = None
    backends: list[BackendRef] | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("characteristics")
    @classmethod
    def _characteristic_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not _CHARACTERISTIC.fullmatch(key):
                raise ValueError(f"{key!r}: names are lowercase letters, digits and _")
        return value

    def urls(self) -> dict[str, str | None]:
        """Every URL or `data:` URI in the request, by field name."""
        found: dict[str, str | None] = {"webhook_url": self.webhook_url}
        found.update({f"images[{n}]": image for n, image in enumerate(self.images)})
        return found

    def data_uri_bytes(self) -> int:
        """How many characters of the request are `data:` images."""
        return sum(len(v) for v in self.images if v.startswith("data:"))
