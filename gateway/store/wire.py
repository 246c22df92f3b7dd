"""One multiplexed, pipelined connection to a single Redis for the hot path's scripts and reads.

redis-py's asyncio client pays about 110 us of Python per command on this path (a pooled
connection taken under a Condition, a retry wrapper, a timeout per read, a reply parsed
through several layers); a bare aiohttp handler costs about as much in all. Here commands
are packed by hiredis, written to one socket as they come, and their replies are parsed by
hiredis's reader and matched to their callers in order: about 12 us per command, measured
side by side (bench/floor.py). Redis answers a connection's commands in the order it got
them, so one connection carries every concurrent caller; nothing waits for a free one.

Only what cannot block goes here (scripts, HMGET). Blocking reads and transactions stay on
redis-py's pool. A second Wire, its own connection, listens to a pub/sub channel
(`subscribe`): each message is handed to a callback as it is parsed, with no task, timeout
or future per message (the job events every instance receives for every job that ends).

The connection is opened lazily and opened again after a drop; a batch whose connection
drops fails with redis-py's ConnectionError (the Batcher retries it whole, as redis-py
retries a pipeline) and a reply that takes longer than `timeout` aborts the connection
with TimeoutError. Error replies become redis-py's exception classes
(`NoScriptError`, `ResponseError`, ...), so callers see what they saw before.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis._parsers import BaseParser
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | int | float | bytes
NAME = "gateway-wire"
OnMessage = Callable[[bytes], None]


class _Batch:
    __slots__ = ("future", "left", "replies", "sent")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future, self.left = future, count
        self.replies: list[Any] = []
        self.sent = time.monotonic()


class _Protocol(asyncio.Protocol):
    def __init__(self, on_message: OnMessage | None = None) -> None:
        self.on_message = on_message  # a subscriber's: pushed messages go there
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[_Batch] = deque()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.waiting
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if isinstance(reply, hiredis.ReplyError):
                reply = BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
            elif self.on_message is not None and type(reply) is list and reply[:1] == [b"message"]:
                self.on_message(reply[2])  # [b"message", channel, data]: pushed, not a reply
                continue
            batch = waiting[0]
            batch.replies.append(reply)
            batch.left -= 1
            if not batch.left:
                waiting.popleft()
                if not batch.future.done():  # its caller may have given up
                    batch.future.set_result(batch.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def fail(self, error: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft().future
            if not future.done():
                future.set_exception(error)
        self.transport = None


class Wire:
    """Send batches of commands; each batch's replies come back as one list, in order."""

    def __init__(self, connection_kwargs: dict[str, Any], connection_class: type, *,
                 connect_timeout: float = 2.0, timeout: float = 5.0,
                 name: str = NAME) -> None:  # fmt: skip
        self._kwargs = connection_kwargs
        self._class = connection_class
        self._name = name
        self._on_message: OnMessage | None = None
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def send(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """The replies to `commands`, sent in one write; error replies are exceptions in
        the list, not raised. A lost connection raises ConnectionError for the batch."""
        sent = self.write(commands)
        if sent is None:
            protocol = await self._connect()
            sent = self._write(protocol, commands)
        return await sent

    def write(self, commands: Sequence[Sequence[Arg]]) -> asyncio.Future[list[Any]] | None:
        """`send` without a coroutine (for callers that write to several wires and then
        wait): the replies' future, or None when the connection is not open yet."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            return None
        return self._write(protocol, commands)

    @staticmethod
    def _write(protocol: _Protocol, commands: Sequence[Sequence[Arg]]) -> asyncio.Future[list[Any]]:
        assert protocol.transport is not None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(_Batch(future, len(commands)))
        protocol.transport.write(b"".join([hiredis.pack_command(c) for c in commands]))  # type: ignore[arg-type]
        return future

    async def subscribe(self, channel: str, on_message: OnMessage) -> asyncio.Future[None]:
        """Listen on `channel` (this Wire then carries nothing else): `on_message(data)` for
        each message. Returns a future that is done when the connection is lost."""
        self._on_message = on_message
        protocol = await self._connect()
        for reply in await self.send([("SUBSCRIBE", channel)]):
            if isinstance(reply, Exception):
                raise reply
        return protocol.closed

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await protocol.closed

    async def _connect(self) -> _Protocol:
        connecting = self._connecting
        if connecting is None:  # one connect for every caller that needs it
            connecting = self._connecting = asyncio.ensure_future(self._open())
            connecting.add_done_callback(self._connected)
        return await asyncio.shield(connecting)

    def _connected(self, connecting: asyncio.Future[_Protocol]) -> None:
        if self._connecting is connecting:  # done: the next caller connects afresh
            self._connecting = None
        settle_quietly(connecting)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        kw = self._kwargs

        def make() -> _Protocol:
            return _Protocol(self._on_message)

        try:
            async with asyncio.timeout(self._connect_timeout):
                if issubclass(self._class, UnixDomainSocketConnection):
                    _, protocol = await loop.create_unix_connection(make, kw["path"])
                else:
                    _, protocol = await loop.create_connection(
                        make,
                        kw.get("host", "localhost"),
                        kw.get("port", 6379),
                        ssl=_ssl_context(kw) if issubclass(self._class, SSLConnection) else None,
                    )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        if protocol.transport is None:
            raise RedisConnectionError("connection to Redis lost while opening it")
        hello: list[tuple[Arg, ...]] = []
        if kw.get("password"):
            user = kw.get("username")
            hello.append(("AUTH", user, kw["password"]) if user else ("AUTH", kw["password"]))
        if kw.get("db"):
            hello.append(("SELECT", kw["db"]))
        hello.append(("CLIENT", "SETNAME", self._name))  # `CLIENT LIST` tells it apart
        self._protocol = protocol
        for reply in await self.send(hello):
            if isinstance(reply, Exception):
                protocol.transport.close()
                raise reply
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch())
        return protocol

    async def _watch(self) -> None:
        """A reply later than `timeout` means Redis or the link is gone: drop the connection,
        failing its batches, so the next one connects afresh."""
        while True:
            await asyncio.sleep(self._timeout / 4)
            protocol = self._protocol
            if protocol is None or protocol.transport is None or not protocol.waiting:
                continue
            if time.monotonic() - protocol.waiting[0].sent > self._timeout:
                transport = protocol.transport
                protocol.fail(RedisTimeoutError(f"no reply from Redis in {self._timeout:g} s"))
                transport.abort()


def settle_quietly(shared: asyncio.Future[Any]) -> None:
    """A done callback for a task callers share through `asyncio.shield`: each waiter gets its
    error; once every waiter has left (cancelled), the error is theirs to drop, not asyncio's
    to log as "Task exception was never retrieved"."""
    if not shared.cancelled():
        shared.exception()


def _ssl_context(kw: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=kw.get("ssl_ca_certs"))
    if kw.get("ssl_certfile"):
        context.load_cert_chain(kw["ssl_certfile"], kw.get("ssl_keyfile"))
    if kw.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif kw.get("ssl_check_hostname") is False:
        context.check_hostname = False
    return context
