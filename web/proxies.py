"""The client's address behind reverse proxies: `X-Forwarded-For` is read only when the direct
peer is one of `LAAS_TRUSTED_PROXIES`; from anyone else (a local process included) it is ignored.

Login throttling and every other per-address rule read `scope["client"]`, which this middleware
rewrites; uvicorn's own proxy-header handling is switched off (`laas web`), since it trusts
127.0.0.1 by default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[object]) -> tuple[Network, ...]:
    """`10.0.0.5`, `10.1.0.0/16`, `::1` ... (strings or networks) as networks."""
    return tuple(ipaddress.ip_network(str(entry), strict=False) for entry in entries)


def _trusted(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def forwarded_client(peer: str, forwarded_for: list[str], networks: Sequence[Network]) -> str:
    """The client a request came from: `peer`, or, when `peer` is a trusted proxy, the
    rightmost `X-Forwarded-For` entry that is not a trusted proxy itself (entries further
    left were written by the client and can be anything)."""
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # garbage where a proxy should have written an address
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


class TrustedProxyMiddleware:
    """Sets `scope["client"]` from `X-Forwarded-For` for requests of trusted proxies only."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[object] = ()) -> None:
        self.app = app
        self.networks = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.networks and scope["type"] in ("http", "websocket") and scope.get("client"):
            host, port = scope["client"]
            values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
            client = forwarded_client(host, values, self.networks)
            if client != host:
                scope = {**scope, "client": (client, 0)}
        await self.app(scope, receive, send)
