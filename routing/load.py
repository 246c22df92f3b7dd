"""How long a job would take on a backend: the load model every policy and the oracle share.

A backend runs `parallelism` jobs at once, each at `seconds_per_unit` per megapixel-step
(one unit = 1e6 pixels x steps x images). What the gateway has reserved there is known
across instances as aggregates (`Reserved`: count, total work, and the first few slots in
start order), so a decision costs O(parallelism) per candidate, never O(jobs in flight).

The first `parallelism` reservations are in service; their remaining times are the workers'
free times. The rest (plus work the gateway queue holds for this backend) fills the workers
as water fills a basin; a new job starts when the level is reached and then takes its own
service time:

    completion = level(free times, queued work) + own service time + reported wait

This is the per-slot FIFO the oracle computes exactly, with the queued work treated as fluid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

REFERENCE_WORK = 512 * 512 * 30 / 1_000_000  # one 512x512 image at 30 steps, in units


MAX_OVERSHOOT = 4.0  # as routing.load.ewma bounds one observation


@dataclass(frozen=True)
class Slot:
    """One reservation on a backend: its work (units), when it started and was expected to
    end (epoch s), and its track id (so the reserving instance can drop it on release)."""

    work: float
    started: float
    expected_end: float = 0.0  # 0: unknown
    track: str = ""


@dataclass
class Reserved:
    """The gateway's reservations on one backend, as the shared ledger aggregates them.

    `head` holds the first reservations in start order (at least `parallelism` of them when
    there are that many); `count` and `work` cover all of them. `version` changes with every
    reservation and release, so a reservation can be checked against the view it was chosen
    on (-1: unknown).
    """

    head: list[Slot] = field(default_factory=list)
    count: int = 0
    work: float = 0.0
    version: int = -1

    @classmethod
    def of(cls, slots: Sequence[Slot], version: int = -1) -> Reserved:
        ordered = sorted(slots, key=lambda s: s.started)
        return cls(ordered, len(ordered), sum(s.work for s in ordered), version)

    def add(self, slots: Sequence[Slot]) -> None:
        self.head.extend(slots)
        self.count += len(slots)
        self.work += sum(s.work for s in slots)

    def drop(self, slots: Sequence[Slot]) -> None:
        gone = {s.track for s in slots}
        self.head = [s for s in self.head if s.track not in gone]
        self.count = max(0, self.count - len(slots))
        self.work = max(0.0, self.work - sum(s.work for s in slots)) if self.count else 0.0


def overshoot(slots: Iterable[Slot], now: float) -> float:
    """How far running jobs are past their expected end: >1 means the backend slowed down.

    Completions teach speed only once slow jobs finish; a job running past its estimate
    says so while it runs.
    """
    worst = 1.0
    for slot in slots:
        if now > slot.expected_end > slot.started:
            worst = max(worst, (now - slot.started) / (slot.expected_end - slot.started))
    return min(worst, MAX_OVERSHOOT)


def time_left(slot: Slot, seconds_per_unit: float, now: float) -> float:
    """Seconds until a job in service ends: by its expected end if it waited before it
    started, else by its own service time since it was reserved; never more than its whole
    service time, and a little when it is past its estimate (it has not ended yet)."""
    own = slot.work * seconds_per_unit
    left = max(slot.expected_end - now, own - (now - slot.started))
    return min(own, max(left, 0.1 * own))


def start_delay(free: Sequence[float], queued_seconds: float, parallelism: int) -> float:
    """Seconds until a new job starts: the workers' free times filled with the queued work.

    Idle workers (level 0) are one block, so this costs O(busy workers), not O(parallelism):
    a backend configured with a parallelism of 100,000 costs what its reservations cost.
    """
    busy = sorted(free[:parallelism])
    idle = parallelism - len(busy)
    left = max(0.0, queued_seconds)
    level, width, rest = (0.0, idle, busy) if idle > 0 else (busy[0], 1, busy[1:])
    for next_level in rest:
        cost = (next_level - level) * width
        if left <= cost:
            return level + left / width
        left -= cost
        level = next_level
        width += 1
    return level + left / width


def expected_completion(
    work: float,
    *,
    seconds_per_unit: float,
    parallelism: int,
    reserved: Reserved,
    now: float,
    ahead: float = 0.0,
    reported_wait: float = 0.0,
) -> float:
    """Seconds until a job of `work` units would finish there.

    `ahead` is work (units) the gateway queue holds for this backend before this job.
    """
    parallelism = max(1, parallelism)
    serving = reserved.head[:parallelism]
    free = [time_left(s, seconds_per_unit, now) for s in serving]
    waiting = max(0.0, reserved.work - sum(s.work for s in serving)) + max(0.0, ahead)
    begin = start_delay(free, waiting * seconds_per_unit, parallelism)
    return begin + seconds_per_unit * work + max(0.0, reported_wait)


def remaining_work(
    reserved: Reserved, seconds_per_unit: float, parallelism: int, now: float
) -> float:
    """Work (units) still to do there from what the gateway reserved."""
    serving = reserved.head[: max(1, parallelism)]
    left = sum(time_left(s, seconds_per_unit, now) for s in serving)
    done_share = left / seconds_per_unit if seconds_per_unit > 0 else 0.0
    return done_share + max(0.0, reserved.work - sum(s.work for s in serving))


def median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ewma(previous: float | None, observed: float, alpha: float) -> float:
    if previous is None:
        return observed
    # One wild observation (a stuck callback, a cold start) must not swing routing.
    bounded = min(max(observed, previous / 4), previous * 4)
    return (1 - alpha) * previous + alpha * bounded


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """How many service intervals run at once: counted at each interval's midpoint (a
    callback delayed by less than half a job cannot make consecutive jobs overlap), the
    upper quartile of those counts (a few late callbacks cannot raise it; a busy quarter
    of the window shows the full size)."""
    counts = sorted(
        (sum(1 for s, e in intervals if s <= (a + b) / 2 < e) for a, b in intervals),
        reverse=True,
    )
    return counts[len(counts) // 4] if counts else 0
