"""Normalized request → Bodia fine-tune prompt objects, one per submission."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from pydantic import Field

from adapters.base import CommonOptions, Plan, Seconds, Submission, Target
from adapters.bodia import tables
from adapters.conversion import Notes, split
from adapters.errors import Unsupported
from adapters.normalized import AspectRatio, GenerationRequest

PROVIDER = "bodia"
_PREFIX, _SUFFIX = "v1/finetunes/", "/prompts"
_OFFERS = f"{PROVIDER} offers {', '.join(a.value for a in tables.BodiaAspect)}"


class BodiaOptions(CommonOptions):
    poll_interval: Seconds = Field(
        default=3.0,
        gt=0,
        description="Seconds between polls; Bodia has no webhook, so every result is polled.",
    )
    images_per_prompt: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Images the account's fine-tune returns per prompt (Bodia has no count).",
    )


def endpoint_for(finetune_id: str) -> str:
    # Quoted so that an id from the config can never add path segments.
    return f"{_PREFIX}{quote(finetune_id, safe='')}{_SUFFIX}"


def finetune_of(endpoint: str) -> str:
    """The fine-tune id an `endpoint_for` path was built from."""
    if not (endpoint.startswith(_PREFIX) and endpoint.endswith(_SUFFIX)):
        raise ValueError(f"not a bodia prompts endpoint: {endpoint!r}")
    segment = endpoint[len(_PREFIX) : -len(_SUFFIX)]
    if not segment or "/" in segment:
        raise ValueError(f"not a bodia prompts endpoint: {endpoint!r}")
    return unquote(segment)


def plan(request: GenerationRequest, target: Target, options: BodiaOptions) -> Plan:
    # Every reason at once, so a tenant learns all that stands in the way in one answer.
    reasons = _unsupported(request)
    finetune_id = target.models.get(request.model)
    if finetune_id is None:
        raise Unsupported(
            {"model": f"backend {target.name} has no model {request.model!r}", **reasons}
        )
    if reasons:
        raise Unsupported(reasons)

    notes = Notes(PROVIDER)
    body: dict[str, Any] = {"prompt": request.prompt}
    if request.negative_prompt:
        body["negative_prompt"] = request.negative_prompt
    if request.guidance_scale is not None:
        body["cfg"] = notes.clamp("guidance_scale", request.guidance_scale, *tables.CFG)
    if request.steps is not None:
        body["steps"] = int(notes.clamp("steps", request.steps, *tables.STEPS))
    if request.enhance is not None and request.enhance.super_resolution:
        body["high_resolution"] = True
    _aspect(request, notes, body)
    _dropped(request, notes)

    per_prompt = options.images_per_prompt
    counts = split(request.num_images, per_prompt)
    if len(counts) > 1:
        _note_split(notes, request.num_images, counts, per_prompt)
    submissions = []
    for index, count in enumerate(counts):
        part = dict(body)
        if request.seed is not None:
            # Later prompts continue the seed sequence, so split images stay distinct.
            part["seed"] = (request.seed + index * per_prompt) % 2**32
        submissions.append(Submission(endpoint_for(finetune_id), part, count))

    generated = len(counts) * per_prompt  # surplus images cost GPU time too
    steps = int(body.get("steps", tables.DEFAULT_STEPS))
    cost = tables.HIGH_RESOLUTION_COST if body.get("high_resolution") else 1.0
    return Plan(
        model_id=finetune_id,
        submissions=submissions,
        warnings=notes.warnings,
        inexact=notes.inexact,
        work=tables.NOMINAL_PIXELS * steps * generated * cost / 1_000_000,
    )


def orientation(width: int, height: int) -> tables.BodiaAspect:
    if width == height:
        return tables.BodiaAspect.SQUARE
    return tables.BodiaAspect.LANDSCAPE if width > height else tables.BodiaAspect.PORTRAIT


def _unsupported(request: GenerationRequest) -> dict[str, str]:
    return {
        name: why
        for name, why in tables.UNSUPPORTED_FEATURES.items()
        if getattr(request, name) is not None
    }


def _aspect(request: GenerationRequest, notes: Notes, body: dict[str, Any]) -> None:
    if request.aspect_ratio is not None:
        aspect = tables.ASPECTS[request.aspect_ratio]
        if request.aspect_ratio is not AspectRatio.R1_1:
            notes.changed("aspect_ratio", request.aspect_ratio.value, aspect.value, _OFFERS)
        body["aspect_ratio"] = aspect.value
    elif request.width is not None and request.height is not None:
        # Even a square size is inexact: Bodia chooses the pixel dimensions itself.
        aspect = orientation(request.width, request.height)
        notes.changed(
            "size",
            f"{request.width}x{request.height}",
            aspect.value,
            f"{_OFFERS} and picks the pixel size",
            fields=("width", "height"),
        )
        body["aspect_ratio"] = aspect.value


def _dropped(request: GenerationRequest, notes: Notes) -> None:
    if request.scheduler is not None:
        notes.dropped("scheduler", request.scheduler.value)
    notes.drop_unsupported(request, tables.DROPPED_ENHANCE)
    if request.safety_checker is not None:
        notes.dropped("safety_checker", request.safety_checker)


def _note_split(notes: Notes, total: int, counts: list[int], per_prompt: int) -> None:
    surplus = len(counts) * per_prompt - total
    why = (
        f"{len(counts)} prompts; {PROVIDER} returns {per_prompt} "
        f"image{'s' if per_prompt > 1 else ''} per prompt"
    )
    if surplus:
        why += f", {surplus} surplus discarded"
    notes.changed("num_images", total, " + ".join(str(c) for c in counts), why)
