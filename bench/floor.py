"""The floor: what the gateway's building blocks cost with none of the gateway's logic.

A stand-in service made of the same parts (uvloop, an aiohttp server parsing the JSON body,
one POST to the mock through adapters/httpclient.py, five store round trips, a 202 answer)
and nothing else, run on core 0 like the gateway. Its CPU per request is the budget no
Python gateway on these parts can beat, so the gateway's own logic is its figure minus
this one. Modes add one part at a time:

- `server`: parse the body, answer 202;
- `client`: + one POST to the mock provider (the gateway's client, as adapters use it);
- `redis-py`: + five EVALSHA through redis-py's asyncio client, one after another, as the
  submit path's five scripts go (rate limit, create, reserve, finish, save);
- `wire`: the same five through gateway/store/wire.py instead.

`python -m bench.floor MODE PORT MOCK_URL REDIS_PORT` serves one mode (the bench starts it).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

MODES = ("server", "client", "redis-py", "wire")
SCRIPT = "return redis.call('SET', KEYS[1], ARGV[1])"
ROUND_TRIPS = 5


async def serve(mode: str, port: int, mock_url: str, redis_port: int) -> None:
    import orjson
    import redis.asyncio as aioredis
    from aiohttp import web

    from adapters.httpclient import HttpClient
    from gateway.store.wire import Wire

    http = HttpClient()
    client = aioredis.Redis(port=redis_port)
    sha = await client.script_load(SCRIPT)
    pool = aioredis.ConnectionPool(port=redis_port)
    wire = Wire(pool.connection_kwargs, pool.connection_class)

    async def submit(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json()
        if mode != "server":
            payload = orjson.dumps({"key": "k", "prompt": body["prompt"]})
            headers = {"Content-Type": "application/json"}
            answer = await http.request(
                "POST", mock_url, body=payload, headers=headers, timeout=30, limit=1 << 20
            )
            orjson.loads(answer.body)
        if mode == "redis-py":
            for _ in range(ROUND_TRIPS):
                await client.evalsha(sha, 1, "floor", "1")
        elif mode == "wire":
            for _ in range(ROUND_TRIPS):
                await wire.send([("EVALSHA", sha, 1, "floor", "1")])
        return web.json_response({"id": "floor", "status": "queued"}, status=202)

    app = web.Application()
    app.router.add_post("/v1/generations", submit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    import uvloop

    mode, port, mock_url, redis_port = argv
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {MODES}")
    uvloop.run(serve(mode, int(port), mock_url, int(redis_port)))


if __name__ == "__main__":
    main(sys.argv[1:])
