"""Every multi-key script keeps its keys in one Redis Cluster hash slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from gateway import ids
from gateway.store import keys

JOB = ids.new_job_id()
SHARD = ids.shard_of(JOB)
IDEM_SHARD = ids.shard_for("acme", "key-digest")
IDEM_JOB = ids.new_job_id(IDEM_SHARD)

SCRIPT_KEYS = {
    "CREATE_JOB": [
        keys.job(IDEM_JOB),
        keys.idempotency(IDEM_SHARD, "acme", "d"),
        keys.polls(IDEM_SHARD),
    ],
    "JOB_CAS": [keys.job(JOB), keys.polls(SHARD), keys.deliveries(SHARD)],
    "DELIVERY_CAS": [
        keys.job(JOB),
        keys.deliveries(SHARD),
        keys.retries(SHARD),
        keys.dead_letters(SHARD, "acme"),
    ],
    "PROMOTE_RETRIES": [keys.retries(SHARD), keys.deliveries(SHARD)],
    "RESERVE": [keys.reservations(b) for b in ("a", "b", "gpu-7")],
    "SNAPSHOT": [
        *(keys.reservations(b) for b in ("a", "b")),
        *(keys.health(b) for b in ("a", "b")),
    ],
    "RECORD_FAILURE": [keys.health(b) for b in ("a", "a", "b")],
}


@pytest.mark.parametrize("script", sorted(SCRIPT_KEYS))
def test_script_keys_share_a_slot(script: str) -> None:
    slots = {key_slot(k.encode()) for k in SCRIPT_KEYS[script]}
    assert len(slots) == 1, SCRIPT_KEYS[script]


def test_shards_spread_jobs_over_slots() -> None:
    slots = {key_slot(keys.job(ids.new_job_id(s)).encode()) for s in range(ids.SHARDS)}
    assert len(slots) == ids.SHARDS


def test_track_ids_lead_back_to_their_job() -> None:
    track = ids.track_id(JOB, 3)
    assert ids.parse_track_id(track) == (JOB, 3)
    assert ids.parse_track_id("gen_nothex.1") is None
