"""Real processes for the live run: redis-server, simulators, gateways; stopped by PID.

Only processes started here are ever signalled, each through its own Popen handle.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.fleet import BackendSpec
from gateway.config import hash_key

REPO = Path(__file__).resolve().parent.parent
TENANT_KEY = "bench-tenant-key"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"bench-webhook-secret-32-bytes!!!").decode()
SIM_KEY = "sim-key"
SIM_PATH = "/api/v6/images"  # the ModelsLab cloud simulator's base path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        self._logs.append(log)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=_env())
        self.procs[name] = proc
        return proc

    def redis(self) -> int:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (`make bench` installs it)")
        port = free_port()
        self.start("redis", [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(self.workdir),
                             "--protected-mode", "no"])  # fmt: skip
        return port

    def simulator(self, spec: BackendSpec, speed: float, seed: int) -> int:
        """`gateway simulate modelslab` with concurrency = the backend's parallelism."""
        port = free_port()
        self.start(spec.name, [sys.executable, "-m", "gateway", "simulate", "modelslab",
                               "--port", str(port), "--speed", f"{speed:.6g}",
                               "--concurrency", str(spec.parallelism), "--api-key", SIM_KEY,
                               "--seed", str(seed)])  # fmt: skip
        return port

    def gateway(self, name: str, config: dict[str, Any]) -> str:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.start(name, [sys.executable, "-m", "gateway", "serve", "--config", str(path)])
        return f"http://127.0.0.1:{config['listen']['port']}"

    def stop(self, name: str, *, kill: bool = False) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.kill() if kill else proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        for log in self._logs:
            log.close()

    def cpu_seconds(self, name: str) -> float:
        """User + system CPU time of a process so far (Linux /proc)."""
        proc = self.procs.get(name)
        if proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


async def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer 200 within {timeout:g}s")
            await asyncio.sleep(0.1)


def gateway_config(
    *,
    port: int,
    redis_port: int,
    strategy: str,
    fleet: list[BackendSpec],
    sim_ports: dict[str, int],
    scale: float,
    result_timeout: float,
) -> dict[str, Any]:
    """One gateway in front of the simulated fleet, its timers compressed by `scale`.

    Every timer that shapes routing is the default times `scale`, so the live run is the
    model's scenario played `1/scale` times faster.
    """
    backends = [
        {
            "name": spec.name,
            "adapter": "modelslab",
            "base_url": f"http://127.0.0.1:{sim_ports[spec.name]}{SIM_PATH}",
            "api_key": SIM_KEY,
            "max_concurrency": spec.max_concurrency,
            "parallelism": spec.parallelism,
            "weight": round(spec.weight, 6),
            "models": {"default": "sdxl"},
            "options": {"webhook_deadline": 60 * scale, "poll_interval": 5 * scale},
        }
        for spec in fleet
    ]
    return {
        "public_url": f"http://127.0.0.1:{port}",
        "store": f"redis://127.0.0.1:{redis_port}/0",
        "listen": {"host": "127.0.0.1", "port": port},
        "log_level": "warning",
        "routing": {
            "strategy": strategy,
            "view_refresh": 0.25 * scale,
            "probe_interval": 10 * scale,
            "speed_prior": 0.5 * scale,
            "reservation_lease": 30.0,
            "ejection": {"base_time": 5 * scale, "max_time": 300 * scale},
        },
        "outbound": {
            "allow_http": True,
            "allow_networks": ["127.0.0.0/8"],
            "timeout": 5,
            "schedule": [0, 0.2, 0.5, 1, 2],
            "jitter": 0,
        },
        "jobs": {"result_timeout": result_timeout, "dispatch_timeout": 120 * scale},
        "tenants": [
            {
                "name": "bench",
                "api_keys": [hash_key(TENANT_KEY)],
                "webhook_secret": WEBHOOK_SECRET,
            }
        ],
        "backends": backends,
    }
