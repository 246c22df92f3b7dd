"""Tenant and admin authentication: `Authorization: Bearer <key>`, keys stored as SHA-256."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from aiohttp import web

from gateway.config import Tenant
from gateway.errors import Forbidden, Unauthorized


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    return token.strip()


def _digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class Directory:
    """Looks up who is calling; built once from the config."""

    def __init__(self, tenants: Sequence[Tenant], admin_keys: Sequence[str]) -> None:
        self._tenants = {key: tenant for tenant in tenants for key in tenant.api_keys}
        self._admins = frozenset(admin_keys)
        self.by_name = {tenant.name: tenant for tenant in tenants}

    def tenant(self, request: web.Request) -> Tenant:
        tenant = self._tenants.get(_digest(_bearer(request)))
        if tenant is None:
            raise Unauthorized()
        return tenant

    def admin(self, request: web.Request) -> None:
        if _digest(_bearer(request)) not in self._admins:
            raise Forbidden("this route needs an admin key")
