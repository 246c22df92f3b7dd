"""A real 3-master Redis Cluster on loopback, for the tests and the bench.

Three `redis-server --cluster-enabled yes` on free ports, joined by `redis-cli --cluster
create ... --cluster-replicas 0 --cluster-yes`; stopped by PID. The gateway reaches it with
`redis+cluster://127.0.0.1:<port>` (any node: the others are discovered).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MASTERS = 3


def _free_port() -> int:
    # Cluster nodes also listen on port + 10000 (the bus): pick ports that leave it free.
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 < 65536:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


@dataclass
class ClusterNodes:
    ports: list[int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cli(self, port: int, *args: str) -> str:
        exe = shutil.which("redis-cli") or "redis-cli"
        done = subprocess.run(
            [exe, "-p", str(port), *args], capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout + done.stderr

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def start_cluster(
    workdir: Path,
    *,
    cpu: str | None = None,
    timeout: float = 30,
    replicas: int = 0,
    node_timeout_ms: int = 2000,
) -> ClusterNodes:
    """Three masters (each with `replicas` replicas) joined into a cluster; a node that
    cannot start (its port taken between choosing and binding, on a busy machine) means a
    fresh try on new ports."""
    for attempt in range(3):
        try:
            return _start(workdir / f"try{attempt}", cpu, timeout, replicas, node_timeout_ms)
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start(
    workdir: Path, cpu: str | None, timeout: float, replicas: int, node_timeout_ms: int
) -> ClusterNodes:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (`make test` installs it)")
    nodes = ClusterNodes(ports=[])
    pinned = ["taskset", "-c", cpu] if cpu is not None else []
    try:
        for _ in range(MASTERS * (1 + replicas)):
            port = _free_port()
            nodes.ports.append(port)
            home = workdir / str(port)
            home.mkdir(parents=True, exist_ok=True)
            nodes.procs.append(
                subprocess.Popen(
                    [
                        *pinned,
                        exe,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        str(node_timeout_ms),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(home),
                        "--protected-mode",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + timeout
        for port in nodes.ports:
            while "PONG" not in nodes.cli(port, "ping"):
                if time.monotonic() > deadline or any(p.poll() is not None for p in nodes.procs):
                    raise RuntimeError(f"cluster node {port} did not start")
                time.sleep(0.05)
        out = nodes.cli(
            nodes.ports[0], "--cluster", "create",
            *(f"127.0.0.1:{p}" for p in nodes.ports),
            "--cluster-replicas", str(replicas), "--cluster-yes",
        )  # fmt: skip
        if "[OK]" not in out:
            raise RuntimeError(f"redis-cli --cluster create failed: {out[-500:]}")
        for port in nodes.ports:
            while "cluster_state:ok" not in nodes.cli(port, "cluster", "info"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not reach cluster_state:ok")
                time.sleep(0.1)
        for port in nodes.ports:  # replicas in sync: a failover then loses nothing
            info = nodes.cli(port, "info", "replication")
            while "role:master" in info and info.count("state=online") < replicas:
                if time.monotonic() > deadline:
                    raise RuntimeError("the replicas did not catch up with their masters")
                time.sleep(0.1)
                info = nodes.cli(port, "info", "replication")
    except BaseException:
        nodes.stop()
        raise
    return nodes
