"""An open-loop HTTP client, run as its own process: `python -m bench.openloop SPEC.json`.

Requests go out on a fixed schedule (start + i / rate) whether or not earlier ones have
answered, and latency runs from the *scheduled* send time, so a stall shows as latency
rather than as fewer requests (no coordinated omission). Keep-alive connections are reused;
a new one opens only when every open one is busy. Raw asyncio protocol on uvloop: a few
tens of microseconds of CPU per request, far below what it measures. Writes a JSON summary.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.stats import percentile

MAX_CONNECTIONS = 512
DRAIN = 10.0  # seconds to wait for answers after the last send


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(0)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        if not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def _raw(spec: dict[str, Any]) -> tuple[str, int, bytes]:
    url = urlsplit(spec["url"])
    body = spec["body"].encode()
    path = url.path + (f"?{url.query}" if url.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {url.hostname}:{url.port}",
             "Content-Type: application/json", f"Content-Length: {len(body)}"]  # fmt: skip
    lines += [f"{k}: {v}" for k, v in spec.get("headers", {}).items()]
    raw = "\r\n".join(lines).encode() + b"\r\n\r\n" + body
    return url.hostname or "127.0.0.1", url.port or 80, raw


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, raw = _raw(spec)
    rate, duration = float(spec["rate"]), float(spec["duration"])
    loop = asyncio.get_running_loop()
    idle: deque[Connection] = deque()
    opened = 0
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    late = 0.0

    async def connect() -> Connection:
        nonlocal opened
        opened += 1
        _, proto = await loop.create_connection(Connection, host, port)
        return proto

    for _ in range(min(MAX_CONNECTIONS, max(4, int(rate / 50)))):
        idle.append(await connect())

    slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def one(due: float) -> None:
        async with slots:
            conn = None
            while idle and conn is None:
                candidate = idle.popleft()
                conn = None if candidate.closed else candidate
            if conn is None:
                conn = await connect()
            status = await conn.request(raw)
            latencies.append(time.perf_counter() - due)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if not conn.closed and status:
                idle.append(conn)

    count = int(rate * duration)
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
        tasks.append(asyncio.ensure_future(one(due)))
    sent_for = time.perf_counter() - start
    _, pending = await asyncio.wait(tasks, timeout=DRAIN)
    for task in pending:
        task.cancel()
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    ms = [x * 1000 for x in latencies]
    return {
        "rate": rate,
        "duration": duration,
        "sent": count,
        "answered": len(latencies),
        "unanswered": len(pending),
        "statuses": statuses,
        "achieved_rate": round(count / sent_for, 1) if sent_for > 0 else 0,
        "max_send_lateness_ms": round(late * 1000, 3),
        "connections": opened,
        "latency_ms": {
            "p50": percentile(ms, 50),
            "p90": percentile(ms, 90),
            "p99": percentile(ms, 99),
            "p999": percentile(ms, 99.9),
            "max": max(ms) if ms else None,
        },
    }


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:  # pragma: no cover
        result = asyncio.run(run(spec))
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
