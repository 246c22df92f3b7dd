"""Load generators: wrk (closed loop, Lua-scripted POST) and the open-loop client process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.procs import REPO

# wrk's `done` hook prints one JSON line the bench parses (latency in microseconds).
_LUA = """
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk_script(workdir: Path, name: str, body: str, headers: dict[str, str]) -> Path:
    lines = [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    path = workdir / f"{name}.lua"
    path.write_text(_LUA.format(body=_lua_string(body), headers="\n".join(lines)))
    return path


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def closed_loop(
    url: str, script: Path, *, seconds: float, connections: int, cpu: str
) -> dict[str, Any]:
    """wrk -t1 -cN for `seconds`; requests/s counts only 2xx/3xx answers."""
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed (`make bench` installs it)")
    proc = subprocess.run(
        ["taskset", "-c", cpu, exe, "-t1", f"-c{connections}", f"-d{seconds:g}s",
         "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 60, check=False,
    )  # fmt: skip
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    raw = json.loads(line[len("WRKJSON ") :])
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    good = raw["requests"] - raw["status"]
    seconds_run = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "ok": good,
        "errors": errors,
        "non_2xx": raw["status"],
        "seconds": round(seconds_run, 3),
        "rps": round(good / seconds_run, 1),
        "latency_ms": {k: raw[k] / 1000 for k in ("p50", "p90", "p99", "max")},
    }


def open_loop(
    url: str,
    body: str,
    headers: dict[str, str],
    *,
    rate: float,
    seconds: float,
    cpu: str,
) -> dict[str, Any]:
    """Run bench.openloop in its own process pinned to `cpu`; returns its summary."""
    with tempfile.TemporaryDirectory(prefix="openloop-") as tmp:
        out = Path(tmp) / "out.json"
        spec = Path(tmp) / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "url": url,
                    "body": body,
                    "headers": headers,
                    "rate": rate,
                    "duration": seconds,
                    "out": str(out),
                }
            )
        )
        proc = subprocess.run(
            ["taskset", "-c", cpu, sys.executable, "-m", "bench.openloop", str(spec)],
            cwd=REPO, capture_output=True, text=True, timeout=seconds + 60, check=False,
        )  # fmt: skip
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"open-loop client failed: {proc.stderr[-800:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result
