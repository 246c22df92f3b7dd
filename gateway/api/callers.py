"""Which tenants a caller may act for: any (admin key) or its own (tenant key)."""

from __future__ import annotations

from aiohttp import web

from gateway.context import services
from gateway.errors import Forbidden, NotFound


def acting_for(request: web.Request, asked: str | None) -> list[str]:
    """The tenants this caller may act for: all (admin) or its own.

    A tenant asking for another tenant gets the same 404 as for an unknown one.
    """
    s = services(request)
    try:
        s.directory.admin(request)
    except Forbidden:
        own = s.directory.tenant(request).name
        if asked not in (None, own):
            raise NotFound(f"no tenant {asked}") from None
        return [own]
    if asked is not None and asked not in s.directory.by_name:
        raise NotFound(f"no tenant {asked}")
    return [asked] if asked else list(s.directory.by_name)
