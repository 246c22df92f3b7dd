"""adapters/httpclient.py against real sockets: well-behaved and misbehaving servers."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from adapters.httpclient import HttpClient
from adapters.httpconn import BadAnswer, BodyTooLarge, ConnectFailed, ConnectionLost
from tests.helpers import free_port

Reply = Callable[[bytes], Awaitable[bytes | None]]  # a request's bytes -> the answer to write


@dataclass
class RawServer:
    """A TCP server that answers each request with whatever `reply` returns.

    `reply` returning None leaves the request unanswered; `close_after` closes the
    connection once its answer is written. Counts connections and keeps every request."""

    reply: Reply
    close_after: bool = False
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None
    context: ssl.SSLContext | None = None

    async def start(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self.context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/path?q=1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = await self.reply(request)
                if answer is None:
                    await asyncio.sleep(3600)
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


def ok(body: bytes = b'{"ok":true}', *extra: str) -> Reply:
    async def reply(_: bytes) -> bytes:
        headers = "".join(f"{h}\r\n" for h in extra)
        return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body

    return reply


def raw(answer: bytes) -> Reply:
    async def reply(_: bytes) -> bytes:
        return answer

    return reply


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(reply: Reply, **kwargs: Any) -> RawServer:
        server = await RawServer(reply, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def test_keep_alive_reuses_one_connection(
    http: HttpClient, serve: Callable[..., Awaitable[RawServer]]
) -> None:
    server = await serve(ok())
    for _ in range(3):
        answer = await http.request("POST", server.url, body=b"{}", timeout=5, limit=1024)
        assert (answer.status, answer.body) == (200, b'{"ok":true}')
    assert server.connections == 1
    head = server.requests[0].decode()
    assert head.startswith("POST /path?q=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "Content-Length: 2\r\n" in head
    assert head.endswith("\r\n\r\n{}")


async def test_concurrent_requests_each_get_a_connection(
    http: HttpClient, serve: Callable[..., Awaitable[RawServer]]
) -> None:
    async def slow(_: bytes) -> bytes:
        await asyncio.sleep(0.05)
        return await ok()(b"")

    server = await serve(slow)
    answers = await asyncio.gather(
        *[http.request("GET", server.url, timeout=5, limit=1024) for _ in range(4)]
    )
    assert [a.status for a in answers] == [200] * 4
    assert server.connections == 4
    await http.request("GET", server.url, timeout=5, limit=1024)
    assert server.connections == 4  # the four wait in the pool


async def test_chunked_and_close_delimited_answers(
    http: HttpClient, serve: Callable[..., Awaitable[RawServer]]
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    server = await serve(raw(chunked))
    answer = await http.request("GET", server.url, timeout=5, limit=1024)
    assert answer.body == b"abcde"
    # No length at all: the body runs to the end of the connection.
    server = await serve(raw(b"HTTP/1.0 200 OK\r\n\r\nto the end"), close_after=True)
    answer = await http.request("GET", server.url, timeout=5, limit=1024)
    assert (answer.status, answer.body) == (200, b"to the end")
    # An interim answer is skipped: the final one is the answer.
    server = await serve(raw(b"HTTP/1.1 100 Continue\r\n\r\n" + await ok(b"{}")(b"")))
    answer = await http.request("POST", server.url, body=b"x", timeout=5, limit=1024)
    assert (answer.status, answer.body) == (200, b"{}")


async def test_connection_close_and_a_server_closing_idle_connections(
    http: HttpClient, serve: Callable[..., Awaitable[RawServer]]
) -> None:
    server = await serve(ok(b"{}", "Connection: close"))
    for _ in range(2):
        assert (await http.request("GET", server.url, timeout=5, limit=1024)).status == 200
    assert server.connections == 2
    # The server closes after each answer without saying so: the pooled connection is
    # seen closed and a new one is opened, no request fails.
    server = await serve(ok(), close_after=True)
    for _ in range(3):
        assert (await http.request("GET", server.url, timeout=5, limit=1024)).status == 200
        await asyncio.sleep(0.02)
    assert server.connections == 3


async def test_idle_connections_expire(serve: Callable[..., Awaitable[RawServer]]) -> None:
    http = HttpClient(idle_timeout=0.05)
    try:
        server = await serve(ok())
        await http.request("GET", server.url, timeout=5, limit=1024)
        await asyncio.sleep(0.2)  # past the timeout: swept, never reused
        await http.request("GET", server.url, timeout=5, limit=1024)
        assert server.connections == 2
    finally:
        await http.close()


async def test_idle_connections_are_capped_in_all(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    http = HttpClient(max_idle=2)
    try:
        servers = [await serve(ok()) for _ in range(3)]
        for server in servers:
            await http.request("GET", server.url, timeout=5, limit=1024)
        for server in servers:  # the third found no room: closed, so it connects again
            await http.request("GET", server.url, timeout=5, limit=1024)
        assert [s.connections for s in servers] == [1, 1, 2]
    finally:
        await http.close()


async def test_limits_raise_or_truncate(
    http: HttpClient, serve: Callable[..., Awaitable[RawServer]]
) -> None:
    server = await serve(ok(b"x" * 5000))
    with pytest.raises(BodyTooLarge):
        await http.request("GET", server.url, timeout=5, limit=4096)
    answer = await http.request("GET", server.url, timeout=5, limit=100, truncate=True)
    assert (answer.status, answer.body, answer.truncated) == (200, b"x" * 100, True)
    answer = await http.request("GET", server.url, timeout=5, limit=5000)
    assert (len(answer.body), answer.truncated) == (5000, False)
    assert server.connections == 3  # an answer cut short leaves its connection unusable


async def test_compressed_answers_are_inflated_within_the_limit(
    http: HttpClient, serve: Callable[..., Awaitable[RawServer]]
) -> None:
    packed = gzip.compress(b'{"a":1}')
    server = await serve(ok(packed, "Content-Encoding: gzip"))
    assert (await http.request("GET", server.url, timeout=5, limit=1024)).body == b'{"a":1}'
    bomb = gzip.compress(b"0" * 100_000)
    server = await serve(ok(bomb, "Content-Encoding: gzip"))
    with pytest.raises(BodyTooLarge):
        await http.request("GET", server.url, timeout=5, limit=10_000)


async def test_failures_are_told_apart_and_close_the_connection(
    http: HttpClient, serve: Callable[..., Awaitable[RawServer]]
) -> None:
    with pytest.raises(ConnectFailed, match="cannot connect"):
        await http.request("GET", f"http://127.0.0.1:{free_port()}/", timeout=5, limit=1024)
    server = await serve(raw(b"SSH-2.0-OpenSSH\r\n\r\n"))
    with pytest.raises(BadAnswer, match="not an HTTP answer"):
        await http.request("GET", server.url, timeout=5, limit=1024)
    endless = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"x" * 100_000
    server = await serve(raw(endless))
    with pytest.raises(BadAnswer, match="headers longer"):
        await http.request("GET", server.url, timeout=5, limit=1024)
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    server = await serve(raw(cut), close_after=True)
    with pytest.raises(ConnectionLost):
        await http.request("GET", server.url, timeout=5, limit=1024)

    calls = 0

    async def first_hangs(_: bytes) -> bytes | None:
        nonlocal calls
        calls += 1
        return None if calls == 1 else await ok()(b"")

    server = await serve(first_hangs)
    with pytest.raises(TimeoutError):
        await http.request("GET", server.url, timeout=0.2, limit=1024)
    assert (await http.request("GET", server.url, timeout=5, limit=1024)).status == 200
    assert server.connections == 2  # the timed-out connection was not reused


async def test_headers_the_caller_may_and_may_not_set(
    http: HttpClient, serve: Callable[..., Awaitable[RawServer]]
) -> None:
    server = await serve(ok())
    await http.request("GET", server.url, headers={"User-Agent": "mine/1"}, timeout=5, limit=64)
    head = server.requests[0].decode()
    assert head.count("User-Agent:") == 1
    assert "User-Agent: mine/1\r\n" in head
    assert "Content-Length" not in head  # a GET without a body says nothing of one
    for bad, why in (({"X-Key": "a\r\nX-Evil: 1"}, "line break"), ({"Host": "x"}, "client's")):
        with pytest.raises(ValueError, match=why):
            await http.request("GET", server.url, headers=bad, timeout=5, limit=1)


class Listed(AbstractResolver):
    """Every name resolves to the given (address, port) pairs in order, or is refused."""

    def __init__(self, pairs: list[tuple[str, int]], refuse: bool = False) -> None:
        self.pairs, self.refuse, self.asked = pairs, refuse, []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if self.refuse:
            raise OSError(f"{host} refused")
        return [
            ResolveResult(hostname=host, host=a, port=p, family=socket.AF_INET, proto=0, flags=0)
            for a, p in self.pairs
        ]

    async def close(self) -> None:
        pass


async def test_a_resolver_chooses_the_addresses(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    server = await serve(ok())
    # nothing listens on the first
    resolver = Listed([("127.0.0.9", server.port), ("127.0.0.1", server.port)])
    http = HttpClient(resolver=resolver)
    try:
        url = f"http://receiver.example:{server.port}/hook"
        assert (await http.request("POST", url, body=b"x", timeout=5, limit=64)).status == 200
        assert f"Host: receiver.example:{server.port}\r\n" in server.requests[0].decode()
        assert resolver.asked == ["receiver.example"]
        refusing = HttpClient(resolver=Listed([], refuse=True))
        with pytest.raises(OSError, match="refused"):
            await refusing.request("GET", url, timeout=5, limit=64)
        await refusing.close()
    finally:
        await http.close()


class Counting(AbstractResolver):
    """The system's resolver, counting the questions."""

    def __init__(self) -> None:
        self.asked = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked += 1
        return await ThreadedResolver().resolve(host, port, family)

    async def close(self) -> None:
        pass


async def test_names_are_resolved_once_per_ttl(
    serve: Callable[..., Awaitable[RawServer]],
) -> None:
    server = await serve(ok(), close_after=True)  # every request needs a new connection
    url = f"http://localhost:{server.port}/x"
    for ttl, asked in ((60.0, 1), (0.0, 3)):
        resolver = Counting()
        http = HttpClient(resolver=resolver, dns_ttl=ttl)
        try:
            for _ in range(3):
                assert (await http.request("GET", url, timeout=5, limit=64)).status == 200
                await asyncio.sleep(0.02)
        finally:
            await http.close()
        assert resolver.asked == asked
    http = HttpClient()
    try:
        with pytest.raises(ConnectFailed, match=r"cannot resolve no-such-host\.invalid"):
            await http.request("GET", "http://no-such-host.invalid/", timeout=5, limit=64)
    finally:
        await http.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener never accepts and whose queue is full: a connect there hangs
    (Linux drops the SYN), like an address behind a blackholed route."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


async def test_a_silent_address_gives_way_to_the_next(
    serve: Callable[..., Awaitable[RawServer]], silent_port: int
) -> None:
    server = await serve(ok(), close_after=True)  # every request needs a new connection
    resolver = Listed([("127.0.0.1", silent_port), ("127.0.0.1", server.port)])
    http = HttpClient(resolver=resolver, attempt_timeout=0.2)
    try:
        for _ in range(3):  # without the attempt's own limit the first would time out
            answer = await http.request("GET", "http://gw.example/x", timeout=3, limit=64)
            assert answer.status == 200
            await asyncio.sleep(0.02)
        assert server.connections == 3
        # The address that answered now comes first: the silent one is not tried again.
        assert http._addresses[("gw.example", 80)][1][0] == ("127.0.0.1", server.port, 2)
    finally:
        await http.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_verifies_the_server(
    serve: Callable[..., Awaitable[RawServer]], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    server = await serve(ok(), context=server_side)
    trusting = ssl.create_default_context(cafile=str(cert))
    http = HttpClient(ssl_context=trusting)
    try:
        for _ in range(2):
            assert (await http.request("GET", server.url, timeout=5, limit=64)).status == 200
        assert server.connections == 1
    finally:
        await http.close()
    strict = HttpClient()  # the system's roots: a self-signed certificate is refused
    try:
        with pytest.raises(ConnectFailed, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await strict.request("GET", server.url, timeout=5, limit=64)
    finally:
        await strict.close()
