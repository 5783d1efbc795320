"""Login, access tokens, refresh rotation with reuse detection, logout, throttling, rotation."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from app.accounts import logins
from app.accounts.errors import InvalidCredentials
from app.accounts.security import JwtCodec, SigningKeys
from app.db.models import Role, utcnow
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import PASSWORD, World, bearer, client_for, make_settings, running_app

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/me"


async def test_login_success_gives_working_tokens(world: World) -> None:
    async with client_for(world.app) as client:
        response = await client.post(LOGIN, json={"email": "ADMIN@acme.test", "password": PASSWORD})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "bearer" and body["tenant"] == "acme"
        assert body["role"] == "admin" and body["expires_in"] == 900
        assert response.headers["cache-control"] == "no-store"
        me = await client.get(ME, headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["user"]["email"] == "admin@acme.test"
    assert me.json()["tenant"]["slug"] == "acme" and me.json()["role"] == "admin"


async def test_login_failures_are_uniform(world: World) -> None:
    async with world.sessions.begin() as session:
        from app.accounts.tenancy import set_user_active

        await set_user_active(session, world.tenant_ids["acme"], world.user_ids["viewer"], False)
    attempts = [
        {"email": "admin@acme.test", "password": "wrong password"},
        {"email": "nobody@acme.test", "password": PASSWORD},
        {"email": "viewer@acme.test", "password": PASSWORD},  # deactivated
    ]
    async with client_for(world.app) as client:
        answers = [await client.post(LOGIN, json=attempt) for attempt in attempts]
    assert {a.status_code for a in answers} == {401}
    assert len({a.text for a in answers}) == 1
    assert answers[0].json() == {
        "error": "invalid_credentials",
        "detail": "email or password is wrong",
    }


async def test_login_validates_body(world: World) -> None:
    async with client_for(world.app) as client:
        not_json = await client.post(LOGIN, content=b"email=x")
        missing = await client.post(LOGIN, json={"email": "admin@acme.test"})
    assert not_json.status_code == 422 and not_json.json()["error"] == "invalid_input"
    assert missing.status_code == 422 and missing.json()["field"] == "password"


async def test_login_chooses_tenant_among_memberships(world: World) -> None:
    async with world.sessions.begin() as session:
        from app.accounts.tenancy import add_user_to_tenant

        await add_user_to_tenant(session, world.tenant_ids["beta"], "member@acme.test", "viewer")
    async with client_for(world.app) as client:
        default = await client.post(
            LOGIN, json={"email": "member@acme.test", "password": PASSWORD}
        )
        beta = await client.post(
            LOGIN, json={"email": "member@acme.test", "password": PASSWORD, "tenant": "beta"}
        )
        foreign = await client.post(
            LOGIN, json={"email": "admin@acme.test", "password": PASSWORD, "tenant": "beta"}
        )
    assert default.json()["tenant"] == "acme" and default.json()["role"] == "member"
    assert [t["slug"] for t in default.json()["tenants"]] == ["acme", "beta"]
    assert beta.json()["tenant"] == "beta" and beta.json()["role"] == "viewer"
    assert foreign.status_code == 403


def _forge(world: World, **changes: Any) -> str:
    codec: JwtCodec = world.app.state.auth.codec
    values: dict[str, Any] = {
        "user_id": world.user_ids["admin"],
        "tenant_id": world.tenant_ids["acme"],
        "tenant_slug": "acme",
        "role": "admin",
        "session_id": "0" * 32,
    }
    values.update(changes)
    return codec.issue(**values)


async def test_bad_access_tokens_are_rejected(world: World) -> None:
    good = world.creds["admin"]
    sid = world.app.state.auth.codec.verify(good).session_id
    auth = world.app.state.auth.codec
    other_audience = JwtCodec(auth.keys, auth.issuer, "other-api", auth.ttl)
    other_key = JwtCodec(SigningKeys.from_secrets(b"attacker"), auth.issuer, auth.audience, 900)
    head, payload, signature = good.split(".")
    cases = {
        "expired": _forge(world, session_id=sid, now=time.time() - 3600),
        "tampered": f"{head}.{payload[:-4]}AAAA.{signature}",
        "wrong audience": other_audience.issue(
            user_id=world.user_ids["admin"], tenant_id=world.tenant_ids["acme"],
            tenant_slug="acme", role="admin", session_id=sid,
        ),
        "wrong key": other_key.issue(
            user_id=world.user_ids["admin"], tenant_id=world.tenant_ids["acme"],
            tenant_slug="acme", role="admin", session_id=sid,
        ),
        # validly signed but naming a tenant the user is not in
        "foreign tenant": _forge(world, session_id=sid, tenant_id=world.tenant_ids["beta"]),
        "no session": _forge(world),
        "not a token": "hello",
    }
    async with client_for(world.app) as client:
        assert (await client.get(ME, headers=bearer(good))).status_code == 200
        for name, token in cases.items():
            response = await client.get(ME, headers=bearer(token))
            assert response.status_code == 401, name
            assert response.json()["error"] == "not_authenticated", name
            assert response.headers["www-authenticate"].startswith("Bearer"), name
        expired = await client.get(ME, headers=bearer(cases["expired"]))
        basic = await client.get(ME, headers={"Authorization": "Basic dXNlcjpwdw=="})
        public = await client.get("/healthz", headers=bearer("hello"))
    assert expired.json()["detail"] == "token expired"
    assert basic.status_code == 401 and "Bearer" in basic.json()["detail"]
    assert public.status_code == 200  # a stale token does not break public endpoints


async def test_refresh_rotates_and_reuse_revokes_the_family(world: World) -> None:
    first_refresh, first_access = world.refresh["member"], world.creds["member"]
    async with client_for(world.app) as client:
        rotated = await client.post(REFRESH, json={"refresh_token": first_refresh})
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()
        assert second["refresh_token"] != first_refresh
        assert second["role"] == "member" and second["tenant"] == "acme"
        assert (await client.get(ME, headers=bearer(second["access_token"]))).status_code == 200

        reused = await client.post(REFRESH, json={"refresh_token": first_refresh})
        assert reused.status_code == 401
        assert "used already" in reused.json()["detail"]

        # the whole family is gone: the successor refresh token and every access token
        after = await client.post(REFRESH, json={"refresh_token": second["refresh_token"]})
        assert after.status_code == 401
        for access in (first_access, second["access_token"]):
            me = await client.get(ME, headers=bearer(access))
            assert me.status_code == 401 and "session ended" in me.json()["detail"]
        unknown = await client.post(REFRESH, json={"refresh_token": "made-up"})
        assert unknown.status_code == 401
        # other sessions are untouched
        assert (await client.get(ME, headers=world.headers("admin"))).status_code == 200


async def test_refresh_token_expires(world: World) -> None:
    config = world.app.state.auth
    later = utcnow() + timedelta(seconds=config.refresh_ttl + 1)
    with pytest.raises(InvalidCredentials, match="expired"):
        await logins.refresh(world.sessions, config, world.refresh["viewer"], now=later)


async def test_logout_ends_the_session(world: World) -> None:
    async with client_for(world.app) as client:
        out = await client.post(LOGOUT, headers=world.headers("member"))
        assert out.status_code == 204
        assert (await client.get(ME, headers=world.headers("member"))).status_code == 401
        again = await client.post(REFRESH, json={"refresh_token": world.refresh["member"]})
        assert again.status_code == 401
        # logging out with only the refresh token works as well
        by_refresh = await client.post(LOGOUT, json={"refresh_token": world.refresh["viewer"]})
        assert by_refresh.status_code == 204
        assert (await client.get(ME, headers=world.headers("viewer"))).status_code == 401
        anonymous = await client.post(LOGOUT)
    assert anonymous.status_code == 401


async def test_role_changes_and_deactivation_apply_at_once(world: World) -> None:
    from app.accounts.tenancy import change_role, set_user_active

    async with world.sessions.begin() as session:
        await change_role(session, world.tenant_ids["acme"], world.user_ids["member"], Role.VIEWER)
    async with client_for(world.app) as client:
        me = await client.get(ME, headers=world.headers("member"))
        assert me.json()["role"] == "viewer"
        async with world.sessions.begin() as session:
            await set_user_active(
                session, world.tenant_ids["acme"], world.user_ids["member"], False
            )
        assert (await client.get(ME, headers=world.headers("member"))).status_code == 401
        refused = await client.post(REFRESH, json={"refresh_token": world.refresh["member"]})
    assert refused.status_code == 401


async def test_key_rotation_keeps_sessions_valid(auth_db_url: str, tmp_path: Path) -> None:
    old = make_settings(auth_db_url, tmp_path / "s", secret_key="old-secret")
    async with running_app(old) as app:
        world = World(app=app, sessions=app.state.sessions)
        from tests.auth_fixtures import build_world

        world = await build_world(app)
    token, refresh_token = world.creds["admin"], world.refresh["admin"]
    rotated = make_settings(
        auth_db_url, tmp_path / "s", secret_key="new-secret", secret_keys_previous=["old-secret"]
    )
    async with running_app(rotated) as app, client_for(app) as client:
        assert (await client.get(ME, headers=bearer(token))).status_code == 200
        fresh = await client.post(REFRESH, json={"refresh_token": refresh_token})
        assert fresh.status_code == 200
        new_token = fresh.json()["access_token"]
        assert app.state.auth.codec.keys.current.kid in _header(new_token)
    retired = make_settings(auth_db_url, tmp_path / "s", secret_key="new-secret")
    async with running_app(retired) as app, client_for(app) as client:
        assert (await client.get(ME, headers=bearer(token))).status_code == 401
        assert (await client.get(ME, headers=bearer(new_token))).status_code == 200


def _header(token: str) -> str:
    import base64

    head = token.split(".")[0]
    return base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()


async def _throttled_app(db_url: str, tmp_path: Path, **limits: int) -> running_app:
    return running_app(make_settings(db_url, tmp_path / "t", **limits))


async def test_account_throttling_delays_retries(auth_db_url: str, tmp_path: Path) -> None:
    runner = await _throttled_app(auth_db_url, tmp_path, login_delay_after=2)
    async with runner as app, client_for(app) as client:
        from tests.auth_fixtures import build_world

        await build_world(app)
        for email in ("admin@acme.test", "ghost@acme.test"):  # same for unknown emails
            for _ in range(2):
                wrong = await client.post(LOGIN, json={"email": email, "password": "nope-nope"})
                assert wrong.status_code == 401
            blocked = await client.post(LOGIN, json={"email": email, "password": PASSWORD})
            assert blocked.status_code == 429, email
            assert blocked.json()["error"] == "too_many_attempts"
            assert int(blocked.headers["retry-after"]) >= 1
        other = await client.post(LOGIN, json={"email": "viewer@acme.test", "password": PASSWORD})
    assert other.status_code == 200


async def test_success_resets_the_account_counter(auth_db_url: str, tmp_path: Path) -> None:
    runner = await _throttled_app(auth_db_url, tmp_path, login_delay_after=2)
    async with runner as app, client_for(app) as client:
        from tests.auth_fixtures import build_world

        await build_world(app)
        creds = {"email": "admin@acme.test", "password": PASSWORD}
        wrong = {"email": "admin@acme.test", "password": "nope-nope"}
        assert (await client.post(LOGIN, json=wrong)).status_code == 401
        assert (await client.post(LOGIN, json=creds)).status_code == 200
        assert (await client.post(LOGIN, json=wrong)).status_code == 401
        assert (await client.post(LOGIN, json=creds)).status_code == 200


async def test_account_lockout_and_expiry(auth_db_url: str, tmp_path: Path) -> None:
    runner = await _throttled_app(
        auth_db_url, tmp_path, login_delay_after=100, login_account_lockout_after=3,
        login_lockout_seconds=600,
    )
    async with runner as app, client_for(app) as client:
        from tests.auth_fixtures import build_world

        await build_world(app)
        for _ in range(3):
            wrong = await client.post(
                LOGIN, json={"email": "admin@acme.test", "password": "nope-nope"}
            )
            assert wrong.status_code == 401
        locked = await client.post(LOGIN, json={"email": "admin@acme.test", "password": PASSWORD})
        assert locked.status_code == 429
        assert 590 <= int(locked.headers["retry-after"]) <= 600
        # once the lock has run out, the right password works again
        pair = await logins.login(
            app.state.sessions, app.state.auth, email="admin@acme.test", password=PASSWORD,
            now=utcnow() + timedelta(seconds=601),
        )
    assert pair.role == Role.ADMIN


async def test_address_lockout(auth_db_url: str, tmp_path: Path) -> None:
    runner = await _throttled_app(auth_db_url, tmp_path, login_address_lockout_after=3)
    app: Starlette
    async with runner as app:
        from tests.auth_fixtures import build_world

        await build_world(app)
        async with client_for(app, "10.0.0.66") as attacker:
            for n in range(3):  # one failure each for different accounts
                wrong = await attacker.post(
                    LOGIN, json={"email": f"user{n}@acme.test", "password": "nope-nope"}
                )
                assert wrong.status_code == 401
            blocked = await attacker.post(
                LOGIN, json={"email": "admin@acme.test", "password": PASSWORD}
            )
            assert blocked.status_code == 429
        async with client_for(app, "10.0.0.7") as bystander:
            ok = await bystander.post(
                LOGIN, json={"email": "admin@acme.test", "password": PASSWORD}
            )
    assert ok.status_code == 200
