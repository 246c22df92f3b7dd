"""Normalized request → one or more ComfyUI workflow graphs (`POST /prompt` bodies)."""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field

from adapters.base import CommonOptions, Plan, Seconds, Submission, Target
from adapters.comfyui import tables
from adapters.comfyui.graph import ControlSpec, GraphSpec, build_graph
from adapters.conversion import Notes, requested_size, split, work_units
from adapters.errors import Unsupported
from adapters.normalized import ControlNetType, GenerationRequest, Scheduler

INLINE_ONLY = "comfyui needs the image inline as a data: URI"


class ComfyOptions(CommonOptions):
    poll_interval: Seconds = Field(
        default=1.0, gt=0, description="Seconds between history polls (a cheap in-memory read)."
    )
    long_side: int = Field(
        default=1024, ge=64, le=2048, description="Long side used for aspect_ratio requests."
    )
    default_width: int = Field(default=1024, ge=64, le=2048, multiple_of=8)
    default_height: int = Field(default=1024, ge=64, le=2048, multiple_of=8)
    default_steps: int = Field(default=30, ge=1, le=100)
    default_cfg: float = Field(default=7.0, ge=0, le=30)
    default_scheduler: Scheduler = Scheduler.EULER
    img2img_strength: float = Field(
        default=0.75, ge=0, le=1, description="KSampler denoise for img2img without strength."
    )
    inpaint_strength: float = Field(
        default=1.0, ge=0, le=1, description="KSampler denoise for inpainting without strength."
    )
    max_batch: int = Field(
        default=4, ge=1, le=8, description="Most images one prompt renders; more are split."
    )
    controlnets: dict[ControlNetType, str] = Field(
        default_factory=dict, description="Controlnet type → model file in models/controlnet."
    )
    loras: dict[str, str] = Field(
        default_factory=dict,
        description="Lora name → file in models/loras; unlisted names get .safetensors appended.",
    )
    filename_prefix: str = Field(default="imagegen-gateway", min_length=1, max_length=100)


def plan(request: GenerationRequest, target: Target, options: ComfyOptions, seed: int) -> Plan:
    """Build the graphs; `seed` is used (and continued across splits) when the request has none."""
    notes = Notes("comfyui")
    checkpoint = target.models.get(request.model)
    if checkpoint is None:
        raise Unsupported({"model": f"backend {target.name} has no model {request.model!r}"})
    _require_inline(request)
    control = _control(request, target, options)
    init_image = request.init_image
    if init_image is None and request.controlnet is not None and not request.controlnet.txt2img:
        # Astria's meaning of controlnet_txt2img=false: the control image is the init image too.
        init_image = request.controlnet.image

    width, height, explicit = _size(request, options, notes)
    steps = request.steps if request.steps is not None else options.default_steps
    cfg = request.guidance_scale if request.guidance_scale is not None else options.default_cfg
    choice = _sampler(request, options, notes)
    _unsupported(request, notes)

    chunks = split(request.num_images, options.max_batch)
    if len(chunks) > 1:
        notes.changed(
            "num_images",
            request.num_images,
            " + ".join(str(c) for c in chunks),
            f"{len(chunks)} submissions merged; this comfyui server renders at most "
            f"{options.max_batch} per prompt",
        )
    base_seed = request.seed if request.seed is not None else seed
    spec = GraphSpec(
        checkpoint=checkpoint,
        loras=tuple(
            (_lora_file(lora.name, options), lora.strength) for lora in request.loras or ()
        ),
        positive=request.prompt,
        negative=request.negative_prompt or "",
        width=width,
        height=height,
        batch=request.num_images,
        seed=base_seed,
        steps=steps,
        cfg=cfg,
        sampler_name=choice.sampler_name,
        scheduler=choice.scheduler,
        denoise=_denoise(request, init_image, options),
        filename_prefix=options.filename_prefix,
        init_image=init_image,
        resize_init=explicit,
        mask_image=request.mask_image,
        control=control,
    )
    submissions = []
    first = 0
    for count in chunks:
        # Each submission continues the seed sequence, so split images stay distinct.
        part = replace(spec, batch=count, seed=(base_seed + first) % tables.SEED_RANGE)
        submissions.append(Submission("prompt", {"prompt": build_graph(part)}, count))
        first += count
    return Plan(
        model_id=checkpoint,
        submissions=submissions,
        warnings=notes.warnings,
        inexact=notes.inexact,
        work=work_units(width, height, steps, request.num_images),
    )


def _require_inline(request: GenerationRequest) -> None:
    # Core LoadImage reads only files on the server; the adapter uploads inline images,
    # but fetching URLs would need a custom node.
    refs = {
        "init_image": request.init_image,
        "mask_image": request.mask_image,
        "controlnet.image": request.controlnet.image if request.controlnet else None,
    }
    reasons = {k: INLINE_ONLY for k, v in refs.items() if v and not v.startswith("data:")}
    if reasons:
        raise Unsupported(reasons)


def _control(
    request: GenerationRequest, target: Target, options: ComfyOptions
) -> ControlSpec | None:
    if request.controlnet is None:
        return None
    model_file = options.controlnets.get(request.controlnet.type)
    if model_file is None:
        raise Unsupported(
            {
                "controlnet": f"backend {target.name} has no controlnet model for "
                f"{request.controlnet.type.value!r}"
            }
        )
    return ControlSpec(model_file, request.controlnet.image, request.controlnet.conditioning_scale)


def _size(request: GenerationRequest, options: ComfyOptions, notes: Notes) -> tuple[int, int, bool]:
    """Width, height, and whether the request asked for them (else the defaults apply)."""
    size = requested_size(request, options.long_side, notes)
    if size is None:
        return options.default_width, options.default_height, False
    return size[0], size[1], True


def _sampler(
    request: GenerationRequest, options: ComfyOptions, notes: Notes
) -> tables.SamplerChoice:
    scheduler = request.scheduler or options.default_scheduler
    choice = tables.SCHEDULERS[scheduler]
    if choice.approximation and request.scheduler is not None:
        notes.changed(
            "scheduler",
            scheduler.value,
            f"{choice.sampler_name}/{choice.scheduler}",
            choice.approximation,
        )
    return choice


def _denoise(request: GenerationRequest, init_image: str | None, options: ComfyOptions) -> float:
    if init_image is None:
        return 1.0
    if request.strength is not None:
        return request.strength
    return options.inpaint_strength if request.mask_image else options.img2img_strength


def _lora_file(name: str, options: ComfyOptions) -> str:
    if name in options.loras:
        return options.loras[name]
    if name.lower().endswith(tables.MODEL_FILE_SUFFIXES):
        return name
    return f"{name}.safetensors"


def _unsupported(request: GenerationRequest, notes: Notes) -> None:
    notes.drop_unsupported(request, tables.UNSUPPORTED_ENHANCE)
    # ComfyUI's core has no safety checker, so only a request for one goes unhonoured.
    if request.safety_checker:
        notes.dropped("safety_checker", True)
