"""deploy/ checked by the real tools, none of which needs a container engine: hadolint,
`docker compose config` (or Debian's docker-compose), kubectl kustomize + kubernetes-validate,
promtool; plus what the files promise that a linter cannot see."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.registry import ADAPTERS
from gateway.config import hash_key
from gateway.config_file import parse_config
from tests.deploy.tools import DEPLOY, ROOT, compose_config, kustomize, run, tool

PROMETHEUS = DEPLOY / "prometheus"
KUBERNETES = DEPLOY / "kubernetes"


def test_dockerfile_passes_hadolint_at_its_strictest() -> None:
    run(tool("hadolint"), "--failure-threshold", "style", "deploy/Dockerfile")


def test_image_is_pinned_non_root_and_checks_its_health() -> None:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", f) for f in froms)
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM "))]
    tail = "\n".join(lines[lines.index(final) :])
    user = re.search(r"^USER (\S+)", tail, re.M)
    assert user
    assert user.group(1).split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", tail, re.M)
    assert '\nENTRYPOINT ["gateway"]' in tail


def test_compose_file_is_valid_and_holds_the_whole_setup() -> None:
    services: dict[str, Any] = yaml.safe_load(compose_config())["services"]
    redis = services["redis"]
    assert "--appendonly" in redis["command"]
    assert "yes" in redis["command"]
    gateways = sorted(
        name
        for name, s in services.items()
        if any("/etc/gateway/gateway.yaml" in str(v) for v in s.get("volumes", []))
    )
    assert len(gateways) == 2
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert all(f"server {g}:8080" in nginx for g in gateways)
    simulated = {
        s["command"][1] for s in services.values() if s.get("command", [""])[0] == "simulate"
    }
    assert simulated == set(ADAPTERS)
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(t.split(":")[0] for t in targets) == gateways
    prometheus = " ".join(map(str, services["prometheus"]["volumes"]))
    assert "alerts.yml" in prometheus
    assert "prometheus.yml" in prometheus
    grafana = " ".join(map(str, services["grafana"]["volumes"]))
    assert "grafana/provisioning" in grafana
    assert "grafana/dashboards" in grafana
    for name in gateways:  # the drain ends before compose's SIGKILL
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = parse_config((DEPLOY / "gateway.yaml").read_text(), env)
        grace = float(services[name]["stop_grace_period"].removesuffix("s"))
        assert settings.shutdown.drain_seconds + 5 <= grace
    # Secrets reach the gateways from the environment only: ${VAR:-demo default} in the file.
    raw = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, value in raw["x-gateway-env"].items():
        assert re.fullmatch(r"\$\{" + name + r":-[^}]+\}", value), name


@pytest.mark.parametrize("folder", ["base", "overlays/example"])
def test_kustomize_output_passes_kubernetes_validate(folder: str, tmp_path: Path) -> None:
    rendered = kustomize(KUBERNETES / folder)
    out = tmp_path / "rendered.yaml"
    out.write_text(rendered)
    run(tool("kubernetes-validate"), "--strict", "--quiet", str(out))

    docs = {d["kind"]: d for d in yaml.safe_load_all(rendered) if d}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= set(docs)
    assert "HorizontalPodAutoscaler" in docs
    assert "Secret" not in docs  # referenced, never shipped
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    for env in container["env"]:  # every value from the Secret, none written in
        assert set(env) == {"name", "valueFrom"}, env
        assert set(env["valueFrom"]) == {"secretKeyRef"}, env

    # The ConfigMap's config is valid once the Secret's values are in the environment.
    config = docs["ConfigMap"]["data"]["gateway.yaml"]
    refs = set(re.findall(r"\$\{([A-Z0-9_]+)\}", config))
    assert refs == {e["name"] for e in container["env"]}
    settings = parse_config(config, {name: _placeholder(name) for name in refs})
    # Kubernetes sends SIGKILL after the grace period: the drain must end before it.
    assert settings.shutdown.drain_seconds + 5 <= pod["terminationGracePeriodSeconds"]


def _placeholder(name: str) -> str:
    if name.endswith("_HASH"):
        return hash_key(name)
    if name.endswith("WEBHOOK_SECRET"):
        return "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"
    if name == "REDIS_URL":
        return "redis://redis.example.internal:6379/0"
    if name.endswith("URL"):
        return "https://gateway.example.internal"
    return "provider-key"


def test_prometheus_configs_and_rules_pass_promtool() -> None:
    promtool = tool("promtool")
    run(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    run(promtool, "check", "config", str(PROMETHEUS / "prometheus-kubernetes.yml"))
    run(promtool, "check", "rules", str(PROMETHEUS / "alerts.yml"))
    run(promtool, "test", "rules", str(PROMETHEUS / "alerts_test.yml"))


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fired == alerts
    assert silent == alerts


def test_dashboard_json_is_what_its_generator_writes() -> None:
    run(tool("python"), "deploy/grafana/dashboard.py", "--check")
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "gateway.json").read_text())
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"tenant", "backend", "instance"} <= names
    provisioning = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "gateway.yaml").read_text()
    )
    assert provisioning["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert (ROOT / ".dockerignore").exists()
