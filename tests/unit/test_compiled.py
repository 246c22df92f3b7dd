"""What setup.py compiles with mypyc keeps clear of what mypyc gets wrong, and the tests
run the build that ships."""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

import gateway.dispatch

ROOT = Path(__file__).resolve().parents[2]


def _setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gateway_setup", ROOT / "setup.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMPILED = _setup().compiled()
# Parsed once, at collection: ast.parse inside a test can meet a finalizer that the garbage
# collector runs mid-parse (an earlier test's leaked task), which CPython 3.11.7 reports as
# "SystemError: AST constructor recursion depth mismatch".
TREES = {name: ast.parse((ROOT / name).read_text()) for name in COMPILED}


def test_the_request_paths_are_compiled() -> None:
    assert {"gateway/dispatch.py", "gateway/api/generations.py", "routing/router.py",
            "gateway/store/batch.py", "adapters/httpclient.py"} <= set(COMPILED)  # fmt: skip
    if not os.environ.get("GATEWAY_COMPILE"):
        pytest.skip("installed without compiling (GATEWAY_COMPILE=1 make test compiles)")
    # Installed with GATEWAY_COMPILE=1: the suite runs the compiled build.
    assert not (gateway.dispatch.__file__ or "").endswith(".py")


@pytest.mark.parametrize("name", COMPILED)
def test_no_await_in_a_finally_block(name: str) -> None:
    # mypyc 2.4: a compiled `finally:` that awaits, entered without an exception, re-raises
    # the exception its caller is handling (e.g. a provider error being failed over):
    #     async def f():            # compiled
    #         try: ...
    #         finally: await g()    # raises the caller's exception
    # Interpreted, f returns normally.
    tree = TREES[name]
    found = [
        f"{name}:{inner.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Try | ast.TryStar)
        for statement in node.finalbody
        for inner in ast.walk(statement)
        if isinstance(inner, ast.Await | ast.AsyncWith | ast.AsyncFor)
    ]
    assert not found, "await in `finally:` in a compiled module (setup.py says why)"


@pytest.mark.parametrize("name", COMPILED)
def test_one_exception_class_per_except_name_in_a_function(name: str) -> None:
    # mypyc 2.4 gives a name bound by several `except ... as` clauses of one function the
    # first clause's class: a later clause's exception then fails its run-time type check
    # ("Refused object expected; got TimeoutError"). Each clause gets a name of its own.
    tree = TREES[name]
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        classes: dict[str, set[str]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                classes.setdefault(node.name, set()).add(ast.unparse(node.type))
        found += [f"{name}:{function.lineno} {n}" for n, c in classes.items() if len(c) > 1]
    assert not found, "one `as` name for several exception classes in a compiled function"
