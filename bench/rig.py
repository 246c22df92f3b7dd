"""The overhead bench's rig: mocks, nginx, Redis (single or Cluster), gateways; CPU accounting.

Core 0 runs what is measured (a gateway, nginx's proxy, LiteLLM); core 1 runs Redis, the
mocks, the load generators and the bench itself. Everything listens on 127.0.0.1 and is
stopped by PID when the rig closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import redis

from bench import servers
from bench.procs import TENANT_KEY, WEBHOOK_SECRET, Processes, free_port, wait_ready
from bench.rediscluster import ClusterNodes, start_cluster
from gateway.config import hash_key

MEASURED, OTHER = "0", "1"
AUTH = {"Authorization": f"Bearer {TENANT_KEY}"}
GATEWAY_BODY = json.dumps({"prompt": "a lighthouse at dusk, overhead benchmark"})
# What the gateway sends ModelsLab for that body, near enough: the direct baseline's body.
DIRECT_BODY = json.dumps(
    {"key": "sim-key", "prompt": "a lighthouse at dusk, overhead benchmark",
     "model_id": "sdxl", "width": 1024, "height": 1024, "samples": 1,
     "num_inference_steps": 30, "webhook": "http://127.0.0.1:9/webhooks/x", "track_id": "t"}
)  # fmt: skip
LITELLM_BODY = json.dumps({"model": "bench-image", "prompt": "a lighthouse at dusk", "n": 1})


class Rig:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs = Processes(workdir)
        self.mock_ports = [free_port(), free_port()]
        self.proxy_port = free_port()  # nginx least_conn over the two mocks
        self.gw_ports = [free_port(), free_port()]
        self.gw_proxy_port = free_port()  # the same nginx over two gateway instances
        self.redis_port = 0
        self.cluster: ClusterNodes | None = None
        self.litellm_url = ""

    def __enter__(self) -> Rig:
        os.sched_setaffinity(0, {int(OTHER)})  # the bench's own work stays off core 0
        try:
            servers.start_nginx(
                self.procs, "mock", servers.mock_conf(self.workdir / "mock", self.mock_ports), OTHER
            )
            conf = servers.proxy_conf(
                self.workdir / "proxy",
                {self.proxy_port: self.mock_ports, self.gw_proxy_port: self.gw_ports},
            )
            servers.start_nginx(self.procs, "proxy", conf, MEASURED)
            self.redis_port = servers.start_redis(self.procs, "redis", OTHER)
            for port in (*self.mock_ports, self.proxy_port, self.redis_port):
                servers.wait_port(port)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.procs.stop_all()

    # --- URLs -------------------------------------------------------------------------
    def mock_url(self, path: str = servers.SUCCESS_PATH, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.mock_ports[i]}{path}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def redis_client(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port)

    def flush(self) -> None:
        client = self.redis_client()
        client.flushall()
        client.close()

    def start_cluster(self) -> str:
        self.cluster = start_cluster(self.workdir / "cluster", cpu=OTHER)
        return self.cluster.url

    # --- gateways ---------------------------------------------------------------------
    def gateway_config(
        self, port: int, store: str, *, mode: str = servers.SUCCESS_PATH, capacity: int = 100_000
    ) -> dict[str, Any]:
        backends = [
            {
                "name": f"mock-{i}",
                "adapter": "modelslab",
                "base_url": self.mock_url(mode, i),
                "api_key": "sim-key",
                "max_concurrency": capacity,
                "parallelism": capacity,
                "models": {"default": "sdxl"},
            }
            for i in range(len(self.mock_ports))
        ]
        return {
            "public_url": f"http://127.0.0.1:{port}",
            "store": store,
            "listen": {"host": "127.0.0.1", "port": port},
            "log_level": "info",
            "outbound": {"allow_http": True, "allow_networks": ["127.0.0.0/8"], "jitter": 0},
            "tenants": [
                {
                    "name": "bench",
                    "api_keys": [hash_key(TENANT_KEY)],
                    "webhook_secret": WEBHOOK_SECRET,
                    # On, so the submit path pays for it; high enough never to refuse.
                    "rate_limit": {"per_second": 1_000_000, "burst": 1_000_000},
                }
            ],
            "backends": backends,
        }

    def start_gateway(
        self, name: str, port: int, store: str, *, cpu: str = MEASURED, **config: Any
    ) -> str:
        path = self.workdir / f"{name}.yaml"
        import yaml

        path.write_text(yaml.safe_dump(self.gateway_config(port, store, **config)))
        self.procs.start(name, ["taskset", "-c", cpu, *gateway_argv(path)])
        url = f"http://127.0.0.1:{port}"
        asyncio.run(wait_ready(f"{url}/readyz", timeout=60))
        return url

    def stop(self, name: str) -> None:
        if name in self.procs.procs:
            self.procs.stop(name)

    def start_litellm(self) -> str:
        if not self.litellm_url:
            self.litellm_url = servers.start_litellm(self.procs, self.mock_ports[0], MEASURED)
            port = int(self.litellm_url.rsplit(":", 1)[1])
            servers.wait_port(port, timeout=180)
        return self.litellm_url

    # --- accounting -------------------------------------------------------------------
    def pids(self, names: list[str]) -> dict[str, int]:
        found = {n: self.procs.procs[n].pid for n in names if n in self.procs.procs}
        if self.cluster is not None and "cluster" in names:
            for i, pid in enumerate(self.cluster.pids):
                found[f"cluster-{i}"] = pid
        return found

    def cpu(self, names: list[str]) -> dict[str, float]:
        return {n: servers.tree_cpu(pid) for n, pid in self.pids(names).items()}

    def rss(self, name: str) -> int:
        pids = self.pids([name])
        return servers.pid_rss(pids[name]) if name in pids else 0


def gateway_argv(config: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "gateway", "serve", "--config", str(config)]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def host_ticks() -> tuple[int, int]:
    """(steal, all) CPU ticks of the machine so far, from /proc/stat (0, 0 where unknown)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of the machine's CPU time the hypervisor gave to others in between: every
    process here runs slower by about that much, so a run with a high share is not comparable."""
    steal, total = after[0] - before[0], after[1] - before[1]
    return round(100 * steal / total, 1) if total > 0 else None


class CpuWindow:
    """CPU seconds of named processes over a `with` block, per request, and the host's steal."""

    def __init__(self, rig: Rig, names: list[str]) -> None:
        self.rig, self.names = rig, names
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.wall = 0.0
        self.steal_pct: float | None = None

    def __enter__(self) -> CpuWindow:
        self.before = self.rig.cpu(self.names)
        self.before["loadgen"] = _children_cpu()
        self._ticks = host_ticks()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self._t0
        self.steal_pct = steal_pct(self._ticks, host_ticks())
        after = self.rig.cpu(self.names)
        after["loadgen"] = _children_cpu()  # wrk / the open-loop client, ended by now
        self.used = {n: after[n] - self.before.get(n, 0.0) for n in after}

    def per_request_us(self, requests: int) -> dict[str, float]:
        if requests <= 0:
            return {}
        return {n: round(s / requests * 1e6, 1) for n, s in self.used.items()}
