"""SSRF guard for outbound calls: only public addresses, unless allow-listed.

The check runs on the addresses the connection will actually use: a resolver that drops
forbidden answers (so DNS rebinding cannot slip a private address in after a check), plus
a check of IP literals, which aiohttp connects to without resolving.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class Refused(OSError):
    """The destination is not allowed; the message says why."""


class OutboundGuard:
    def __init__(self, allow_networks: Sequence[Network], *, allow_http: bool) -> None:
        self._allowed = list(allow_networks)
        self.allow_http = allow_http

    def reason(self, address: IPAddress) -> str | None:
        """None when `address` may be called; otherwise why not."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in network for network in self._allowed):
            return None
        if address in METADATA:
            return f"{address} is a cloud metadata address"
        for check, what in (
            (address.is_loopback, "loopback"),
            (address.is_link_local, "link-local"),
            (address.is_private, "private"),
            (address.is_multicast, "multicast"),
            (address.is_unspecified, "unspecified"),
            (address.is_reserved, "reserved"),
        ):
            if check:
                return f"{address} is a {what} address"
        if not address.is_global:
            return f"{address} is not a public address"
        return None

    def check_url(self, url: str) -> None:
        """Refuse bad schemes and forbidden IP literals before connecting."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise Refused(f"scheme {parts.scheme!r} is not allowed")
        if parts.scheme == "http" and not self.allow_http:
            raise Refused("plain http is not allowed (outbound.allow_http is false)")
        host = parts.hostname or ""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return
        why = self.reason(literal)
        if why:
            raise Refused(why)


class GuardedResolver(AbstractResolver):
    """Resolves names, then keeps only addresses the guard allows."""

    def __init__(self, guard: OutboundGuard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed, reasons = [], []
        for result in results:
            why = self._guard.reason(ipaddress.ip_address(result["host"]))
            if why:
                reasons.append(why)
            else:
                allowed.append(result)
        if not allowed:
            raise Refused(f"{host} resolves only to forbidden addresses ({'; '.join(reasons)})")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def describe(exc: BaseException) -> str:
    """Find a guard refusal inside aiohttp's wrapping exceptions."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Refused):
            return str(current)
        current = current.__cause__ or current.__context__ or getattr(current, "os_error", None)
    return ""
