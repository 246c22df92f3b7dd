"""Config loading: ${ENV} expansion, secrets masked, and reports that say where and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import hash_key
from gateway.config_file import ConfigError, parse_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GOOD = f"""
public_url: http://gateway.internal:8080
store: redis://127.0.0.1:6379/0
admin_keys: ["{hash_key("admin")}"]
tenants:
  - name: acme
    api_keys: ["{hash_key("acme-key")}"]
    webhook_secret: ${{ACME_SECRET}}
    rate_limit: {{per_second: 10, burst: 20}}
    backends: [ml-*, gpu]
backends:
  - name: ml-key-1
    adapter: modelslab
    base_url: https://modelslab.com/api/v6/images
    api_key: ${{ML_KEY_1}}
    max_concurrency: 8
    models: {{default: sdxl}}
  - name: ml-gpu
    adapter: modelslab
    base_url: https://modelslab.com/api/v1/enterprise
    api_key: ${{ML_GPU_KEY:-fallback-key}}
    tags: [gpu]
    models: {{default: sdxl}}
    options: {{enterprise: true, webhook_deadline: 2m}}
routing: {{strategy: p2c, reservation_lease: 45s}}
"""
ENV = {"ACME_SECRET": SECRET, "ML_KEY_1": "ml-secret-key"}


def test_env_expansion_defaults_and_durations() -> None:
    settings = parse_config(GOOD, ENV)
    assert settings.backends[0].api_key is not None
    assert settings.backends[0].api_key.get_secret_value() == "ml-secret-key"
    assert settings.backends[1].api_key is not None
    assert settings.backends[1].api_key.get_secret_value() == "fallback-key"
    assert settings.backends[1].options["webhook_deadline"] == "2m"
    assert settings.routing.reservation_lease == 45
    assert settings.routing.strategy == "p2c"


def test_secrets_are_masked_in_every_repr() -> None:
    settings = parse_config(GOOD, ENV)
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "ml-secret-key" not in text
        assert SECRET not in text


def test_missing_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD, {"ACME_SECRET": SECRET})
    assert err.value.problems == ["backends[0].api_key: environment variable ML_KEY_1 is not set"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("max_concurrency: 8", "max_concurrency: 0"),
         "backends[0] (ml-key-1).max_concurrency"),
        (("adapter: modelslab\n    base_url: https://modelslab.com/api/v6",
          "adapter: modelsalb\n    base_url: https://modelslab.com/api/v6"), "unknown adapter"),
        (("enterprise: true", "enterprise: sometimes"), "backends[1] (ml-gpu).options.enterprise"),
        (("webhook_deadline: 2m", "webhook_dedline: 2m"), "options.webhook_dedline"),
        (("backends: [ml-*, gpu]", "backends: [astria-*]"), "matches no backend"),
        (("per_second: 10", "per_second: -1"), "tenants[0] (acme).rate_limit.per_second"),
        (("strategy: p2c", "strategy: fastest"), "routing.strategy"),
        (("reservation_lease: 45s", "reservation_lease: soon"), "routing.reservation_lease"),
        (("public_url: http://gateway.internal:8080", "public_url: gateway.internal"),
         "public_url"),
        (("store: redis://127.0.0.1:6379/0", "store: mysql://db"), "store"),
        (("name: ml-gpu", "name: ml-key-1"), "duplicate names ml-key-1"),
    ],
)  # fmt: skip
def test_each_mistake_is_reported_where_it_is(change: tuple[str, str], expected: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ConfigError) as err:
        parse_config(text, ENV)
    assert any(expected in problem for problem in err.value.problems), err.value.problems


def test_bad_webhook_secret_and_key_hash() -> None:
    bad = GOOD.replace(f'["{hash_key("acme-key")}"]', '["plain-text-key"]')
    with pytest.raises(ConfigError) as err:
        parse_config(bad, {**ENV, "ACME_SECRET": "not-a-whsec"})
    problems = "\n".join(err.value.problems)
    assert "tenants[0] (acme).api_keys[0]: must be 'sha256:'" in problems
    assert "tenants[0] (acme).webhook_secret: must start with 'whsec_'" in problems


def test_check_config_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    env = {**ENV, "PATH": "/usr/bin:/bin"}
    ok = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(good)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    assert "ml-gpu: modelslab" in ok.stdout
    assert "ml-secret-key" not in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("max_concurrency: 8", "max_concurrency: many"))
    failed = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(bad)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert failed.returncode == 1
    assert "backends[0] (ml-key-1).max_concurrency" in failed.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(tmp_path / "none.yaml")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
