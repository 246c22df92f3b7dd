"""Backend state shared by every instance: reservations with leases, health, speed, drain."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.store import keys
from gateway.store.connect import Store
from routing.load import Reserved, Slot
from routing.router import Offer, Outcome, parse_slot

# Slowdowns show first through jobs running past their expected end (routing.load
# .overshoot); the average itself can stay steady (the benchmark measured 0.2 recovering
# faster with that signal than 0.5: bench/results/routing.json, experiments).
SPEED_ALPHA = 0.2
# Service intervals kept per backend for its learned parallelism: enough that a busy spell
# among the last few dozen jobs shows how many ran at once.
SERVICE_WINDOW = 48
HEAD_DEFAULT = 4  # reservations read in start order when the caller does not say


def parse_member(raw: bytes | str) -> Slot | None:
    """A member written by routing.router.member: track~work~started_ms~expected_end_ms."""
    return parse_slot(raw.decode() if isinstance(raw, bytes) else raw)


def parse_state(reply: Sequence[Any]) -> Reserved:
    """A script's {count, work, version, head} for one backend."""
    count, work, version, head = reply
    return Reserved(
        head=[s for s in map(parse_member, head) if s is not None],
        count=int(count),
        work=max(0.0, float(work)) if int(count) else 0.0,
        version=int(version),
    )


@dataclass(frozen=True)
class BackendRecord:
    """One backend's shared state as read from the store."""

    reserved: Reserved = field(default_factory=Reserved)
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # epoch seconds
    cooldown_until: float = 0.0
    drained: bool = False
    seconds_per_unit: float | None = None
    parallelism: int | None = None  # learned from service intervals

    @property
    def in_flight(self) -> int:
        return self.reserved.count


@dataclass(frozen=True)
class Snapshot:
    server_time: float  # epoch seconds by the store's clock
    backends: dict[str, BackendRecord]


def _flat(pairs: Sequence[bytes]) -> dict[str, str]:
    return {pairs[i].decode(): pairs[i + 1].decode() for i in range(0, len(pairs), 2)}


def _load_keys(backend: str) -> list[str]:
    return [
        keys.reservations(backend),
        keys.reservation_starts(backend),
        keys.reservation_load(backend),
    ]


def _learn_keys(backend: str) -> list[str]:
    return [keys.speeds(), keys.parallelism(), keys.service_times(backend)]


def _learn_args(
    backend: str, seconds_per_unit: float | None, service: tuple[float, float] | None, tag: str
) -> list[str | float | int]:
    start, end = (f"{int(service[0] * 1000)}", f"{int(service[1] * 1000)}") if service else ("", "")
    speed = "" if seconds_per_unit is None else f"{seconds_per_unit:.6g}"
    return [backend, speed, SPEED_ALPHA, start, end, SERVICE_WINDOW, tag]


def _learned(speed: Any, parallel: Any) -> tuple[float | None, int | None]:
    return (float(speed) if speed else None, int(parallel) if parallel else None)


RENEW_CHUNK = 256  # members per RENEW script (see FleetStore.renew)


def _chunks(held: Mapping[str, Sequence[str]], size: int) -> Iterator[dict[str, Sequence[str]]]:
    """`held` split into pieces of at most `size` members in all, backends kept apart."""
    chunk: dict[str, Sequence[str]] = {}
    count = 0
    for backend, members in held.items():
        for start in range(0, len(members), size):
            part = members[start : start + size]
            if count + len(part) > size:
                yield chunk
                chunk, count = {}, 0
            chunk[backend] = part
            count += len(part)
    if chunk:
        yield chunk


class FleetStore:
    def __init__(self, store: Store, backends: Sequence[str]) -> None:
        self._store = store
        self._names = list(backends)

    async def reserve(self, offers: Sequence[Offer], lease: float) -> Outcome:
        """Reserve on the first offer with room, unless an offer's load grew since its
        version was read (then nothing is reserved: the caller decides again)."""
        args: list[str | int] = [int(lease * 1000)]
        for offer in offers:
            seen = repr(offer.seen_work)  # exact: the float the script's own reply gave
            args += [offer.capacity, len(offer.members), offer.version, seen, offer.head]
            args += offer.members
        reply = await self._store.run(
            "RESERVE", [k for o in offers for k in _load_keys(o.backend)], args
        )
        status, index = int(reply[0]), int(reply[1])
        loads = {offers[i].backend: parse_state(st) for i, st in enumerate(reply[2:])}
        name = offers[index - 1].backend if index else None
        return Outcome(
            chosen=name if status == 1 else None,
            changed=name if status == 2 else None,
            loads=loads,
        )

    async def release(self, backend: str, members: Sequence[str], head: int) -> Reserved:
        reply = await self._store.run("RELEASE", _load_keys(backend), [head, *members])
        return parse_state(reply)

    async def renew(self, held: Mapping[str, Sequence[str]], lease: float) -> dict[str, list[str]]:
        """Extend the leases of `held` members; returns those no longer reserved.

        At most RENEW_CHUNK members per script, one after another: a script holds Redis
        for every client while it runs, and one over 10,000 members held it ~24 ms (the
        overhead bench's jobs in flight; SLOWLOG). Chunks leave room between them."""
        missing: dict[str, list[str]] = {}
        for chunk in _chunks({b: m for b, m in held.items() if m}, RENEW_CHUNK):
            args: list[str | int] = [int(lease * 1000)]
            for members in chunk.values():
                args += [len(members), *members]
            reply = await self._store.run("RENEW", [keys.reservations(b) for b in chunk], args)
            for backend, gone in zip(chunk, reply, strict=True):
                if gone:
                    missing.setdefault(backend, []).extend(m.decode() for m in gone)
        return missing

    async def snapshot(self, heads: Mapping[str, int] | None = None) -> Snapshot:
        """Every backend's aggregates and its first `heads[name]` reservations."""
        heads = heads or {}
        reply = await self._store.run(
            "SNAPSHOT",
            [
                *(k for b in self._names for k in (*_load_keys(b), keys.health(b))),
                keys.speeds(),
                keys.parallelism(),
            ],
            [heads.get(b, HEAD_DEFAULT) for b in self._names],
        )
        speeds = {k: float(v) for k, v in _flat(reply[1]).items()}
        learned = {k: int(v) for k, v in _flat(reply[2]).items()}
        backends = {}
        for i, name in enumerate(self._names):
            state, health = reply[3 + 2 * i], _flat(reply[4 + 2 * i])
            backends[name] = BackendRecord(
                reserved=parse_state(state),
                failures=int(health.get("failures", 0)),
                ejections=int(health.get("ejections", 0)),
                ejected_until=float(health.get("ejected_until", 0)) / 1000,
                cooldown_until=float(health.get("cooldown_until", 0)) / 1000,
                drained=health.get("drained") == "1",
                seconds_per_unit=speeds.get(name),
                parallelism=learned.get(name) or None,
            )
        return Snapshot(server_time=int(reply[0]) / 1000, backends=backends)

    async def record_failure(
        self, backend: str, *, threshold: int, base: float, maximum: float, max_share: float
    ) -> float | None:
        """Count a failure; returns the ejection end (epoch seconds) if this ejected it."""
        ejected, value = await self._store.run(
            "RECORD_FAILURE",
            [keys.health(backend), *(keys.health(b) for b in self._names)],
            [threshold, int(base * 1000), int(maximum * 1000), max_share],
        )
        return int(value) / 1000 if int(ejected) else None

    async def record_success(self, backend: str, *, forget_after: float) -> None:
        await self._store.run("RECORD_SUCCESS", [keys.health(backend)], [int(forget_after * 1000)])

    async def cool_down(self, backend: str, seconds: float) -> float:
        until = await self._store.run("COOL_DOWN", [keys.health(backend)], [int(seconds * 1000)])
        return int(until) / 1000

    async def learn(
        self,
        backend: str,
        seconds_per_unit: float | None,
        service: tuple[float, float] | None,
        tag: str,
    ) -> tuple[float | None, int | None]:
        """Fold one completion into the backend's speed and (given the provider's service
        interval, epoch s) its learned parallelism; returns both as now stored."""
        speed, parallel = await self._store.run(
            "LEARN", _learn_keys(backend), _learn_args(backend, seconds_per_unit, service, tag)
        )
        return _learned(speed, parallel)

    async def finish(
        self,
        backend: str,
        members: Sequence[str],
        head: int,
        seconds_per_unit: float | None,
        service: tuple[float, float] | None,
        tag: str,
    ) -> tuple[Reserved, float | None, int | None]:
        """`learn` and `release` in one round trip (a job's end)."""
        state, speed, parallel = await self._store.run(
            "FINISH",
            [*_load_keys(backend), *_learn_keys(backend)],
            [head, *_learn_args(backend, seconds_per_unit, service, tag), *members],
        )
        return (parse_state(state), *_learned(speed, parallel))

    async def set_drained(self, backend: str, drained: bool) -> None:
        await self._store.redis.hset(keys.health(backend), "drained", "1" if drained else "0")
