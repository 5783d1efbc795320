"""Alembic environment: runs on the connection handed over by `app.db.migrations`.

Run by hand (`alembic -c <ini with script_location=app/migrations>`) it connects to the
database of the current `LAAS_*` settings instead.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from app.db.models import Base

target_metadata = Base.metadata


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    from app.db.engine import create_engine
    from app.settings import load_settings

    engine = create_engine(load_settings())
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_on)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    from app.settings import load_settings

    context.configure(
        url=load_settings().db_url, target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    given = context.config.attributes.get("connection")
    if given is not None:
        _run_on(given)
    else:
        asyncio.run(_run_from_settings())
