"""EXPERIMENTS, not the gateway's behaviour: routing as it was before, for comparison.

`-overdue` removes the overdue signal (routing.load.overshoot): the view learns a backend's
slowdown only from completions, as the gateway did before the benchmark's first run found
recovery after an incident borderline. `+alpha=0.5` is a faster learning rate that run
suggested; measured here against the overdue signal, it did not help.
"""

from __future__ import annotations

from bench.des import Model
from bench.modelrouting import SimView
from bench.placers import RouterPlacer
from routing.load import median
from routing.policies import Policy


class NoOverdueView(SimView):
    def seconds_per_unit(self, name: str) -> float:
        learned = self.states[name].seconds_per_unit
        if learned is not None:
            return learned
        known = [s.seconds_per_unit for s in self.states.values() if s.seconds_per_unit]
        return median(known) or self.speed_prior


class NoOverduePlacer(RouterPlacer):
    def __init__(self, model: Model, policy: Policy, alpha: float) -> None:
        super().__init__(model, policy, alpha)
        view = NoOverdueView(model.clock, self.view.parallelism, self.view.speed_prior)
        self.view = self.router.view = view
        if model.settings.view_refresh <= 0:
            self.ledger.changed = lambda name: self.ledger.sync(view, name)
