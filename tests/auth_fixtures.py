"""Fixtures of the auth tests: a fresh database per test on SQLite and on PostgreSQL.

Import with `from tests.auth_fixtures import *` (a plugin module, not conftest). PostgreSQL is
taken from `LAAS_TEST_POSTGRES_URL` (default: the local stack's cluster); a test that needs
it fails when it cannot connect. Each test gets its own uuid-named database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from app.accounts import logins, tenancy
from app.db.engine import SessionFactory, create_engine, session_factory
from app.db.migrations import upgrade_database_async
from app.db.models import Role, Scope
from app.settings import Settings, load_settings
from web.app import create_app

__all__ = [
    "BACKENDS",
    "POSTGRES_URL",
    "PASSWORD",
    "World",
    "auth_app",
    "auth_client",
    "auth_db_url",
    "auth_settings",
    "make_settings",
    "sessions",
    "world",
    "build_world",
    "bearer",
    "client_for",
    "running_app",
]

POSTGRES_URL = os.environ.get("LAAS_TEST_POSTGRES_URL", load_settings().local_postgres_url)
BACKENDS = ["sqlite", "postgres"]
PASSWORD = "correct horse battery"
TEST_SECRET = "test-signing-secret"


async def _create_postgres_database() -> str:
    name = f"laas_test_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except (OSError, DBAPIError) as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is needed and not usable ({exc!r}); start it with "
            "`laas stack up` or point LAAS_TEST_POSTGRES_URL at a server where the user may "
            "CREATE DATABASE",
            pytrace=False,
        )
    finally:
        await admin.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


async def _drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(params=BACKENDS)
async def auth_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of an empty database: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}"
        return
    url = await _create_postgres_database()
    yield url
    await _drop_postgres_database(url)


def make_settings(db_url: str, state_dir: Path, **overrides: Any) -> Settings:
    """Test settings: the given database, a fixed signing secret, a private state dir."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "state_dir": state_dir,
        "secret_key": TEST_SECRET,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def auth_settings(auth_db_url: str, tmp_path: Path) -> Settings:
    return make_settings(auth_db_url, tmp_path / "state")


@pytest.fixture
async def sessions(auth_settings: Settings) -> AsyncIterator[SessionFactory]:
    """A session factory on the migrated test database."""
    engine = create_engine(auth_settings)
    await upgrade_database_async(engine)
    yield session_factory(engine)
    await engine.dispose()


class running_app:  # noqa: N801 - used like a function: `async with running_app(settings)`
    """Create the web app for `settings` and run its lifespan (migrations, engine)."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self._lifespan = self.app.router.lifespan_context(self.app)

    async def __aenter__(self) -> Starlette:
        await self._lifespan.__aenter__()
        return self.app

    async def __aexit__(self, *exc: object) -> None:
        await self._lifespan.__aexit__(None, None, None)


def client_for(app: Starlette, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://laas.test")


@pytest.fixture
async def auth_app(auth_settings: Settings) -> AsyncIterator[Starlette]:
    async with running_app(auth_settings) as app:
        yield app


@pytest.fixture
async def auth_client(auth_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(auth_app) as client:
        yield client


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@dataclass
class World:
    """Two tenants with people of every role and keys of every scope.

    `creds` maps a principal name to the credential to present: access tokens for
    `viewer`, `member`, `admin` (tenant acme) and `b_admin` (tenant beta); plain keys for
    `key_ingest`, `key_read`, `key_admin` (acme) and `b_key_admin` (beta).
    """

    app: Starlette
    sessions: SessionFactory
    tenant_ids: dict[str, int] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, int] = field(default_factory=dict)
    creds: dict[str, str] = field(default_factory=dict)
    refresh: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return {} if who == "anonymous" else bearer(self.creds[who])

    async def add_user(self, tenant: str, name: str, role: Role) -> int:
        email = f"{name.replace('_', '-')}@{tenant}.test"
        async with self.sessions.begin() as session:
            added = await tenancy.add_user_to_tenant(
                session, self.tenant_ids[tenant], email, role, PASSWORD
            )
        self.user_ids[name] = added.member.user_id
        self.emails[name] = email
        return added.member.user_id

    async def login(self, name: str, tenant: str | None = None) -> logins.TokenPair:
        pair = await logins.login(
            self.sessions, self.app.state.auth, email=self.emails[name], password=PASSWORD,
            tenant=tenant,
        )
        self.creds[name] = pair.access_token
        self.refresh[name] = pair.refresh_token
        return pair

    async def add_key(self, tenant: str, name: str, scope: Scope, by: str | None = None) -> str:
        async with self.sessions.begin() as session:
            key, plain = await tenancy.create_api_key(
                session, self.tenant_ids[tenant], name, scope,
                created_by_user_id=self.user_ids[by] if by else None,
            )
        self.key_ids[name] = key.id
        self.creds[name] = plain
        return plain


async def build_world(app: Starlette) -> World:
    world = World(app=app, sessions=app.state.sessions)
    async with world.sessions.begin() as session:
        for slug in ("acme", "beta"):
            world.tenant_ids[slug] = (await tenancy.create_tenant(session, slug)).id
    for name, role in (("viewer", Role.VIEWER), ("member", Role.MEMBER), ("admin", Role.ADMIN)):
        await world.add_user("acme", name, role)
        await world.login(name)
    await world.add_user("beta", "b_admin", Role.ADMIN)
    await world.login("b_admin")
    await world.add_user("beta", "b_member", Role.MEMBER)
    for scope in Scope:
        await world.add_key("acme", f"key_{scope.value}", scope, by="admin")
    await world.add_key("beta", "b_key_admin", Scope.ADMIN, by="b_admin")
    await world.add_key("beta", "b_key_ingest", Scope.INGEST, by="b_member")
    return world


@pytest.fixture
async def world(auth_app: Starlette) -> World:
    return await build_world(auth_app)

