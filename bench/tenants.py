"""Tenants with given ids in a run's user database: the index stage indexes known tenants only,
and benchmarks (and tests) stamp records for fixed tenant ids as the gateway would. Promoted
tenants (dedicated indices) for runs on that tier."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import insert, select

from app.db.engine import create_engine, session_factory
from app.db.migrations import upgrade_database_async
from app.db.models import Tenant
from app.elastic.promotion import promote
from app.settings import Settings

_migrated: set[str] = set()


async def _migrate(settings: Settings) -> None:
    if settings.db_url not in _migrated:
        await upgrade_database_async(settings)
        _migrated.add(settings.db_url)


async def ensure_tenants(settings: Settings, tenants: dict[int, str]) -> None:
    """Make tenants `{id: slug}` exist in the user database of `settings` (migrated first)."""
    if not tenants:
        return
    await _migrate(settings)
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session, session.begin():
            have = set((await session.execute(select(Tenant.id))).scalars())
            rows = [{"id": tenant_id, "slug": f"{slug or 't'}-{tenant_id}",
                     "name": slug or f"t{tenant_id}", "retention_days": 7}
                    for tenant_id, slug in tenants.items() if tenant_id not in have]
            for start in range(0, len(rows), 1000):  # 10,000 tenants in a few statements
                await session.execute(insert(Tenant), rows[start:start + 1000])
    finally:
        await engine.dispose()


async def promote_tenants(settings: Settings, tenant_ids: Iterable[int | str],
                          from_day: date = date(1970, 1, 1)) -> list[str]:
    """Give the tenants dedicated indices from `from_day` on (default: every day)."""
    await _migrate(settings)
    engine = create_engine(settings)
    try:
        return await promote(engine, tenant_ids, from_day)
    finally:
        await engine.dispose()
