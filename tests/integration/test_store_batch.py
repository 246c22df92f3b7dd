"""Auto-pipelining (gateway/store/batch.py) on a real Redis: scripts started in one loop turn
share a round trip, and each caller still gets its own reply or error."""

from __future__ import annotations

import asyncio
import gc
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store import keys, open_store
from gateway.store.events import LISTENER_NAME, JobEvents
from gateway.store.keys import EVENTS_CHANNEL
from gateway.store.wire import NAME, Wire
from observability.metrics import Metrics
from tests.conftest import start_redis
from tests.helpers import free_port


def observed(metrics: Metrics) -> dict[str, float]:
    return {
        s.labels["operation"]: s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "gateway_store_command_duration_seconds_count"
    }


async def test_one_turns_scripts_share_one_round_trip(redis_url: str) -> None:
    metrics = Metrics(CollectorRegistry())
    store = await open_store(redis_url, metrics)
    wire = store._batcher._wire  # type: ignore[union-attr]
    taken: list[object] = []
    real_send = wire.send

    async def counting_send(commands: Any) -> Any:
        taken.append(commands)
        return await real_send(commands)

    wire.send = counting_send  # type: ignore[method-assign]
    try:
        await store.run("RATE_LIMIT", [keys.rate_bucket("warm")], [1000, 0])  # loads it
        warm = observed(metrics).get("RATE_LIMIT", 0)
        taken.clear()
        # Twenty rate-limit checks started in one turn: one write, one batch of replies.
        waits = await asyncio.gather(
            *(store.run("RATE_LIMIT", [keys.rate_bucket(f"t{i}")], [1000, 0]) for i in range(20))
        )
        assert waits == [[0, 1]] * 20
        assert len(taken) == 1
        # Two turns apart: two round trips.
        taken.clear()
        await store.run("RATE_LIMIT", [keys.rate_bucket("u")], [1000, 0])
        await store.run("RATE_LIMIT", [keys.rate_bucket("v")], [1000, 0])
        assert len(taken) == 2
        # Every script's latency is still observed under its own name.
        assert observed(metrics)["RATE_LIMIT"] == warm + 22
    finally:
        wire.send = real_send  # type: ignore[method-assign]
        await store.close()


async def test_an_error_fails_only_its_own_caller(redis_url: str) -> None:
    store = await open_store(redis_url)
    try:
        good = store.run("RATE_LIMIT", [keys.rate_bucket("a")], [1000, 0])
        bad = store.run("RATE_LIMIT", [keys.rate_bucket("b")], ["not a number", 0])
        also_good = store.run("RATE_LIMIT", [keys.rate_bucket("c")], [1000, 0])
        results = await asyncio.gather(good, bad, also_good, return_exceptions=True)
        assert results[0] == [0, 1]
        assert results[2] == [0, 1]
        assert isinstance(results[1], Exception)
    finally:
        await store.close()


async def test_scripts_redis_forgot_are_loaded_again(redis_url: str) -> None:
    store = await open_store(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await store.run("RATE_LIMIT", [keys.rate_bucket("x")], [1000, 0])
        await admin.script_flush()  # as after a restart without persistence
        waits = await asyncio.gather(
            *(store.run("RATE_LIMIT", [keys.rate_bucket(f"y{i}")], [1000, 0]) for i in range(5))
        )
        assert waits == [[0, 1]] * 5
    finally:
        await admin.aclose()
        await store.close()


async def test_a_cancelled_caller_does_not_break_the_batch(redis_url: str) -> None:
    store = await open_store(redis_url)
    try:
        first = asyncio.ensure_future(store.run("RATE_LIMIT", [keys.rate_bucket("p")], [1000, 0]))
        second = asyncio.ensure_future(store.run("RATE_LIMIT", [keys.rate_bucket("q")], [1000, 0]))
        await asyncio.sleep(0)  # both are in the turn's batch
        first.cancel()
        assert await second == [0, 1]
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        await store.close()


async def test_reads_join_the_batch_and_come_back_parsed(redis_url: str) -> None:
    store = await open_store(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await admin.hset("gw:{j0}:job:x", mapping={"v": "3", "doc": "{}"})
        await store.run("RATE_LIMIT", [keys.rate_bucket("warm")], [1000, 0])  # loads it
        read, limited, missing = await asyncio.gather(
            store.command("HMGET", "gw:{j0}:job:x", "v", "doc", "body"),
            store.run("RATE_LIMIT", [keys.rate_bucket("r")], [1000, 0]),
            store.command("HMGET", "gw:{j0}:job:none", "v"),
        )
        assert read == [b"3", b"{}", None]
        assert limited == [0, 1]
        assert missing == [None]
    finally:
        await admin.aclose()
        await store.close()


def wire_id(clients: list[dict[str, Any]]) -> int:
    return next(int(c["id"]) for c in clients if c.get("name") == NAME)


async def test_a_dropped_connection_is_opened_again_and_the_batch_resent(redis_url: str) -> None:
    store = await open_store(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        assert await store.run("RATE_LIMIT", [keys.rate_bucket("w")], [1000, 0]) == [0, 1]
        first = wire_id(await admin.client_list())
        # Scripts may write, so a paused Redis holds this one unanswered on the wire...
        await admin.execute_command("CLIENT", "PAUSE", 400, "WRITE")  # type: ignore[no-untyped-call]
        waiting = asyncio.ensure_future(store.run("RATE_LIMIT", [keys.rate_bucket("x")], [1000, 0]))
        await asyncio.sleep(0.1)
        # ...while its connection is killed: the batch is sent again on a new one.
        await admin.client_kill_filter(_id=str(first))
        assert await asyncio.wait_for(waiting, 10) == [0, 1]
        assert wire_id(await admin.client_list()) != first
        assert await store.command("HMGET", "gw:{j0}:job:none", "v") == [None]
    finally:
        await admin.aclose()
        await store.close()


async def test_a_reply_that_never_comes_times_the_connection_out(redis_url: str) -> None:
    pool = aioredis.ConnectionPool.from_url(redis_url)
    wire = Wire(pool.connection_kwargs, pool.connection_class, timeout=0.4)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        assert await wire.send([("SET", "k", "1")]) == [b"OK"]
        await admin.execute_command("CLIENT", "PAUSE", 2000, "WRITE")  # type: ignore[no-untyped-call]
        started = asyncio.get_running_loop().time()
        with pytest.raises(RedisTimeoutError):
            await wire.send([("SET", "k", "2")])
        assert asyncio.get_running_loop().time() - started < 1.5
        await admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        # A new connection; the paused write died with the old one (hence resendable scripts).
        assert await wire.send([("GET", "k")]) == [b"1"]
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        await admin.aclose()
        await wire.close()
        await pool.aclose()


async def test_the_wire_logs_in_and_selects_the_urls_database(redis_url: str) -> None:
    admin = aioredis.Redis.from_url(redis_url)
    await admin.acl_setuser("wire-test", enabled=True, passwords=["+s3cret"], keys="*",
                            commands=["+@all"])  # fmt: skip
    url = redis_url.replace("redis://", "redis://wire-test:s3cret@").rsplit("/", 1)[0] + "/3"
    store = await open_store(url)
    try:
        await admin.execute_command("SELECT", 3)  # type: ignore[no-untyped-call]
        await admin.hset("gw:{j0}:job:db3", mapping={"v": "1"})
        assert await store.command("HMGET", "gw:{j0}:job:db3", "v") == [b"1"]
        bad = await open_store(url.replace("s3cret", "wrong"))
        with pytest.raises(AuthenticationError):
            await bad.command("HMGET", "x", "v")
        await bad.close()
    finally:
        await admin.flushdb()
        await admin.acl_deluser("wire-test")
        await admin.aclose()
        await store.close()


async def test_the_wire_speaks_tls_and_checks_the_certificate(tmp_path: Path) -> None:
    """rediss:// through the wire: verified against the URL's CA, refused without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed (Debian's openssl package)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_port = free_port()
    proc, _ = start_redis(
        tmp_path, "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{tls_port}/0"
    try:
        store = await open_store(f"{url}?ssl_ca_certs={cert}")
        try:
            assert await store.run("RATE_LIMIT", [keys.rate_bucket("tls")], [1000, 0]) == [0, 1]
            assert await store.command("HMGET", "gw:{j0}:job:none", "v") == [None]
        finally:
            await store.close()
        pool = aioredis.ConnectionPool.from_url(url)  # no CA: the self-signed cert is refused
        wire = Wire(pool.connection_kwargs, pool.connection_class)
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await wire.send([("PING",)])
        await wire.close()
        await pool.aclose()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_job_events_come_over_their_own_connection_and_after_a_drop(redis_url: str) -> None:
    store = await open_store(redis_url)
    events = JobEvents(store)
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    events.subscribe(lambda job, status: heard.put_nowait((job, status)))
    listening = asyncio.ensure_future(events.run())
    admin = aioredis.Redis.from_url(redis_url)

    async def listener_ids() -> list[str]:
        clients = await admin.client_list()
        return [c["id"] for c in clients if c["name"] == LISTENER_NAME]

    async def publish_until_heard(job: str) -> tuple[str, str]:
        for _ in range(50):  # the subscription may be a moment away
            await admin.publish(EVENTS_CHANNEL, f"{job} succeeded")
            try:
                return await asyncio.wait_for(heard.get(), 0.1)
            except TimeoutError:
                continue
        raise AssertionError(f"{job} was never heard")

    try:
        assert await publish_until_heard("j1") == ("j1", "succeeded")
        first = await listener_ids()
        assert len(first) == 1  # its own named connection, not one from redis-py's pool
        await admin.client_kill_filter(_id=first[0])
        assert await publish_until_heard("j2") == ("j2", "succeeded")  # back after the drop
        assert await listener_ids() not in ([], first)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await admin.aclose()
        await store.close()


async def test_a_connect_every_caller_left_fails_quietly_and_is_not_reused() -> None:
    """The caller waiting on a connect is cancelled, then the connect fails: asyncio logs no
    "Task exception was never retrieved", and the next caller connects afresh instead of
    getting the old connect's error."""
    accepted, release = [], asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    try:
        wire = Wire({"host": "127.0.0.1", "port": port}, aioredis.Connection)
        caller = asyncio.ensure_future(wire.send([("PING",)]))
        for _ in range(500):
            if accepted:
                break
            await asyncio.sleep(0.01)
        caller.cancel()
        release.set()  # the server hangs up before answering the hello
        await asyncio.sleep(0.2)
        with pytest.raises(RedisConnectionError):  # a new connection, hung up on again
            await wire.send([("PING",)])
        assert len(accepted) == 2
        await wire.close()
        del wire, caller
        gc.collect()
        assert not [c for c in unhandled if "never retrieved" in c.get("message", "")]
    finally:
        loop.set_exception_handler(None)
        server.close()
        await server.wait_closed()
