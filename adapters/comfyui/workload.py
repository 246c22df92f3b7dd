"""What running a validated graph amounts to: images per output node and GPU work."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

DEFAULT_SIDE = 512  # an input image the simulator cannot measure
_PNG = b"\x89PNG\r\n\x1a\n"
# Inputs through which an image or latent (and so its size) flows, in order of preference.
_FLOW = ("latent_image", "samples", "pixels", "image", "images")


def _link(value: Any) -> str | None:
    return value[0] if isinstance(value, list) and len(value) == 2 else None


def batch(graph: dict[str, Any], node_id: str) -> int:
    """Images in the batch a node produces."""
    node = graph[node_id]
    inputs = node["inputs"]
    if node["class_type"] == "EmptyLatentImage":
        return int(inputs["batch_size"])
    upstream = max(
        (batch(graph, source) for v in inputs.values() if (source := _link(v)) is not None),
        default=1,
    )
    if node["class_type"] == "RepeatLatentBatch":
        return upstream * int(inputs["amount"])
    return upstream


def size(graph: dict[str, Any], node_id: str, files: Mapping[str, bytes]) -> tuple[int, int]:
    """Pixel size of the image or latent a node produces."""
    node = graph[node_id]
    inputs = node["inputs"]
    kind = node["class_type"]
    if kind == "EmptyLatentImage":
        return int(inputs["width"]), int(inputs["height"])
    if kind in ("LoadImage", "LoadImageMask"):
        return png_size(files.get(inputs["image"], b""))
    for name in _FLOW:
        source = _link(inputs.get(name))
        if source is not None:
            width, height = size(graph, source, files)
            if kind == "ImageScale":
                return int(inputs["width"]) or width, int(inputs["height"]) or height
            return width, height
    return DEFAULT_SIDE, DEFAULT_SIDE


def png_size(raw: bytes) -> tuple[int, int]:
    if raw.startswith(_PNG) and len(raw) >= 24:
        width, height = struct.unpack(">II", raw[16:24])
        return int(width), int(height)
    return DEFAULT_SIDE, DEFAULT_SIDE


def work(graph: dict[str, Any], files: Mapping[str, bytes]) -> float:
    """Pixels x steps x images over every sampler: what the GPU's time is proportional to."""
    total = 0.0
    for node_id, node in graph.items():
        if node["class_type"] == "KSampler":
            width, height = size(graph, node_id, files)
            total += width * height * int(node["inputs"]["steps"]) * batch(graph, node_id)
    return total
