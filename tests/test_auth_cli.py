"""`laas db|tenant|user|apikey` commands (click CliRunner) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import tenancy
from app.accounts.authz import Principal
from app.accounts.security import verify_password
from app.accounts.tenancy import ensure_demo
from app.db.engine import create_engine, session_factory
from app.db.migrations import head_revision
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import make_settings


def laas(db_url: str, state: Path, *args: str, stdin: str | None = None) -> Result:
    from app.cli.main import main

    env = {"LAAS_DATABASE_URL": db_url, "LAAS_STATE_DIR": str(state), "LAAS_SECRET_KEY": "k"}
    return CliRunner().invoke(main, list(args), input=stdin, env=env)


T = TypeVar("T")


def _in_db(db_url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = create_engine(db_url)
        try:
            async with session_factory(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_db_upgrade(auth_db_url: str, tmp_path: Path) -> None:
    result = laas(auth_db_url, tmp_path, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.output


def test_tenant_user_and_key_commands(auth_db_url: str, tmp_path: Path) -> None:
    created = laas(auth_db_url, tmp_path, "tenant", "create", "acme", "--name", "Acme")
    assert created.exit_code == 0, created.output
    assert "created tenant acme" in created.output
    duplicate = laas(auth_db_url, tmp_path, "tenant", "create", "acme")
    assert duplicate.exit_code == 1 and "exists already" in duplicate.output
    invalid = laas(auth_db_url, tmp_path, "tenant", "create", "Not A Slug!")
    assert invalid.exit_code == 1 and "not allowed" in invalid.output

    user = laas(
        auth_db_url,
        tmp_path,
        "user",
        "create",
        "Ann@Acme.io",
        "--tenant",
        "acme",
        "--role",
        "admin",
        stdin="s3cret-password\n",
    )
    assert user.exit_code == 0, user.output
    assert "created user ann@acme.io to acme as admin" in user.output
    short = laas(
        auth_db_url, tmp_path, "user", "create", "bob@acme.io", "--tenant", "acme", stdin="short\n"
    )
    assert short.exit_code == 1 and "password must have" in short.output
    no_tenant = laas(
        auth_db_url,
        tmp_path,
        "user",
        "create",
        "bob@acme.io",
        "--tenant",
        "nope",
        stdin="s3cret-password\n",
    )
    assert no_tenant.exit_code == 1 and "does not exist" in no_tenant.output

    async def stored_hash(session: AsyncSession) -> str:
        found = await tenancy.find_user(session, "ann@acme.io")
        assert found is not None
        return found.password_hash

    assert verify_password(_in_db(auth_db_url, stored_hash), "s3cret-password")

    key = laas(
        auth_db_url,
        tmp_path,
        "apikey",
        "create",
        "--tenant",
        "acme",
        "--name",
        "shipper",
        "--scope",
        "ingest",
    )
    assert key.exit_code == 0, key.output
    plain = key.stdout.strip()
    assert plain.startswith("laas_") and "\n" not in plain  # stdout carries the key alone
    assert "not shown again" in key.stderr

    async def verify(session: AsyncSession) -> Principal:
        return await tenancy.verify_api_key(session, plain)

    principal = _in_db(auth_db_url, verify)
    assert principal.tenant_slug == "acme" and principal.scope == "ingest"

    listed = laas(auth_db_url, tmp_path, "apikey", "list", "--tenant", "acme")
    assert "shipper" in listed.output and "active" in listed.output and plain not in listed.output
    key_id = listed.output.split("\t", 1)[0]
    revoked = laas(auth_db_url, tmp_path, "apikey", "revoke", "--tenant", "acme", key_id)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    listed = laas(auth_db_url, tmp_path, "apikey", "list", "--tenant", "acme")
    assert "revoked" in listed.output
    bad_scope = laas(
        auth_db_url,
        tmp_path,
        "apikey",
        "create",
        "--tenant",
        "acme",
        "--name",
        "x",
        "--scope",
        "root",
    )
    assert bad_scope.exit_code == 2


def test_user_create_adds_existing_users_without_a_password(
    auth_db_url: str, tmp_path: Path
) -> None:
    for slug in ("one", "two"):
        assert laas(auth_db_url, tmp_path, "tenant", "create", slug).exit_code == 0
    first = laas(
        auth_db_url,
        tmp_path,
        "user",
        "create",
        "eve@x.io",
        "--tenant",
        "one",
        stdin="first-password\n",
    )
    assert first.exit_code == 0
    second = laas(
        auth_db_url, tmp_path, "user", "create", "eve@x.io", "--tenant", "two", "--role", "viewer"
    )
    assert second.exit_code == 0, second.output
    assert "added existing user eve@x.io to two as viewer" in second.output


def test_ensure_demo_for_laas_up(auth_db_url: str, tmp_path: Path) -> None:
    settings = make_settings(auth_db_url, tmp_path, retention_default_days=12)
    credentials = ensure_demo(settings)
    assert credentials is not None and credentials.email == "admin@demo.local"
    assert ensure_demo(settings) is None

    async def retention(session: AsyncSession) -> int:
        return (await tenancy.get_tenant(session, "demo")).retention_days

    assert _in_db(auth_db_url, retention) == 12  # the setting's default, as `tenant create`

    async def stored_hash(session: AsyncSession) -> str:
        found = await tenancy.find_user(session, credentials.email)
        assert found is not None
        return found.password_hash

    assert verify_password(_in_db(auth_db_url, stored_hash), credentials.password)


def test_list_commands_speak_json_and_retention_follows_the_setting(
        auth_db_url: str, tmp_path: Path) -> None:
    import json

    assert laas(auth_db_url, tmp_path, "tenant", "create", "acme").exit_code == 0
    assert laas(auth_db_url, tmp_path, "tenant", "create", "beta",
                "--retention-days", "3").exit_code == 0
    tenants = json.loads(laas(auth_db_url, tmp_path, "tenant", "list", "--json").stdout)
    assert [(t["slug"], t["retention_days"]) for t in tenants] == [("acme", 30), ("beta", 3)]
    assert all(isinstance(t["id"], int) for t in tenants)
    from app.cli.main import main

    other = CliRunner().invoke(main, ["tenant", "create", "gamma"], env={
        "LAAS_DATABASE_URL": auth_db_url, "LAAS_STATE_DIR": str(tmp_path),
        "LAAS_SECRET_KEY": "k", "LAAS_RETENTION_DEFAULT_DAYS": "9"})
    assert other.exit_code == 0, other.output
    tenants = json.loads(laas(auth_db_url, tmp_path, "tenant", "list", "--json").stdout)
    assert {t["slug"]: t["retention_days"] for t in tenants}["gamma"] == 9
    assert "acme\tAcme" not in laas(auth_db_url, tmp_path, "tenant", "list").stdout
    assert "acme\tacme\tretention 30d" in laas(auth_db_url, tmp_path, "tenant", "list").stdout

    plain = laas(auth_db_url, tmp_path, "apikey", "create", "--tenant", "acme", "--name",
                 "shipper", "--scope", "ingest").stdout.strip()
    listed = laas(auth_db_url, tmp_path, "apikey", "list", "--tenant", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    keys = json.loads(listed.stdout)
    assert [(k["name"], k["scope"], k["active"]) for k in keys] == [("shipper", "ingest", True)]
    assert plain not in listed.stdout and keys[0]["prefix"] in plain
