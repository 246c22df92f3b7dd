"""The core ComfyUI nodes the simulator knows: inputs with their types and ranges, outputs.

Taken from ComfyUI's `nodes.py` INPUT_TYPES / RETURN_TYPES (MAX_RESOLUTION 16384).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.comfyui import tables

MAX_RESOLUTION = 16384
MAX_SEED = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class Linked:
    """An input fed by another node's output of this type."""

    type: str


@dataclass(frozen=True)
class Number:
    kind: type[int] | type[float]
    low: float
    high: float
    multiple: int | None = None  # what the UI's `step` enforces; the simulator checks it


@dataclass(frozen=True)
class Text:
    pass


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]


@dataclass(frozen=True)
class ModelFile:
    """A file in one of the server's models folders (checkpoints, loras, controlnet)."""

    folder: str


@dataclass(frozen=True)
class InputFile:
    """A file in the server's input folder: something `/upload/image` stored."""


InputSpec = Linked | Number | Text | Choice | ModelFile | InputFile


@dataclass(frozen=True)
class NodeSpec:
    required: dict[str, InputSpec]
    outputs: tuple[str, ...] = ()
    optional: dict[str, InputSpec] = field(default_factory=dict)
    output_node: bool = False


def _int(low: float, high: float, multiple: int | None = None) -> Number:
    return Number(int, low, high, multiple)


def _float(low: float, high: float) -> Number:
    return Number(float, low, high)


_STRENGTH = _float(-100.0, 100.0)
_UPSCALE = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")

NODES: dict[str, NodeSpec] = {
    "CheckpointLoaderSimple": NodeSpec(
        {"ckpt_name": ModelFile("checkpoints")}, ("MODEL", "CLIP", "VAE")
    ),
    "LoraLoader": NodeSpec(
        {
            "model": Linked("MODEL"),
            "clip": Linked("CLIP"),
            "lora_name": ModelFile("loras"),
            "strength_model": _STRENGTH,
            "strength_clip": _STRENGTH,
        },
        ("MODEL", "CLIP"),
    ),
    "CLIPTextEncode": NodeSpec({"text": Text(), "clip": Linked("CLIP")}, ("CONDITIONING",)),
    "EmptyLatentImage": NodeSpec(
        {
            "width": _int(16, MAX_RESOLUTION, 8),
            "height": _int(16, MAX_RESOLUTION, 8),
            "batch_size": _int(1, 4096),
        },
        ("LATENT",),
    ),
    "LoadImage": NodeSpec({"image": InputFile()}, ("IMAGE", "MASK")),
    "LoadImageMask": NodeSpec(
        {"image": InputFile(), "channel": Choice(("alpha", "red", "green", "blue"))}, ("MASK",)
    ),
    "ImageScale": NodeSpec(
        {
            "image": Linked("IMAGE"),
            "upscale_method": Choice(_UPSCALE),
            "width": _int(0, MAX_RESOLUTION),
            "height": _int(0, MAX_RESOLUTION),
            "crop": Choice(("disabled", "center")),
        },
        ("IMAGE",),
    ),
    "VAEEncode": NodeSpec({"pixels": Linked("IMAGE"), "vae": Linked("VAE")}, ("LATENT",)),
    "VAEEncodeForInpaint": NodeSpec(
        {
            "pixels": Linked("IMAGE"),
            "vae": Linked("VAE"),
            "mask": Linked("MASK"),
            "grow_mask_by": _int(0, 64),
        },
        ("LATENT",),
    ),
    "SetLatentNoiseMask": NodeSpec(
        {"samples": Linked("LATENT"), "mask": Linked("MASK")}, ("LATENT",)
    ),
    "RepeatLatentBatch": NodeSpec(
        {"samples": Linked("LATENT"), "amount": _int(1, 64)}, ("LATENT",)
    ),
    "ControlNetLoader": NodeSpec({"control_net_name": ModelFile("controlnet")}, ("CONTROL_NET",)),
    "ControlNetApply": NodeSpec(
        {
            "conditioning": Linked("CONDITIONING"),
            "control_net": Linked("CONTROL_NET"),
            "image": Linked("IMAGE"),
            "strength": _float(0.0, 10.0),
        },
        ("CONDITIONING",),
    ),
    "ControlNetApplyAdvanced": NodeSpec(
        {
            "positive": Linked("CONDITIONING"),
            "negative": Linked("CONDITIONING"),
            "control_net": Linked("CONTROL_NET"),
            "image": Linked("IMAGE"),
            "strength": _float(0.0, 10.0),
            "start_percent": _float(0.0, 1.0),
            "end_percent": _float(0.0, 1.0),
        },
        ("CONDITIONING", "CONDITIONING"),
        optional={"vae": Linked("VAE")},
    ),
    "KSampler": NodeSpec(
        {
            "model": Linked("MODEL"),
            "seed": _int(0, MAX_SEED),
            "steps": _int(1, 10000),
            "cfg": _float(0.0, 100.0),
            "sampler_name": Choice(tables.SAMPLER_NAMES),
            "scheduler": Choice(tables.SCHEDULER_NAMES),
            "positive": Linked("CONDITIONING"),
            "negative": Linked("CONDITIONING"),
            "latent_image": Linked("LATENT"),
            "denoise": _float(0.0, 1.0),
        },
        ("LATENT",),
    ),
    "VAEDecode": NodeSpec({"samples": Linked("LATENT"), "vae": Linked("VAE")}, ("IMAGE",)),
    "SaveImage": NodeSpec({"images": Linked("IMAGE"), "filename_prefix": Text()}, output_node=True),
    "PreviewImage": NodeSpec({"images": Linked("IMAGE")}, output_node=True),
}
