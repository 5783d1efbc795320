"""Who is pushing: API key extraction and the `KeyVerifier` seam to the accounts module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from app.ingest.errors import PermissionDenied, Unauthenticated

INGEST_SCOPES = frozenset({"ingest", "admin"})


@dataclass(frozen=True)
class Principal:
    """The tenant an API key belongs to, the key's scope and the tenant's ingest rate."""

    tenant_id: str
    tenant_slug: str
    scope: str
    rate_limit: float | None = None  # records/s; None: the default setting


KeyVerifier = Callable[[str], Awaitable[Principal | None]]
"""async (api key) -> Principal, or None for an unknown, expired or revoked key."""


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The API key of `authorization: Bearer <key>` or `x-api-key: <key>` (lower-case names)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("x-api-key", "").strip() or None


async def authenticate(verify: KeyVerifier, key: str | None) -> Principal:
    """The principal of an ingest key; `Unauthenticated` / `PermissionDenied` otherwise."""
    if not key:
        raise Unauthenticated("no API key (send `authorization: Bearer <key>` or `x-api-key`)")
    principal = await verify(key)
    if principal is None:
        raise Unauthenticated("unknown, expired or revoked API key")
    if principal.scope not in INGEST_SCOPES:
        raise PermissionDenied(f"API key has scope {principal.scope!r}; ingest needs 'ingest'")
    return principal


def accounts_verifier(settings: object) -> KeyVerifier:
    """The real verifier, backed by the user database (`app.accounts`)."""
    from app import accounts  # late: the accounts module pulls in the database layer

    return accounts.ingest_key_verifier(settings)  # type: ignore[attr-defined,no-any-return]
