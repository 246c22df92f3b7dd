"""The ModelsLab adapter: v6 cloud keys and enterprise dedicated GPU servers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import orjson

from adapters.base import (
    HOSTED,
    Callback,
    Capacity,
    Plan,
    Probe,
    ProviderResult,
    ResultMode,
    ResultState,
    Submission,
    Target,
    plan_key,
)
from adapters.errors import ProviderBadAnswer, ProviderError
from adapters.http import call_json
from adapters.httpclient import HttpClient
from adapters.modelslab import answers
from adapters.modelslab.convert import ModelsLabOptions, plan
from adapters.normalized import GenerationRequest


class ModelsLabAdapter:
    kind: ClassVar[str] = "modelslab"
    result_mode = ResultMode.WEBHOOK

    def __init__(self, target: Target) -> None:
        self.target = target
        self.options = ModelsLabOptions.model_validate(dict(target.options))
        self._key = target.api_key.get_secret_value() if target.api_key else ""
        self._base = target.base_url.rstrip("/")
        self.plan_key = plan_key(self.kind, target, self.options)
        # A dedicated server's size is learned from the generationTime it reports; the
        # cloud API is elastic.
        self.capacity = Capacity() if self.options.enterprise else HOSTED

    def plan(self, request: GenerationRequest) -> Plan:
        return plan(request, self.target, self.options)

    async def submit(
        self, session: HttpClient, submission: Submission, callback: Callback
    ) -> ProviderResult:
        body = {
            **submission.body,
            "key": self._key,
            "webhook": callback.url,
            "track_id": callback.track_id,
        }
        _, data = await self._call(session, submission.endpoint, body, self.options.timeout)
        result = answers.read_result(data)
        if result.state is ResultState.FAILED:
            # An error answer to a submit means the job was not taken.
            raise answers.submit_error(data)
        if result.state is ResultState.SUCCEEDED and result.provider_id is None:
            raise ProviderBadAnswer("success answer without an 'id'")
        return result

    def parse_webhook(self, body: bytes) -> ProviderResult:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ProviderBadAnswer(f"webhook body is not JSON ({exc.msg})") from exc
        return answers.read_result(data)

    async def poll(self, session: HttpClient, provider_id: str) -> ProviderResult:
        body = {"key": self._key, "request_id": provider_id}
        _, data = await self._call(session, f"fetch/{provider_id}", body, self.options.poll_timeout)
        result = answers.read_result(data)
        message = (result.error_message or "").lower()
        if result.state is ResultState.FAILED and "not found" in message:
            # Fetch does not know the id: the provider lost it (restart, expiry).
            return replace(result, error_code="provider_lost")
        return result

    async def probe(self, session: HttpClient) -> Probe:
        try:
            if self.options.enterprise:
                return await self._system_details(session)
            # The cloud API has no status endpoint; fetching an unknown id is the cheapest
            # authenticated call, and any well-formed answer means the API is up.
            _, data = await self._call(
                session, "fetch/0", {"key": self._key, "request_id": "0"}, self.options.poll_timeout
            )
            answers.read_result(data)
            return Probe(healthy=True, detail="fetch answered")
        except ProviderError as exc:
            return Probe(healthy=False, detail=exc.message)

    async def _system_details(self, session: HttpClient) -> Probe:
        _, data = await self._call(
            session, "system_details", {"key": self._key}, self.options.poll_timeout
        )
        if not isinstance(data, dict) or str(data.get("status", "")).lower() != "success":
            detail = answers.message(data) if isinstance(data, dict) else "unreadable answer"
            return Probe(healthy=False, detail=detail)
        details = data.get("system_details")
        source: dict[str, Any] = details if isinstance(details, dict) else data
        queue = answers.number(source.get("queue", data.get("queue")))
        queue_time = answers.number(source.get("queue_time", data.get("queue_time")))
        return Probe(
            healthy=True,
            queue_depth=int(queue) if queue is not None else None,
            queue_seconds=queue_time,
            detail=f"queue_time {queue_time:g}s" if queue_time is not None else "up",
        )

    async def _call(
        self, session: HttpClient, path: str, body: dict[str, Any], timeout: float
    ) -> tuple[int, Any]:
        return await call_json(
            session,
            "POST",
            f"{self._base}/{path}",
            json=body,
            timeout=timeout,
            secrets=(self._key,),
        )
