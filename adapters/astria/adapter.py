"""The Astria adapter: one backend per API key; results arrive by callback, polling as fallback."""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
import orjson

from adapters.astria import answers, training, wire
from adapters.astria.convert import AstriaOptions, plan, tune_of
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
    TunePlan,
    TuneResult,
    plan_key,
)
from adapters.errors import (
    ProviderBadAnswer,
    ProviderError,
    ProviderMaybeAccepted,
    ProviderRejected,
    ProviderServerError,
)
from adapters.http import call_json
from adapters.httpclient import HttpClient
from adapters.normalized import GenerationRequest
from adapters.normalized_tune import TuneRequest


class AstriaAdapter:
    kind: ClassVar[str] = "astria"
    result_mode = ResultMode.WEBHOOK
    capacity = HOSTED

    def __init__(self, target: Target) -> None:
        self.target = target
        self.options = AstriaOptions.model_validate(dict(target.options))
        self._key = target.api_key.get_secret_value() if target.api_key else ""
        self._base = target.base_url.rstrip("/")
        self.plan_key = plan_key(self.kind, target, self.options)

    def plan(self, request: GenerationRequest) -> Plan:
        return plan(request, self.target, self.options)

    async def submit(
        self, session: HttpClient, submission: Submission, callback: Callback
    ) -> ProviderResult:
        tune_id = tune_of(submission.endpoint)
        json_body, form = wire.encode({**submission.body, "callback": callback.url})
        data = await self._create(session, submission.endpoint, json_body, form)
        result = answers.read_prompt(data, tune_id)
        if result.state is ResultState.FAILED:
            # Refused at creation: the request itself is at fault, no other key will differ.
            raise ProviderRejected(result.error_message or "prompt refused")
        return result

    async def _create(
        self,
        session: HttpClient,
        path: str,
        json_body: dict[str, Any] | None,
        form: aiohttp.FormData | None,
    ) -> Any:
        try:
            _, data = await self._call(
                session, "POST", path, self.options.timeout, json=json_body, data=form
            )
        except ProviderServerError as exc:
            # Astria's 504 means the object was probably created; resubmitting could bill
            # twice.
            if exc.status == 504:
                raise ProviderMaybeAccepted(exc.message, status=504) from exc
            raise
        return data

    def parse_webhook(self, body: bytes) -> ProviderResult:
        return answers.read_prompt(_json(body))

    # -- training (the optional Trainer capability) ----------------------------------

    def plan_tune(self, request: TuneRequest) -> TunePlan:
        return training.plan_tune(request, self.target)

    async def submit_tune(
        self, session: HttpClient, plan: TunePlan, callback: Callback
    ) -> TuneResult:
        form = wire.encode_tune({**plan.fields, "callback": callback.url})
        result = training.read_tune(await self._create(session, training.TUNES, None, form))
        if result.state is ResultState.FAILED:
            raise ProviderRejected(result.error_message or "tune refused")
        return result

    def parse_tune_webhook(self, body: bytes) -> TuneResult:
        return training.read_tune(_json(body))

    async def poll_tune(self, session: HttpClient, provider_id: str) -> TuneResult:
        path = training.tune_path(provider_id)
        _, data = await self._call(session, "GET", path, self.options.poll_timeout)
        return training.read_tune(data)

    async def delete_tune(self, session: HttpClient, provider_id: str) -> None:
        path = training.tune_path(provider_id)
        # Already gone at the provider is as good as deleted.
        await self._call(session, "DELETE", path, self.options.poll_timeout, accept_statuses=(404,))

    def plan_on_tune(self, request: GenerationRequest, provider_id: str) -> Plan:
        return plan(request, self.target, self.options, tune_id=provider_id)

    async def poll(self, session: HttpClient, provider_id: str) -> ProviderResult:
        tune_id, prompt_id = answers.split_provider_id(provider_id)
        _, data = await self._call(
            session, "GET", f"tunes/{tune_id}/prompts/{prompt_id}", self.options.poll_timeout
        )
        return answers.read_prompt(data, tune_id)

    async def probe(self, session: HttpClient) -> Probe:
        # Reading a tune is the cheapest authenticated call; with no tunes configured,
        # the tune list does the same job.
        first = next(iter(self.target.models.values()), None)
        path = f"tunes/{first}" if first else "tunes"
        try:
            _, data = await self._call(session, "GET", path, self.options.poll_timeout)
        except ProviderError as exc:
            return Probe(healthy=False, detail=exc.message)
        if not isinstance(data, dict | list):
            return Probe(healthy=False, detail=f"unexpected answer to GET /{path}")
        return Probe(healthy=True, detail=f"GET /{path} answered")

    async def _call(
        self,
        session: HttpClient,
        method: str,
        path: str,
        timeout: float,
        *,
        json: Any = None,
        data: Any = None,
        accept_statuses: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        return await call_json(
            session,
            method,
            f"{self._base}/{path}",
            json=json,
            data=data,
            headers={"Authorization": f"Bearer {self._key}"},
            timeout=timeout,
            secrets=(self._key,),
            accept_statuses=accept_statuses,
        )


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProviderBadAnswer(f"callback body is not JSON ({exc.msg})") from exc
