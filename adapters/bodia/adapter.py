"""The Bodia adapter: one backend per API key; results are polled (no webhook is documented)."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from adapters.base import (
    HOSTED,
    Callback,
    Plan,
    Probe,
    ProviderResult,
    ResultMode,
    ResultState,
    Submission,
    Target,
    plan_key,
)
from adapters.bodia import answers
from adapters.bodia.convert import BodiaOptions, endpoint_for, finetune_of, plan
from adapters.errors import (
    ProviderBadAnswer,
    ProviderMisconfigured,
    ProviderRejected,
)
from adapters.http import call_json
from adapters.httpclient import HttpClient
from adapters.normalized import GenerationRequest

# How far into a listing the probe looks for its opening bracket.
_PROBE_PEEK = 4096


class BodiaAdapter:
    kind: ClassVar[str] = "bodia"
    result_mode = ResultMode.POLL
    capacity = HOSTED

    def __init__(self, target: Target) -> None:
        self.target = target
        self.options = BodiaOptions.model_validate(dict(target.options))
        self._key = target.api_key.get_secret_value() if target.api_key else ""
        self._headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._base = target.base_url.rstrip("/")
        self.plan_key = plan_key(self.kind, target, self.options)

    def plan(self, request: GenerationRequest) -> Plan:
        return plan(request, self.target, self.options)

    async def submit(
        self, session: HttpClient, submission: Submission, callback: Callback
    ) -> ProviderResult:
        try:
            finetune_id = finetune_of(submission.endpoint)
        except ValueError as exc:
            raise ProviderRejected(str(exc)) from exc
        # Bodia has no callback URL; the track id travels in the metadata it echoes, so a
        # prompt found on Bodia's side can be traced back to its job.
        prompt = {**submission.body, "metadata": {"gateway_track_id": callback.track_id}}
        status, data = await self._call(
            session, "POST", submission.endpoint, self.options.timeout, json=[prompt]
        )
        if status == 404:
            # This key's account lacks the fine-tune: another key may have it.
            raise ProviderMisconfigured(
                f"fine-tune {finetune_id} not found on backend {self.target.name} (HTTP 404)",
                status=404,
            )
        return answers.read_created(data, finetune_id)

    def parse_webhook(self, body: bytes) -> ProviderResult:
        raise ProviderBadAnswer("bodia documents no webhooks; its results are polled")

    async def poll(self, session: HttpClient, provider_id: str) -> ProviderResult:
        finetune_id, prompt_id = answers.split_provider_id(provider_id)
        status, data = await self._call(
            session,
            "GET",
            f"{endpoint_for(finetune_id)}/{quote(prompt_id, safe='')}",
            self.options.poll_timeout,
        )
        if status == 404:
            # The prompt is gone on Bodia's side: waiting longer cannot bring it back.
            return ProviderResult(
                ResultState.FAILED,
                provider_id=provider_id,
                error_code="provider_lost",
                error_message=f"bodia no longer knows prompt {prompt_id} (HTTP 404)",
            )
        return answers.read_prompt(data, finetune_id, expected_id=prompt_id)

    async def probe(self, session: HttpClient) -> Probe:
        finetune_id = next(iter(self.target.models.values()), None)
        if finetune_id is None:
            return Probe(healthy=False, detail="no fine-tune in models to probe with")
        timeout = self.options.poll_timeout
        # A fine-tune's prompt list grows without bound and is not paginated, so only the
        # status and the opening bracket are read, never the whole listing.
        try:
            answer = await session.request(
                "GET",
                f"{self._base}/{endpoint_for(finetune_id)}",
                headers=self._headers,
                timeout=timeout,
                limit=_PROBE_PEEK,
                truncate=True,
            )
        except TimeoutError:
            return Probe(healthy=False, detail=f"no answer within {timeout:g}s")
        except (OSError, ValueError) as exc:
            return Probe(healthy=False, detail=f"cannot reach bodia: {type(exc).__name__}")
        status = answer.status
        opening = answer.body.lstrip()[:1] if 200 <= status < 300 else b""
        if status == 404:
            return Probe(healthy=False, detail=f"fine-tune {finetune_id} not found (HTTP 404)")
        if status in (401, 403):
            return Probe(healthy=False, detail=f"API key refused (HTTP {status})")
        if not 200 <= status < 300:
            return Probe(healthy=False, detail=f"HTTP {status}")
        if opening != b"[":
            return Probe(healthy=False, detail="prompt list is not a JSON array")
        return Probe(healthy=True, detail="prompt list answered")

    async def _call(
        self,
        session: HttpClient,
        method: str,
        path: str,
        timeout: float,
        *,
        json: Any = None,
    ) -> tuple[int, Any]:
        status, data = await call_json(
            session,
            method,
            f"{self._base}/{path}",
            json=json,
            timeout=timeout,
            headers=self._headers,
            secrets=(self._key,),
            accept_statuses=(404,),
        )
        return status, data
