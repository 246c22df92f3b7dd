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
    "JOB_CAS_USAGE": [
        keys.job(JOB),
        keys.polls(SHARD),
        keys.deliveries(SHARD),
        keys.usage_day(SHARD, "acme", "2026-12-01"),
        keys.spend_month(SHARD, "2026-12"),
    ],
    "QUOTA_ADMIT": [keys.tenant_inflight("acme"), keys.tenant_daily("acme", 20000)],
    "QUOTA_RELEASE": [keys.tenant_inflight("acme"), keys.tenant_daily("acme", 20000)],
    "DELIVERY_CAS": [
        keys.job(JOB),
        keys.deliveries(SHARD),
        keys.retries(SHARD),
        keys.dead_letters(SHARD, "acme"),
    ],
    "PROMOTE_RETRIES": [keys.retries(SHARD), keys.deliveries(SHARD)],
    "RESERVE": [
        k
        for b in ("a", "b", "gpu-7")
        for k in (keys.reservations(b), keys.reservation_starts(b), keys.reservation_load(b))
    ],
    "RELEASE": [keys.reservations("a"), keys.reservation_starts("a"), keys.reservation_load("a")],
    "SNAPSHOT": [
        *(keys.reservations(b) for b in ("a", "b")),
        *(keys.reservation_starts(b) for b in ("a", "b")),
        *(keys.reservation_load(b) for b in ("a", "b")),
        *(keys.health(b) for b in ("a", "b")),
        keys.speeds(),
        keys.parallelism(),
    ],
    "LEARN": [keys.speeds(), keys.parallelism(), keys.service_times("gpu-7")],
    "FINISH": [
        keys.reservations("a"),
        keys.reservation_starts("a"),
        keys.reservation_load("a"),
        keys.speeds(),
        keys.parallelism(),
        keys.service_times("a"),
    ],
    "RENEW": [keys.reservations(b) for b in ("a", "b")],
    "QUEUE_PUSH": [keys.queue(), keys.queue_tenants(), keys.queue_clocks()],
    "QUEUE_TAKE": [keys.queue(), keys.queue_clocks()],
    "QUEUE_POP": [keys.queue(), keys.queue_clocks()],
    "DELETE_JOB": [
        keys.job(IDEM_JOB),
        keys.idempotency(IDEM_SHARD, "acme", "d"),
        keys.polls(IDEM_SHARD),
    ],
    "RECORD_FAILURE": [keys.health(b) for b in ("a", "a", "b")],
}


def test_every_multi_key_script_is_checked_here() -> None:
    import re

    from gateway.store import scripts

    sources = {
        n: getattr(scripts, n) for n in dir(scripts) if n.isupper() and not n.startswith("_")
    }
    multi_key = {
        n for n, src in sources.items() if re.search(r"KEYS\[[2-9]|ipairs\(KEYS\)|#KEYS", src)
    }
    assert multi_key <= set(SCRIPT_KEYS), multi_key - set(SCRIPT_KEYS)


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


async def test_a_script_call_across_slots_is_refused_under_test() -> None:
    from gateway.store import connect

    assert connect.CHECK_SLOTS  # tests/conftest.py turns the check on
    store = await connect.open_store("memory://")
    try:
        with pytest.raises(AssertionError, match="spans slots"):
            await store.run("PROMOTE_RETRIES", [keys.retries(0), keys.deliveries(1)], [0, 1])
        same = [keys.retries(1), keys.deliveries(1)]
        assert await store.run("PROMOTE_RETRIES", same, [0, 1]) == 0
    finally:
        await store.close()
