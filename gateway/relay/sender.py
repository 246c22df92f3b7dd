"""One signed POST of a client webhook, classified for the retry policy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from adapters.http import without_frames
from adapters.httpclient import HttpClient
from gateway.jobs.model import DeliveryAttempt, utcnow
from gateway.relay import signing
from gateway.relay.guard import OutboundGuard, Refused

DRAIN_BYTES = 4096


class Verdict(StrEnum):
    DELIVERED = "delivered"  # 2xx
    RETRY = "failed"  # anything else worth another try
    DISABLED = "disabled"  # 410 Gone: the endpoint asks us to stop
    REFUSED = "refused"  # the SSRF guard forbids the destination


@dataclass(frozen=True)
class Sent:
    verdict: Verdict
    attempt: DeliveryAttempt
    retry_after: float | None = None


class Sender:
    def __init__(self, session: HttpClient, guard: OutboundGuard, timeout: float) -> None:
        self._session = session
        self._guard = guard
        self._timeout = timeout

    async def send(self, url: str, key: bytes, msg_id: str, body: bytes) -> Sent:
        started = time.perf_counter()
        at = utcnow()

        def attempt(outcome: Verdict, status: int | None, detail: str | None) -> DeliveryAttempt:
            elapsed = round((time.perf_counter() - started) * 1000, 2)
            return DeliveryAttempt(
                at=at, outcome=outcome.value, status=status, detail=detail, duration_ms=elapsed
            )

        try:
            self._guard.check_url(url)
            headers = signing.headers(key, msg_id, int(time.time()), body)
            # Only the status counts: the first bytes of the body are read, the rest dropped.
            answer = await self._session.request(
                "POST", url, body=body, headers=headers, timeout=self._timeout,
                limit=DRAIN_BYTES, truncate=True,
            )  # fmt: skip
        except Refused as refused:
            return Sent(Verdict.REFUSED, attempt(Verdict.REFUSED, None, str(refused)))
        except TimeoutError as expired:
            without_frames(expired)
            detail = f"no answer within {self._timeout:g}s"
            return Sent(Verdict.RETRY, attempt(Verdict.RETRY, None, detail))
        except (OSError, ValueError) as failure:  # no answer (a client endpoint that is down
            without_frames(failure)  # fails every attempt), or a URL the client cannot send to
            return Sent(
                Verdict.RETRY,
                attempt(Verdict.RETRY, None, f"{type(failure).__name__}: {failure}"[:300]),
            )
        status = answer.status
        retry_after = _seconds(answer.headers.get("retry-after"))
        if 200 <= status < 300:
            return Sent(Verdict.DELIVERED, attempt(Verdict.DELIVERED, status, None))
        if status == 410:
            return Sent(
                Verdict.DISABLED, attempt(Verdict.DISABLED, status, "410 Gone: endpoint disabled")
            )
        if 300 <= status < 400:
            return Sent(Verdict.RETRY, attempt(Verdict.RETRY, status, "redirects are not followed"))
        return Sent(Verdict.RETRY, attempt(Verdict.RETRY, status, f"HTTP {status}"), retry_after)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date; the schedule decides instead
