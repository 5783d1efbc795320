"""Schema migrations run from an empty database on SQLite and PostgreSQL and match the models."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from app.db.engine import create_engine
from app.db.migrations import (
    current_revision,
    downgrade_database_async,
    head_revision,
    upgrade_database_async,
)
from app.db.models import Base
from tests.auth_fixtures import *  # noqa: F403

TABLES = {"tenants", "users", "memberships", "invitations", "api_keys", "refresh_tokens",
          "login_throttles", "alert_rules", "webhooks", "webhook_deliveries"}


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_from_empty_then_down_and_up_again(auth_db_url: str) -> None:
    assert await current_revision(auth_db_url) is None
    assert not (await _tables(auth_db_url)) & TABLES

    await upgrade_database_async(auth_db_url)
    assert await current_revision(auth_db_url) == head_revision()
    assert TABLES <= await _tables(auth_db_url)
    assert {t.name for t in Base.metadata.sorted_tables} == TABLES

    await upgrade_database_async(auth_db_url)  # idempotent
    assert await current_revision(auth_db_url) == head_revision()

    await downgrade_database_async(auth_db_url, "base")
    assert not (await _tables(auth_db_url)) & TABLES
    await upgrade_database_async(auth_db_url)
    assert TABLES <= await _tables(auth_db_url)


async def test_migrated_schema_matches_models(auth_db_url: str) -> None:
    await upgrade_database_async(auth_db_url)
    engine = create_engine(auth_db_url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == []


async def test_concurrent_upgrades_do_not_collide(auth_db_url: str) -> None:
    # web, worker and the CLI may all start at once on the same database
    await asyncio.gather(*(upgrade_database_async(auth_db_url) for _ in range(3)))
    assert await current_revision(auth_db_url) == head_revision()
