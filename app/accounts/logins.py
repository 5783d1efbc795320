"""Login sessions: password login with throttling, refresh-token rotation, logout.

A login opens a session (`sid`): a family of refresh tokens, each usable once. Refreshing
rotates to the next token; presenting a used token again revokes the whole family, which
also invalidates the family's access tokens (every request checks the session is live).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.authz import Principal
from app.accounts.errors import InvalidCredentials, NotAuthenticated, PermissionDenied, Throttled
from app.accounts.security import (
    JwtCodec,
    ThrottlePolicy,
    ThrottleState,
    TokenError,
    hash_password,
    new_refresh_token,
    new_session_id,
    password_needs_rehash,
    record_failure,
    retry_after,
    sha256_hex,
    verify_password,
    verify_password_or_dummy,
)
from app.accounts.tenancy import accept_invitation, create_user, invitation_by_code, user_tenants
from app.db.engine import SessionFactory
from app.db.models import LoginThrottle, Membership, RefreshToken, Role, Tenant, User, utcnow
from app.runtime.retry import RetryPolicy, retry
from app.settings import Settings

BAD_LOGIN = "email or password is wrong"


@dataclass(frozen=True)
class AuthConfig:
    """What the login flows need from the settings, built once at start-up."""

    codec: JwtCodec
    refresh_ttl: int
    account_policy: ThrottlePolicy
    address_policy: ThrottlePolicy

    @classmethod
    def from_settings(cls, settings: Settings, codec: JwtCodec | None = None) -> AuthConfig:
        return cls(
            codec=codec or JwtCodec.from_settings(settings),
            refresh_ttl=settings.refresh_token_ttl,
            account_policy=ThrottlePolicy.for_accounts(settings),
            address_policy=ThrottlePolicy.for_addresses(settings),
        )


@dataclass(frozen=True)
class TokenPair:
    """What login and refresh hand back."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    user_id: int
    email: str
    tenant_slug: str
    role: Role
    tenants: list[dict[str, str]]

    def to_dict(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
            "user": {"id": self.user_id, "email": self.email},
            "tenant": self.tenant_slug,
            "role": self.role.value,
            "tenants": self.tenants,
        }


# --- throttling ------------------------------------------------------------------------------


def _state(row: LoginThrottle | None) -> ThrottleState | None:
    if row is None:
        return None
    return ThrottleState(row.failures, row.first_failure_at, row.last_failure_at, row.locked_until)


async def _throttle_rows(session: AsyncSession, keys: list[str]) -> dict[str, LoginThrottle]:
    rows = await session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))
    return {row.key: row for row in rows}


async def _check_throttle(
    sessions: SessionFactory, keys: dict[str, ThrottlePolicy], now: datetime
) -> None:
    async with sessions() as session:
        rows = await _throttle_rows(session, list(keys))
    wait = max(retry_after(_state(rows.get(key)), policy, now) for key, policy in keys.items())
    if wait > 0:
        raise Throttled(f"too many failed logins; try again in {wait} seconds", retry_after=wait)


async def _record_failures(
    sessions: SessionFactory, keys: dict[str, ThrottlePolicy], now: datetime
) -> None:
    async def record() -> None:
        async with sessions.begin() as session:
            rows = await _throttle_rows(session, list(keys))
            for key, policy in keys.items():
                state = record_failure(_state(rows.get(key)), policy, now)
                row = rows.get(key) or LoginThrottle(key=key)
                row.failures = state.failures
                row.first_failure_at = state.first_failure_at
                row.last_failure_at = state.last_failure_at
                row.locked_until = state.locked_until
                session.add(row)

    # A concurrent failure inserted the same key first: count again (at once) on its row.
    await retry(record, RetryPolicy(IntegrityError, initial=0, maximum=0, attempts=3))


async def _clear_throttle(session: AsyncSession, key: str) -> None:
    row = await session.get(LoginThrottle, key)
    if row is not None:
        await session.delete(row)


# --- login -----------------------------------------------------------------------------------


def throttle_pair_key(email: str, client_address: str | None) -> str:
    """The throttling key of one account tried from one address (the email cut to 330
    characters: no account has a longer one, and the column holds 400)."""
    return f"pair:{client_address or '-'}|{email[:330]}"


async def _open_session(
    session: AsyncSession,
    config: AuthConfig,
    *,
    user: User,
    tenant: Tenant,
    role: Role,
    family_id: str,
    now: datetime,
) -> TokenPair:
    refresh = new_refresh_token()
    session.add(
        RefreshToken(
            token_hash=sha256_hex(refresh),
            family_id=family_id,
            user_id=user.id,
            tenant_id=tenant.id,
            created_at=now,
            expires_at=now + timedelta(seconds=config.refresh_ttl),
        )
    )
    access = config.codec.issue(
        user_id=user.id,
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        role=role.value,
        session_id=family_id,
        now=now.timestamp(),
    )
    tenants = [
        {"slug": t.slug, "name": t.name, "role": r.value}
        for t, r in await user_tenants(session, user.id)
    ]
    return TokenPair(
        access_token=access,
        expires_in=config.codec.ttl,
        refresh_token=refresh,
        refresh_expires_in=config.refresh_ttl,
        user_id=user.id,
        email=user.email,
        tenant_slug=tenant.slug,
        role=role,
        tenants=tenants,
    )


async def login(
    sessions: SessionFactory,
    config: AuthConfig,
    *,
    email: str,
    password: str,
    tenant: str | None = None,
    client_address: str | None = None,
    now: datetime | None = None,
) -> TokenPair:
    """Check a password and open a session in `tenant` (default: the user's first tenant).

    Failures count against the (account, client address) pair, which gets delays and then a
    lockout, and against the address alone (a high cap for guessing across accounts); a
    stranger's failures never lock the account for its owner at another address. Unknown
    emails, wrong passwords and inactive accounts all give the same `InvalidCredentials`.
    """
    now = now or utcnow()
    email_key = email.strip().lower()
    pair_key = throttle_pair_key(email_key, client_address)
    keys = {pair_key: config.account_policy}
    if client_address:
        keys[f"address:{client_address}"] = config.address_policy
    await _check_throttle(sessions, keys, now)

    async with sessions.begin() as session:
        user = await session.scalar(select(User).where(User.email == email_key))
        ok = verify_password_or_dummy(user.password_hash if user else None, password)
        memberships = await user_tenants(session, user.id) if user and ok else []
        if user is not None and ok and user.is_active and not memberships:
            switched_off = await session.scalar(
                select(exists().where(Membership.user_id == user.id))
            )
            if not switched_off:
                raise PermissionDenied(f"{user.email} belongs to no tenant; ask an admin")
            # deactivated in every tenant: answered like a deactivated account, below
        if user is not None and ok and user.is_active and memberships:
            if tenant is None:
                chosen, role = memberships[0]
            else:
                match = [(t, r) for t, r in memberships if t.slug == tenant.strip().lower()]
                if not match:
                    raise PermissionDenied(f"{user.email} is not a member of tenant {tenant!r}")
                chosen, role = match[0]
            user.last_login_at = now
            await session.execute(
                update(Membership)
                .where(Membership.user_id == user.id, Membership.tenant_id == chosen.id)
                .values(last_login_at=now)
            )
            if password_needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            await _clear_throttle(session, pair_key)
            return await _open_session(
                session,
                config,
                user=user,
                tenant=chosen,
                role=role,
                family_id=new_session_id(),
                now=now,
            )
    await _record_failures(sessions, keys, now)
    raise InvalidCredentials(BAD_LOGIN)


# --- invitations by code ------------------------------------------------------------------------


async def redeem_invitation(
    sessions: SessionFactory,
    config: AuthConfig,
    *,
    code: str,
    password: str,
    client_address: str | None = None,
    now: datetime | None = None,
) -> TokenPair:
    """Join a tenant with an invitation's one-time code, and log in there.

    Without an account for the invitation's email, one is made with `password` (the password
    policy applies). With one, `password` must be its password: the attempt is throttled and
    fails like a login, so a code does not open someone else's account.
    """
    now = now or utcnow()
    async with sessions() as session:
        email = (await invitation_by_code(session, code)).email
    pair_key = throttle_pair_key(email, client_address)
    keys = {pair_key: config.account_policy}
    if client_address:
        keys[f"address:{client_address}"] = config.address_policy
    await _check_throttle(sessions, keys, now)
    async with sessions.begin() as session:
        invitation = await invitation_by_code(session, code)
        user = await session.scalar(select(User).where(User.email == invitation.email))
        if user is None:
            user = await create_user(session, invitation.email, password)
        elif not (verify_password(user.password_hash, password) and user.is_active):
            user = None
        if user is not None:
            tenant = await accept_invitation(session, user, invitation)
            membership = await session.scalar(
                select(Membership).where(Membership.user_id == user.id,
                                         Membership.tenant_id == tenant.id)
            )
            if membership is None or not membership.is_active:
                raise PermissionDenied(f"{user.email} is deactivated in tenant {tenant.slug}")
            user.last_login_at = membership.last_login_at = now
            await _clear_throttle(session, pair_key)
            return await _open_session(
                session, config, user=user, tenant=tenant, role=Role(membership.role),
                family_id=new_session_id(), now=now,
            )
    await _record_failures(sessions, keys, now)
    raise InvalidCredentials(BAD_LOGIN)


# --- refresh and logout ------------------------------------------------------------------------


async def _revoke_family(session: AsyncSession, family_id: str, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def refresh(
    sessions: SessionFactory, config: AuthConfig, refresh_token: str, *, now: datetime | None = None
) -> TokenPair:
    """Trade a refresh token for a new pair; a reused token revokes its whole session."""
    now = now or utcnow()
    reason: str | None = None
    async with sessions.begin() as session:
        token = await session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(refresh_token))
        )
        if token is None:
            raise InvalidCredentials("unknown refresh token")
        if token.revoked_at is not None:
            raise InvalidCredentials("refresh token revoked; log in again")
        if token.expires_at <= now:
            raise InvalidCredentials("refresh token expired; log in again")
        claimed = 0
        if token.used_at is None:
            # Claim atomically: of two concurrent uses only one updates the row.
            result = await session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            claimed = result.rowcount  # type: ignore[attr-defined]
        if claimed != 1:
            await _revoke_family(session, token.family_id, now)
            reason = "refresh token was used already; the session is revoked, log in again"
        else:
            row = (
                await session.execute(
                    select(User, Tenant, Membership.role)
                    .join(Membership, Membership.user_id == User.id)
                    .join(Tenant, Tenant.id == Membership.tenant_id)
                    .where(User.id == token.user_id, Tenant.id == token.tenant_id,
                           Membership.is_active.is_(True))
                )
            ).first()
            if row is None or not row[0].is_active:
                await _revoke_family(session, token.family_id, now)
                reason = "account disabled or no longer a member of the tenant"
            else:
                user, tenant, role = row
                return await _open_session(
                    session,
                    config,
                    user=user,
                    tenant=tenant,
                    role=Role(role),
                    family_id=token.family_id,
                    now=now,
                )
    raise InvalidCredentials(reason)


async def logout(
    sessions: SessionFactory,
    *,
    session_id: str | None = None,
    refresh_token: str | None = None,
    now: datetime | None = None,
) -> None:
    """End a session, named by its id (from an access token) or by one of its refresh tokens."""
    now = now or utcnow()
    async with sessions.begin() as session:
        families: set[str] = set()
        if session_id:
            families.add(session_id)
        if refresh_token:
            family = await session.scalar(
                select(RefreshToken.family_id).where(
                    RefreshToken.token_hash == sha256_hex(refresh_token)
                )
            )
            if family is not None:
                families.add(family)
        for family in families:
            await _revoke_family(session, family, now)


async def principal_from_access_token(
    session: AsyncSession, codec: JwtCodec, token: str, *, now: float | None = None
) -> Principal:
    """Verify an access token and load the caller's current role (one query).

    The role comes from the database, not the token, so role changes, removal and
    deactivation take effect at once; so does revoking the session (logout, reuse).
    """
    try:
        claims = codec.verify(token, now=now)
    except TokenError as exc:
        raise NotAuthenticated(exc.reason) from exc
    live_session = exists().where(
        RefreshToken.family_id == claims.session_id,
        RefreshToken.user_id == claims.user_id,
        RefreshToken.revoked_at.is_(None),
    )
    row = (
        await session.execute(
            select(User.email, Tenant.slug, Membership.role, live_session)
            .join(Membership, Membership.user_id == User.id)
            .join(Tenant, Tenant.id == Membership.tenant_id)
            .where(
                User.id == claims.user_id,
                Tenant.id == claims.tenant_id,
                User.is_active.is_(True),
                Membership.is_active.is_(True),
            )
        )
    ).first()
    if row is None:
        raise NotAuthenticated("account disabled or no longer a member of the token's tenant")
    email, slug, role, live = row
    if not live:
        raise NotAuthenticated("session ended (logged out or revoked); log in again")
    return Principal.for_user(
        user_id=claims.user_id,
        email=email,
        tenant_id=claims.tenant_id,
        tenant_slug=slug,
        role=Role(role),
        session_id=claims.session_id,
    )
