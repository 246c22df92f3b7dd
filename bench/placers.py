"""Who places jobs in the model: the gateway's router (any policy) or the oracle."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from adapters.errors import ProviderUnavailable
from bench.des import Incident, Job, Model, Placer, Server, Settings
from bench.fleet import FLEET, Arrival, BackendSpec, Mix, arrivals, capacity
from bench.modelrouting import SimLedger, SimView, build_backends, candidates, run_sync
from gateway.store.fleet import SPEED_ALPHA
from routing.policies import Policy, make_policy
from routing.router import (
    AllFull,
    Completion,
    EjectionRules,
    NoRoutableBackend,
    Reservation,
    Router,
)

MAX_ATTEMPTS = 3  # routing.max_attempts default
ORACLE = "oracle"  # greedy earliest finish, within the fleet's admission limits
# Greedy earliest finish with exact knowledge of every slot, per-slot FIFO and no admission
# limit (run_model lifts the fleet's limits for it): the reference issue 9 asks for.
FREE_ORACLE = "oracle_free"


class RouterPlacer:
    """gateway/dispatch.py's attempt loop over the real Router, FleetView and policy."""

    def __init__(self, model: Model, policy: Policy, alpha: float = SPEED_ALPHA) -> None:
        self.model = model
        self.backends = build_backends(model.fleet)
        self.view = SimView(
            model.clock,
            {b.name: b.runs_at_once for b in self.backends},
            model.settings.speed_prior,
            limits={b.name: b.limit for b in self.backends},
            learning=frozenset(b.name for b in self.backends if b.learns_parallelism),
        )
        self.ledger = SimLedger(model.clock, [b.name for b in self.backends], alpha)
        if model.settings.view_refresh <= 0:
            self.ledger.changed = lambda name: self.ledger.sync(self.view, name)
        self.router = Router(policy, self.view, self.ledger, lease=30.0, ejection=EjectionRules())

    def has_room(self) -> bool:
        """QueueRunner._room: free slots on routable backends, as the view shows them."""
        return any(self.view.has_room(b.name) for b in self.backends if self.view.routable(b.name))

    def pass_started(self) -> None:
        """QueueRunner.drain: the work held for each backend is recounted every pass."""
        self.view.ahead = {}

    def place(self, job: Job) -> bool:
        pool = candidates(self.backends, job.work, job.images)
        tried: set[str] = set()
        attempted = False
        left = MAX_ATTEMPTS - job.failed_attempts
        while left > 0:
            track = f"{job.index}-{job.failed_attempts}"
            try:
                reservation = run_sync(self.router.reserve(pool, [track], tried))
            except (AllFull, NoRoutableBackend) as full:
                if isinstance(full, NoRoutableBackend) and attempted:
                    self.model.fail(job, "no_backend_accepted")
                    return True
                return False  # waits in the gateway queue
            left -= 1
            name = reservation.backend
            tried.add(name)
            server = self.model.servers[name]
            if not server.alive:
                # Connection refused before acceptance: release, count it, fail over.
                attempted = True
                job.failed_attempts += 1
                run_sync(self.router.release(name, reservation.members))
                run_sync(self.router.report_failure(name, ProviderUnavailable("refused")))
                continue
            run_sync(self.router.report_success(name))
            job.members = reservation.members
            job.work_per_slot = reservation.candidate.work_per_slot
            job.backlog = reservation.backlog
            self.accepted(reservation, reservation.members[0])
            if self.model.settings.provider_eta:
                self._note_eta(server, reservation)
            self.model.submit(job, server)
            return True
        self.model.fail(job, "no_backend_accepted")
        return True

    def _note_eta(self, server: Server, reservation: Reservation) -> None:
        """What dispatch._accepted does with the simulator's `eta`: the work queued there
        (the new job included: it is still in the asyncio queue when the answer is built)
        over its workers, plus the job's own time, at the true speed."""
        work = reservation.candidate.work_per_slot
        queued = sum(j.work for j in server.fifo) + work
        eta = server.seconds_per_unit * (queued / server.spec.parallelism + work)
        name = server.spec.name
        self.view.note_reported_wait(name, eta - reservation.expected, at=self.model.now)

    def accepted(self, reservation: Reservation, member: str) -> None:
        """A hook for experiments (bench/variants.py); the gateway does nothing more here."""

    def ended(self, job: Job) -> None:
        """services.on_end: release the slots, and learn from a success."""
        if job.server is None or not job.members:
            return
        name = job.server.spec.name
        if job.status != "succeeded" or job.finished is None:
            run_sync(self.router.release(name, job.members))
            return
        # The provider's generationTime: the job's own service interval.
        service = (job.started, job.finished) if self.model.settings.service_time else None
        done = Completion(
            job.finished - job.placed_at, job.work_per_slot, job.backlog, service, str(job.index)
        )
        run_sync(self.router.finish(name, job.members, done))

    def probe(self, server: Server) -> None:
        """FleetSync._probe: a dead backend fails its probe; a live one closes half-open."""
        name = server.spec.name
        if not server.alive:
            run_sync(self.router.count_failure(name))
        elif self.router.half_open(name):
            run_sync(self.router.report_success(name))

    def refresh(self) -> None:
        self.ledger.sync(self.view)


class OraclePlacer:
    """Exact knowledge of every backend: its FIFO contents, workers' end times, true speed.

    Each job, when it is placed (on arrival, or from the gateway queue when room frees),
    goes to the live backend with room where it would finish earliest, computed exactly
    (FIFO multi-server at the true current speed). Greedy: it does not hold jobs back or
    reorder the queue, and it cannot foresee a future slowdown.
    """

    def __init__(self, model: Model, rng: random.Random) -> None:
        self.model = model
        self.rng = rng
        self.servers = list(model.servers.values())

    def has_room(self) -> bool:
        return any(s.alive and s.has_room() for s in self.servers)

    def pass_started(self) -> None:
        pass

    def place(self, job: Job) -> bool:
        now = self.model.now
        open_ = [s for s in self.servers if s.alive and s.has_room()]
        if not open_:
            return False
        self.rng.shuffle(open_)  # ties go to a random backend, as the policies break them
        best = min(open_, key=lambda s: s.exact_completion(now, job.work))
        self.model.submit(job, best)
        return True

    def ended(self, job: Job) -> None:
        pass

    def probe(self, server: Server) -> None:
        pass

    def refresh(self) -> None:
        pass


def placer_factory(policy: str, seed: int) -> Callable[[Model], Placer]:
    """ "oracle", a gateway strategy name, or one with experiment changes (bench/variants.py):
    "-overdue" (without the overdue signal), "+alpha=X" (learning rate X)."""
    rng = random.Random(seed)
    if policy in (ORACLE, FREE_ORACLE):
        return lambda model: OraclePlacer(model, rng)
    head, *flags = policy.split("+")
    name, _, without = head.partition("-")
    alpha = next((float(f.split("=")[1]) for f in flags if f.startswith("alpha=")), SPEED_ALPHA)
    if without == "overdue":
        from bench.variants import NoOverduePlacer

        return lambda model: NoOverduePlacer(model, make_policy(name, rng), alpha)
    return lambda model: RouterPlacer(model, make_policy(name, rng), alpha)


@dataclass(frozen=True)
class RunResult:
    """Per job, in arrival order: arrival time, completion time (s), final status."""

    arrival: list[float]
    latency: list[float]
    status: list[str]
    backend: list[str]
    pending: int  # jobs that never reached a final state ("lost"); must be 0


def run_model(
    policy: str,
    load: float,
    count: int,
    seed: int,
    *,
    incidents: Sequence[Incident] = (),
    settings: Settings | None = None,
    fleet: Sequence[BackendSpec] = FLEET,
    mix: Mix = None,
    jobs: Sequence[Arrival] | None = None,
) -> RunResult:
    """One run: the same arrivals (by seed) for every policy, placed by `policy`; or the
    given arrivals (a live run's, to compute its oracle)."""
    if jobs is None:
        jobs = arrivals(load * capacity(tuple(fleet), mix), count, seed, mix)
    if policy == FREE_ORACLE:
        fleet = [replace(b, max_concurrency=None) for b in fleet]
    model = Model(
        jobs,
        placer_factory(policy, seed + 7919),
        fleet=fleet,
        incidents=incidents,
        settings=settings or Settings(),
    )
    model.run()
    return RunResult(
        arrival=[j.arrival for j in model.jobs],
        latency=[(j.finished or float("nan")) - j.arrival for j in model.jobs],
        status=[j.status for j in model.jobs],
        backend=[j.server.spec.name if j.server else "" for j in model.jobs],
        pending=model.pending,
    )
