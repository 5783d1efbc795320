"""Cryptography of LaaS auth: password hashing, signing keys, JWTs, API key format, throttling.

Everything here is pure (no database): the policies and formats that `app.accounts.tenancy` and
`app.accounts.logins` apply.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry

from app.settings import Settings

# --- passwords ---------------------------------------------------------------------------

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash (with its own salt and parameters) of `password`."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches; a malformed hash counts as no match."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than the current ones."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def verify_password_or_dummy(password_hash: str | None, password: str) -> bool:
    """Like `verify_password`, but costs the same when there is no account to check against.

    Unknown emails still pay for one argon2 verification, so response time does not tell
    whether an email exists.
    """
    if password_hash is None:
        verify_password(_dummy_hash(), password)
        return False
    return verify_password(password_hash, password)


def generate_password() -> str:
    """A random password for generated accounts (demo admin, invited users)."""
    return secrets.token_urlsafe(15)


# --- comparisons, opaque tokens, API keys --------------------------------------------------


def constant_time_equals(a: str, b: str) -> bool:
    """Compare two secrets (or their hashes) without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def sha256_hex(value: str) -> str:
    """SHA-256 of a high-entropy token; enough for API and refresh tokens (not passwords)."""
    return hashlib.sha256(value.encode()).hexdigest()


API_KEY_MARK = "laas"
API_KEY_PREFIX_LENGTH = 10
API_KEY_SECRET_LENGTH = 40
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class NewApiKey:
    """A freshly made key: `plain` is shown once; only `prefix` and `hash` are stored."""

    plain: str
    prefix: str
    hash: str


def new_api_key() -> NewApiKey:
    """`laas_<10 lowercase alphanumerics>_<40 alphanumerics>` (about 238 random bits)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(API_KEY_PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(API_KEY_SECRET_LENGTH))
    plain = f"{API_KEY_MARK}_{prefix}_{secret}"
    return NewApiKey(plain=plain, prefix=prefix, hash=sha256_hex(plain))


def looks_like_api_key(value: str) -> bool:
    """Whether a credential is meant as an API key (as opposed to a JWT)."""
    return value.startswith(f"{API_KEY_MARK}_")


def api_key_prefix(value: str) -> str | None:
    """The visible prefix of a well-formed API key, else None."""
    parts = value.split("_")
    if len(parts) != 3 or parts[0] != API_KEY_MARK:
        return None
    prefix, secret = parts[1], parts[2]
    if len(prefix) != API_KEY_PREFIX_LENGTH or len(secret) != API_KEY_SECRET_LENGTH:
        return None
    if not (prefix.isascii() and prefix.isalnum() and secret.isascii() and secret.isalnum()):
        return None
    return prefix


def new_refresh_token() -> str:
    """An opaque refresh token (256 random bits)."""
    return secrets.token_urlsafe(32)


def new_invitation_code() -> str:
    """A one-time invitation code (256 random bits), handed to the invitee by the admin."""
    return "inv_" + secrets.token_urlsafe(32)


def new_session_id() -> str:
    """Identifier of a login session (a refresh-token family)."""
    return uuid.uuid4().hex


# --- signing keys ----------------------------------------------------------------------------


def load_secret_key(settings: Settings) -> bytes:
    """The signing secret: `LAAS_SECRET_KEY`, else `state_dir/secret_key`, made once (0600)."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value().encode()
    path = Path(settings.state_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first; read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty; delete it to have a new secret key generated")
    return value.encode()


@dataclass(frozen=True)
class SigningKey:
    """An HS256 key derived from one secret; `kid` names it in token headers."""

    kid: str
    key: OctKey

    @classmethod
    def from_secret(cls, secret: bytes) -> SigningKey:
        # Derive a full-length key so short configured secrets still give a 256-bit HMAC key.
        raw = hmac.new(secret, b"laas jwt signing key v1", hashlib.sha256).digest()
        kid = hashlib.sha256(b"kid:" + raw).hexdigest()[:16]
        return cls(kid=kid, key=OctKey.import_key(raw))


@dataclass(frozen=True)
class SigningKeys:
    """The key that signs, and every key (current and previous) that verifies."""

    current: SigningKey
    accepted: dict[str, SigningKey]

    @classmethod
    def from_secrets(cls, current: bytes, previous: list[bytes] | None = None) -> SigningKeys:
        signing = SigningKey.from_secret(current)
        accepted = {signing.kid: signing}
        for secret in previous or []:
            key = SigningKey.from_secret(secret)
            accepted.setdefault(key.kid, key)
        return cls(current=signing, accepted=accepted)

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKeys:
        previous = [s.get_secret_value().encode() for s in settings.secret_keys_previous]
        return cls.from_secrets(load_secret_key(settings), previous)


# --- access tokens ---------------------------------------------------------------------------

JWT_ALGORITHM = "HS256"


class TokenError(Exception):
    """An access token was refused; `reason` says why (expired, bad signature, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AccessClaims:
    """What a valid access token says about its bearer."""

    user_id: int
    tenant_id: int
    tenant_slug: str
    role: str
    session_id: str
    token_id: str
    expires_at: int


@dataclass(frozen=True)
class JwtCodec:
    """Issues and verifies access tokens (iss, aud, sub, tenant, role, sid, iat, exp, jti)."""

    keys: SigningKeys
    issuer: str
    audience: str
    ttl: int

    @classmethod
    def from_settings(cls, settings: Settings, keys: SigningKeys | None = None) -> JwtCodec:
        return cls(
            keys=keys or SigningKeys.from_settings(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=settings.access_token_ttl,
        )

    def issue(
        self,
        *,
        user_id: int,
        tenant_id: int,
        tenant_slug: str,
        role: str,
        session_id: str,
        now: float | None = None,
    ) -> str:
        """A signed access token, valid for `ttl` seconds from `now`."""
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "tid": tenant_id,
            "tenant": tenant_slug,
            "role": role,
            "sid": session_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.ttl,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": JWT_ALGORITHM, "kid": self.keys.current.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.keys.current.key, algorithms=[JWT_ALGORITHM])

    def verify(self, token: str, now: float | None = None) -> AccessClaims:
        """The claims of a valid token; raises `TokenError` saying what is wrong otherwise."""
        try:
            decoded = jwt.decode(token, self._key_for, algorithms=[JWT_ALGORITHM])
        except TokenError:
            raise
        except BadSignatureError as exc:
            raise TokenError("token signature is invalid") from exc
        except JoseError as exc:
            raise TokenError(f"invalid token: {exc.description or exc.error}") from exc
        except (ValueError, TypeError) as exc:
            raise TokenError("malformed token") from exc
        registry = JWTClaimsRegistry(
            now=int(now) if now is not None else None,
            leeway=5,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            sub={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
            sid={"essential": True},
            tid={"essential": True},
            tenant={"essential": True},
            role={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except ExpiredTokenError as exc:
            raise TokenError("token expired") from exc
        except (InvalidClaimError, MissingClaimError) as exc:
            raise TokenError(f"token refused: {exc.description}") from exc
        except JoseError as exc:
            raise TokenError(f"token refused: {exc.description or exc.error}") from exc
        claims = decoded.claims
        try:
            return AccessClaims(
                user_id=int(claims["sub"]),
                tenant_id=int(claims["tid"]),
                tenant_slug=str(claims["tenant"]),
                role=str(claims["role"]),
                session_id=str(claims["sid"]),
                token_id=str(claims["jti"]),
                expires_at=int(claims["exp"]),
            )
        except (TypeError, ValueError) as exc:
            raise TokenError("token refused: malformed claims") from exc

    def _key_for(self, guest: Any) -> OctKey:
        kid = guest.headers().get("kid")
        key = self.keys.accepted.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("token signed with an unknown key")
        return key.key


# --- login throttling -----------------------------------------------------------------------


@dataclass(frozen=True)
class ThrottlePolicy:
    """When failed logins of one account and address pair, or of one address, slow down and
    lock further attempts.

    After `delay_after` failures within `window` seconds each retry must wait
    2^(failures - delay_after) seconds (at most `max_delay`); at `lockout_after`
    failures the key is locked for `lockout_seconds`.
    """

    window: int
    delay_after: int | None
    max_delay: int
    lockout_after: int
    lockout_seconds: int

    @classmethod
    def for_accounts(cls, settings: Settings) -> ThrottlePolicy:
        # Applied per (account, address) pair: a stranger elsewhere cannot lock the owner out.
        return cls(
            window=settings.login_failure_window,
            delay_after=settings.login_delay_after,
            max_delay=settings.login_max_delay,
            lockout_after=settings.login_account_lockout_after,
            lockout_seconds=settings.login_lockout_seconds,
        )

    @classmethod
    def for_addresses(cls, settings: Settings) -> ThrottlePolicy:
        # Many people may share one address (NAT): no per-attempt delays, only a high cap.
        return cls(
            window=settings.login_failure_window,
            delay_after=None,
            max_delay=settings.login_max_delay,
            lockout_after=settings.login_address_lockout_after,
            lockout_seconds=settings.login_lockout_seconds,
        )


@dataclass(frozen=True)
class ThrottleState:
    """Failed attempts recorded for one key."""

    failures: int
    first_failure_at: datetime
    last_failure_at: datetime
    locked_until: datetime | None


def _is_stale(state: ThrottleState, policy: ThrottlePolicy, now: datetime) -> bool:
    if state.locked_until is not None:
        return now >= state.locked_until
    return now - state.first_failure_at > timedelta(seconds=policy.window)


def retry_after(state: ThrottleState | None, policy: ThrottlePolicy, now: datetime) -> int:
    """Seconds until another attempt is allowed (0: allowed now)."""
    if state is None or _is_stale(state, policy, now):
        return 0
    if state.locked_until is not None:
        return max(1, math.ceil((state.locked_until - now).total_seconds()))
    if policy.delay_after is not None and state.failures >= policy.delay_after:
        delay = min(2 ** (state.failures - policy.delay_after), policy.max_delay)
        wait = (state.last_failure_at + timedelta(seconds=delay) - now).total_seconds()
        if wait > 0:
            return math.ceil(wait)
    return 0


def record_failure(
    state: ThrottleState | None, policy: ThrottlePolicy, now: datetime
) -> ThrottleState:
    """The state after one more failed attempt at `now`."""
    if state is None or _is_stale(state, policy, now):
        failures, first = 1, now
    else:
        failures, first = state.failures + 1, state.first_failure_at
    locked = now + timedelta(seconds=policy.lockout_seconds)
    return ThrottleState(
        failures=failures,
        first_failure_at=first,
        last_failure_at=now,
        locked_until=locked if failures >= policy.lockout_after else None,
    )
