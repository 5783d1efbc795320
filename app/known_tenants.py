"""Which tenants exist, for the index stage: it never creates an index for a tenant the user
database does not know (one deleted while its events were on their way, say)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import session_factory
from app.models import Tenant


class KnownTenants:
    """The tenant ids of the user database, loaded again when an id is missing (at most every
    `refresh_after` seconds, so a stream of unknown ids costs one query per interval)."""

    def __init__(self, load: Callable[[], Awaitable[set[str]]], refresh_after: float = 5.0
                 ) -> None:
        self._load = load
        self.refresh_after = refresh_after
        self._ids: set[str] = set()
        self._loaded = float("-inf")

    async def unknown(self, ids: Iterable[str]) -> set[str]:
        """Those of `ids` that are no tenant's. Raises what the load raises (database down)."""
        missing = set(ids) - self._ids
        if missing and time.monotonic() - self._loaded >= self.refresh_after:
            self._ids = await self._load()
            self._loaded = time.monotonic()
            missing -= self._ids
        return missing


async def tenant_ids(engine: AsyncEngine) -> set[str]:
    """Every tenant id of the user database."""
    async with session_factory(engine)() as session:
        return {str(tid) for tid in (await session.execute(select(Tenant.id))).scalars()}
