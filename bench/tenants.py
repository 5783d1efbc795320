"""Tenants with given ids in a run's user database: the index stage indexes known tenants only,
and benchmarks (and tests) stamp records for fixed tenant ids as the gateway would."""

from __future__ import annotations

from sqlalchemy import select

from app.db import create_engine, session_factory
from app.migrations import upgrade_database_async
from app.models import Tenant
from app.settings import Settings

_migrated: set[str] = set()


async def ensure_tenants(settings: Settings, tenants: dict[int, str]) -> None:
    """Make tenants `{id: slug}` exist in the user database of `settings` (migrated first)."""
    if not tenants:
        return
    if settings.db_url not in _migrated:
        await upgrade_database_async(settings)
        _migrated.add(settings.db_url)
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session, session.begin():
            have = set((await session.execute(select(Tenant.id))).scalars())
            for tenant_id, slug in tenants.items():
                if tenant_id not in have:
                    session.add(Tenant(id=tenant_id, slug=f"{slug or 't'}-{tenant_id}",
                                       name=slug or f"t{tenant_id}"))
    finally:
        await engine.dispose()
