"""Reservations this instance took and keeps alive by renewing their leases.

If the instance dies, renewals stop and the leases run out, which releases the slots
for every other instance. Renewal drops members that another instance already released.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence


class HeldReservations:
    def __init__(self) -> None:
        self._held: dict[str, dict[str, float]] = defaultdict(dict)  # backend -> member -> until

    def add(self, backend: str, members: Sequence[str], until: float) -> None:
        for member in members:
            self._held[backend][member] = until

    def drop(self, backend: str, members: Sequence[str]) -> None:
        held = self._held.get(backend)
        if held:
            for member in members:
                held.pop(member, None)

    def to_renew(self) -> dict[str, list[str]]:
        """Members to renew now; entries past their job's deadline are let go."""
        now = time.time()
        renew: dict[str, list[str]] = {}
        for backend, held in self._held.items():
            for member in [m for m, until in held.items() if until < now]:
                del held[member]
            if held:
                renew[backend] = list(held)
        return renew
