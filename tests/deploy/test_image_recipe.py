"""The image's recipe without a container engine: deploy/Dockerfile's build steps run in a
fresh virtualenv, then its entry point starts with the config deploy/compose.yaml mounts and
the environment compose passes, next to the compose file's simulators (same entry point),
all on loopback and a real Redis. /healthz and /readyz answer, and a job goes through.

The image's absolute paths (WORKDIR, VIRTUAL_ENV, the mounted config) live under a temporary
root instead. One difference, on purpose: PIP_NO_CACHE_DIR is left out so pip's cache is
reused and the test stays fast.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.deploy.tools import DEPLOY, ROOT, compose_config
from tests.helpers import free_port
from tests.processes import wait_ready

# pip installs every dependency into the fresh virtualenv: from its cache in about 30 s on a
# quiet machine, longer when it must download them or the machine is busy.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

UNCACHED = {"PIP_NO_CACHE_DIR"}


def instructions(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, args = line.strip().partition(" ")
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, args.strip()))
    return stages


class Root:
    """The image's filesystem, mapped under a temporary directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, image_path: str) -> Path:
        return self.path / image_path.lstrip("/")

    def env_value(self, value: str) -> str:
        return ":".join(str(self(p)) if p.startswith("/") else p for p in value.split(":"))


def build(stage: list[tuple[str, str]], root: Root) -> dict[str, str]:
    """Run a build stage: ENV, WORKDIR, COPY from the repository, RUN with /bin/sh -c."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": os.environ["HOME"]}
    workdir = root("/")
    for keyword, args in stage:
        if keyword == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                if name not in UNCACHED:
                    env[name] = root.env_value(value)
        elif keyword == "WORKDIR":
            workdir = root(args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = shlex.split(args)
            for source in sources:
                target = workdir / dest if not dest.startswith("/") else root(dest)
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, target)
        elif keyword == "RUN":
            done = subprocess.run(
                ["/bin/sh", "-c", args], cwd=workdir, env=env, capture_output=True, text=True,
                timeout=300, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"RUN {args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return env


def entry_point(stage: list[tuple[str, str]], root: Root) -> list[str]:
    """ENTRYPOINT + CMD of the final stage, the executable found on its (mapped) PATH."""
    exec_form = {k: yaml.safe_load(a) for k, a in stage if k in ("ENTRYPOINT", "CMD")}
    command: list[str] = exec_form["ENTRYPOINT"] + exec_form.get("CMD", [])
    path = next(a for k, a in stage if k == "ENV" and "PATH=" in a)
    search = root.env_value(re.search(r"PATH=(\S+)", path).group(1))  # type: ignore[union-attr]
    found = shutil.which(command[0], path=search)
    assert found, f"{command[0]} not on the image's PATH {search}"
    return [found, *(str(root(a)) if a.startswith("/") else a for a in command[1:])]


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_dockerfile_steps_install_and_serve_the_compose_config(
    tmp_path: Path, redis_url: str, started: list[subprocess.Popen[bytes]]
) -> None:
    stages = instructions(DEPLOY / "Dockerfile")
    root = Root(tmp_path / "image")
    build(stages[0], root)
    command = entry_point(stages[-1], root)

    compose: dict[str, Any] = yaml.safe_load(compose_config())["services"]
    gateway_service = compose["gateway-1"]
    for mount in gateway_service["volumes"]:  # the config file the compose file mounts
        source, target = (
            (mount["source"], mount["target"])
            if isinstance(mount, dict)
            else (mount.split(":")[:2])
        )
        root(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root(target))
    config_text = root("/etc/gateway/gateway.yaml").read_text()

    def start(args: list[str], env: dict[str, str], name: str) -> None:
        with (tmp_path / f"{name}.log").open("wb") as log:
            started.append(
                subprocess.Popen(args, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
            )

    base_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    # The compose file's simulators, on loopback ports; the config's address variables
    # (`${X_BASE_URL:-http://sim-x:9000/...}`) point the gateway at them.
    addresses: dict[str, str] = {}
    for var, service, suffix in re.findall(
        r"\$\{(\w+):-http://(sim-[\w-]+):\d+([^}]*)\}", config_text
    ):
        args = list(compose[service]["command"])
        port = free_port()
        args[args.index("--host") + 1] = "127.0.0.1"
        args[args.index("--port") + 1] = str(port)
        start([command[0], *args], base_env, service)
        addresses[var] = f"http://127.0.0.1:{port}{suffix}"
    assert len(addresses) == len([s for s in compose if s.startswith("sim-")]) == 4

    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {
        **base_env,
        **{k: str(v) for k, v in gateway_service["environment"].items()},
        **addresses,
        "GATEWAY_STORE": redis_url,
        "GATEWAY_PUBLIC_URL": origin,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
    }
    start(command, env, "gateway")
    try:
        await wait_ready(origin, "/healthz", timeout=30)
        await wait_ready(origin, "/readyz", timeout=30)
    except AssertionError:
        raise AssertionError((tmp_path / "gateway.log").read_text()[-3000:]) from None

    auth = {"Authorization": "Bearer acme-demo-key"}  # README: compose's demo tenant key
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(
            f"{origin}/v1/generations", json={"prompt": "a lighthouse", "backends": ["gpu"]}
        ) as resp:
            assert resp.status == 202, await resp.text()
            job = await resp.json()
        async with http.get(f"{origin}/v1/generations/{job['id']}", params={"wait": "30"}) as r:
            done = await r.json()
    assert done["status"] == "succeeded", done
    assert done["backend"] == "comfyui-sim"
    assert started[-1].poll() is None, "the gateway exited"
