"""Outbound HTTP for plugins: only to the hosts a plugin may call, never to this machine or its private network.

The host gives each hook call an :class:`httpx.AsyncClient` (``context.http``) built by :func:`guarded_client`.
Every request it sends, and every redirect it follows, passes :class:`OutboundPolicy`:

- the URL's host must be one the plugin's manifest names (``outbound_hosts``, where ``*.example.org`` matches
  its subdomains) or one the tenant's configuration names (the hosts of the URLs in the manifest's
  ``outbound_config_keys``): a redirect to any other host is refused;
- every address the name resolves to must be public: loopback, link-local (169.254.169.254, the cloud metadata
  service), private, shared, multicast and reserved ranges are refused unless the operator lists the network in
  ``CAREHUB_PLUGIN_ALLOW_NETWORKS``;
- the connection goes to the address that was checked (the name is not resolved a second time), with the
  original name kept for TLS and the ``Host`` header, so a name that changes its answer cannot slip through.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field

import certifi
import httpx

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(httpx.TransportError):
    """A plugin's request was not sent: its host or address is not one it may call (the message says which)."""


def host_of(url: str) -> str | None:
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, TypeError):
        return None
    return host.lower() or None


@dataclass(frozen=True)
class OutboundPolicy:
    hosts: frozenset[str]
    allowed_networks: tuple[IPNetwork, ...] = ()
    timeout_seconds: float = 10.0
    plugin: str = "plugin"
    max_redirects: int = 3
    schemes: frozenset[str] = field(default_factory=lambda: frozenset({"https", "http"}))

    @classmethod
    def build(
        cls,
        plugin: str,
        hosts: Iterable[str],
        config_urls: Iterable[str] = (),
        allowed_networks: Iterable[str] = (),
        timeout_seconds: float = 10.0,
    ) -> OutboundPolicy:
        named = {h.lower().strip() for h in hosts if h.strip()}
        named |= {h for h in (host_of(u) for u in config_urls) if h}
        return cls(
            hosts=frozenset(named),
            allowed_networks=tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allowed_networks if n),
            timeout_seconds=timeout_seconds,
            plugin=plugin,
        )

    def check_host(self, host: str) -> None:
        host = host.lower().rstrip(".")
        for allowed in self.hosts:
            if allowed.startswith("*.") and host.endswith(allowed[1:]) and host != allowed[2:]:
                return
            if host == allowed:
                return
        raise OutboundRefused(f"{self.plugin} may not call {host!r}: not a host its manifest or configuration names")

    def check_address(self, host: str, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allowed_networks):
            return
        if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback:
            raise OutboundRefused(
                f"{self.plugin} may not call {host!r}: it resolves to {ip}, a loopback, link-local, private or "
                "reserved address (an operator may allow a network with CAREHUB_PLUGIN_ALLOW_NETWORKS)"
            )


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks each request (a redirect is a new request) against the policy, then connects to the checked address."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        # Made at the first request: most hook calls (parsing a message, building a reply) send none, and a
        # transport with its TLS context costs milliseconds to make.
        self._inner: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in self.policy.schemes:
            raise OutboundRefused(f"{self.policy.plugin} may not call {url.scheme}: URLs", request=request)
        host = url.host
        try:
            self.policy.check_host(host)
            address = await self._resolve(host, url.port or (443 if url.scheme == "https" else 80))
        except OutboundRefused as exc:
            raise OutboundRefused(str(exc), request=request) from None
        request.url = url.copy_with(host=address)
        request.extensions = {**request.extensions, "sni_hostname": host}
        try:
            if self._inner is None:
                self._inner = httpx.AsyncHTTPTransport(retries=0, verify=_tls())
            return await self._inner.handle_async_request(request)
        finally:
            request.url = url

    async def _resolve(self, host: str, port: int) -> str:
        try:
            ipaddress.ip_address(host)
            literal = True
        except ValueError:
            literal = False
        if literal:
            self.policy.check_address(host, host)
            return host
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpx.ConnectError(f"{host}: {exc}") from exc
        addresses = [str(info[4][0]) for info in infos]
        for address in addresses:  # every answer must be allowed, not just the first
            self.policy.check_address(host, address)
        return addresses[0]

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every plugin client of the process (loading the CA bundle is the costly part)."""
    return ssl.create_default_context(cafile=certifi.where())


def guarded_client(policy: OutboundPolicy) -> httpx.AsyncClient:
    """An HTTP client that sends only what :class:`OutboundPolicy` allows and follows at most a few redirects."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy),
        follow_redirects=True,
        max_redirects=policy.max_redirects,
        timeout=policy.timeout_seconds,
        trust_env=False,  # no proxy from the environment: the checked address is the one connected to
    )
