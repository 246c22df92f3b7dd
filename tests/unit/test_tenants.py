"""Tenant config (quotas, priorities, weights, prices) and key rotation."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.auth import Directory
from gateway.config import Quotas, Tenant, hash_key
from gateway.config_file import ConfigError, parse_config
from gateway.errors import Forbidden, Unauthorized
from gateway.quotas import daily_window, month_bounds
from tests.helpers import SECRET

CONFIG = f"""
public_url: http://gateway.internal:8080
usage: {{currency: EUR}}
tenants:
  - name: acme
    api_keys: ["{hash_key("new")}", "{hash_key("old")}"]
    webhook_secret: {SECRET}
    weight: 3
    priority: {{default: batch, max: interactive}}
    quotas: {{concurrency: 10, daily_images: 500, daily_reset_hour: 6, monthly_spend: 250}}
backends:
  - name: gpu
    adapter: comfyui
    base_url: http://10.0.0.11:8188
    models: {{default: sdxl.safetensors}}
    price: {{per_second: 0.0004}}
"""


def test_tenant_quota_priority_weight_and_price_keys_load() -> None:
    settings = parse_config(CONFIG)
    acme = settings.tenants[0]
    assert acme.quotas == Quotas(
        concurrency=10, daily_images=500, daily_reset_hour=6, monthly_spend=250
    )
    assert (acme.priority.default, acme.priority.max, acme.weight) == ("batch", "interactive", 3)
    assert settings.backends[0].price.per_second == 0.0004
    assert settings.usage.currency == "EUR"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("priority: {default: interactive, max: batch}", "tenants[0] (acme).priority"),
        ("quotas: {concurrency: 0}", "tenants[0] (acme).quotas.concurrency"),
        ("quotas: {daily_reset_hour: 24}", "tenants[0] (acme).quotas.daily_reset_hour"),
        ("weight: 0", "tenants[0] (acme).weight"),
    ],
)
def test_bad_tenant_settings_are_reported_where_they_are(change: str, where: str) -> None:
    key = change.split(":")[0]
    lines = [
        f"    {change}" if line.startswith(f"    {key}:") else line for line in CONFIG.split("\n")
    ]
    text = "\n".join(lines)
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert any(p.startswith(where) for p in caught.value.problems), caught.value.problems


def _request(key: str) -> Any:
    return make_mocked_request("GET", "/", headers={"Authorization": f"Bearer {key}"})


def test_key_rotation_keeps_both_keys_valid_until_the_old_one_is_removed() -> None:
    acme = parse_config(CONFIG).tenants[0]
    during = Directory([acme], [hash_key("admin")])
    assert during.tenant(_request("new")).name == "acme"
    assert during.tenant(_request("old")).name == "acme"
    after = Directory([acme.model_copy(update={"api_keys": [hash_key("new")]})], [])
    assert after.tenant(_request("new")).name == "acme"
    with pytest.raises(Unauthorized):
        after.tenant(_request("old"))
    during.admin(_request("admin"))
    with pytest.raises(Forbidden):
        during.admin(_request("new"))  # a tenant key is not an admin key


def test_keys_are_compared_in_constant_time_against_every_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gateway.auth

    compared: list[bytes] = []
    real = gateway.auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(gateway.auth.hmac, "compare_digest", spy)
    tenants = [
        Tenant(name=f"t{n}", api_keys=[hash_key(f"k{n}")], webhook_secret=SECRET) for n in range(5)
    ]
    directory = Directory(tenants, [])
    directory.tenant(_request("k0"))  # found first, yet every hash is compared
    assert len(compared) == 5


def test_daily_window_starts_at_the_reset_hour_and_months_at_the_first() -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 12, 2, 5, 30, tzinfo=UTC).timestamp()
    _, resets = daily_window(at, 6)
    assert datetime.fromtimestamp(resets, UTC) == datetime(2026, 12, 2, 6, tzinfo=UTC)
    _, resets = daily_window(at, 5)
    assert datetime.fromtimestamp(resets, UTC) == datetime(2026, 12, 3, 5, tzinfo=UTC)
    month, following = month_bounds(at)
    assert month == "2026-12"
    assert datetime.fromtimestamp(following, UTC) == datetime(2027, 1, 1, tzinfo=UTC)
