"""Backend state shared by every instance: reservations with leases, health, drain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.store import keys
from gateway.store.connect import Store


@dataclass(frozen=True)
class BackendRecord:
    """One backend's shared state as read from the store."""

    in_flight: int
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # epoch seconds
    drained: bool = False


@dataclass(frozen=True)
class Snapshot:
    server_time: float  # epoch seconds by the store's clock
    backends: dict[str, BackendRecord]


class FleetStore:
    def __init__(self, store: Store, backends: Sequence[str]) -> None:
        self._store = store
        self._names = list(backends)
        self._health_keys = [keys.health(b) for b in self._names]

    async def reserve(
        self,
        candidates: Sequence[tuple[str, int, int]],
        members: Sequence[str],
        lease: float,
    ) -> tuple[str | None, dict[str, int]]:
        """Reserve slots on the first candidate (name, capacity, need) with room.

        Returns the chosen backend (or None) and the in-flight counts seen on the way.
        """
        args: list[str | int] = [int(lease * 1000), len(members), *members]
        for _, capacity, need in candidates:
            args += [capacity, need]
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
            "SNAPSHOT", [*(keys.reservations(b) for b in self._names), *self._health_keys], []
        )
        backends = {}
        for i, name in enumerate(self._names):
            in_flight, flat = reply[1 + 2 * i], reply[2 + 2 * i]
            fields = {flat[j].decode(): flat[j + 1].decode() for j in range(0, len(flat), 2)}
            backends[name] = BackendRecord(
                in_flight=int(in_flight),
                failures=int(fields.get("failures", 0)),
                ejections=int(fields.get("ejections", 0)),
                ejected_until=float(fields.get("ejected_until", 0)) / 1000,
                drained=fields.get("drained") == "1",
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

    async def record_success(self, backend: str) -> None:
        await self._store.redis.hset(keys.health(backend), "failures", 0)

    async def set_drained(self, backend: str, drained: bool) -> None:
        await self._store.redis.hset(keys.health(backend), "drained", "1" if drained else "0")
