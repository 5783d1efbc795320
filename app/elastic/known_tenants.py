"""Which tenants exist, and where their events are indexed, for the index stage: it never creates
an index for a tenant the user database does not know (one deleted while its events were on
their way, say), and places each known tenant's events by its retention class and tier
(`app.elastic.esindex.placement`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import session_factory
from app.db.models import Tenant
from app.elastic.esindex import TenantIndexing

# A tenant may be created on another machine whose clock runs this far ahead of ours.
CLOCK_SKEW_NS = 2_000_000_000


class KnownTenants:
    """The tenants of the user database with their indexing (retention class, promotion).

    Loaded again when an id is missing — at once when an event of that id was observed after
    the last load began (a tenant created since: its first events must not wait or be lost),
    otherwise at most every `refresh_after` seconds, so a stream of events of a deleted tenant
    costs one query per interval — and every `max_age` seconds in any case (promotions and
    retention changes reach the index stage within that time)."""

    def __init__(self, load: Callable[[], Awaitable[dict[str, TenantIndexing]]],
                 refresh_after: float = 5.0, max_age: float = 60.0) -> None:
        self._load = load
        self.refresh_after = refresh_after
        self.max_age = max_age
        self.layout: dict[str, TenantIndexing] = {}
        self._loaded = float("-inf")
        self._loaded_wall_ns = 0

    async def unknown(self, ids: Iterable[str], newest_observed_ns: Mapping[str, int] | None = None
                      ) -> set[str]:
        """Those of `ids` that are no tenant's. `newest_observed_ns` (tenant id → the latest
        observed time of its events) lets a tenant newer than the last load be loaded at once.
        Raises what the load raises (database down)."""
        missing = set(ids) - self.layout.keys()
        age = time.monotonic() - self._loaded
        fresh = any((newest_observed_ns or {}).get(tid, 0) + CLOCK_SKEW_NS >= self._loaded_wall_ns
                    for tid in missing)
        if (missing and (fresh or age >= self.refresh_after)) or age >= self.max_age:
            started_ns = time.time_ns()
            self.layout = await self._load()
            self._loaded = time.monotonic()
            self._loaded_wall_ns = started_ns
            missing -= self.layout.keys()
        return missing


def day_number(day: date) -> int:
    """Days since 1970-01-01 of a calendar day."""
    return day.toordinal() - date(1970, 1, 1).toordinal()


async def tenant_indexing(engine: AsyncEngine, default_days: int,
                          tenant_id: str | None = None) -> dict[str, TenantIndexing]:
    """Every tenant of the user database (or the one `tenant_id`): its retention class and
    promotion day."""
    statement = select(Tenant.id, Tenant.retention_days, Tenant.index_dedicated_from)
    if tenant_id is not None:
        if not tenant_id.isdigit():
            return {}
        statement = statement.where(Tenant.id == int(tenant_id))
    async with session_factory(engine)() as session:
        rows = await session.execute(statement)
        return {str(tid): TenantIndexing(int(days or default_days),
                                         day_number(since) if since is not None else None)
                for tid, days, since in rows}

