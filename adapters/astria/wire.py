"""How a prompt's fields travel: JSON `{"prompt": {...}}`, or multipart `prompt[field]`.

Astria takes images either as URLs (`input_image_url`, `mask_image_url`) or as binary
multipart parts (`input_image`, `mask_image`). The plan keeps a `data:` URI under the
binary field name; only then is the request sent as multipart/form-data.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.astria import tables

_DATA_URI = re.compile(r"^data:(image/[A-Za-z0-9.+-]+);base64,(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Upload:
    content_type: str
    data: bytes

    @property
    def filename(self) -> str:
        subtype = self.content_type.split("/", 1)[1].split("+", 1)[0]
        return f"image.{subtype}"


def decode_data_uri(value: str) -> Upload:
    match = _DATA_URI.match(value)
    if match is None:
        raise ValueError("not a data:image/...;base64 URI")
    try:
        data = base64.b64decode("".join(match.group(2).split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"data URI is not valid base64 ({exc})") from exc
    return Upload(match.group(1).lower(), data)


def split_uploads(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Upload]]:
    """Separate the binary image fields (as decoded uploads) from the plain ones."""
    plain = {k: v for k, v in fields.items() if k not in tables.FILE_FIELDS}
    uploads = {k: decode_data_uri(v) for k, v in fields.items() if k in tables.FILE_FIELDS and v}
    return plain, uploads


def form_value(value: Any) -> str:
    """How Rails-style form fields spell a JSON value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def encode(fields: dict[str, Any]) -> tuple[dict[str, Any] | None, aiohttp.FormData | None]:
    """(json, None) when every field is plain, else (None, multipart form)."""
    plain, uploads = split_uploads(fields)
    if not uploads:
        return {"prompt": plain}, None
    form = aiohttp.FormData()
    for name, value in plain.items():
        if value is not None:
            form.add_field(f"prompt[{name}]", form_value(value))
    for name, upload in uploads.items():
        form.add_field(
            f"prompt[{name}]",
            upload.data,
            content_type=upload.content_type,
            filename=upload.filename,
        )
    return None, form


def encode_tune(fields: dict[str, Any]) -> aiohttp.FormData:
    """A tune's fields as multipart/form-data, as the seed's curl examples send them.

    Nested values are spelled the Rails way: `tune[images][]` (one file per data: image),
    `tune[image_urls][]`, `tune[characteristics][key]`.
    """
    # Always multipart, even without files (else aiohttp sends a urlencoded form).
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        if name == "images" or value is None:
            continue
        if isinstance(value, list):
            for item in value:
                form.add_field(f"tune[{name}][]", form_value(item))
        elif isinstance(value, dict):
            for key, item in value.items():
                form.add_field(f"tune[{name}][{key}]", form_value(item))
        else:
            form.add_field(f"tune[{name}]", form_value(value))
    for uri in fields.get("images") or ():
        upload = decode_data_uri(uri)
        form.add_field(
            "tune[images][]",
            upload.data,
            content_type=upload.content_type,
            filename=upload.filename,
        )
    return form
