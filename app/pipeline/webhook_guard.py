"""Where webhooks may go: a URL's host is resolved once, every address it resolves to is
checked, and the request is then sent to a checked address (pinned), so a tenant cannot make
LaaS call its own services (Elasticsearch, Kafka, the user database, cloud metadata) and a DNS
answer that changes between check and connect (DNS rebinding) is never followed.

Refused: loopback, private (RFC 1918, unique local, documentation), link-local, shared
(100.64.0.0/10), multicast, unspecified, reserved and every other not globally routable
address, IPv4 addresses wrapped in IPv6 (mapped, 6to4, Teredo, NAT64) judged by the IPv4
address inside, and cloud metadata addresses. Networks in `webhook_allow_networks` are allowed
(on-premise receivers), except metadata addresses, which are never allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Instance metadata services: AWS, GCP, Azure, OpenStack, Oracle (169.254.169.254), AWS over
# IPv6 (fd00:ec2::254), AWS ECS task metadata (169.254.170.2), Alibaba (100.100.100.200).
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200"))
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
NAT64 = ipaddress.ip_network("64:ff9b::/96")

# What the delivery log shows the tenant: nothing that tells a closed port from a service.
REFUSED = "refused: address not allowed"
CONNECTION_FAILED = "connection failed"
TIMED_OUT = "timed out"


class WebhookTargetError(Exception):
    """A webhook URL that may not be called; `reason` is safe to show its tenant."""

    def __init__(self, reason: str, *, host: str = "", address: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.host = host
        self.address = address


class InvalidTarget(WebhookTargetError):
    """Not an http(s) URL with a host."""


class Unresolvable(WebhookTargetError):
    """The host name does not resolve."""


class AddressRefused(WebhookTargetError):
    """The host is or resolves to an address webhooks may not target."""


@dataclass(frozen=True)
class Target:
    """A checked webhook URL and the addresses it may be sent to (in resolver order)."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]


def _embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, bool] | None:
    """The IPv4 address inside an IPv6 one and whether it is the same host (mapped, NAT64)
    rather than a tunnel endpoint reached through a relay (6to4, Teredo)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, True
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), True
    if address.sixtofour is not None:
        return address.sixtofour, False
    if address.teredo is not None:
        return address.teredo[1], False
    return None


def refusal(address: IPAddress, allow: Iterable[Network] = ()) -> str | None:
    """Why `address` may not be a webhook target (a short category), or None when it may."""
    allow = tuple(allow)
    inner = _embedded_ipv4(address)
    if inner is not None:
        why = refusal(inner[0], allow)
        if why is not None or inner[1]:
            return why
    if address in METADATA:
        return "cloud metadata"
    if any(address.version == net.version and address in net for net in allow):
        return None
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED:
        return "shared (100.64.0.0/10)"
    if address.is_reserved or (isinstance(address, ipaddress.IPv6Address)
                               and address.is_site_local):
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the system resolver; a literal address as is)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def parse_url(url: str) -> httpx.URL:
    """`url` as an http(s) URL with a host, or InvalidTarget."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidTarget("url is not a valid URL") from exc
    if parsed.scheme not in ("http", "https"):
        raise InvalidTarget("url must be an http:// or https:// URL")
    if not parsed.host:
        raise InvalidTarget("url has no host")
    return parsed


async def check_url(url: str, allow: Iterable[Network] = (), *,
                    resolver: Resolver | None = None, timeout: float = 5.0) -> Target:
    """Resolve `url`'s host once and check every address: the Target to send to, or
    InvalidTarget / Unresolvable / AddressRefused (refused when any address is refused, so a
    name mixing public and internal addresses is refused whichever the client would pick)."""
    parsed = parse_url(url)
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded, as DNS and TLS see it
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    lookup = resolver or resolve
    try:
        found = await asyncio.wait_for(lookup(host, port), timeout)
    except (TimeoutError, OSError, UnicodeError) as exc:
        raise Unresolvable(f"url: host {host!r} does not resolve", host=host) from exc
    addresses: list[IPAddress] = []
    for text in found:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 scope: link-local
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Unresolvable(f"url: host {host!r} does not resolve", host=host)
    allow = tuple(allow)
    for address in addresses:
        why = refusal(address, allow)
        if why is not None:
            named = "is" if _literal(host) else "resolves to"
            raise AddressRefused(
                f"url: {host} {named} an address webhooks may not target ({why}); only "
                f"public addresses are allowed (an operator can allow on-premise networks "
                f"with LAAS_WEBHOOK_ALLOW_NETWORKS)", host=host, address=str(address))
    return Target(parsed, tuple(addresses))


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def send(client: httpx.AsyncClient, target: Target, body: bytes,
               headers: Mapping[str, str]) -> int:
    """POST `body` to the target's checked addresses (the next one only when connecting to
    one failed) with the URL's own Host header and TLS server name; the response status.
    Redirects are not followed; the response body is not read."""
    url = target.url
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    sent = {**headers, "Host": url.netloc.decode("ascii")}
    for i, address in enumerate(target.addresses):
        pinned = url.copy_with(host=str(address))
        try:
            async with client.stream("POST", pinned, content=body, headers=sent,
                                      extensions=extensions, follow_redirects=False) as response:
                return response.status_code
        except (httpx.ConnectError, httpx.ConnectTimeout):
            if i == len(target.addresses) - 1:
                raise
    raise AssertionError("a Target has at least one address")


def public_error(exc: BaseException) -> str:
    """The delivery log's text for a failed attempt: a refusal, a timeout, or a failed
    connection, never the underlying error (which would tell closed ports from services)."""
    if isinstance(exc, AddressRefused):
        return REFUSED
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError):
        return TIMED_OUT
    return CONNECTION_FAILED


def shown_error(stored: str | None) -> str | None:
    """A delivery log row's error as shown to the tenant (rows written before errors were made
    generic held the exception text)."""
    if stored is None or stored in (REFUSED, TIMED_OUT, CONNECTION_FAILED) or (
            stored.startswith("HTTP ") and stored[5:].isdigit()):
        return stored
    return CONNECTION_FAILED
