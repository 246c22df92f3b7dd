"""The HTTP/1.1 client of the gateway's hot paths: provider calls and webhook deliveries.

aiohttp's `ClientSession` spends 120-190 us of CPU on one small request on this project's
bench machine (request and response objects, timer and trace plumbing, cookie and redirect
machinery); this client sends the same request for 12-20 us, which took a submit from
1,050 to 854 us of the gateway's CPU (interleaved A/B, issue 12). It keeps one keep-alive
pool per origin, writes a request as one buffer and parses answers with httptools (llhttp,
the parser uvicorn uses). It does what these calls need and no more: one request at a time
per connection (no pipelining), bodies as bytes, no redirects, cookies or proxies; it asks
for no compression and inflates an answer that comes gzip- or deflate-encoded anyway.

Errors (defined with the connection, adapters/httpconn.py): `ConnectFailed` (no
connection), `ConnectionLost` (closed before the answer was complete), `BadAnswer` (not
HTTP), `BodyTooLarge`, `TimeoutError`; all but the last two are `ClientFailure`s. A
connection that saw any of them, or a cancellation, is closed, never pooled again.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from adapters.httpconn import Answer, ConnectFailed, Connection

IDLE_TIMEOUT = 15.0  # seconds a pooled connection may wait for its next request
DNS_TTL = 10.0  # seconds a name's addresses serve new connections before it is asked again
ATTEMPT_TIMEOUT = 2.0  # seconds one of a name's addresses gets before the next is tried
MAX_IDLE = 256  # idle connections kept in all (many receiver hosts must not hold a socket each)
USER_AGENT = "imagegen-gateway"

Origin = tuple[str, str, int]  # scheme, host, port


class HttpClient:
    """Keep-alive connections per origin; `request` sends one request on one of them.

    `resolver` (aiohttp's resolver interface) picks the addresses a name may connect to:
    the webhook relay passes its SSRF-guarded one; by default, the system's (getaddrinfo in
    a thread). A name's addresses serve new connections for `dns_ttl` seconds; they are
    tried in order, each but the last for at most `attempt_timeout` (aiohttp races them
    instead; uvloop has no happy eyeballs), and the one that answered goes first after.
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
        attempt_timeout: float = ATTEMPT_TIMEOUT,
    ) -> None:
        self._own_resolver = resolver is None
        self._resolver = resolver or ThreadedResolver()
        self._dns_ttl = dns_ttl
        self._attempt_timeout = attempt_timeout
        self._addresses: dict[tuple[str, int], tuple[float, list[tuple[str, int, int]]]] = {}
        self._ssl = ssl_context
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle
        self._idle: dict[Origin, deque[Connection]] = {}
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

        A body past `limit` bytes raises `BodyTooLarge`, or with `truncate` ends the read
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

    def _pooled(self, origin: Origin) -> Connection | None:
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

    def _park(self, origin: Origin, conn: Connection) -> None:
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

    async def _connect(self, origin: Origin) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = self._tls() if scheme == "https" else None
        addresses = await self._resolve(host, port)
        failures: list[str] = []
        for i, (address, address_port, family) in enumerate(addresses):
            connecting = loop.create_connection(
                Connection,
                address,
                address_port,
                family=family,
                ssl=context,
                server_hostname=host if context else None,
            )
            try:
                if i == len(addresses) - 1:
                    _, conn = await connecting
                else:  # a silent address (a blackholed IPv6 route) must not eat the request
                    async with asyncio.timeout(self._attempt_timeout):
                        _, conn = await connecting
            except OSError as exc:  # TimeoutError included
                failures.append(f"{address}:{address_port}: {exc.strerror or exc or 'no answer'}")
                continue
            if i:  # the name's next connections go straight to the address that answered
                addresses.insert(0, addresses.pop(i))
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
