"""Inline images → files in ComfyUI's input folder (`POST /upload/image`), named in the graph.

LoadImage reads a file on the server, so every `data:` URI a graph carries is uploaded
first and the loader nodes get the name the server answered with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from adapters.comfyui import tables
from adapters.comfyui.graph import IMAGE_LOADERS
from adapters.errors import ProviderBadAnswer, ProviderRejected

Upload = Callable[[aiohttp.FormData], Awaitable[Any]]


def decode(data_uri: str) -> tuple[bytes, str, str]:
    """(bytes, file name, media type) for a data: URI; the name is content-addressed."""
    header, _, payload = data_uri.partition(",")
    media = header[5:].split(";", 1)[0].lower()
    try:
        raw = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderRejected("an inline image is not valid base64") from exc
    if not raw:
        raise ProviderRejected("an inline image is empty")
    suffix = tables.IMAGE_SUFFIXES.get(media, "png")
    # The same bytes always get the same name, so re-uploads (split parts, retries)
    # overwrite an identical file instead of piling up renamed copies.
    name = f"gw-{hashlib.sha256(raw).hexdigest()[:32]}.{suffix}"
    return raw, name, media


def form(data_uri: str) -> aiohttp.FormData:
    raw, name, media = decode(data_uri)
    data = aiohttp.FormData()
    data.add_field("image", raw, filename=name, content_type=media)
    data.add_field("type", "input")
    data.add_field("overwrite", "true")
    return data


def stored_name(answer: Any) -> str:
    """The name LoadImage takes for an upload answer `{"name", "subfolder", "type"}`."""
    if not isinstance(answer, dict):
        raise ProviderBadAnswer(f"upload answer is not a JSON object ({type(answer).__name__})")
    name, subfolder = answer.get("name"), answer.get("subfolder", "")
    if not isinstance(name, str) or not name or not isinstance(subfolder, str):
        raise ProviderBadAnswer("upload answer has no 'name' string")
    return f"{subfolder}/{name}" if subfolder else name


def inline_images(graph: dict[str, Any]) -> list[str]:
    """The distinct data: URIs the graph's image loaders carry, in node order."""
    found: list[str] = []
    for node in graph.values():
        image = node.get("inputs", {}).get("image")
        is_loader = node.get("class_type") in IMAGE_LOADERS
        if (
            is_loader
            and isinstance(image, str)
            and image.startswith("data:")
            and image not in found
        ):
            found.append(image)
    return found


async def upload_images(graph: dict[str, Any], upload: Upload) -> dict[str, Any]:
    """A copy of `graph` whose loaders name uploaded files instead of data: URIs."""
    refs = inline_images(graph)
    if not refs:
        return graph
    names = {ref: stored_name(await upload(form(ref))) for ref in refs}
    named = dict(graph)
    for node_id, node in graph.items():
        image = node.get("inputs", {}).get("image")
        if node.get("class_type") in IMAGE_LOADERS and image in names:
            named[node_id] = {**node, "inputs": {**node["inputs"], "image": names[image]}}
    return named
