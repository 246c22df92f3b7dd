"""Everything one instance runs for fine-tunes, built once from the settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from adapters.httpclient import HttpClient
from gateway.background import Background
from gateway.config import Settings
from gateway.store.connect import Store
from gateway.tunes.dispatch import TuneDispatcher
from gateway.tunes.generate import TuneModels
from gateway.tunes.inbound import TuneInbound
from gateway.tunes.placement import Placement
from gateway.tunes.poller import TunePoller
from gateway.tunes.store import TuneStore
from gateway.tunes.updater import TuneUpdater
from observability.metrics import Metrics
from routing.backends import Backend
from routing.eligibility import Eligibility
from routing.router import Router


@dataclass
class Tunes:
    store: TuneStore
    updater: TuneUpdater
    placement: Placement
    dispatcher: TuneDispatcher
    inbound: TuneInbound
    poller: TunePoller
    models: TuneModels


def build_tunes(
    *,
    settings: Settings,
    store: Store,
    backends: Mapping[str, Backend],
    eligibility: Eligibility,
    router: Router,
    session: HttpClient,
    metrics: Metrics,
    background: Background,
) -> Tunes:
    tunes = TuneStore(
        store, retention=settings.jobs.retention, training_timeout=settings.tunes.training_timeout
    )
    updater = TuneUpdater(tunes, metrics)
    placement = Placement(store=store, backends=backends, eligibility=eligibility, view=router.view)
    dispatcher = TuneDispatcher(
        settings=settings,
        placement=placement,
        updater=updater,
        router=router,
        session=session,
        metrics=metrics,
    )
    return Tunes(
        store=tunes,
        updater=updater,
        placement=placement,
        dispatcher=dispatcher,
        inbound=TuneInbound(tunes=tunes, updater=updater, backends=backends, metrics=metrics),
        poller=TunePoller(
            tunes=tunes,
            updater=updater,
            dispatcher=dispatcher,
            backends=backends,
            session=session,
            metrics=metrics,
            background=background,
            lease=settings.jobs.dispatch_timeout,
        ),
        models=TuneModels(tunes=tunes, eligibility=eligibility, backends=backends),
    )
