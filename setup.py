"""The package's build; with `GATEWAY_COMPILE=1` the request paths are compiled with mypyc.

mypyc (part of mypy) turns these type-checked modules into C extensions: the same code,
0.75-0.78x the instructions per submit (issue 12; README, "Benchmarks"). It is opt-in
until a quiet machine shows the gain in seconds too (the runs so far disagree). What stays
interpreted, and why, is listed below; tests/unit/test_compiled.py keeps the compiled
modules clear of what mypyc gets wrong, so the opt-in build stays correct.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
PACKAGES = ("gateway", "routing", "adapters", "observability")

# Start-up, configuration, the CLI and demo: not on a request path.
STARTUP = {
    "gateway/__main__.py", "gateway/cli.py", "gateway/demo.py", "gateway/demo_tunes.py",
    "gateway/serve.py", "gateway/config.py", "gateway/config_file.py",
    "gateway/config_report.py", "gateway/simulate.py", "gateway/app.py",
}  # fmt: skip
# pydantic models (mypyc cannot compile them) and the OpenAPI document built from them.
MODELS = {
    "gateway/jobs/model.py", "gateway/api/openapi.py", "gateway/api/openapi_parts.py",
    "gateway/api/openapi_tunes.py", "gateway/api/schemas.py", "gateway/api/usage.py",
    "gateway/api/tunes.py", "adapters/base.py", "adapters/normalized.py",
    "adapters/normalized_tune.py",
}  # fmt: skip
CANNOT = {
    # subclasses of redis-py's classes (which have __slots__), a nested class, a `continue`
    # inside try/finally: constructs mypyc does not compile
    "gateway/store/cluster.py", "gateway/store/timing.py", "gateway/store/connect.py",
    "gateway/poller.py",
    # awaits in `finally:`, which mypyc 2.4 gets wrong: a compiled `finally:` that awaits
    # re-raises whatever exception its caller is handling (tests/unit/test_compiled.py keeps
    # every compiled module free of it)
    "gateway/store/events.py",
    # error classes whose subclasses override class attributes (`retryable`, `outcome`),
    # which mypyc's native classes do not inherit
    "gateway/errors.py", "adapters/errors.py",
    # walks its own attributes with vars(), which native classes lack
    "observability/metrics.py",
    # its tests drive it with a stand-in for the gateway queue; a compiled function checks
    # its arguments' classes at run time
    "gateway/queue_runner.py",
}  # fmt: skip
# Fine-tunes, the simulators and the providers the hot paths do not need compiled.
FOLDERS = (
    "gateway/tunes/", "adapters/simkit/", "adapters/astria/", "adapters/bodia/",
    "adapters/comfyui/",
)  # fmt: skip


def compiled() -> list[str]:
    """The modules mypyc compiles, as paths from the repository root."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if path.name in ("__init__.py", "convert.py"):  # convert.py: an options model
                continue
            if name in STARTUP | MODELS | CANNOT or name.startswith(FOLDERS):
                continue
            found.append(name)
    return found


def ext_modules() -> list:  # type: ignore[type-arg]
    if not os.environ.get("GATEWAY_COMPILE"):
        return []
    from mypyc.build import mypycify

    return mypycify(compiled(), separate=True)


if __name__ == "__main__":  # as setuptools runs it; tests/unit/test_compiled.py imports it
    # One extension per module (separate=True), so the build uses every core.
    setup(ext_modules=ext_modules(), options={"build_ext": {"parallel": os.cpu_count() or 1}})
