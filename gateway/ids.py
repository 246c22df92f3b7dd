"""Job and tune ids, track ids and per-submission webhook tokens.

A job id carries its store shard in its first hex digit (`gen_<shard><rest>`), and a track
id is `<job id>.<n>`, so an incoming webhook finds its job's shard without a lookup. Tune
ids (`tune_<shard><rest>`) and their track ids follow the same rules.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

SHARDS = 16
_HEX = "0123456789abcdef"
_JOB_ID = re.compile(r"^gen_[0-9a-f]{24}$")
_TRACK_ID = re.compile(r"^(gen_[0-9a-f]{24})\.(\d{1,4})$")
_TUNE_ID = re.compile(r"^tune_[0-9a-f]{24}$")
_TUNE_TRACK_ID = re.compile(r"^(tune_[0-9a-f]{24})\.(\d{1,4})$")


def new_job_id(shard: int | None = None, prefix: str = "gen") -> str:
    rest = secrets.token_hex(12)
    if shard is not None:
        rest = _HEX[shard] + rest[1:]
    return f"{prefix}_{rest}"


def new_tune_id(shard: int | None = None) -> str:
    return new_job_id(shard, "tune")


def shard_of(record_id: str) -> int:
    """The shard of a job or tune id: the first of its 24 hex digits."""
    return _HEX.index(record_id[-24])


def shard_for(*parts: str) -> int:
    """A stable shard for a value, e.g. (tenant, idempotency key)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return digest[0] % SHARDS


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID.match(value))


def is_tune_id(value: str) -> bool:
    return bool(_TUNE_ID.match(value))


def parse_tune_track_id(value: str) -> tuple[str, int] | None:
    match = _TUNE_TRACK_ID.match(value)
    return (match.group(1), int(match.group(2))) if match else None


def track_id(job_id: str, n: int) -> str:
    return f"{job_id}.{n}"


def parse_track_id(value: str) -> tuple[str, int] | None:
    match = _TRACK_ID.match(value)
    return (match.group(1), int(match.group(2))) if match else None


def new_job_secret() -> str:
    return secrets.token_urlsafe(24)


def submission_token(job_secret: str, track: str) -> str:
    """The token in one submission's callback URL; derived, so nothing extra is stored."""
    mac = hmac.new(job_secret.encode(), track.encode(), hashlib.sha256).digest()
    return mac[:18].hex()


def token_matches(job_secret: str, track: str, token: str) -> bool:
    # Bytes: compare_digest refuses str with non-ASCII characters, and the token is the
    # caller's (anything a query string can carry).
    expected = submission_token(job_secret, track).encode()
    return hmac.compare_digest(expected, token.encode("utf-8", "replace"))
