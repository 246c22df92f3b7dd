"""Fine-tunes on Astria (`POST /tunes`, seeds/002): convert a tune request, read a tune object.

The tune object has `id`, `title`, `name`, `token`, `eta`, `trained_at`,
`started_training_at`, `expires_at`, `branch`, `model_type`, ... The seed documents no
failure field; as for prompts, a non-empty `user_error` is read as a failed training.
Callbacks carry the tune object, bare or wrapped as `{"tune": {...}}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.astria.answers import unwrap
from adapters.astria.wire import decode_data_uri
from adapters.base import ResultState, Target, TunePlan, TuneResult
from adapters.conversion import Notes
from adapters.errors import ProviderBadAnswer, Unsupported
from adapters.normalized_tune import Branch, ModelType, TuneRequest

PROVIDER = "astria"
TUNES = "tunes"
# The seed's defaults: ohwx for SDXL, sks for SD15. The gateway always sends a token so
# that it knows which word prompts need, whatever branch a base tune implies.
DEFAULT_TOKENS = {Branch.SDXL1: "ohwx", Branch.SD15: "sks", Branch.FAST: "ohwx"}


def tune_path(provider_id: str) -> str:
    if not provider_id.isdigit():
        raise ProviderBadAnswer(f"{provider_id!r} is not an Astria tune id")
    return f"{TUNES}/{provider_id}"


def plan_tune(request: TuneRequest, target: Target) -> TunePlan:
    """The fields of `tune[...]`, named as the seed names them."""
    notes = Notes(PROVIDER)
    fields: dict[str, Any] = {"title": request.title, "name": request.name}
    if request.branch is not None:
        fields["branch"] = request.branch.value
    if request.base_model is not None:
        base = target.models.get(request.base_model)
        if base is None or not base.isdigit():
            raise Unsupported(
                {"base_model": f"backend {target.name} has no base tune for {request.base_model!r}"}
            )
        fields["base_tune_id"] = int(base)
    token = request.token or DEFAULT_TOKENS[request.branch or Branch.SD15]
    fields["token"] = token
    _model_type(request, notes, fields)
    if request.preset is not None:
        fields["preset"] = request.preset.value
    for name in ("face_crop", "training_face_correct", "auto_extend", "steps"):
        value = getattr(request, name)
        if value is not None:
            fields[name] = value
    if request.characteristics:
        fields["characteristics"] = dict(request.characteristics)
    uploads, urls = [], []
    for position, image in enumerate(request.images):
        if image.startswith("data:"):
            try:
                decode_data_uri(image)
            except ValueError as exc:
                raise Unsupported({f"images[{position}]": str(exc)}) from exc
            uploads.append(image)
        else:
            urls.append(image)
    # data: images travel as multipart files (`tune[images][]`), URLs as `tune[image_urls][]`.
    if uploads:
        fields["images"] = uploads
    if urls:
        fields["image_urls"] = urls
    return TunePlan(fields=fields, token=token, warnings=notes.warnings)


def _model_type(request: TuneRequest, notes: Notes, fields: dict[str, Any]) -> None:
    kind = request.model_type
    if kind is None or kind is ModelType.CHECKPOINT:
        return  # Astria's null: a checkpoint, its default
    if request.branch is Branch.SDXL1 and kind is not ModelType.PTI:
        # "For SDXL1 - API will default to pti and will ignore model_type parameter."
        notes.changed("model_type", kind.value, "pti", f"{PROVIDER} trains sdxl1 tunes as pti")
        return
    fields["model_type"] = kind.value


def _time(data: dict[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProviderBadAnswer(f"'{name}' is not a timestamp")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProviderBadAnswer(f"'{name}' is not a timestamp: {value[:40]!r}") from None


def read_tune(data: Any) -> TuneResult:
    """Any Astria tune object: a create answer, a poll answer or a callback."""
    tune = unwrap(data, "tune")
    raw_id = tune.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or not str(raw_id).isdigit():
        raise ProviderBadAnswer("the tune object has no numeric 'id'")
    token = tune.get("token")
    if token is not None and not isinstance(token, str):
        raise ProviderBadAnswer("'token' is not text")
    error = tune.get("user_error")
    if error is not None and not isinstance(error, str):
        raise ProviderBadAnswer("'user_error' is not text")
    trained_at = _time(tune, "trained_at")
    if error:
        state = ResultState.FAILED
    elif trained_at is not None:
        state = ResultState.SUCCEEDED
    elif _time(tune, "started_training_at") is not None:
        state = ResultState.PROCESSING
    else:
        state = ResultState.PENDING
    return TuneResult(
        state=state,
        provider_id=str(raw_id),
        token=token,
        eta=_time(tune, "eta"),
        trained_at=trained_at,
        expires_at=_time(tune, "expires_at"),
        error_message=error[:500] if error else None,
    )
