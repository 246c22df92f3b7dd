"""`gateway check-config FILE`: say exactly what is wrong, or what the config will do."""

from __future__ import annotations

import sys

from adapters.base import trainer_of
from adapters.registry import ADAPTERS
from gateway.config import Settings, backend_matches
from gateway.config_file import ConfigError, load_config


def check_config(path: str) -> int:
    try:
        settings = load_config(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(report(settings, path))
    return 0


def report(settings: Settings, path: str) -> str:
    lines = [f"{path}: OK"]
    lines.append(f"  store: {settings.store.split('://')[0]}://  public_url: {settings.public_url}")
    lines.append(f"  listen: {settings.listen.host}:{settings.listen.port}")
    lines.append(
        f"  routing: {settings.routing.strategy}, max_attempts {settings.routing.max_attempts}, "
        f"lease {settings.routing.reservation_lease:g}s"
    )
    lines.append(f"  backends ({len(settings.backends)}):")
    for b in settings.backends:
        key = "key set" if b.api_key and b.api_key.get_secret_value() else "no key"
        lines.append(
            f"    - {b.name}: {b.adapter} at {b.base_url} ({key}), max_concurrency "
            f"{b.max_concurrency or 'default'}, "
            f"weight {b.weight:g}, models {', '.join(sorted(b.models))}"
            + (f", tags {', '.join(b.tags)}" if b.tags else "")
        )
    trainers = [
        b.name for b in settings.backends if trainer_of(ADAPTERS[b.adapter].create(b.target()))
    ]
    lines.append(
        "  fine-tunes: "
        + (f"trained on {', '.join(trainers)}" if trainers else "no backend can train (422)")
        + f"; {settings.tunes.min_images}-{settings.tunes.max_images} images"
    )
    lines.append(f"  tenants ({len(settings.tenants)}):")
    for t in settings.tenants:
        allowed = [
            b.name for b in settings.backends if any(backend_matches(b, p) for p in t.backends)
        ]
        limit = (
            f", rate {t.rate_limit.per_second:g}/s burst {t.rate_limit.burst}"
            if t.rate_limit
            else ""
        )
        lines.append(
            f"    - {t.name}: {len(t.api_keys)} key(s){limit}, may use {', '.join(allowed)}"
        )
    for warning in warnings(settings):
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def warnings(settings: Settings) -> list[str]:
    found = []
    if settings.store.startswith("memory://"):
        found.append("memory:// keeps state in this process: run a single instance only")
    if not settings.admin_keys:
        found.append("no admin_keys: drain/undrain and the full backend list are unavailable")
    if settings.outbound.allow_http:
        found.append("outbound.allow_http is true: client webhooks may go over plain http")
    for b in settings.backends:
        if b.adapter in ("modelslab", "astria", "bodia") and not b.api_key:
            found.append(f"backend {b.name} has no api_key; the provider will refuse it")
    return found
