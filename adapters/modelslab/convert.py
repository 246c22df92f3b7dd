"""Normalized request → ModelsLab text2img / img2img / inpaint bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from adapters.base import CommonOptions, Plan, Submission, Target
from adapters.conversion import Notes, fit_within, requested_size, split, work_units
from adapters.errors import Unsupported
from adapters.modelslab import tables
from adapters.normalized import GenerationRequest

DEFAULT_SIDE = 512  # what ModelsLab renders when no size is sent
DEFAULT_STEPS = 30


class ModelsLabOptions(CommonOptions):
    enterprise: bool = Field(
        default=False, description="A dedicated GPU server: steps 21/31/41, system_details probe."
    )
    enhance_prompt: bool = Field(
        default=False, description="Let ModelsLab rewrite prompts (its default is yes)."
    )
    safety_checker_type: Literal["blur", "sensitive_content_text", "pixelate", "black"] | None = (
        None
    )
    clip_skip: int | None = Field(default=None, ge=1, le=8)
    tomesd: bool | None = None
    temp: bool | None = None
    vae: str | None = None
    long_side: int = Field(
        default=1024, ge=64, le=1024, description="Long side used for aspect_ratio requests."
    )


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def plan(request: GenerationRequest, target: Target, options: ModelsLabOptions) -> Plan:
    provider = "modelslab enterprise" if options.enterprise else "modelslab"
    notes = Notes(provider)
    model_id = target.models.get(request.model)
    if model_id is None:
        raise Unsupported({"model": f"backend {target.name} has no model {request.model!r}"})
    if request.controlnet is not None:
        raise Unsupported({"controlnet": "ModelsLab text2img/img2img/inpaint take no controlnet"})

    body: dict[str, Any] = {"model_id": model_id, "prompt": request.prompt}
    if request.negative_prompt:
        body["negative_prompt"] = request.negative_prompt

    width, height = _size(request, options, notes, body)
    steps = _steps(request, options, notes, body)
    _sampling(request, notes, body)
    _images(request, body)
    _loras(request, body)
    _extras(options, body)
    notes.drop_unsupported(request, tables.UNSUPPORTED_ENHANCE)

    chunks = split(request.num_images, tables.MAX_SAMPLES)
    if len(chunks) > 1:
        shown = " + ".join(str(c) for c in chunks)
        notes.changed(
            "num_images",
            request.num_images,
            shown,
            f"{len(chunks)} submissions merged; {provider} allows at most "
            f"{tables.MAX_SAMPLES} per request",
        )
    submissions = []
    first = 0
    for count in chunks:
        part = {**body, "samples": count}
        if request.seed is not None:
            # Each submission continues the seed sequence, so split images stay distinct.
            part["seed"] = (request.seed + first) % 2**32
        submissions.append(Submission(tables.ENDPOINTS[request.kind], part, count))
        first += count
    return Plan(
        model_id=model_id,
        submissions=submissions,
        warnings=notes.warnings,
        inexact=notes.inexact,
        work=work_units(width, height, steps, request.num_images),
    )


def _size(
    request: GenerationRequest, options: ModelsLabOptions, notes: Notes, body: dict[str, Any]
) -> tuple[int, int]:
    size = requested_size(request, options.long_side, notes)
    if size is None:
        return DEFAULT_SIDE, DEFAULT_SIDE
    width, height = size
    if max(width, height) > tables.MAX_SIDE:
        fit_w, fit_h = fit_within(width, height, tables.MAX_SIDE)
        notes.changed(
            "size",
            f"{width}x{height}",
            f"{fit_w}x{fit_h}",
            f"{notes.provider} allows at most {tables.MAX_SIDE} per side",
            fields=("width", "height"),
        )
        width, height = fit_w, fit_h
    body["width"], body["height"] = width, height
    return width, height


def _steps(
    request: GenerationRequest, options: ModelsLabOptions, notes: Notes, body: dict[str, Any]
) -> int:
    if request.steps is None:
        return DEFAULT_STEPS
    if options.enterprise:
        steps = notes.nearest("steps", request.steps, tables.ENTERPRISE_STEPS)
    else:
        steps = int(notes.clamp("steps", request.steps, *tables.CLOUD_STEPS))
    body["num_inference_steps"] = steps
    return steps


def _sampling(request: GenerationRequest, notes: Notes, body: dict[str, Any]) -> None:
    if request.guidance_scale is not None:
        body["guidance_scale"] = notes.clamp(
            "guidance_scale", request.guidance_scale, *tables.GUIDANCE
        )
    if request.seed is not None:
        body["seed"] = request.seed
    if request.scheduler is not None:
        choice = tables.SCHEDULERS[request.scheduler]
        if choice.approximation:
            notes.changed("scheduler", request.scheduler.value, choice.name, choice.approximation)
        body["scheduler"] = choice.name
        body["use_karras_sigmas"] = yes_no(choice.karras)
        if choice.algorithm_type:
            body["algorithm_type"] = choice.algorithm_type
    if request.safety_checker is not None:
        body["safety_checker"] = yes_no(request.safety_checker)


def _images(request: GenerationRequest, body: dict[str, Any]) -> None:
    refs = {
        k: v
        for k, v in (("init_image", request.init_image), ("mask_image", request.mask_image))
        if v
    }
    inline = {k for k, v in refs.items() if v.startswith("data:")}
    if inline and inline != set(refs):
        raise Unsupported(
            {"mask_image": "ModelsLab takes both images as URLs or both as base64, not a mix"}
        )
    for name, ref in refs.items():
        body[name] = ref.split(",", 1)[1] if inline else ref
    if inline:
        body["base64"] = "yes"
    if request.strength is not None:
        body["strength"] = request.strength


def _loras(request: GenerationRequest, body: dict[str, Any]) -> None:
    if not request.loras:
        return
    if any("," in lora.name for lora in request.loras):
        raise Unsupported({"loras": "ModelsLab lora names are a comma list; a name has a comma"})
    body["lora_model"] = ",".join(lora.name for lora in request.loras)
    body["lora_strength"] = ",".join(f"{lora.strength:g}" for lora in request.loras)


def _extras(options: ModelsLabOptions, body: dict[str, Any]) -> None:
    body["enhance_prompt"] = yes_no(options.enhance_prompt)
    if options.safety_checker_type:
        body["safety_checker_type"] = options.safety_checker_type
    if options.clip_skip is not None:
        body["clip_skip"] = options.clip_skip
    if options.tomesd is not None:
        body["tomesd"] = yes_no(options.tomesd)
    if options.temp is not None:
        body["temp"] = yes_no(options.temp)
    if options.vae:
        body["vae"] = options.vae
