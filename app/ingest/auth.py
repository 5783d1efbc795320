"""Who is pushing: API key extraction and the `KeyVerifier` seam to the accounts module."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.ingest.errors import DatabaseUnavailable, PermissionDenied, Unauthenticated
from app.security import api_key_prefix
from app.settings import Settings

if TYPE_CHECKING:
    from app.db import SessionFactory

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
    """The API key of a request's headers (lower-case names), in the forms shippers send:

    `authorization: Bearer <key>`; `authorization: Basic <base64 user:key>` (any user; Loki
    and Elasticsearch clients); `authorization: ApiKey <key or base64 id:key>` (Elasticsearch
    clients: any id); or `x-api-key: <key>`. Of a `user:key` / `id:key` pair the part that is
    shaped like a LaaS key is taken, else the second part.
    """
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "apikey" and api_key_prefix(value) is not None:
        return value
    if scheme in ("basic", "apikey") and value:
        return _key_of_pair(value)
    return headers.get("x-api-key", "").strip() or None


def _key_of_pair(encoded: str) -> str | None:
    """The key in base64 `user:key` (basic auth) or `id:key` (an Elasticsearch API key)."""
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return encoded  # not base64: the verifier refuses it as an unknown key
    first, sep, second = text.partition(":")
    if api_key_prefix(first) is not None or not sep:
        return first or None
    return second or None


async def authenticate(verify: KeyVerifier, key: str | None) -> Principal:
    """The principal of an ingest key; `Unauthenticated` / `PermissionDenied` otherwise."""
    if not key:
        raise Unauthenticated("no API key (send `authorization: Bearer <key>`, basic auth with the "
                              "key as password, or `x-api-key`)")
    principal = await verify(key)
    if principal is None:
        raise Unauthenticated("unknown, expired or revoked API key")
    if principal.scope not in INGEST_SCOPES:
        raise PermissionDenied(f"API key has scope {principal.scope!r}; ingest needs 'ingest'")
    return principal


class DatabaseVerifier:
    """The real `KeyVerifier`: `app.accounts.verify_api_key` plus the tenant's ingest rate.

    Answers are cached for `ttl` seconds (a revoked key stops working within that time) so a
    busy producer does not cost a database round trip per push.
    """

    def __init__(self, sessions: SessionFactory, ttl: float = 5.0) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def __call__(self, key: str) -> Principal | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        principal = await self._lookup(key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, principal)
        return principal

    async def _lookup(self, key: str) -> Principal | None:
        from sqlalchemy.exc import SQLAlchemyError

        from app.account_errors import AccountError
        from app.accounts import verify_api_key
        from app.models import Tenant

        try:
            async with self.sessions.begin() as session:
                try:
                    found = await verify_api_key(session, key)
                except AccountError:
                    return None
                tenant = await session.get(Tenant, found.tenant_id)
                rate = tenant.ingest_rate_limit if tenant is not None else None
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseUnavailable(repr(exc)) from exc
        scope = found.scope.value if found.scope is not None else ""
        return Principal(str(found.tenant_id), found.tenant_slug, scope, rate)


def accounts_verifier(settings: Settings) -> DatabaseVerifier:
    """A `DatabaseVerifier` on the configured user database (its own engine)."""
    from app.db import create_engine, session_factory

    return DatabaseVerifier(session_factory(create_engine(settings)),
                            ttl=settings.ingest_key_cache_seconds)
