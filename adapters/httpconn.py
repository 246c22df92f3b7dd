"""One connection of the HTTP client (adapters/httpclient.py) and the answer it reads.

A request goes out as bytes the client wrote; the answer is parsed by httptools (llhttp)
into an `Answer`, within a body limit (or cut at it: a peek) and a header budget. Anything
wrong (not HTTP, too large, closed early, timed out) fails the waiting request and closes
the connection: it is never pooled again.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Any

import httptools

MAX_HEAD = 64 * 1024  # bytes an answer may take before its headers end (aiohttp: 8 KiB a line)


class ClientFailure(OSError):
    """A request that got no complete HTTP answer (the message says why)."""


class ConnectFailed(ClientFailure):
    pass


class ConnectionLost(ClientFailure):
    pass


class BadAnswer(ClientFailure):
    pass


class BodyTooLarge(ValueError):
    """A body larger than its limit: an answer's here, a request's in the API (read by
    adapters/http.py's read_limited); nothing past the limit was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes
    truncated: bool = False  # `limit` reached with `truncate=True`: the body's first bytes


class Connection(asyncio.Protocol):
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
                self._fail(BodyTooLarge(self.limit))
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
            except (zlib.error, BodyTooLarge) as exc:
                self._fail(exc if isinstance(exc, BodyTooLarge) else BadAnswer(str(exc)))
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


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise BodyTooLarge(limit)
    return out
