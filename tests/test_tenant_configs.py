"""The template stage's tenant configurations (app/pipeline/tenant_configs.py `TenantConfigs`) on
a real user database (SQLite): every tenant in one query, a burst of new tenants in one more,
changes within the TTL, the last known kept while the database is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from app.accounts.tenancy import create_tenant
from app.db.engine import SessionFactory, create_engine, session_factory
from app.db.migrations import upgrade_database_async
from app.db.models import Tenant
from app.pipeline.tenant_configs import TenantConfigs
from app.settings import Settings, load_settings
from tests.clock import Clock

NO_NUMBERS = {"numbers": False, "extra": [["<ORDER>", r"ord-\d+"]]}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[str, SessionFactory]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    engine = create_engine(url)
    await upgrade_database_async(engine)
    yield url, session_factory(engine)
    await engine.dispose()


def settings_for(url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(database_url=url, state_dir=tmp_path / "state", **overrides)


async def add_tenants(sessions: SessionFactory, slugs: list[str],
                      masking: dict[str, Any] | None = None) -> list[str]:
    async with sessions.begin() as s:
        made = [await create_tenant(s, slug) for slug in slugs]
        for tenant in made:
            tenant.pattern_masking = masking
    return [str(t.id) for t in made]


async def test_every_tenant_in_one_query(db: tuple[str, SessionFactory], tmp_path: Path) -> None:
    url, sessions = db
    plain = await add_tenants(sessions, [f"p{i}" for i in range(40)])
    masked = await add_tenants(sessions, ["m1", "m2"], NO_NUMBERS)
    configs = TenantConfigs(settings_for(url, tmp_path))
    got = await asyncio.gather(*(configs.get(t) for t in plain + masked + ["x", "999999"]))
    assert configs.loads == 1  # 44 tenants asked at once: one query
    assert all(c.masking.numbers is True for c in got[:40])
    assert all(c.masking.numbers is False and c.masking.extra == (("<ORDER>", r"ord-\d+"),)
               for c in got[40:42])
    assert got[42] == got[43] == configs.default()  # not a tenant id / no such tenant
    for t in plain + masked:
        await configs.get(t)
    assert configs.loads == 1  # cached


async def test_a_burst_of_new_tenants_costs_one_query(db: tuple[str, SessionFactory],
                                                      tmp_path: Path) -> None:
    url, sessions = db
    first = await add_tenants(sessions, ["a"])
    clock = Clock()
    configs = TenantConfigs(settings_for(url, tmp_path), refresh_after=0.3, clock=clock)
    await configs.get(first[0])
    new = await add_tenants(sessions, [f"n{i}" for i in range(200)], NO_NUMBERS)
    # Within `refresh_after` of the last load: the default, no query per tenant.
    early = [await configs.get(t) for t in new[:50]]
    assert configs.loads == 1 and all(c == configs.default() for c in early)
    clock.sleep(0.35)
    late = [await configs.get(t) for t in new]
    assert configs.loads == 2  # 200 new tenants: one more query
    assert all(c.masking.numbers is False for c in late)
    for _ in range(20):  # an id of no tenant: at most one load per `refresh_after`
        await configs.get("424242")
    assert configs.loads == 2


async def test_changes_reach_the_worker_within_the_ttl(db: tuple[str, SessionFactory],
                                                       tmp_path: Path) -> None:
    url, sessions = db
    tid, = await add_tenants(sessions, ["c"])
    clock = Clock()
    configs = TenantConfigs(settings_for(url, tmp_path, tenant_config_ttl=0.3), clock=clock)
    assert (await configs.get(tid)).masking.numbers is True
    async with sessions.begin() as s:
        await s.execute(update(Tenant).where(Tenant.id == int(tid))
                        .values(pattern_masking=NO_NUMBERS))
    assert (await configs.get(tid)).masking.numbers is True  # cached
    clock.sleep(0.35)
    assert (await configs.get(tid)).masking.numbers is False
    assert configs.loads == 2


async def test_an_unreachable_database_keeps_the_last_known(db: tuple[str, SessionFactory],
                                                            tmp_path: Path) -> None:
    url, sessions = db
    tid, = await add_tenants(sessions, ["d"], NO_NUMBERS)
    configs = TenantConfigs(settings_for(url, tmp_path, tenant_config_ttl=0))
    assert (await configs.get(tid)).masking.numbers is False
    configs._engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'users.db'}")
    try:
        assert (await configs.get(tid)).masking.numbers is False  # the last known
        assert await configs.get("12345") == configs.default()
    finally:
        await configs._engine.dispose()
    assert configs.loads == 3
