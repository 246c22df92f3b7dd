"""The ComfyUI API-format workflow one submission runs, built from resolved settings.

API format: `{node_id: {"class_type": ..., "inputs": {...}}}`, where an input that comes
from another node is `[node_id, output_index]`. Only core nodes are used, so any stock
ComfyUI server can run the graph.

Inpainting uses VAEEncode + SetLatentNoiseMask rather than VAEEncodeForInpaint: the latter
greys out the masked pixels and only works at denoise 1.0, which would make `strength`
meaningless and needs a dedicated inpainting checkpoint to look right. The mask is read by
LoadImageMask from its red channel, so white marks the area to repaint (as in diffusers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Link = list[str | int]


@dataclass(frozen=True)
class ControlSpec:
    model_file: str
    image: str  # an image reference for LoadImage (a data: URI until submit uploads it)
    strength: float


@dataclass(frozen=True)
class GraphSpec:
    """Everything one workflow needs, already converted to ComfyUI's terms."""

    checkpoint: str
    loras: tuple[tuple[str, float], ...]
    positive: str
    negative: str
    width: int
    height: int
    batch: int
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float
    filename_prefix: str
    init_image: str | None = None
    resize_init: bool = False  # scale the init image to width x height (center crop)
    mask_image: str | None = None
    control: ControlSpec | None = None


# Node classes whose `image` input names a file in the server's input folder.
IMAGE_LOADERS = ("LoadImage", "LoadImageMask")


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self._images: dict[str, str] = {}

    def add(self, class_type: str, **inputs: Any) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    def load_image(self, ref: str) -> Link:
        # One LoadImage per distinct image: an init image that is also the control image
        # is uploaded and decoded once.
        if ref not in self._images:
            self._images[ref] = self.add("LoadImage", image=ref)
        return [self._images[ref], 0]


def build_graph(spec: GraphSpec) -> dict[str, Any]:
    graph = _Graph()
    checkpoint = graph.add("CheckpointLoaderSimple", ckpt_name=spec.checkpoint)
    model: Link = [checkpoint, 0]
    clip: Link = [checkpoint, 1]
    vae: Link = [checkpoint, 2]
    for lora_file, strength in spec.loras:
        lora = graph.add(
            "LoraLoader",
            model=model,
            clip=clip,
            lora_name=lora_file,
            strength_model=strength,
            strength_clip=strength,
        )
        model, clip = [lora, 0], [lora, 1]
    positive: Link = [graph.add("CLIPTextEncode", text=spec.positive, clip=clip), 0]
    negative: Link = [graph.add("CLIPTextEncode", text=spec.negative, clip=clip), 0]
    latent = _latent(graph, spec, vae)
    if spec.control is not None:
        loader = graph.add("ControlNetLoader", control_net_name=spec.control.model_file)
        # ControlNetApplyAdvanced: current ComfyUI marks the older ControlNetApply deprecated.
        applied = graph.add(
            "ControlNetApplyAdvanced",
            positive=positive,
            negative=negative,
            control_net=[loader, 0],
            image=graph.load_image(spec.control.image),
            strength=spec.control.strength,
            start_percent=0.0,
            end_percent=1.0,
        )
        positive, negative = [applied, 0], [applied, 1]
    sampler = graph.add(
        "KSampler",
        model=model,
        seed=spec.seed,
        steps=spec.steps,
        cfg=spec.cfg,
        sampler_name=spec.sampler_name,
        scheduler=spec.scheduler,
        positive=positive,
        negative=negative,
        latent_image=latent,
        denoise=spec.denoise,
    )
    decoded = graph.add("VAEDecode", samples=[sampler, 0], vae=vae)
    graph.add("SaveImage", images=[decoded, 0], filename_prefix=spec.filename_prefix)
    return graph.nodes


def _latent(graph: _Graph, spec: GraphSpec, vae: Link) -> Link:
    if spec.init_image is None:
        empty = graph.add(
            "EmptyLatentImage", width=spec.width, height=spec.height, batch_size=spec.batch
        )
        return [empty, 0]
    pixels = graph.load_image(spec.init_image)
    if spec.resize_init:
        scaled = graph.add(
            "ImageScale",
            image=pixels,
            upscale_method="lanczos",
            width=spec.width,
            height=spec.height,
            crop="center",
        )
        pixels = [scaled, 0]
    latent: Link = [graph.add("VAEEncode", pixels=pixels, vae=vae), 0]
    if spec.mask_image is not None:
        mask = graph.add("LoadImageMask", image=spec.mask_image, channel="red")
        latent = [graph.add("SetLatentNoiseMask", samples=latent, mask=[mask, 0]), 0]
    if spec.batch > 1:
        # VAEEncode yields one latent per input image; the batch repeats it (noise mask too).
        latent = [graph.add("RepeatLatentBatch", samples=latent, amount=spec.batch), 0]
    return latent
