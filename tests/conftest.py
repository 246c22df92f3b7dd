"""Test setup: a real redis-server for the session, a clean database per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

# Before the gateway is imported: every script call checks its keys share a hash slot
# (gateway/store/connect.py), here and in the gateway processes the tests start.
os.environ.setdefault("GATEWAY_CHECK_SLOTS", "1")

import pytest
import redis as redis_sync
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.base import SimulatorSettings
from adapters.httpclient import HttpClient
from adapters.registry import ADAPTERS
from adapters.simkit import engine_key
from bench.rediscluster import ClusterNodes, start_cluster
from gateway.app import create_app
from gateway.config import Settings
from tests.helpers import Receiver, free_port, make_settings
from tests.processes import ProcessGroup


def start_redis(directory: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; `make test` installs it from Debian's packages")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--protected-mode", "no", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis_sync.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis_sync.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    client.close()
    return proc, port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Redis: REDIS_URL if given, else a redis-server started (and stopped) here."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A clean database for this test."""
    client = redis_sync.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNodes]:
    """A real 3-master Redis Cluster for the session, started (and stopped) here."""
    try:
        nodes = start_cluster(tmp_path_factory.mktemp("cluster"))
    except RuntimeError as exc:
        pytest.fail(f"could not start a Redis Cluster: {exc}")
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def cluster_url(redis_cluster: ClusterNodes) -> str:
    """The cluster, every master flushed for this test."""
    for port in redis_cluster.ports:
        redis_cluster.cli(port, "flushall")
    return redis_cluster.url


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    """The gateway's own HTTP client, as adapters get it."""
    client = HttpClient()
    yield client
    await client.close()


@pytest.fixture(params=["redis", "memory"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Run a test against the real Redis and against memory:// (the same scripts)."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


Simulator = Callable[..., Awaitable[tuple[str, TestServer]]]


@pytest.fixture
def simulator_servers() -> list[TestServer]:
    """The simulators this test started (`simulator` starts them, `gateway` quiets them)."""
    return []


@pytest.fixture
async def simulator(simulator_servers: list[TestServer]) -> AsyncIterator[Simulator]:
    """Start provider simulators on free ports; returns (base_url, server)."""
    servers = simulator_servers

    async def start(adapter: str = "modelslab", **settings: Any) -> tuple[str, TestServer]:
        """The simulator's base_url (origin + its API path) and its server."""
        sim = SimulatorSettings(**{"speed": 0.05, **settings})
        server = TestServer(ADAPTERS[adapter].simulator(sim), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        base = f"http://127.0.0.1:{server.port}{ADAPTERS[adapter].simulator_base_path(sim)}"
        return base, server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    recv = Receiver()
    server = TestServer(recv.app, host="127.0.0.1")
    await server.start_server()
    yield recv, f"http://127.0.0.1:{server.port}/hook"
    await server.close()


Gateway = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def gateway(
    simulator: Simulator,
    simulator_servers: list[TestServer],
    receiver: tuple[Receiver, str],
) -> AsyncIterator[Gateway]:
    """Start gateway instances in-process; each gets its own port and public_url.

    It depends on the simulators and the receiver so that they outlive the gateways: a
    connection that reaches a server while it closes is accepted and never closed, and
    surfaces later as an "unclosed transport" warning in whatever test runs then.
    """
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(
        store: str, backends: list[dict[str, Any]], port: int | None = None, **overrides: Any
    ) -> TestClient[web.Request, web.Application]:
        port = port or free_port()
        settings: Settings = make_settings(store, port, backends, **overrides)
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=port))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    # Provider callbacks are the only calls into a gateway that nothing awaits: stop them
    # (the simulators' workers and callbacks) before the gateways close. The simulators'
    # HTTP servers still answer the gateways' last polls.
    for server in simulator_servers:
        await server.app[engine_key].stop()
    for client in clients:
        await client.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Real processes for one test (`gateway serve`, `gateway simulate`), stopped by PID."""
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()
