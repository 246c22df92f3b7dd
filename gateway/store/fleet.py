"""Backend state shared by every instance: reservations with leases, health, speed, drain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.store import keys
from gateway.store.connect import Store
from routing.load import Slot

# Slowdowns show first through jobs running past their expected end (routing.load
# .overshoot); the average itself can stay steady (the benchmark measured 0.2 recovering
# faster with that signal than 0.5: bench/results/routing.json, experiments).
SPEED_ALPHA = 0.2


def parse_member(raw: bytes | str) -> Slot | None:
    """A member written by routing.router.member: track~work~started_ms~expected_end_ms."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    parts = text.split("~")
    if len(parts) != 4:
        return None
    try:
        return Slot(
            work=float(parts[1]),
            started=int(parts[2]) / 1000,
            expected_end=int(parts[3]) / 1000,
            track=parts[0],
        )
    except ValueError:
        return None


@dataclass(frozen=True)
class BackendRecord:
    """One backend's shared state as read from the store."""

    slots: list[Slot] = field(default_factory=list)
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # epoch seconds
    cooldown_until: float = 0.0
    drained: bool = False
    seconds_per_unit: float | None = None

    @property
    def in_flight(self) -> int:
        return len(self.slots)


@dataclass(frozen=True)
class Snapshot:
    server_time: float  # epoch seconds by the store's clock
    backends: dict[str, BackendRecord]


def _flat(pairs: Sequence[bytes]) -> dict[str, str]:
    return {pairs[i].decode(): pairs[i + 1].decode() for i in range(0, len(pairs), 2)}


class FleetStore:
    def __init__(self, store: Store, backends: Sequence[str]) -> None:
        self._store = store
        self._names = list(backends)
        self._health_keys = [keys.health(b) for b in self._names]

    async def reserve(
        self, candidates: Sequence[tuple[str, int, Sequence[str]]], lease: float
    ) -> tuple[str | None, dict[str, int]]:
        """Reserve the given members on the first candidate (name, capacity, members) with room.

        Returns the chosen backend (or None) and the in-flight counts seen on the way.
        """
        args: list[str | int] = [int(lease * 1000)]
        for _, capacity, members in candidates:
            args += [capacity, len(members), *members]
        reply = await self._store.run(
            "RESERVE", [keys.reservations(name) for name, _, _ in candidates], args
        )
        chosen_index = int(reply[0])
        seen = {candidates[i][0]: int(n) for i, n in enumerate(reply[1:])}
        chosen = candidates[chosen_index - 1][0] if chosen_index else None
        return chosen, seen

    async def release(self, backend: str, members: Sequence[str]) -> None:
        if members:
            await self._store.redis.zrem(keys.reservations(backend), *members)

    async def renew(self, held: Mapping[str, Sequence[str]], lease: float) -> dict[str, list[str]]:
        """Extend the leases of `held` members; returns those no longer reserved."""
        held = {b: m for b, m in held.items() if m}
        if not held:
            return {}
        args: list[str | int] = [int(lease * 1000)]
        for members in held.values():
            args += [len(members), *members]
        reply = await self._store.run("RENEW", [keys.reservations(b) for b in held], args)
        return {
            backend: [m.decode() for m in missing]
            for backend, missing in zip(held, reply, strict=True)
            if missing
        }

    async def snapshot(self) -> Snapshot:
        reply = await self._store.run(
            "SNAPSHOT",
            [*(keys.reservations(b) for b in self._names), *self._health_keys, keys.speeds()],
            [],
        )
        speeds = {k: float(v) for k, v in _flat(reply[1]).items()}
        backends = {}
        for i, name in enumerate(self._names):
            members, health = reply[2 + 2 * i], _flat(reply[3 + 2 * i])
            backends[name] = BackendRecord(
                slots=[s for s in map(parse_member, members) if s is not None],
                failures=int(health.get("failures", 0)),
                ejections=int(health.get("ejections", 0)),
                ejected_until=float(health.get("ejected_until", 0)) / 1000,
                cooldown_until=float(health.get("cooldown_until", 0)) / 1000,
                drained=health.get("drained") == "1",
                seconds_per_unit=speeds.get(name),
            )
        return Snapshot(server_time=int(reply[0]) / 1000, backends=backends)

    async def record_failure(
        self, backend: str, *, threshold: int, base: float, maximum: float, max_share: float
    ) -> float | None:
        """Count a failure; returns the ejection end (epoch seconds) if this ejected it."""
        ejected, value = await self._store.run(
            "RECORD_FAILURE",
            [keys.health(backend), *self._health_keys],
            [threshold, int(base * 1000), int(maximum * 1000), max_share],
        )
        return int(value) / 1000 if int(ejected) else None

    async def record_success(self, backend: str, *, forget_after: float) -> None:
        await self._store.run("RECORD_SUCCESS", [keys.health(backend)], [int(forget_after * 1000)])

    async def cool_down(self, backend: str, seconds: float) -> float:
        until = await self._store.run("COOL_DOWN", [keys.health(backend)], [int(seconds * 1000)])
        return int(until) / 1000

    async def learn_speed(self, backend: str, seconds_per_unit: float) -> float:
        value = await self._store.run(
            "LEARN_SPEED", [keys.speeds()], [backend, f"{seconds_per_unit:.6g}", SPEED_ALPHA]
        )
        return float(value)

    async def set_drained(self, backend: str, drained: bool) -> None:
        await self._store.redis.hset(keys.health(backend), "drained", "1" if drained else "0")
