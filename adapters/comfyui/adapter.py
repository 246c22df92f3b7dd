"""The ComfyUI adapter: one self-hosted GPU server, polled for results."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from typing import Any, ClassVar
from urllib.parse import quote

from adapters.base import (
    Callback,
    Capacity,
    Plan,
    Probe,
    ProviderResult,
    ResultMode,
    ResultState,
    Submission,
    Target,
)
from adapters.comfyui import answers, uploads
from adapters.comfyui.convert import ComfyOptions, plan
from adapters.errors import ProviderBadAnswer, ProviderError
from adapters.http import call_json
from adapters.httpclient import HttpClient
from adapters.normalized import GenerationRequest

CLIENT_PREFIX = "imagegen-gateway"


def random_seed() -> int:
    return random.randrange(2**32)


class ComfyAdapter:
    kind: ClassVar[str] = "comfyui"
    result_mode = ResultMode.POLL
    # A ComfyUI server runs one prompt at a time and queues the rest itself.
    capacity = Capacity(parallelism=1)
    plan_key: Hashable | None = None  # each plan draws its own seed when the request has none

    def __init__(self, target: Target, *, seeds: Callable[[], int] = random_seed) -> None:
        self.target = target
        self.options = ComfyOptions.model_validate(dict(target.options))
        self._key = target.api_key.get_secret_value() if target.api_key else ""
        # Plain ComfyUI has no auth; a key means an auth proxy in front of it.
        self._headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._base = target.base_url.rstrip("/")
        self._seeds = seeds

    def plan(self, request: GenerationRequest) -> Plan:
        # KSampler needs a seed; without one in the request each plan draws its own.
        return plan(request, self.target, self.options, self._seeds())

    async def submit(
        self, session: HttpClient, submission: Submission, callback: Callback
    ) -> ProviderResult:
        graph = submission.body.get("prompt")
        if not isinstance(graph, dict):
            raise ProviderBadAnswer("submission has no workflow graph")  # a planning bug

        async def upload(form: Any) -> Any:
            _, answer = await self._call(
                session, "POST", "upload/image", self.options.timeout, data=form
            )
            return answer

        graph = await uploads.upload_images(graph, upload)
        body = {
            **submission.body,
            "prompt": graph,
            "client_id": f"{CLIENT_PREFIX}:{callback.track_id}",
        }
        status, data = await self._call(
            session, "POST", "prompt", self.options.timeout, json=body, accept=(400,)
        )
        if status == 400:
            raise answers.rejection(data)
        return ProviderResult(ResultState.PENDING, provider_id=answers.read_submit(data))

    def parse_webhook(self, body: bytes) -> ProviderResult:
        raise ProviderBadAnswer("comfyui sends no webhooks; its results are polled")

    async def poll(self, session: HttpClient, provider_id: str) -> ProviderResult:
        result = await self._history(session, provider_id)
        if result is not None:
            return result
        _, queue = await self._call(session, "GET", "queue", self.options.poll_timeout)
        state = answers.queue_state(queue, provider_id)
        if state is not None:
            return ProviderResult(state, provider_id=provider_id)
        # It may have finished between the two reads; only then is it really unknown.
        result = await self._history(session, provider_id)
        if result is not None:
            return result
        return ProviderResult(
            ResultState.FAILED,
            provider_id=provider_id,
            error_code="provider_lost",
            error_message="the server knows no such prompt (restarted or history cleared)",
        )

    async def probe(self, session: HttpClient) -> Probe:
        try:
            _, stats = await self._call(session, "GET", "system_stats", self.options.poll_timeout)
            detail = _device(stats)
            _, info = await self._call(session, "GET", "prompt", self.options.poll_timeout)
            return Probe(healthy=True, queue_depth=answers.queue_remaining(info), detail=detail)
        except ProviderError as exc:
            return Probe(healthy=False, detail=exc.message)

    async def _history(self, session: HttpClient, prompt_id: str) -> ProviderResult | None:
        path = f"history/{quote(prompt_id, safe='')}"
        _, data = await self._call(session, "GET", path, self.options.poll_timeout)
        return answers.read_history(data, prompt_id, self._base)

    async def _call(
        self,
        session: HttpClient,
        method: str,
        path: str,
        timeout: float,
        *,
        json: Any = None,
        data: Any = None,
        accept: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        return await call_json(
            session,
            method,
            f"{self._base}/{path}",
            json=json,
            data=data,
            timeout=timeout,
            headers=self._headers,
            secrets=(self._key,),
            accept_statuses=accept,
        )


def _device(stats: Any) -> str:
    """A short description of the GPU from `/system_stats`; unreadable stats are unhealthy."""
    devices = stats.get("devices") if isinstance(stats, dict) else None
    if not isinstance(stats, dict) or not isinstance(stats.get("system"), dict):
        raise ProviderBadAnswer("system_stats has no 'system' object")
    if not isinstance(devices, list):
        raise ProviderBadAnswer("system_stats has no 'devices' list")
    if not devices or not isinstance(devices[0], dict):
        return "up (no device reported)"
    device = devices[0]
    name = device.get("name") if isinstance(device.get("name"), str) else "device"
    free = device.get("vram_free")
    if isinstance(free, int | float) and not isinstance(free, bool):
        return f"{name}, {free / 2**30:.1f} GiB VRAM free"
    return str(name)
