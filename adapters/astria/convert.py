"""Normalized request → the fields of one Astria prompt (`POST /tunes/{id}/prompts`)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from adapters.astria import tables
from adapters.astria.wire import decode_data_uri
from adapters.base import CommonOptions, Plan, Submission, Target
from adapters.conversion import Notes, work_units
from adapters.errors import Unsupported
from adapters.normalized import GenerationRequest

PROVIDER = "astria"
_TUNE_ID = re.compile(r"^[0-9]+$")
_MIXED_IMAGES = (
    "astria pairs an uploaded mask with an uploaded image and a mask URL with an image URL; "
    "give both as URLs or both as data: URIs"
)


class AstriaOptions(CommonOptions):
    use_lpw: bool | None = Field(default=None, description="Astria's weighted-prompt parsing.")
    backend_version: Literal[1] | None = Field(
        default=None, description="Astria backend version; unset uses the account's default."
    )


def endpoint(tune_id: str) -> str:
    return f"tunes/{tune_id}/prompts"


def tune_of(submission_endpoint: str) -> str:
    """The tune id inside an endpoint made by `endpoint`."""
    parts = submission_endpoint.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "tunes" or parts[2] != "prompts":
        raise ValueError(f"not an Astria prompts endpoint: {submission_endpoint!r}")
    return parts[1]


def plan(
    request: GenerationRequest,
    target: Target,
    options: AstriaOptions,
    *,
    tune_id: str | None = None,
) -> Plan:
    """`tune_id`, when given, is the tune to prompt (a gateway-trained one) in place of
    the backend's `models` map."""
    notes = Notes(PROVIDER)
    tune_id = tune_id or target.models.get(request.model)
    if tune_id is None:
        raise Unsupported({"model": f"backend {target.name} has no model {request.model!r}"})
    if not _TUNE_ID.match(tune_id):
        raise Unsupported({"model": f"{tune_id!r} is not an Astria tune id (digits only)"})

    body: dict[str, Any] = {"text": request.prompt + _lora_tags(request)}
    if request.negative_prompt:
        body["negative_prompt"] = request.negative_prompt
    # Astria takes 1–8 images in one prompt, as many as the normalized request allows.
    body["num_images"] = request.num_images
    width, height = _size(request, body)
    steps = _sampling(request, notes, body)
    _enhance(request, notes, body)
    _images(request, body)
    if request.style is not None:
        body["style"] = tables.STYLES[request.style]
    if request.color_grading is not None:
        body["color_grading"] = tables.COLOR_GRADINGS[request.color_grading]
    if request.safety_checker is not None:
        notes.dropped("safety_checker", request.safety_checker, "astria has no such setting")
    if options.use_lpw is not None:
        body["use_lpw"] = options.use_lpw
    if options.backend_version is not None:
        body["backend_version"] = options.backend_version

    return Plan(
        model_id=tune_id,
        submissions=[Submission(endpoint(tune_id), body, request.num_images)],
        warnings=notes.warnings,
        inexact=notes.inexact,
        work=work_units(width, height, steps, request.num_images),
    )


def _lora_tags(request: GenerationRequest) -> str:
    """Astria has no LoRA field: LoRAs are tokens in the prompt text, `<lora:ID:STRENGTH>`.

    The ID is the LoRA's tune id (e.g. `<lora:123456:0.8>`), so the normalized name must be
    one. Any other name would be ignored or refused by Astria, so such a request is not
    servable here (other backends load LoRAs by file name).
    """
    if not request.loras:
        return ""
    bad = [lora.name for lora in request.loras if not _TUNE_ID.match(lora.name)]
    if bad:
        raise Unsupported(
            {"loras": f"astria references a LoRA by its tune id (digits); {bad[0]!r} is not one"}
        )
    return "".join(f" <lora:{lora.name}:{lora.strength:g}>" for lora in request.loras)


def _size(request: GenerationRequest, body: dict[str, Any]) -> tuple[int, int]:
    if request.width is not None and request.height is not None:
        # The normalized request already guarantees multiples of 8.
        body["w"], body["h"] = request.width, request.height
        return request.width, request.height
    if request.aspect_ratio is not None:
        ratio = tables.ASPECT_RATIOS[request.aspect_ratio]
        body["aspect_ratio"] = ratio
        return tables.aspect_size(ratio)
    return tables.DEFAULT_SIDE, tables.DEFAULT_SIDE


def _sampling(request: GenerationRequest, notes: Notes, body: dict[str, Any]) -> int:
    if request.seed is not None:
        body["seed"] = request.seed
    if request.guidance_scale is not None:
        body["cfg_scale"] = notes.clamp("guidance_scale", request.guidance_scale, *tables.CFG_SCALE)
    steps = tables.DEFAULT_STEPS
    if request.steps is not None:
        steps = int(notes.clamp("steps", request.steps, *tables.STEPS))
        body["steps"] = steps
    if request.scheduler is not None:
        choice = tables.SCHEDULERS[request.scheduler]
        if choice.approximation:
            notes.changed(
                "scheduler",
                request.scheduler.value,
                choice.name,
                f"{PROVIDER} has no {request.scheduler.value}; {choice.approximation}",
            )
        body["scheduler"] = choice.name
    return steps


def _enhance(request: GenerationRequest, notes: Notes, body: dict[str, Any]) -> None:
    enhance = request.enhance
    if enhance is None:
        return
    for flag in tables.ENHANCE_FLAGS:
        if getattr(enhance, flag):
            body[flag] = True
    for flag in tables.NEEDS_SUPER_RESOLUTION:
        if not getattr(enhance, flag):
            continue
        if enhance.super_resolution:
            body[flag] = True
        else:
            notes.dropped(
                f"enhance.{flag}", True, f"{PROVIDER} applies it only with super_resolution"
            )


def _images(request: GenerationRequest, body: dict[str, Any]) -> None:
    """One input image serves img2img, inpainting and controlnet alike."""
    controlnet = request.controlnet
    source, source_field = request.init_image, "init_image"
    if controlnet is not None:
        if source is not None and source != controlnet.image:
            raise Unsupported(
                {"controlnet.image": "astria takes one input image; it differs from init_image"}
            )
        if source is None:
            source, source_field = controlnet.image, "controlnet.image"
        body["controlnet"] = tables.CONTROLNETS[controlnet.type]
        body["controlnet_conditioning_scale"] = controlnet.conditioning_scale
        body["controlnet_txt2img"] = controlnet.txt2img
    if source is None:
        return
    mask = request.mask_image
    inline = source.startswith("data:")
    if mask is not None and mask.startswith("data:") != inline:
        raise Unsupported({"mask_image": _MIXED_IMAGES})
    # data: URIs travel as multipart files under the binary field names (see wire.py).
    refs = (("input_image", source_field, source), ("mask_image", "mask_image", mask))
    for astria_field, normalized_field, ref in refs:
        if ref is None:
            continue
        if not inline:
            body[tables.FILE_FIELDS[astria_field]] = ref
            continue
        try:
            decode_data_uri(ref)
        except ValueError as exc:
            raise Unsupported({normalized_field: str(exc)}) from exc
        body[astria_field] = ref
    if request.strength is not None:
        body["denoising_strength"] = request.strength
