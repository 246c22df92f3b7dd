"""A hostile value (a provider's error text, a tenant's metadata key) cannot forge a log line:
the gateway's logs are JSON lines, one event per line, values escaped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HOSTILE = [
    'ok\n{"event": "forged", "level": "error"}',
    "carriage\rreturn",
    "\x1b[31mred\x1b[0m",
    "nul\x00byte",
    "line\u2028separator\u2029paragraph",
    "tab\tand\x7fdel\x85next\x0bvertical\x1cfile",
    '\ud83d\ude00 emoji and \\ backslash " quote',
]

SCRIPT = """
import json, sys
from observability.logging import configure_logging, get_logger
configure_logging("info")
log = get_logger("hostile")
for value in json.loads(sys.argv[1]):
    log.warning("provider_said", detail=value, **{value[:8]: "as a key"})
"""


def test_every_event_is_one_json_line_with_the_value_intact() -> None:
    values = [v.encode("utf-16", "surrogatepass").decode("utf-16") for v in HOSTILE]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(values)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    lines = result.stderr.splitlines()
    assert len(lines) == len(values), result.stderr
    for line, value in zip(lines, values, strict=True):
        event = json.loads(line)
        assert event["event"] == "provider_said"
        assert event["detail"] == value
