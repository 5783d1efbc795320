"""`laas tenant|user|apikey|db` commands: manage tenancy from the shell.

Every command applies pending migrations first, so they work on a fresh database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import tenancy
from app.accounts.errors import AccountError
from app.db.engine import create_engine, session_factory
from app.db.migrations import current_revision, head_revision, upgrade_database_async
from app.db.models import Role, Scope
from app.settings import Settings

T = TypeVar("T")
pass_settings = click.make_pass_decorator(Settings)


def run_in_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Migrate, then run `work` in one transaction; account errors become CLI errors."""

    async def go() -> T:
        engine = create_engine(settings)
        try:
            await upgrade_database_async(engine)
            async with session_factory(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except AccountError as exc:
        raise click.ClickException(exc.detail) from exc


# --- db --------------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """The user database (tenants, users, API keys)."""


@db.command("upgrade")
@pass_settings
def db_upgrade(settings: Settings) -> None:
    """Apply pending schema migrations."""

    async def go() -> str | None:
        await upgrade_database_async(settings)
        return await current_revision(settings)

    revision = asyncio.run(go())
    click.echo(f"database at revision {revision} (head {head_revision()})")


# --- tenant ----------------------------------------------------------------------------------


@click.group()
def tenant() -> None:
    """Tenants: the teams whose logs LaaS keeps apart."""


@tenant.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug)")
@click.option("--retention-days", type=click.IntRange(1, 3650), default=None,
              help="Days its log indices are kept  [default: LAAS_RETENTION_DEFAULT_DAYS, 30]")
@pass_settings
def tenant_create(settings: Settings, slug: str, name: str | None,
                  retention_days: int | None) -> None:
    """Create tenant SLUG."""
    days = settings.retention_default_days if retention_days is None else retention_days

    async def work(session: AsyncSession) -> str:
        made = await tenancy.create_tenant(session, slug, name=name, retention_days=days)
        return made.slug

    click.echo(f"created tenant {run_in_db(settings, work)}")


@tenant.command("promote",
                short_help="Dedicated log indices for tenant SLUG from the next UTC day.")
@click.argument("slug")
@pass_settings
def tenant_promote(settings: Settings, slug: str) -> None:
    """Give tenant SLUG dedicated log indices from the next UTC day on (docs/scaling.md)."""
    from datetime import UTC, datetime

    from app.elastic.promotion import next_day

    async def work(session: AsyncSession) -> str:
        found = await tenancy.get_tenant(session, slug)
        if found.index_dedicated_from is None:
            found.index_dedicated_from = next_day(datetime.now(UTC))
        return f"tenant {found.slug}: dedicated indices from {found.index_dedicated_from}"

    click.echo(run_in_db(settings, work))


@tenant.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array")
@pass_settings
def tenant_list(settings: Settings, as_json: bool) -> None:
    """List tenants (slug, name, retention)."""
    from sqlalchemy import select

    from app.db.models import Tenant

    async def work(session: AsyncSession) -> list[dict[str, object]]:
        rows = await session.scalars(select(Tenant).order_by(Tenant.slug))
        return [{"id": t.id, "slug": t.slug, "name": t.name, "retention_days": t.retention_days,
                 "ingest_rate_limit": t.ingest_rate_limit,
                 "index_dedicated_from": t.index_dedicated_from and str(t.index_dedicated_from)}
                for t in rows]

    tenants = run_in_db(settings, work)
    if as_json:
        click.echo(json.dumps(tenants))
        return
    for t in tenants:
        click.echo(f"{t['slug']}\t{t['name']}\tretention {t['retention_days']}d")


# --- user ------------------------------------------------------------------------------------


def read_password() -> str:
    """The first line of stdin when piped, else an interactive prompt with confirmation."""
    stream = click.get_text_stream("stdin")
    if not stream.isatty():
        password = stream.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on stdin (pipe one line, or run in a terminal)")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group()
def user() -> None:
    """Users and their roles in tenants."""


@user.command("create")
@click.argument("email")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug to add the user to")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.MEMBER.value,
    show_default=True,
)
@pass_settings
def user_create(settings: Settings, email: str, tenant_slug: str, role: str) -> None:
    """Create user EMAIL in a tenant (password from stdin or prompt).

    An existing user is added to the tenant with ROLE; their password is kept.
    """

    async def exists(session: AsyncSession) -> bool:
        await tenancy.get_tenant(session, tenant_slug)
        return await tenancy.find_user(session, tenancy.normalize_email(email)) is not None

    password: str | None = None
    if not run_in_db(settings, exists):
        try:
            password = tenancy.check_password(read_password(), tenancy.normalize_email(email))
        except AccountError as exc:
            raise click.ClickException(exc.detail) from exc

    async def work(session: AsyncSession) -> tenancy.NewMember:
        target = await tenancy.get_tenant(session, tenant_slug)
        return await tenancy.add_user_to_tenant(session, target.id, email, role, password)

    added = run_in_db(settings, work)
    verb = "created user" if added.created_user else "added existing user"
    click.echo(f"{verb} {added.member.email} to {tenant_slug} as {added.member.role.value}")


# --- apikey ----------------------------------------------------------------------------------


@click.group()
def apikey() -> None:
    """API keys for shipping (ingest) and querying (read) logs."""


@apikey.command("create")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug")
@click.option("--name", required=True, help="What the key is for, e.g. 'web-frontend'")
@click.option("--scope", type=click.Choice([s.value for s in Scope]), required=True)
@pass_settings
def apikey_create(settings: Settings, tenant_slug: str, name: str, scope: str) -> None:
    """Create a key and print it (on stdout, alone) this one time."""

    async def work(session: AsyncSession) -> tuple[str, str]:
        target = await tenancy.get_tenant(session, tenant_slug)
        key, plain = await tenancy.create_api_key(session, target.id, name, scope)
        return key.prefix, plain

    prefix, plain = run_in_db(settings, work)
    click.echo(f"created {scope} key {prefix} for {tenant_slug}; it is not shown again:", err=True)
    click.echo(plain)


@apikey.command("list")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug")
@click.option("--json", "as_json", is_flag=True, help="One JSON array (never the secrets)")
@pass_settings
def apikey_list(settings: Settings, tenant_slug: str, as_json: bool) -> None:
    """List a tenant's keys (id, prefix, scope, name, state)."""

    async def work(session: AsyncSession) -> list[dict[str, object]]:
        target = await tenancy.get_tenant(session, tenant_slug)
        return [tenancy.api_key_dict(k) for k in await tenancy.list_api_keys(session, target.id)]

    keys = run_in_db(settings, work)
    if as_json:
        click.echo(json.dumps(keys))
        return
    for key in keys:
        state = "active" if key["active"] else f"revoked {key['revoked_at']}"
        click.echo(f"{key['id']}\t{key['prefix']}\t{key['scope']}\t{key['name']}\t{state}")


@apikey.command("revoke")
@click.option("--tenant", "tenant_slug", required=True, help="Tenant slug")
@click.argument("key_id", type=int)
@pass_settings
def apikey_revoke(settings: Settings, tenant_slug: str, key_id: int) -> None:
    """Revoke key KEY_ID of a tenant; it stops working at once."""

    async def work(session: AsyncSession) -> str:
        target = await tenancy.get_tenant(session, tenant_slug)
        return (await tenancy.revoke_api_key(session, target.id, key_id)).prefix

    click.echo(f"revoked key {key_id} ({run_in_db(settings, work)})")


def register(main: click.Group) -> None:
    """Add the `db`, `tenant`, `user` and `apikey` groups to the `laas` command."""
    for group in (db, tenant, user, apikey):
        main.add_command(group)
