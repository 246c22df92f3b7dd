"""A failed provider call leaves no reference cycles behind (adapters/http.py)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from adapters.errors import ProviderUnavailable
from adapters.http import call_json
from adapters.httpclient import HttpClient
from tests.helpers import free_port


@pytest.fixture
def cyclic_garbage() -> Iterator[list[object]]:
    """What the cyclic collector finds while the test runs (kept, not freed, for counting)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_a_refused_connection_leaves_no_cycles(cyclic_garbage: list[object]) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    session = HttpClient()
    try:
        for _ in range(20):
            with pytest.raises(ProviderUnavailable, match="cannot connect"):
                await call_json(session, "POST", url, timeout=5, json={"prompt": "x"})
    finally:
        await session.close()
    gc.collect()
    # Without clearing the frames: ~70 objects in cycles per failed call (1,400 here).
    assert len(cyclic_garbage) < 20, sorted({type(o).__name__ for o in cyclic_garbage})


async def test_closed_connections_leave_no_cycles(cyclic_garbage: list[object]) -> None:
    """A receiver that closes every connection must not leave one cycle per delivery."""

    async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_and_close, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    session = HttpClient()
    try:
        for _ in range(20):
            assert (
                await session.request("POST", url, body=b"{}", timeout=5, limit=64)
            ).status == 200
        await asyncio.sleep(0.05)  # the last connection's loss is delivered
    finally:
        await session.close()
        server.close()
    gc.collect()
    ours = [o for o in cyclic_garbage if type(o).__name__ in ("Connection", "HttpResponseParser")]
    # Without dropping the parser at connection loss: 20 of each (it holds the protocol).
    assert ours == []
