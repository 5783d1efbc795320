"""Pure auth building blocks: password hashing, JWTs, key rotation, API key format, throttling."""

from __future__ import annotations

import base64
import json
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.accounts.authz import ROLE_PERMISSIONS, SCOPE_PERMISSIONS, Permission, creatable_scopes
from app.accounts.security import (
    JwtCodec,
    SigningKeys,
    ThrottlePolicy,
    TokenError,
    api_key_prefix,
    constant_time_equals,
    hash_password,
    load_secret_key,
    looks_like_api_key,
    new_api_key,
    record_failure,
    retry_after,
    sha256_hex,
    verify_password,
    verify_password_or_dummy,
)
from app.db.models import Role, Scope
from app.settings import load_settings


def codec(secret: bytes = b"s1", previous: list[bytes] | None = None, **kw: Any) -> JwtCodec:
    values: dict[str, Any] = {"issuer": "laas", "audience": "laas-api", "ttl": 900}
    values.update(kw)
    return JwtCodec(keys=SigningKeys.from_secrets(secret, previous), **values)


def issue(c: JwtCodec, now: float | None = None) -> str:
    return c.issue(user_id=7, tenant_id=3, tenant_slug="acme", role="member", session_id="s1",
                   now=now)


def test_password_hash_is_argon2_and_verifies() -> None:
    hashed = hash_password("hunter2hunter2")
    assert hashed.startswith("$argon2id$")
    assert "hunter2" not in hashed
    assert verify_password(hashed, "hunter2hunter2")
    assert not verify_password(hashed, "hunter2hunter3")
    assert not verify_password("not a hash", "hunter2hunter2")
    assert not verify_password_or_dummy(None, "anything")


def test_token_round_trip_carries_claims() -> None:
    c = codec()
    claims = c.verify(issue(c))
    assert (claims.user_id, claims.tenant_id, claims.tenant_slug) == (7, 3, "acme")
    assert claims.role == "member" and claims.session_id == "s1" and len(claims.token_id) == 32


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, object]:
    payload = _segments(token)[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda c, t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "signature"),
        (lambda c, t: ".".join([_segments(t)[0], _b64({**_claims(t), "tid": 4}),
                                _segments(t)[2]]), "signature"),
        (lambda c, t: ".".join([_b64({"alg": "none", "typ": "JWT"}), _segments(t)[1], ""]),
         "invalid token"),
        (lambda c, t: issue(codec(audience="someone-else")), "aud"),
        (lambda c, t: issue(codec(issuer="evil")), "iss"),
        (lambda c, t: issue(codec(secret=b"other")), "unknown key"),
        (lambda c, t: issue(c, now=time.time() - 3600), "expired"),
        (lambda c, t: "not-a-jwt", "invalid token"),
    ],
    ids=["tampered-signature", "tampered-claims", "alg-none", "wrong-audience", "wrong-issuer",
         "unknown-key", "expired", "garbage"],
)
def test_bad_tokens_are_refused(make: Callable[[JwtCodec, str], str], reason: str) -> None:
    c = codec()
    bad = make(c, issue(c))
    with pytest.raises(TokenError) as caught:
        c.verify(bad)
    assert reason in caught.value.reason


def test_rotation_keeps_old_tokens_valid_and_signs_with_new_key() -> None:
    old = codec(b"old")
    token = issue(old)
    rotated = codec(b"new", previous=[b"old"])
    assert rotated.verify(token).user_id == 7
    fresh = issue(rotated)
    assert rotated.keys.current.kid != old.keys.current.kid
    with pytest.raises(TokenError, match="unknown key"):
        old.verify(fresh)
    with pytest.raises(TokenError, match="unknown key"):
        codec(b"new").verify(token)  # old key retired: its tokens end


def test_secret_key_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "state", secret_key=None)
    first = load_secret_key(settings)
    path = tmp_path / "state" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 40
    assert load_secret_key(settings) == first
    configured = load_settings(state_dir=tmp_path / "state", secret_key="from-env")
    assert load_secret_key(configured) == b"from-env"


def test_api_key_format_and_hash() -> None:
    made = new_api_key()
    assert looks_like_api_key(made.plain)
    assert api_key_prefix(made.plain) == made.prefix
    assert made.plain.startswith(f"laas_{made.prefix}_")
    assert made.hash == sha256_hex(made.plain) and made.plain not in made.hash
    assert new_api_key().plain != made.plain
    assert api_key_prefix(made.plain + "x") is None
    assert constant_time_equals(made.hash, sha256_hex(made.plain))
    assert not constant_time_equals(made.hash, sha256_hex(made.plain + "x"))


@given(st.text(max_size=80))
def test_api_key_parsing_never_crashes(value: str) -> None:
    prefix = api_key_prefix(value)
    assert prefix is None or (len(prefix) == 10 and value.startswith("laas_"))


POLICY = ThrottlePolicy(window=900, delay_after=3, max_delay=30, lockout_after=6,
                        lockout_seconds=600)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_throttle_delays_grow_then_lock() -> None:
    state = None
    for n in range(1, 3):
        state = record_failure(state, POLICY, T0 + timedelta(seconds=n))
        assert retry_after(state, POLICY, T0 + timedelta(seconds=n)) == 0
    waits = []
    for n in range(3, 6):
        now = T0 + timedelta(seconds=100 * n)
        state = record_failure(state, POLICY, now)
        waits.append(retry_after(state, POLICY, now))
        assert state.locked_until is None
    assert waits == [1, 2, 4]
    now = T0 + timedelta(seconds=700)
    state = record_failure(state, POLICY, now)
    assert state.locked_until == now + timedelta(seconds=600)
    assert retry_after(state, POLICY, now + timedelta(seconds=599)) == 1
    assert retry_after(state, POLICY, now + timedelta(seconds=600)) == 0
    after = record_failure(state, POLICY, now + timedelta(seconds=601))
    assert after.failures == 1 and after.locked_until is None  # lock served: counting restarts


def test_throttle_window_forgets_old_failures() -> None:
    state = None
    for n in range(5):
        state = record_failure(state, POLICY, T0 + timedelta(seconds=n))
    later = T0 + timedelta(seconds=POLICY.window + 10)
    assert retry_after(state, POLICY, later) == 0
    assert record_failure(state, POLICY, later).failures == 1


def test_permission_matrix_of_roles_and_scopes() -> None:
    P = Permission
    assert ROLE_PERMISSIONS[Role.VIEWER] == {P.READ}
    assert ROLE_PERMISSIONS[Role.MEMBER] == {P.READ, P.MANAGE_OWN_KEYS, P.MANAGE_ALERTS}
    assert P.MANAGE_USERS in ROLE_PERMISSIONS[Role.ADMIN]
    assert P.INGEST not in ROLE_PERMISSIONS[Role.ADMIN]
    assert SCOPE_PERMISSIONS[Scope.INGEST] == {P.INGEST}  # an ingest key cannot read
    assert SCOPE_PERMISSIONS[Scope.READ] == {P.READ}  # a read key cannot ingest
    assert SCOPE_PERMISSIONS[Scope.ADMIN] == set(Permission)
    assert creatable_scopes(ROLE_PERMISSIONS[Role.MEMBER]) == {Scope.INGEST, Scope.READ}
    assert creatable_scopes(ROLE_PERMISSIONS[Role.VIEWER]) == set()
    assert creatable_scopes(ROLE_PERMISSIONS[Role.ADMIN]) == set(Scope)
