"""User management by tenant admins, tenant settings, and the demo tenant of `laas up`."""

from __future__ import annotations

from pathlib import Path

from app.accounts import tenancy
from app.accounts.tenancy import DEMO_EMAIL, DEMO_TENANT, ensure_demo_async
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import (
    PASSWORD,
    World,
    bearer,
    client_for,
    make_settings,
    running_app,
)

USERS = "/api/v1/users"


async def test_admin_invites_and_the_list_shows_members(world: World) -> None:
    admin = world.headers("admin")
    async with client_for(world.app) as client:
        new = await client.post(
            USERS, json={"email": "Carol@Acme.test", "role": "member"}, headers=admin
        )
        assert new.status_code == 201, new.text
        body = new.json()
        assert body["invitation"]["email"] == "carol@acme.test"
        assert body["invitation"]["role"] == "member" and body["code"].startswith("inv_")
        joined = await client.post("/api/v1/invitations/redeem",
                                   json={"code": body["code"], "password": PASSWORD})
        assert joined.status_code == 200
        bad = await client.post(USERS, json={"email": "nope", "role": "viewer"}, headers=admin)
        assert bad.status_code == 422 and bad.json()["field"] == "email"
        role = await client.post(USERS, json={"email": "x@y.z", "role": "owner"}, headers=admin)
        assert role.status_code == 422 and role.json()["field"] == "role"
        listed = (await client.get(USERS, headers=admin)).json()["users"]
    assert {u["email"] for u in listed} == {
        "admin@acme.test",
        "member@acme.test",
        "viewer@acme.test",
        "carol@acme.test",
    }


async def test_role_change_deactivate_and_remove(world: World) -> None:
    admin = world.headers("admin")
    member_id, viewer_id = world.user_ids["member"], world.user_ids["viewer"]
    async with client_for(world.app) as client:
        promoted = await client.patch(f"{USERS}/{member_id}", json={"role": "admin"}, headers=admin)
        assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
        # the promotion applies to the member's current token at once
        users = await client.get(USERS, headers=world.headers("member"))
        assert users.status_code == 200

        off = await client.patch(f"{USERS}/{viewer_id}", json={"active": False}, headers=admin)
        assert off.status_code == 200 and off.json()["active"] is False
        assert (await client.get("/api/v1/me", headers=world.headers("viewer"))).status_code == 401
        on = await client.patch(f"{USERS}/{viewer_id}", json={"active": True}, headers=admin)
        assert on.json()["active"] is True

        nothing = await client.patch(f"{USERS}/{viewer_id}", json={}, headers=admin)
        assert nothing.status_code == 422
        removed = await client.delete(f"{USERS}/{viewer_id}", headers=admin)
        assert removed.status_code == 204
        gone = await client.patch(f"{USERS}/{viewer_id}", json={"role": "member"}, headers=admin)
        assert gone.status_code == 404


async def test_last_admin_cannot_be_demoted_removed_or_deactivated(world: World) -> None:
    admin = world.headers("admin")
    me = world.user_ids["admin"]
    async with client_for(world.app) as client:
        for method, body in (
            ("PATCH", {"role": "viewer"}),
            ("PATCH", {"active": False}),
            ("DELETE", None),
        ):
            response = await client.request(method, f"{USERS}/{me}", json=body, headers=admin)
            assert response.status_code == 409, (method, body)
            assert "last active admin" in response.json()["detail"]
        assert (await client.get("/api/v1/me", headers=admin)).json()["role"] == "admin"


async def _user_id(world: World, email: str) -> int:
    async with world.sessions() as session:
        user = await tenancy.find_user(session, email)
    assert user is not None
    return user.id


async def test_tenant_settings(world: World) -> None:
    async with client_for(world.app) as client:
        seen = await client.get("/api/v1/tenant", headers=world.headers("viewer"))
        assert seen.json()["slug"] == "acme" and seen.json()["retention_days"] == 7
        changed = await client.patch(
            "/api/v1/tenant",
            json={"name": "Acme Inc", "retention_days": 30, "ingest_rate_limit": 250},
            headers=world.headers("admin"),
        )
        assert changed.status_code == 200
        assert changed.json()["retention_days"] == 30
        assert changed.json()["ingest_rate_limit"] == 250.0
        for body in ({"retention_days": 0}, {"ingest_rate_limit": -1}, {"slug": "evil"}):
            bad = await client.patch("/api/v1/tenant", json=body, headers=world.headers("admin"))
            assert bad.status_code == 422, body
        beta = await client.get("/api/v1/tenant", headers=world.headers("b_admin"))
    assert beta.json()["retention_days"] == 7 and beta.json()["name"] == "beta"


async def test_ensure_demo_creates_a_working_login_once(auth_db_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(auth_db_url, tmp_path)) as app:
        credentials = await ensure_demo_async(app.state.sessions)
        assert credentials is not None
        assert (credentials.tenant, credentials.email) == (DEMO_TENANT, DEMO_EMAIL)
        assert await ensure_demo_async(app.state.sessions) is None
        async with client_for(app) as client:
            login = await client.post(
                "/api/v1/auth/login",
                json={"email": credentials.email, "password": credentials.password},
            )
            assert login.status_code == 200
            token = login.json()["access_token"]
            for scope in ("ingest", "read"):
                key = await client.post(
                    "/api/v1/apikeys", json={"name": scope, "scope": scope}, headers=bearer(token)
                )
                assert key.status_code == 201
                me = await client.get("/api/v1/me", headers=bearer(key.json()["key"]))
                assert me.json()["scope"] == scope
