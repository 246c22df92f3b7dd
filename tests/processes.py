"""Real processes for integration tests: started here, stopped here, by PID."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.helpers import free_port, settings_dict


class ProcessGroup:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.procs[name] = proc
        return proc

    def simulator(self, name: str, adapter: str = "modelslab", **flags: Any) -> tuple[int, str]:
        """Start `gateway simulate`; returns its port and origin."""
        port = free_port()
        args = ["simulate", adapter, "--port", str(port), "--api-key", "sim-key"]
        for key, value in flags.items():
            flag = "--" + key.replace("_", "-")
            args += [flag] if value is True else [flag, str(value)]
        self.start(name, *args)
        return port, f"http://127.0.0.1:{port}"

    def gateway(self, name: str, config: dict[str, Any]) -> str:
        """Start `gateway serve` with `config`; returns its origin."""
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.start(name, "serve", "--config", str(path))
        return f"http://127.0.0.1:{config['listen']['port']}"

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")


async def wait_ready(url: str, path: str = "/readyz", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url + path) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}{path} not ready within {timeout}s")
            await asyncio.sleep(0.1)


def gateway_config(
    store: str, port: int, backends: list[dict[str, Any]], **overrides: Any
) -> dict[str, Any]:
    config = settings_dict(store, port, backends, **overrides)
    config.setdefault("log_level", "info")
    # Tests stop instances with SIGTERM: a short unready window keeps teardown quick.
    config.setdefault("shutdown", {"unready_seconds": 0.2})
    return config


class RedisProcess:
    """A redis-server of the test's own, with AOF persistence, that can be restarted."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed; `make test` installs it"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--protected-mode", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _answers(self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): Redis flushes its AOF first."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
