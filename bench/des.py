"""A discrete-event model of one gateway in front of the fleet.

Backends are FIFO multi-server queues: `parallelism` workers at a true `seconds_per_unit`;
a job of w units holds one worker for seconds_per_unit x w (fixed when it starts, as the
simulator's asyncio.sleep is). The gateway admits at most `max_concurrency` jobs per
backend (in service + queued there); a job that finds no room waits in the gateway's FIFO
queue and is placed when a job ends somewhere, as gateway/queue_runner.py does (a new job
joins that line when others already wait, as the API does).

Placement is either the gateway's routing code (bench/placers.py: Router + FleetView +
policy, learning speeds from completions) or the oracle. Submit and callback latencies are
zero; the view is exact unless `view_refresh` > 0 (then it is copied from the ledger every
`view_refresh` model seconds, as FleetSync does).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bench.fleet import FLEET, Arrival, BackendSpec
from gateway.queue_runner import LOOK_AHEAD, MAX_LOOK_AHEAD

ARRIVE, FINISH, FAIL, DIE, SLOW, PROBE, REFRESH = range(7)


@dataclass(eq=False)
class Job:
    index: int
    arrival: float
    work: float
    images: int
    server: Server | None = None
    placed_at: float = 0.0
    started: float = 0.0
    finished: float | None = None
    status: str = "queued"  # queued, running, succeeded, failed
    error: str = ""
    failed_attempts: int = 0
    token: int = 0  # bumped to cancel a scheduled FINISH (the backend died)
    # What the gateway stored at acceptance (for release and learning).
    members: tuple[str, ...] = ()
    work_per_slot: float = 0.0
    backlog: float = 0.0


@dataclass(eq=False)
class Server:
    spec: BackendSpec
    seconds_per_unit: float  # true, current
    alive: bool = True
    running: dict[int, float] = field(default_factory=dict)  # job index -> end time
    fifo: deque[Job] = field(default_factory=deque)
    stuck: int = 0  # jobs lost with the backend, holding their slots until they fail

    @property
    def held(self) -> int:
        return len(self.running) + len(self.fifo) + self.stuck

    def has_room(self) -> bool:
        limit = self.spec.max_concurrency
        return limit is None or self.held < limit

    def exact_completion(self, now: float, work: float) -> float:
        """When a job of `work` units submitted now would finish, knowing everything there."""
        free = [*self.running.values(), *[now] * (self.spec.parallelism - len(self.running))]
        heapq.heapify(free)
        for job in self.fifo:
            heapq.heappush(free, heapq.heappop(free) + self.seconds_per_unit * job.work)
        return free[0] + self.seconds_per_unit * work


class Placer(Protocol):
    def has_room(self) -> bool: ...

    def pass_started(self) -> None: ...

    def place(self, job: Job) -> bool:
        """Submit the job somewhere (or fail it); False leaves it in the gateway queue."""
        ...

    def ended(self, job: Job) -> None:
        """The job reached a final state: release its slots, learn from it."""
        ...

    def probe(self, server: Server) -> None: ...

    def refresh(self) -> None: ...


@dataclass(frozen=True)
class Incident:
    """At `at`, backend `backend` dies (factor None) or becomes `factor` times slower."""

    at: float
    backend: str
    factor: float | None = None


@dataclass(frozen=True)
class Settings:
    result_timeout: float = 900.0  # jobs.result_timeout: a lost job fails after this
    probe_interval: float = 10.0
    view_refresh: float = 0.0  # 0: the view is exact
    speed_prior: float = 0.5
    # Feed the gateway the eta a ModelsLab simulator answers on submit (its own queue incl.
    # the gateway's jobs, as gateway/dispatch.py._accepted reads it) - an experiment.
    provider_eta: bool = False
    # Learn speed and parallelism from the provider's service time (ModelsLab's
    # generationTime), as the gateway does where the provider reports it.
    service_time: bool = True


class Model:
    def __init__(
        self,
        arrivals: Sequence[Arrival],
        make_placer: Callable[[Model], Placer],
        *,
        fleet: Sequence[BackendSpec] = FLEET,
        incidents: Sequence[Incident] = (),
        settings: Settings | None = None,
    ) -> None:
        settings = settings or Settings()
        self.now = 0.0
        self.settings = settings
        self.fleet = list(fleet)
        self.servers = {s.name: Server(s, s.seconds_per_unit) for s in fleet}
        self.jobs = [Job(a.index, a.at, a.job.work, a.job.images) for a in arrivals]
        self.queue: deque[Job] = deque()
        self._events: list[tuple[float, int, int, object]] = []
        self._seq = itertools.count()
        self.pending = len(self.jobs)  # jobs not yet in a final state
        for job in self.jobs:
            self._push(job.arrival, ARRIVE, job)
        for incident in incidents:
            self._push(incident.at, DIE if incident.factor is None else SLOW, incident)
        if any(i.factor is None for i in incidents):
            self._push(settings.probe_interval, PROBE, None)
        if settings.view_refresh > 0:
            self._push(settings.view_refresh, REFRESH, None)
        self.placer = make_placer(self)

    def clock(self) -> float:
        return self.now

    def _push(self, at: float, kind: int, payload: object) -> None:
        heapq.heappush(self._events, (at, next(self._seq), kind, payload))

    # -- what placers call ---------------------------------------------------------------

    def submit(self, job: Job, server: Server) -> None:
        """The backend accepted the job: it starts at once or waits in the backend's FIFO."""
        assert server.alive, "placed on a dead backend"
        assert server.has_room(), "placed beyond max_concurrency"
        job.server, job.placed_at, job.status = server, self.now, "running"
        if len(server.running) < server.spec.parallelism:
            self._start(job, server)
        else:
            server.fifo.append(job)

    def fail(self, job: Job, error: str) -> None:
        job.status, job.error, job.finished = "failed", error, self.now
        self.pending -= 1
        self.placer.ended(job)

    # -- the loop ------------------------------------------------------------------------

    def _start(self, job: Job, server: Server) -> None:
        job.started = self.now
        end = self.now + server.seconds_per_unit * job.work
        server.running[job.index] = end
        self._push(end, FINISH, (job, job.token))

    def run(self, until: float = float("inf")) -> None:
        while self._events and self._events[0][0] <= until:
            at, _, kind, payload = heapq.heappop(self._events)
            self.now = at
            if kind == ARRIVE:
                assert isinstance(payload, Job)
                if self.queue:
                    # api/generations.py: with jobs already waiting a new one is not tried,
                    # it joins the line and wakes the queue runner.
                    self.queue.append(payload)
                    self._drain()
                elif not self.placer.place(payload):
                    self.queue.append(payload)
            elif kind == FINISH:
                assert isinstance(payload, tuple)
                job, token = payload
                assert isinstance(job, Job)
                if token == job.token:
                    self._finish(job)
            elif kind == FAIL:
                assert isinstance(payload, Job)
                assert payload.server is not None
                payload.server.stuck -= 1
                self.fail(payload, "result_timeout")
                self._drain()
            elif kind in (DIE, SLOW):
                assert isinstance(payload, Incident)
                self._incident(payload)
            elif kind == PROBE:
                for server in self.servers.values():
                    self.placer.probe(server)
                self._drain()
                # Periodic events tick only while something is pending, else forever.
                if self.pending:
                    self._push(self.now + self.settings.probe_interval, PROBE, None)
            elif kind == REFRESH:
                self.placer.refresh()
                self._drain()
                if self.pending:
                    self._push(self.now + self.settings.view_refresh, REFRESH, None)

    def _finish(self, job: Job) -> None:
        server = job.server
        assert server is not None
        del server.running[job.index]
        if server.fifo:
            self._start(server.fifo.popleft(), server)
        job.status, job.finished = "succeeded", self.now
        self.pending -= 1
        self.placer.ended(job)
        self._drain()

    def _drain(self) -> None:
        """QueueRunner.drain: passes down the line, LOOK_AHEAD jobs at a time and further
        while there is room (up to MAX_LOOK_AHEAD), in order; those that find their backend
        full stay in line. Another pass only when the last one stopped at MAX_LOOK_AHEAD
        having placed some."""
        while self.queue and self.placer.has_room():
            self.placer.pass_started()
            held: list[Job] = []
            went = 0
            while self.queue and went + len(held) < MAX_LOOK_AHEAD:
                want = min(LOOK_AHEAD, MAX_LOOK_AHEAD - went - len(held))
                for job in [self.queue.popleft() for _ in range(min(want, len(self.queue)))]:
                    if self.placer.place(job):
                        went += 1
                    else:
                        held.append(job)
                if not self.placer.has_room():
                    break
            cut = bool(self.queue) and went + len(held) >= MAX_LOOK_AHEAD
            self.queue.extendleft(reversed(held))
            if not went or not cut:
                break

    def _incident(self, incident: Incident) -> None:
        server = self.servers[incident.backend]
        if incident.factor is not None:
            server.seconds_per_unit *= incident.factor  # jobs already running keep their end
            return
        # The process is gone: jobs there never call back and polls are refused, so the
        # gateway keeps their slots until their deadline (created_at + jobs.result_timeout)
        # fails them (poller._expire).
        server.alive = False
        lost = [j for j in self.jobs if j.server is server and j.status == "running"]
        server.running.clear()
        server.fifo.clear()
        server.stuck = len(lost)
        for job in lost:
            job.token += 1
            self._push(max(self.now, job.arrival + self.settings.result_timeout), FAIL, job)
