"""The user database through SQLAlchemy (async) on PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Probe(Base):
    __tablename__ = "probe"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


async def fresh_postgres(postgres_url: str, name: str) -> str:
    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    await admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
    else:
        url = await fresh_postgres(request.getfixturevalue("postgres_url"), unique)
    engine = create_async_engine(url)
    yield engine
    await engine.dispose()


async def test_create_table_insert_and_query(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add_all([Probe(name="kafka"), Probe(name="elasticsearch")])
    async with sessions() as session:
        names = (await session.scalars(select(Probe.name).order_by(Probe.name))).all()
    assert names == ["elasticsearch", "kafka"]
