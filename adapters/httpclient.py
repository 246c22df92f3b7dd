"""The HTTP/1.1 client of the gateway's hot paths: provider calls and webhook deliveries.

aiohttp's `ClientSession` spends 120-190 us of CPU on one small request on this project's
bench machine (request and response objects, timer and trace plumbing, cookie and redirect
machinery); this client sends the same request for 12-20 us, which took a submit from
1,050 to 854 us of the gateway's CPU (interleaved A/B, issue 12). It keeps one keep-alive
pool per origin, writes a request as one buffer and parses answers with httptools (llhttp,
the parser uvicorn uses). It does what these calls need and no more: one request at a time
per connection (no pipelining), bodies as bytes, no redirects, cookies or proxies; it asks
for no compression and inflates an answer that comes gzip- or deflate-encoded anyway.

Errors: `ConnectFailed` (no connection), `ConnectionLost` (closed before the answer was
complete), `BadAnswer` (not HTTP), `AnswerTooLarge`, `TimeoutError`; all but the last are
`ClientFailure`s. A connection that saw any of them, or a cancellation, is closed, never
pooled again.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httptools
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IDLE_TIMEOUT = 15.0  # seconds a pooled connection may wait for its next request
DNS_TTL = 10.0  # seconds a name's addresses serve new connections before it is asked again
MAX_HEAD = 64 * 1024  # bytes an answer may take before its headers end (aiohttp: 8 KiB a line)
MAX_IDLE = 256  # idle connections kept in all (many receiver hosts must not hold a socket each)
USER_AGENT = "imagegen-gateway"


class ClientFailure(OSError):
    """A request that got no complete HTTP answer (the message says why)."""


class ConnectFailed(ClientFailure):
    pass


class ConnectionLost(ClientFailure):
    pass


class BadAnswer(ClientFailure):
    pass


class AnswerTooLarge(ValueError):
    """The answer's body passed the limit; nothing past it was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes
    truncated: bool = False  # `limit` reached with `truncate=True`: the body's first bytes


Origin = tuple[str, str, int]  # scheme, host, port


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the answer it is reading."""

    __slots__ = (
        "_delimited",
        "_head_bytes",
        "_headed",
        "chunks",
        "closed",
        "headers",
        "idle_since",
        "keep_alive",
        "limit",
        "parser",
        "size",
        "transport",
        "truncate",
        "waiter",
    )  # fmt: skip

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: Any = httptools.HttpResponseParser(self)  # None once the connection is lost
        self.waiter: asyncio.Future[Answer] | None = None
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = 0
        self.truncate = False
        self.closed = False
        self.idle_since = 0.0
        self.keep_alive = False  # read when the answer completes (llhttp resets it after)
        self._delimited = False  # the answer said how long it is (length or chunked)
        self._headed = False  # the answer's headers are all in
        self._head_bytes = 0  # received while the headers were not yet all in

    def start(self, waiter: asyncio.Future[Answer], limit: int, truncate: bool) -> None:
        self.waiter = waiter
        self.headers = {}
        self.chunks = []
        self.size = 0
        self.limit = limit
        self.truncate = truncate
        self.keep_alive = False
        self._delimited = False
        self._headed = False
        self._head_bytes = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection is unusable
            self._fail(BadAnswer("data received with no request outstanding"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadAnswer(f"not an HTTP answer ({exc})"))
            return
        if not self._headed:  # endless headers must not grow the parser's buffers forever
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._fail(BadAnswer(f"answer headers longer than {MAX_HEAD} bytes"))

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost settles the waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self._headed and not self._delimited and exc is None:
                self._settle(truncated=False)  # an answer delimited by the end of the connection
            else:
                reason = f": {exc}" if exc else ""
                waiter.set_exception(ConnectionLost(f"connection closed before the answer{reason}"))
        # The parser holds this protocol's callbacks: a reference cycle that only the cyclic
        # collector would free (with the transport and socket hanging from it), once per
        # closed connection. Nothing parses after the connection is gone.
        self.parser = None

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key in ("content-length", "transfer-encoding"):
            self._delimited = True
        self.headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headed = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.limit:
            if not self.truncate:
                self._fail(AnswerTooLarge(self.limit))
                return
            self.chunks.append(body[: len(body) - (self.size - self.limit)])
            self._settle(truncated=True)
            self.close()  # the rest is never read: the connection cannot serve again
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:  # an interim answer: the real one follows
            self.headers, self._headed, self._delimited = {}, False, False
            return
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self._settle(truncated=False)

    # helpers
    def _settle(self, *, truncated: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        body = b"".join(self.chunks)
        self.chunks = []
        encoding = self.headers.get("content-encoding")
        if encoding in ("gzip", "deflate") and not truncated:
            try:
                body = _inflate(body, encoding, self.limit)
            except (zlib.error, AnswerTooLarge) as exc:
                self._fail(exc if isinstance(exc, AnswerTooLarge) else BadAnswer(str(exc)))
                return
        status = self.parser.get_status_code()
        waiter.set_result(Answer(status, self.headers, body, truncated))

    def expire(self) -> None:
        """The request's time is up: it fails with TimeoutError and the connection closes."""
        if self.waiter is not None and not self.waiter.done():
            self._fail(TimeoutError())

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def reusable(self) -> bool:
        return not self.closed and self.keep_alive

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """Keep-alive connections per origin; `request` sends one request on one of them.

    `resolver` (aiohttp's resolver interface) picks the addresses a name may connect to:
    the webhook relay passes its SSRF-guarded one; by default, the system's (getaddrinfo in
    a thread). A name's addresses serve new connections for `dns_ttl` seconds.
    Callers bound their own concurrency; the pool opens a connection whenever none is idle
    and keeps at most `max_idle` idle ones in all.
    """

    def __init__(
        self,
        *,
        resolver: AbstractResolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        max_idle: int = MAX_IDLE,
        dns_ttl: float = DNS_TTL,
    ) -> None:
        self._own_resolver = resolver is None
        self._resolver = resolver or ThreadedResolver()
        self._dns_ttl = dns_ttl
        self._addresses: dict[tuple[str, int], tuple[float, list[tuple[str, int, int]]]] = {}
        self._ssl = ssl_context
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._idle_count = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
        limit: int,
        truncate: bool = False,
    ) -> Answer:
        """Send one request and read its answer within `timeout` seconds in all.

        A body past `limit` bytes raises `AnswerTooLarge`, or with `truncate` ends the read
        there and returns the first `limit` bytes (the connection is then closed).
        """
        if self._closed:
            raise RuntimeError("the HTTP client is closed")
        origin, target, host_header = _parse(url)
        head = _head(method, target, host_header, headers, len(body) if body else 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self._pooled(origin)
        if conn is None:
            async with asyncio.timeout_at(deadline):
                conn = await self._connect(origin)
        waiter: asyncio.Future[Answer] = loop.create_future()
        conn.start(waiter, limit, truncate)
        assert conn.transport is not None
        conn.transport.write(head + body if body else head)
        # A plain timer, not asyncio.timeout: 3.7 against 8.7 us per call here.
        timer = loop.call_at(deadline, conn.expire)
        try:
            answer = await waiter
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
            conn.waiter = None
        if conn.reusable() and not self._closed:
            self._park(origin, conn)
        else:
            conn.close()
        return answer

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self._idle_count = 0
        if self._own_resolver:  # a resolver passed in is the caller's to close
            await self._resolver.close()

    # -- the pool ------------------------------------------------------------------------

    def _pooled(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest_usable = time.monotonic() - self._idle_timeout
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be timed out
            self._idle_count -= 1
            if not conn.closed and conn.idle_since >= oldest_usable:
                return conn
            conn.close()
        return None

    def _park(self, origin: Origin, conn: _Connection) -> None:
        if self._idle_count >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(origin, deque()).append(conn)
        self._idle_count += 1
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._idle_timeout, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle past the timeout and forget origins with none left."""
        self._sweeper = None
        oldest_usable = time.monotonic() - self._idle_timeout
        for origin in list(self._idle):
            idle = self._idle[origin]
            while idle and (idle[0].closed or idle[0].idle_since < oldest_usable):
                idle.popleft().close()
                self._idle_count -= 1
            if not idle:
                del self._idle[origin]
        if self._idle:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._idle_timeout, self._sweep)

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = self._tls() if scheme == "https" else None
        addresses = await self._resolve(host, port)
        failures: list[str] = []
        for address, address_port, family in addresses:
            try:
                _, conn = await loop.create_connection(
                    _Connection,
                    address,
                    address_port,
                    family=family,
                    ssl=context,
                    server_hostname=host if context else None,
                )
            except OSError as exc:
                failures.append(f"{address}:{address_port}: {exc.strerror or exc}")
                continue
            return conn
        self._addresses.pop((host, port), None)  # moved, perhaps: ask again next time
        raise ConnectFailed(f"cannot connect to {host}:{port} ({'; '.join(failures)})")

    async def _resolve(self, host: str, port: int) -> list[tuple[str, int, int]]:
        """(address, port, family) to try in order; a refusal or failure is raised."""
        now = time.monotonic()
        cached = self._addresses.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        except socket.gaierror as exc:
            raise ConnectFailed(f"cannot resolve {host} ({exc.strerror or exc})") from exc
        addresses = [(r["host"], r["port"], r["family"]) for r in found]
        if len(self._addresses) >= 4096:  # many receiver hosts: start over rather than grow
            self._addresses.clear()
        self._addresses[(host, port)] = (now + self._dns_ttl, addresses)
        return addresses

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


def _parse(url: str) -> tuple[Origin, str, str]:
    """(origin, request target, Host header) of an absolute http(s) URL."""
    parsed = URL(url)  # yarl keeps recent parses: ~1 us with the attributes below
    scheme, host, port = parsed.scheme, parsed.raw_host, parsed.port
    if scheme not in ("http", "https") or not host or port is None:
        raise ValueError(f"not an absolute http(s) URL: {parsed.human_repr()[:200]}")
    host_header = host if parsed.is_default_port() else f"{host}:{port}"
    if ":" in host:  # IPv6 literal
        host_header = f"[{host}]" if parsed.is_default_port() else f"[{host}]:{port}"
    return (scheme, host, port), parsed.raw_path_qs or "/", host_header


_FRAMING = frozenset(("host", "content-length", "transfer-encoding", "connection"))


def _head(
    method: str, target: str, host: str, headers: Mapping[str, str] | None, length: int
) -> bytes:
    """The request line and headers; the caller's `User-Agent` replaces ours."""
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
    agent = True
    if headers:
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} contains a line break")
            lower = name.lower()
            if lower in _FRAMING:
                raise ValueError(f"header {name!r} is the client's to set")
            agent = agent and lower != "user-agent"
            lines.append(f"{name}: {value}\r\n")
    if agent:
        lines.append(f"User-Agent: {USER_AGENT}\r\n")
    if length or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {length}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise AnswerTooLarge(limit)
    return out
