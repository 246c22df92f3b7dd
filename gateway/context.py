"""Typed application keys shared by the app factory and the handlers."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Settings
from gateway.services import Services
from observability.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
