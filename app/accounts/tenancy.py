"""Tenancy services: tenants, users, memberships and API keys.

Functions take an `AsyncSession` and do not commit: callers wrap them in
`async with sessions.begin() as session:` so one request is one transaction.
Every function that touches tenant data takes the tenant id explicitly and filters by it;
objects of another tenant are reported as not found.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.authz import Principal
from app.accounts.errors import Conflict, InvalidCredentials, InvalidInput, NotFound
from app.accounts.passwords import context_words, password_problem
from app.accounts.security import (
    api_key_prefix,
    constant_time_equals,
    generate_password,
    hash_password,
    new_api_key,
    new_invitation_code,
    sha256_hex,
)
from app.db.engine import SessionFactory
from app.db.models import (
    ApiKey,
    Invitation,
    Membership,
    RefreshToken,
    Role,
    Scope,
    Tenant,
    User,
    utcnow,
)
from app.settings import Settings

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+$")
LAST_USED_RESOLUTION = timedelta(seconds=60)

# --- validation ------------------------------------------------------------------------------


def normalize_slug(slug: str) -> str:
    """A tenant slug: 1-63 lowercase letters, digits and inner hyphens."""
    value = slug.strip().lower()
    if not SLUG_PATTERN.match(value):
        raise InvalidInput(
            f"tenant slug {slug!r} is not allowed: use 1-63 lowercase letters, digits and "
            "hyphens, starting and ending with a letter or digit",
            field="tenant",
        )
    return value


def normalize_email(email: str) -> str:
    """Emails are compared case-insensitively, so they are stored lowercased."""
    value = email.strip().lower()
    if len(value) > 320 or not EMAIL_PATTERN.match(value):
        raise InvalidInput(f"{email!r} is not an email address", field="email")
    return value


def check_password(password: str, email: str | None = None) -> str:
    """A password the policy accepts (`app.accounts.passwords`: NIST 800-63B length, no control
    characters, not common or guessable, not built on `email`); checked before hashing."""
    if (problem := password_problem(password, context_words(email))) is not None:
        raise InvalidInput(problem, field="password")
    return password


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(f"role {value!r} unknown; allowed: {allowed}", field="role") from None


def parse_scope(value: str) -> Scope:
    try:
        return Scope(value)
    except ValueError:
        allowed = ", ".join(s.value for s in Scope)
        raise InvalidInput(f"scope {value!r} unknown; allowed: {allowed}", field="scope") from None


def check_name(name: str, field: str = "name") -> str:
    value = name.strip()
    if not 1 <= len(value) <= 200:
        raise InvalidInput(f"{field} must have 1 to 200 characters", field=field)
    return value


# --- tenants ---------------------------------------------------------------------------------


async def create_tenant(
    session: AsyncSession,
    slug: str,
    *,
    name: str | None = None,
    retention_days: int = 7,
    ingest_rate_limit: float | None = None,
) -> Tenant:
    """A new tenant; `Conflict` if the slug is taken."""
    slug = normalize_slug(slug)
    if await session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise Conflict(f"tenant {slug!r} exists already", field="tenant")
    tenant = Tenant(
        slug=slug,
        name=check_name(name or slug),
        retention_days=retention_days,
        ingest_rate_limit=ingest_rate_limit,
    )
    session.add(tenant)
    await session.flush()
    return tenant


async def get_tenant(session: AsyncSession, slug: str) -> Tenant:
    """The tenant with this slug; `NotFound` otherwise."""
    tenant = await session.scalar(select(Tenant).where(Tenant.slug == slug.strip().lower()))
    if tenant is None:
        raise NotFound(f"tenant {slug!r} does not exist", field="tenant")
    return tenant


async def get_tenant_by_id(session: AsyncSession, tenant_id: int) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} does not exist")
    return tenant


# --- users and memberships -----------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A user as seen from one tenant."""

    user_id: int
    email: str
    role: Role
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.user_id,
            "email": self.email,
            "role": self.role.value,
            "active": self.is_active,
            "created_at": self.created_at.isoformat(),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


def _member(user: User, membership: Membership) -> Member:
    # Only what belongs to this tenant: the membership's state, join date and last login here.
    return Member(
        user_id=user.id,
        email=user.email,
        role=Role(membership.role),
        is_active=membership.is_active,
        created_at=membership.created_at,
        last_login_at=membership.last_login_at,
    )


async def find_user(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.strip().lower()))


async def create_user(session: AsyncSession, email: str, password: str) -> User:
    """A new active user; `Conflict` if the email is taken."""
    email = normalize_email(email)
    if await find_user(session, email) is not None:
        raise Conflict(f"a user with email {email!r} exists already", field="email")
    user = User(email=email, password_hash=hash_password(check_password(password, email)))
    session.add(user)
    await session.flush()
    return user


async def add_membership(
    session: AsyncSession, user: User, tenant: Tenant, role: Role | str
) -> Membership:
    """Give `user` a role in `tenant`; `Conflict` if already a member."""
    role = parse_role(str(role))
    existing = await session.scalar(
        select(Membership.id).where(
            Membership.user_id == user.id, Membership.tenant_id == tenant.id
        )
    )
    if existing is not None:
        raise Conflict(f"{user.email} is a member of {tenant.slug} already", field="email")
    membership = Membership(user_id=user.id, tenant_id=tenant.id, role=role.value)
    session.add(membership)
    await session.flush()
    return membership


@dataclass(frozen=True)
class NewMember:
    """Result of adding a person to a tenant; `password` is set only if one was generated."""

    member: Member
    created_user: bool
    password: str | None


async def add_user_to_tenant(
    session: AsyncSession,
    tenant_id: int,
    email: str,
    role: Role | str,
    password: str | None = None,
) -> NewMember:
    """For operators (`laas user create`) only: an existing user gets a membership at once; an
    unknown email becomes a new user. Tenant admins invite instead (`invite`).

    A new user without a given password gets a generated one, returned once.
    """
    tenant = await get_tenant_by_id(session, tenant_id)
    role = parse_role(str(role))
    email = normalize_email(email)
    user = await find_user(session, email)
    generated: str | None = None
    created = user is None
    if user is None:
        if password is None:
            password = generated = generate_password()
        user = await create_user(session, email, password)
    elif password is not None:
        raise InvalidInput(
            f"{email} has an account already; add them without a password", field="password"
        )
    membership = await add_membership(session, user, tenant, role)
    return NewMember(member=_member(user, membership), created_user=created, password=generated)


async def list_members(session: AsyncSession, tenant_id: int) -> list[Member]:
    """The users of one tenant, by email."""
    rows = await session.execute(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == tenant_id)
        .order_by(User.email)
    )
    return [_member(user, membership) for user, membership in rows]


async def _membership(
    session: AsyncSession, tenant_id: int, user_id: int
) -> tuple[User, Membership]:
    row = (
        await session.execute(
            select(User, Membership)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.tenant_id == tenant_id, User.id == user_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"user {user_id} is not a member of this tenant")
    return row[0], row[1]


async def get_member(session: AsyncSession, tenant_id: int, user_id: int) -> Member:
    return _member(*await _membership(session, tenant_id, user_id))


async def _ensure_other_admin(session: AsyncSession, tenant_id: int, user_id: int) -> None:
    others = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.tenant_id == tenant_id,
            Membership.role == Role.ADMIN.value,
            Membership.user_id != user_id,
            Membership.is_active.is_(True),
            User.is_active.is_(True),
        )
    )
    if not others:
        raise Conflict("this is the tenant's last active admin; make another admin first")


async def _revoke_sessions(
    session: AsyncSession, user_id: int, tenant_id: int | None = None
) -> None:
    statement = update(RefreshToken).where(
        RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
    )
    if tenant_id is not None:
        statement = statement.where(RefreshToken.tenant_id == tenant_id)
    await session.execute(statement.values(revoked_at=utcnow()))


async def change_role(
    session: AsyncSession, tenant_id: int, user_id: int, role: Role | str
) -> Member:
    """Set a member's role; refuses to demote the last admin."""
    role = parse_role(str(role))
    user, membership = await _membership(session, tenant_id, user_id)
    if membership.role == Role.ADMIN.value and role != Role.ADMIN:
        await _ensure_other_admin(session, tenant_id, user_id)
    membership.role = role.value
    await session.flush()
    return _member(user, membership)


async def set_user_active(
    session: AsyncSession, tenant_id: int, user_id: int, active: bool
) -> Member:
    """(De)activate a user's membership of this tenant; the account and its other tenants are
    untouched (another tenant's admin can neither see nor undo it).

    Deactivation ends the user's sessions in this tenant at once (their tokens stop working).
    """
    user, membership = await _membership(session, tenant_id, user_id)
    if not active:
        if membership.role == Role.ADMIN.value and membership.is_active:
            await _ensure_other_admin(session, tenant_id, user_id)
        await _revoke_sessions(session, user_id, tenant_id)
    membership.is_active = active
    await session.flush()
    return _member(user, membership)


async def remove_member(session: AsyncSession, tenant_id: int, user_id: int) -> None:
    """Take a user out of this tenant (the account and other memberships stay)."""
    user, membership = await _membership(session, tenant_id, user_id)
    if membership.role == Role.ADMIN.value:
        await _ensure_other_admin(session, tenant_id, user_id)
    await _revoke_sessions(session, user_id, tenant_id)
    await session.delete(membership)
    await session.flush()


async def user_tenants(session: AsyncSession, user_id: int) -> list[tuple[Tenant, Role]]:
    """Every tenant a user may use (active memberships), oldest membership first."""
    rows = await session.execute(
        select(Tenant, Membership.role)
        .join(Membership, Membership.tenant_id == Tenant.id)
        .where(Membership.user_id == user_id, Membership.is_active.is_(True))
        .order_by(Membership.created_at, Membership.id)
    )
    return [(tenant, Role(role)) for tenant, role in rows]


# --- invitations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewInvitation:
    """An invitation and its one-time code (shown once, to the inviting admin)."""

    invitation: Invitation
    code: str


def invitation_dict(invitation: Invitation, tenant: Tenant | None = None) -> dict[str, object]:
    """The public description of an invitation (never its code)."""
    out: dict[str, object] = {
        "id": invitation.id,
        "email": invitation.email,
        "role": invitation.role,
        "status": invitation.status,
        "created_at": invitation.created_at.isoformat(),
        "expires_at": invitation.expires_at.isoformat(),
    }
    if tenant is not None:
        out["tenant"] = {"slug": tenant.slug, "name": tenant.name}
    return out


def _pending(now: datetime) -> ColumnElement[bool]:
    return and_(Invitation.status == "pending", Invitation.expires_at > now)


async def invite(
    session: AsyncSession,
    tenant_id: int,
    email: str,
    role: Role | str,
    *,
    invited_by_user_id: int | None,
    ttl: timedelta,
    now: datetime | None = None,
) -> NewInvitation:
    """Invite `email` into the tenant with `role`. The answer does not depend on whether the
    email has an account (only on this tenant's own members: `Conflict` if already one); an
    earlier pending invitation of the same email to this tenant is replaced."""
    now = now or utcnow()
    tenant = await get_tenant_by_id(session, tenant_id)
    role = parse_role(str(role))
    email = normalize_email(email)
    member = await session.scalar(
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.tenant_id == tenant.id, User.email == email)
    )
    if member is not None:
        raise Conflict(f"{email} is a member of this tenant already", field="email")
    await session.execute(
        update(Invitation)
        .where(Invitation.tenant_id == tenant.id, Invitation.email == email,
               Invitation.status == "pending")
        .values(status="revoked", closed_at=now)
    )
    code = new_invitation_code()
    invitation = Invitation(
        tenant_id=tenant.id, email=email, role=role.value, code_hash=sha256_hex(code),
        status="pending", invited_by_user_id=invited_by_user_id, created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    await session.flush()
    return NewInvitation(invitation=invitation, code=code)


async def tenant_invitations(
    session: AsyncSession, tenant_id: int, now: datetime | None = None
) -> list[Invitation]:
    """The tenant's pending invitations, newest first."""
    return list(await session.scalars(
        select(Invitation)
        .where(Invitation.tenant_id == tenant_id, _pending(now or utcnow()))
        .order_by(Invitation.id.desc())
    ))


async def revoke_invitation(session: AsyncSession, tenant_id: int, invitation_id: int) -> None:
    """Withdraw a pending invitation of the tenant; others are `NotFound`."""
    invitation = await session.scalar(
        select(Invitation).where(Invitation.id == invitation_id,
                                 Invitation.tenant_id == tenant_id, _pending(utcnow()))
    )
    if invitation is None:
        raise NotFound(f"invitation {invitation_id} not pending in this tenant")
    invitation.status, invitation.closed_at = "revoked", utcnow()
    await session.flush()


async def invitations_for(
    session: AsyncSession, email: str, now: datetime | None = None
) -> list[tuple[Invitation, Tenant]]:
    """Pending invitations addressed to `email`, oldest first."""
    rows = await session.execute(
        select(Invitation, Tenant)
        .join(Tenant, Tenant.id == Invitation.tenant_id)
        .where(Invitation.email == email, _pending(now or utcnow()))
        .order_by(Invitation.id)
    )
    return [(invitation, tenant) for invitation, tenant in rows]


async def _claim(session: AsyncSession, invitation: Invitation, status: str) -> None:
    # Atomic: of two concurrent answers to one invitation only one changes it.
    result = await session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.status == "pending")
        .values(status=status, closed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound(f"invitation {invitation.id} is no longer pending")
    await session.refresh(invitation)


async def accept_invitation(session: AsyncSession, user: User, invitation: Invitation) -> Tenant:
    """The user joins the invitation's tenant with its role (a membership the user had there,
    e.g. deactivated, keeps its state: accepting does not re-activate it)."""
    await _claim(session, invitation, "accepted")
    tenant = await get_tenant_by_id(session, invitation.tenant_id)
    existing = await session.scalar(
        select(Membership.id).where(Membership.user_id == user.id,
                                    Membership.tenant_id == tenant.id)
    )
    if existing is None:
        await add_membership(session, user, tenant, invitation.role)
    return tenant


async def pending_invitation(
    session: AsyncSession, invitation_id: int, email: str
) -> Invitation:
    """The pending invitation `invitation_id` addressed to `email`; `NotFound` otherwise."""
    invitation = await session.scalar(
        select(Invitation).where(Invitation.id == invitation_id, Invitation.email == email,
                                 _pending(utcnow()))
    )
    if invitation is None:
        raise NotFound(f"invitation {invitation_id} not found among your pending invitations")
    return invitation


async def answer_invitation(
    session: AsyncSession, user_id: int, invitation_id: int, *, accept: bool
) -> tuple[Invitation, Tenant | None]:
    """Accept or decline one of the user's own pending invitations."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    invitation = await pending_invitation(session, invitation_id, user.email)
    if not accept:
        await _claim(session, invitation, "declined")
        return invitation, None
    return invitation, await accept_invitation(session, user, invitation)


async def invitation_by_code(session: AsyncSession, code: str) -> Invitation:
    """The pending invitation of a one-time code; `InvalidCredentials` otherwise."""
    invitation = await session.scalar(
        select(Invitation).where(Invitation.code_hash == sha256_hex(code), _pending(utcnow()))
    )
    if invitation is None:
        raise InvalidCredentials("invitation code unknown, used, withdrawn or expired")
    return invitation


# --- API keys --------------------------------------------------------------------------------


def api_key_dict(key: ApiKey) -> dict[str, object]:
    """The public description of a key (never its secret or hash)."""
    return {
        "id": key.id,
        "name": key.name,
        "scope": key.scope,
        "prefix": key.prefix,
        "created_by": key.created_by_user_id,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "active": key.revoked_at is None,
    }


async def create_api_key(
    session: AsyncSession,
    tenant_id: int,
    name: str,
    scope: Scope | str,
    created_by_user_id: int | None = None,
) -> tuple[ApiKey, str]:
    """A new key of the tenant and its plain text, which is not stored and cannot be shown again."""
    scope = parse_scope(str(scope))
    await get_tenant_by_id(session, tenant_id)
    made = new_api_key()
    key = ApiKey(
        tenant_id=tenant_id,
        name=check_name(name),
        scope=scope.value,
        prefix=made.prefix,
        key_hash=made.hash,
        created_by_user_id=created_by_user_id,
    )
    session.add(key)
    await session.flush()
    return key, made.plain


async def list_api_keys(
    session: AsyncSession, tenant_id: int, *, created_by_user_id: int | None = None
) -> list[ApiKey]:
    """Keys of the tenant (only those made by `created_by_user_id` when given), newest first."""
    statement = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
    if created_by_user_id is not None:
        statement = statement.where(ApiKey.created_by_user_id == created_by_user_id)
    return list(await session.scalars(statement.order_by(ApiKey.id.desc())))


async def revoke_api_key(
    session: AsyncSession, tenant_id: int, key_id: int, *, created_by_user_id: int | None = None
) -> ApiKey:
    """Revoke a key of the tenant; keys of other tenants (or of others) are `NotFound`."""
    statement = select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id)
    if created_by_user_id is not None:
        statement = statement.where(ApiKey.created_by_user_id == created_by_user_id)
    key = await session.scalar(statement)
    if key is None:
        raise NotFound(f"API key {key_id} not found in this tenant")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key


@dataclass(frozen=True)
class FoundKey:
    """A valid, unrevoked API key as the ingest verifier needs it (one query for many keys)."""

    api_key_id: int
    tenant_id: int
    tenant_slug: str
    scope: Scope
    last_used_at: datetime | None
    ingest_rate_limit: float | None


async def find_api_keys(session: AsyncSession, plains: Iterable[str]) -> dict[str, FoundKey]:
    """Of `plains`, the valid, unrevoked keys (plain key -> `FoundKey`), in ONE query by their
    visible prefixes; every hash compared in constant time. Malformed, unknown (or a wrong
    secret under a known prefix) and revoked keys are left out. Writes nothing."""
    by_prefix = {prefix: plain for plain in plains
                 if (prefix := api_key_prefix(plain)) is not None}
    if not by_prefix:
        return {}
    rows = await session.execute(  # columns, not ORM objects: nothing to track
        select(ApiKey.prefix, ApiKey.key_hash, ApiKey.revoked_at, ApiKey.id, ApiKey.tenant_id,
               Tenant.slug, ApiKey.scope, ApiKey.last_used_at, Tenant.ingest_rate_limit)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.prefix.in_(list(by_prefix)))
    )
    found: dict[str, FoundKey] = {}
    for prefix, key_hash, revoked_at, key_id, tenant_id, slug, scope, last_used, rate in rows:
        plain = by_prefix[prefix]
        if constant_time_equals(key_hash, sha256_hex(plain)) and revoked_at is None:
            found[plain] = FoundKey(key_id, tenant_id, slug, Scope(scope), last_used, rate)
    return found


async def record_key_uses(session: AsyncSession, uses: Mapping[int, datetime]) -> None:
    """Set `last_used_at` of many keys (key id -> time of use) in one batched UPDATE
    (an executemany); a stored time that is later is kept."""
    if not uses:
        return
    table = cast(Table, ApiKey.__table__)  # Core: an executemany, not ORM bulk semantics
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("key_id"),
               or_(table.c.last_used_at.is_(None), table.c.last_used_at < bindparam("used")))
        .values(last_used_at=bindparam("used")),
        [{"key_id": key_id, "used": used} for key_id, used in uses.items()],
    )


async def verify_api_key(
    session: AsyncSession, plain: str, *, now: datetime | None = None
) -> Principal:
    """The principal of a valid, unrevoked key; `InvalidCredentials` otherwise.

    Looks the key up by its visible prefix, compares the SHA-256 in constant time and
    records `last_used_at` at most once a minute per key (one cheap UPDATE). Ingest, which
    checks keys on its hot path, uses `find_api_keys` and `record_key_uses` instead
    (`app.ingest.auth.DatabaseVerifier`: many keys per query, uses written in batches).
    """
    prefix = api_key_prefix(plain)
    if prefix is None:
        raise InvalidCredentials("malformed API key")
    row = (
        await session.execute(
            select(ApiKey, Tenant.slug)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .where(ApiKey.prefix == prefix)
        )
    ).first()
    if row is None or not constant_time_equals(row[0].key_hash, sha256_hex(plain)):
        raise InvalidCredentials("unknown API key")
    key, slug = row
    if key.revoked_at is not None:
        raise InvalidCredentials("API key revoked")
    now = now or utcnow()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Principal.for_api_key(
        api_key_id=key.id, tenant_id=key.tenant_id, tenant_slug=slug, scope=Scope(key.scope)
    )


# --- demo data -------------------------------------------------------------------------------

DEMO_TENANT = "demo"
DEMO_EMAIL = "admin@demo.local"


@dataclass(frozen=True)
class DemoCredentials:
    """How to log in to the demo tenant made on first start."""

    tenant: str
    email: str
    password: str


async def ensure_demo_async(sessions: SessionFactory, retention_days: int = 30
                            ) -> DemoCredentials | None:
    """On a database without tenants, make tenant `demo` (keeping its logs `retention_days`,
    the setting's default) and its admin; else None."""
    async with sessions.begin() as session:
        if await session.scalar(select(func.count()).select_from(Tenant)):
            return None
        tenant = await create_tenant(session, DEMO_TENANT, name="Demo",
                                     retention_days=retention_days)
        password = generate_password()
        user = await create_user(session, DEMO_EMAIL, password)
        await add_membership(session, user, tenant, Role.ADMIN)
    return DemoCredentials(tenant=DEMO_TENANT, email=DEMO_EMAIL, password=password)


def ensure_demo(settings: Settings) -> DemoCredentials | None:
    """Migrate, then create the demo tenant and admin if the database is empty.

    Returns the credentials to print (the password is shown only this once), or None when
    the database had tenants already. Call outside any running event loop (as `laas up` does).
    """
    from app.db.engine import create_engine, session_factory
    from app.db.migrations import upgrade_database_async

    async def run() -> DemoCredentials | None:
        engine = create_engine(settings)
        try:
            await upgrade_database_async(engine)
            return await ensure_demo_async(session_factory(engine),
                                           settings.retention_default_days)
        finally:
            await engine.dispose()

    return asyncio.run(run())
