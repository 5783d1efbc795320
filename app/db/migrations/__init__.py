"""Schema migrations of the user database (Alembic), run programmatically.

`upgrade_database(settings)` is what start-up code calls (`laas up`, `laas web`,
`laas db upgrade`); inside a running event loop use `upgrade_database_async`. The Alembic
scripts live next to this file, so it works from an installed package as from a checkout.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Arbitrary constant: the PostgreSQL advisory lock that serialises concurrent upgrades.
_ADVISORY_LOCK_ID = 0x1AA5_0001


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged scripts (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR / 'versions'}")
    return head


def _run(connection: Connection, action: str, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Web, worker and CLI may start together: one upgrades, the others wait and see head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
    config = alembic_config()
    config.attributes["connection"] = connection
    if action == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


@asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Serialise migrations of one SQLite file across tasks and processes (flock)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    path = Path(database).with_name(Path(database).name + ".migrate-lock")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


async def _migrate(target: Settings | str | AsyncEngine, action: str, revision: str) -> None:
    engine = target if isinstance(target, AsyncEngine) else create_engine(target)
    try:
        async with _sqlite_file_lock(engine), engine.begin() as connection:
            await connection.run_sync(_run, action, revision)
    finally:
        if engine is not target:
            await engine.dispose()


async def upgrade_database_async(
    target: Settings | str | AsyncEngine, revision: str = "head"
) -> None:
    """Bring the database of `target` (settings, URL or engine) up to `revision`."""
    await _migrate(target, "upgrade", revision)


async def downgrade_database_async(target: Settings | str | AsyncEngine, revision: str) -> None:
    """Take the database back to `revision` (`base`: drop every LaaS table)."""
    await _migrate(target, "downgrade", revision)


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    """Apply every pending migration; call once at start-up, outside any event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(upgrade_database_async(settings, revision))
        return
    raise RuntimeError(
        "upgrade_database() called inside a running event loop; "
        "await upgrade_database_async(settings) instead"
    )


async def current_revision(target: Settings | str | AsyncEngine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    engine = target if isinstance(target, AsyncEngine) else create_engine(target)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        if engine is not target:
            await engine.dispose()
