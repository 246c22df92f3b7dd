"""Tenant and admin authentication: `Authorization: Bearer <key>`, keys stored as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
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


def _find(digest: str, known: Sequence[tuple[bytes, Tenant | None]]) -> Tenant | bool | None:
    """Compare with every known hash in constant time, whichever matches (no early exit)."""
    presented = digest.encode()
    found: Tenant | bool | None = False
    for candidate, owner in known:
        if hmac.compare_digest(presented, candidate):
            found = owner
    return found


class Directory:
    """Looks up who is calling; built once from the config.

    A tenant may have several valid key hashes at once (rotation: add the new one, move
    clients over, remove the old one). Every presented key is compared with every known
    hash in constant time, so timing tells nothing about which keys exist.
    """

    def __init__(self, tenants: Sequence[Tenant], admin_keys: Sequence[str]) -> None:
        self._tenants = [(key.encode(), tenant) for tenant in tenants for key in tenant.api_keys]
        self._admins: list[tuple[bytes, Tenant | None]] = [(k.encode(), None) for k in admin_keys]
        self.by_name = {tenant.name: tenant for tenant in tenants}

    def tenant(self, request: web.Request) -> Tenant:
        tenant = _find(_digest(_bearer(request)), self._tenants)
        if not isinstance(tenant, Tenant):
            raise Unauthorized()
        return tenant

    def admin(self, request: web.Request) -> None:
        if _find(_digest(_bearer(request)), self._admins) is False:
            raise Forbidden("this route needs an admin key")
