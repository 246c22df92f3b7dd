"""SSRF guard for every URL the gateway calls or hands to a backend: public only, unless allowed.

One mechanism, used twice:
- at submit time (`screen`) for `webhook_url`, `init_image`, `mask_image`, `controlnet.image`:
  the URL's shape, then every address its host resolves to (the backend will resolve it
  again later, so any forbidden answer refuses the URL);
- at delivery time, on the addresses the connection will actually use: a resolver that drops
  forbidden answers (so DNS rebinding cannot slip a private address in after a check), plus
  `check_url` for IP literals, which aiohttp connects to without resolving.

A name that does not resolve (or not within `resolve_timeout`) is refused: the backends sit
inside our network and may resolve names the gateway cannot (split-horizon DNS).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
# Names refused before any lookup: RFC 6761 loopback names and the clouds' metadata services.
FORBIDDEN_NAMES = ("localhost", "metadata.google.internal", "metadata.goog", "instance-data")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_LOOSE_IPV4 = re.compile(r"^[0-9a-fx.]+$")
CACHE_SECONDS = 30.0
CACHE_SIZE = 4096


class Refused(OSError):
    """The destination is not allowed; the message says why."""


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def host_address(host: str) -> IPAddress | None:
    """An IP literal in any form a URL parser or `inet_aton` accepts, else None (a name).

    Decimal (`2130706433`), octal (`0177.0.0.1`), hex (`0x7f.1`) and short (`127.1`) IPv4
    forms are what some parsers and resolvers turn into addresses; read them the same way.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LOOSE_IPV4.match(host.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class OutboundGuard:
    def __init__(
        self,
        allow_networks: Sequence[Network],
        *,
        allow_http: bool,
        resolver: AbstractResolver | None = None,
        resolve_timeout: float = 2.0,
    ) -> None:
        self._allowed = list(allow_networks)
        self.allow_http = allow_http
        self._resolver = resolver
        self._resolve_timeout = resolve_timeout
        self._cache: dict[str, tuple[float, str | None]] = {}

    @property
    def resolver(self) -> AbstractResolver:
        """The resolver for outbound hosts (built on first use: it needs the running loop)."""
        if self._resolver is None:
            self._resolver = DefaultResolver()
        return self._resolver

    def reason(self, address: IPAddress) -> str | None:
        """None when `address` may be called; otherwise why not."""
        if any(address in network for network in self._allowed):
            return None
        inner = embedded_ipv4(address)
        if inner is not None:
            why = self.reason(inner)
            return f"{address} embeds {why}" if why else None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%")[0])
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

    def check_url(self, url: str) -> str | None:
        """Refuse bad schemes, userinfo, odd hosts and forbidden IP literals; the name to
        resolve, or None when the host is an (allowed) address."""
        if any(c in url for c in "\\\r\n\t ") or any(ord(c) < 32 or ord(c) == 127 for c in url):
            raise Refused("the URL contains whitespace, control characters or backslashes")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise Refused(f"not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise Refused(f"scheme {parts.scheme!r} is not allowed (http or https only)")
        if scheme == "http" and not self.allow_http:
            raise Refused("plain http is not allowed (outbound.allow_http is false)")
        if "@" in parts.netloc:
            raise Refused("credentials (user@host) in the URL are not allowed")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise Refused("the URL has no host")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise Refused("the host is not a valid international domain name") from None
        address = host_address(host)
        if address is not None:
            why = self.reason(address)
            if why:
                raise Refused(why)
            return None
        if not _HOSTNAME.match(host):
            raise Refused(f"{host!r} is not a valid host name")
        if any(host == name or host.endswith("." + name) for name in FORBIDDEN_NAMES):
            raise Refused(f"{host} is an internal name")
        return host

    async def screen(self, url: str) -> None:
        """Refuse `url` unless its host is public (every address it resolves to)."""
        host = self.check_url(url)
        if host is None:
            return
        now = time.monotonic()
        cached = self._cache.get(host)
        if cached is None or cached[0] < now:
            why = await self._resolved_reason(host)
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[host] = (now + CACHE_SECONDS, why)
        else:
            why = cached[1]
        if why:
            raise Refused(why)

    async def _resolved_reason(self, host: str) -> str | None:
        try:
            async with asyncio.timeout(self._resolve_timeout):
                answers = await self.resolver.resolve(host, 0, socket.AF_UNSPEC)
        except TimeoutError:
            return f"{host} could not be resolved within {self._resolve_timeout:g}s"
        except OSError:
            return f"{host} does not resolve"
        if not answers:
            return f"{host} does not resolve"
        for answer in answers:
            why = self.reason(ipaddress.ip_address(answer["host"]))
            if why:
                return f"{host} resolves to a forbidden address ({why})"
        return None


class GuardedResolver(AbstractResolver):
    """Resolves names, then keeps only addresses the guard allows."""

    def __init__(self, guard: OutboundGuard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._inner = inner or guard.resolver

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
