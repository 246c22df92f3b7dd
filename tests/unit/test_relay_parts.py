"""Signing (checked by the reference library), the SSRF guard, and log redaction."""

from __future__ import annotations

import ipaddress
import json
import socket
from datetime import UTC, datetime

import pytest
from aiohttp.abc import ResolveResult
from standardwebhooks.webhooks import Webhook

from gateway.relay import signing
from gateway.relay.guard import GuardedResolver, OutboundGuard, Refused
from observability.redaction import redact_processor, scrub_text

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_verifies_with_the_standard_webhooks_library() -> None:
    body = json.dumps({"type": "generation.succeeded", "data": {"id": "gen_1"}}).encode()
    headers = signing.headers(signing.secret_key(SECRET), "msg_1", 1_700_000_000, body)
    wh = Webhook(SECRET)
    # The library rejects old timestamps on verify; compare with its own signature instead.
    expected = wh.sign("msg_1", datetime.fromtimestamp(1_700_000_000, tz=UTC), body.decode())
    assert headers["webhook-signature"] == expected
    with pytest.raises(Exception):  # noqa: B017,PT011 - any verification failure will do
        wh.verify(body + b" ", headers)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "::1", "fe80::1",
     "fd00:ec2::254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "::ffff:10.0.0.1"],
)  # fmt: skip
def test_guard_refuses_internal_addresses(address: str) -> None:
    guard = OutboundGuard([], allow_http=True)
    assert guard.reason(ipaddress.ip_address(address)) is not None
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(Refused):
        guard.check_url(f"http://{host}/hook")


def test_guard_allows_public_and_allow_listed() -> None:
    guard = OutboundGuard([ipaddress.ip_network("127.0.0.0/8")], allow_http=False)
    assert guard.reason(ipaddress.ip_address("93.184.216.34")) is None
    assert guard.reason(ipaddress.ip_address("127.0.0.1")) is None
    with pytest.raises(Refused, match="plain http"):
        guard.check_url("http://127.0.0.1/hook")
    guard.check_url("https://127.0.0.1/hook")


class FakeResolver:
    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: int = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.answers
        ]

    async def close(self) -> None:
        return None


async def test_resolver_drops_forbidden_answers() -> None:
    guard = OutboundGuard([], allow_http=True)
    mixed = GuardedResolver(guard, FakeResolver(["10.0.0.7", "93.184.216.34"]))  # type: ignore[arg-type]
    assert [r["host"] for r in await mixed.resolve("example.com", 443)] == ["93.184.216.34"]
    private = GuardedResolver(guard, FakeResolver(["10.0.0.7"]))  # type: ignore[arg-type]
    with pytest.raises(Refused, match="private"):
        await private.resolve("rebind.example", 443)


def test_redaction_masks_secret_fields_and_text() -> None:
    event = {
        "event": "calling provider with key=abc123 Bearer tok3n",
        "api_key": "sk-live-1",
        "headers": {"Authorization": "Bearer zzz", "Accept": "json"},
        "note": f"secret {SECRET}",
        "url": "https://gw/webhooks/ml/gen.0?token=deadbeef&x=1",
    }
    out = redact_processor(None, "info", event)
    rendered = json.dumps(out)
    for secret in ("abc123", "sk-live-1", "zzz", "tok3n", SECRET, "deadbeef"):
        assert secret not in rendered
    assert out["headers"]["Accept"] == "json"
    assert scrub_text("key is hunter22 ok", ["hunter22"]) == "key is *** ok"
