"""The `gateway` command: serve, demo, simulate, check-config, hash-key."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from adapters.base import SimulatorSettings
from adapters.registry import ADAPTERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one gateway instance")
    serve.add_argument("--config", required=True, help="the YAML config file")

    demo = sub.add_parser(
        "demo", help="gateway + simulated fleet + sample requests, in one process"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--requests", type=int, default=10, help="sample requests to send")
    demo.add_argument("--exit-after-samples", action="store_true", help="stop after the samples")

    simulate = sub.add_parser("simulate", help="run one provider simulator")
    simulate.add_argument("adapter", choices=sorted(ADAPTERS))
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, required=True)
    fields = SimulatorSettings.model_fields
    for name, info in fields.items():
        flag = "--" + name.replace("_", "-")
        if name == "api_keys":
            simulate.add_argument(
                "--api-key", dest="api_keys", action="append", help="accepted key (repeatable)"
            )
        elif info.annotation in (bool, "bool"):
            simulate.add_argument(flag, dest=name, action="store_true", help=info.description)
        elif name == "seed":
            simulate.add_argument(flag, dest=name, type=int)
        elif info.annotation in (int, "int"):
            simulate.add_argument(flag, dest=name, type=int, help=info.description)
        else:
            simulate.add_argument(flag, dest=name, type=float, help=info.description)

    check = sub.add_parser("check-config", help="validate a config file and print a report")
    check.add_argument("file")

    hash_key = sub.add_parser(
        "hash-key", help="print the sha256: form of an API key for the config"
    )
    hash_key.add_argument("key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from gateway.serve import serve

        return serve(args.config)
    if args.command == "demo":
        from gateway.demo import run_demo

        return _run(run_demo(args.host, args.port, args.requests, args.exit_after_samples))
    if args.command == "simulate":
        from gateway.simulate import simulate

        values = {
            k: v
            for k, v in vars(args).items()
            if k in SimulatorSettings.model_fields and v not in (None, False)
        }
        return _run(simulate(args.adapter, args.host, args.port, SimulatorSettings(**values)))
    if args.command == "check-config":
        from gateway.config_report import check_config

        return check_config(args.file)
    if args.command == "hash-key":
        from gateway.config import hash_key

        print(hash_key(args.key))
        return 0
    return 2


def _run(coro: Coroutine[Any, Any, int]) -> int:
    runner: Callable[[Coroutine[Any, Any, int]], int]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        return runner(coro)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
