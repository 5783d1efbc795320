"""Issue 21, finding 3: accounts join tenants by accepted invitation; deactivation is per
membership; no tenant admin learns about or changes an account outside their tenant."""

from __future__ import annotations

from typing import Any

from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import PASSWORD, World, bearer, client_for

USERS = "/api/v1/users"
LOGIN = "/api/v1/auth/login"


def _shape(answer: dict[str, Any]) -> dict[str, Any]:
    """An invitation answer without what differs between any two invitations."""
    invitation = {k: v for k, v in answer["invitation"].items()
                  if k not in ("id", "email", "created_at", "expires_at")}
    return {"keys": sorted(answer), "invitation": invitation,
            "invitation_keys": sorted(answer["invitation"])}


async def test_inviting_says_nothing_about_accounts_elsewhere(world: World) -> None:
    beta = world.headers("b_admin")
    async with client_for(world.app) as client:
        existing = await client.post(USERS, json={"email": "member@acme.test", "role": "admin"},
                                     headers=beta)
        unknown = await client.post(USERS, json={"email": "nobody@acme.test", "role": "admin"},
                                    headers=beta)
        assert existing.status_code == unknown.status_code == 201, existing.text
        assert _shape(existing.json()) == _shape(unknown.json())
        assert "last_login" not in existing.text and "created_user" not in existing.text
        assert existing.json()["code"] != unknown.json()["code"]
        # no membership without consent: beta does not see the person, who cannot use beta
        members = (await client.get(USERS, headers=beta)).json()["users"]
        assert "member@acme.test" not in {m["email"] for m in members}
        cross = await client.post(LOGIN, json={"email": "member@acme.test", "password": PASSWORD,
                                               "tenant": "beta"})
        assert cross.status_code == 403
        # admins do not choose passwords for anyone
        with_password = await client.post(
            USERS, json={"email": "x@acme.test", "role": "viewer", "password": PASSWORD},
            headers=beta)
        assert with_password.status_code == 422 and with_password.json()["field"] == "password"
        # only the tenant's own members are a conflict
        again = await client.post(USERS, json={"email": "b-member@beta.test", "role": "viewer"},
                                  headers=beta)
        assert again.status_code == 409
        pending = (await client.get(f"{USERS}/invitations", headers=beta)).json()["invitations"]
    assert {i["email"] for i in pending} == {"member@acme.test", "nobody@acme.test"}


async def test_invited_user_accepts_when_logged_in(world: World) -> None:
    async with client_for(world.app) as client:
        invited = await client.post(USERS, json={"email": "member@acme.test", "role": "viewer"},
                                    headers=world.headers("b_admin"))
        invitation_id = invited.json()["invitation"]["id"]
        member = world.headers("member")
        mine = (await client.get("/api/v1/invitations", headers=member)).json()["invitations"]
        assert [(i["id"], i["tenant"]["slug"], i["role"]) for i in mine] == [
            (invitation_id, "beta", "viewer")]
        # nobody else can see or answer it
        other = await client.get("/api/v1/invitations", headers=world.headers("viewer"))
        assert other.json()["invitations"] == []
        stolen = await client.post(f"/api/v1/invitations/{invitation_id}/accept",
                                   headers=world.headers("viewer"))
        assert stolen.status_code == 404
        accepted = await client.post(f"/api/v1/invitations/{invitation_id}/accept",
                                     headers=member)
        assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
        twice = await client.post(f"/api/v1/invitations/{invitation_id}/accept", headers=member)
        assert twice.status_code == 404
        login = await client.post(LOGIN, json={"email": "member@acme.test", "password": PASSWORD,
                                               "tenant": "beta"})
        assert login.status_code == 200 and login.json()["role"] == "viewer"
        declined = await client.post(USERS, json={"email": "viewer@acme.test", "role": "admin"},
                                     headers=world.headers("b_admin"))
        no = await client.post(
            f"/api/v1/invitations/{declined.json()['invitation']['id']}/decline",
            headers=world.headers("viewer"))
        assert no.status_code == 200 and no.json()["status"] == "declined"
        still_out = await client.post(LOGIN, json={"email": "viewer@acme.test",
                                                   "password": PASSWORD, "tenant": "beta"})
    assert still_out.status_code == 403


async def test_new_person_joins_with_the_code(world: World) -> None:
    async with client_for(world.app) as client:
        invited = await client.post(USERS, json={"email": "Carol@Beta.test", "role": "member"},
                                    headers=world.headers("b_admin"))
        code = invited.json()["code"]
        weak = await client.post("/api/v1/invitations/redeem",
                                 json={"code": code, "password": "password"})
        assert weak.status_code == 422 and weak.json()["field"] == "password"
        joined = await client.post("/api/v1/invitations/redeem",
                                   json={"code": code, "password": "carol's own passphrase"})
        assert joined.status_code == 200, joined.text
        assert joined.json()["tenant"] == "beta" and joined.json()["role"] == "member"
        me = await client.get("/api/v1/me", headers=bearer(joined.json()["access_token"]))
        assert me.json()["user"]["email"] == "carol@beta.test"
        spent = await client.post("/api/v1/invitations/redeem",
                                  json={"code": code, "password": "carol's own passphrase"})
        assert spent.status_code == 401


async def test_a_code_does_not_open_an_existing_account(world: World) -> None:
    async with client_for(world.app) as client:
        invited = await client.post(USERS, json={"email": "admin@acme.test", "role": "admin"},
                                    headers=world.headers("b_admin"))
        code = invited.json()["code"]
        guess = await client.post("/api/v1/invitations/redeem",
                                  json={"code": code, "password": "beta admin's guess"})
        assert guess.status_code == 401
        assert guess.json()["detail"] == "email or password is wrong"
        owner = await client.post("/api/v1/invitations/redeem",
                                  json={"code": code, "password": PASSWORD})
        assert owner.status_code == 200 and owner.json()["tenant"] == "beta"
        # the owner's password is unchanged and acme still works
        acme = await client.post(LOGIN, json={"email": "admin@acme.test", "password": PASSWORD,
                                              "tenant": "acme"})
    assert acme.status_code == 200


async def test_withdrawn_invitation_code_stops_working(world: World) -> None:
    beta = world.headers("b_admin")
    async with client_for(world.app) as client:
        invited = await client.post(USERS, json={"email": "dan@beta.test", "role": "viewer"},
                                    headers=beta)
        gone = await client.delete(
            f"{USERS}/invitations/{invited.json()['invitation']['id']}", headers=beta)
        assert gone.status_code == 204
        late = await client.post("/api/v1/invitations/redeem",
                                 json={"code": invited.json()["code"],
                                       "password": "dan's long passphrase"})
    assert late.status_code == 401


async def _join_beta(world: World, client: Any, name: str) -> int:
    invited = await client.post(USERS, json={"email": world.emails[name], "role": "viewer"},
                                headers=world.headers("b_admin"))
    invitation_id = invited.json()["invitation"]["id"]
    accepted = await client.post(f"/api/v1/invitations/{invitation_id}/accept",
                                 headers=world.headers(name))
    assert accepted.status_code == 200
    return world.user_ids[name]


async def test_deactivation_is_per_membership(world: World) -> None:
    acme, beta = world.headers("admin"), world.headers("b_admin")
    async with client_for(world.app) as client:
        member_id = await _join_beta(world, client, "member")
        off = await client.patch(f"{USERS}/{member_id}", json={"active": False}, headers=acme)
        assert off.status_code == 200 and off.json()["active"] is False
        assert (await client.get("/api/v1/me", headers=world.headers("member"))).status_code == 401
        # beta's admin sees beta's membership only, active, and cannot undo acme's decision
        seen = [u for u in (await client.get(USERS, headers=beta)).json()["users"]
                if u["id"] == member_id]
        assert seen[0]["active"] is True
        on = await client.patch(f"{USERS}/{member_id}", json={"active": True}, headers=beta)
        assert on.status_code == 200
        into_acme = await client.post(LOGIN, json={"email": "member@acme.test",
                                                   "password": PASSWORD, "tenant": "acme"})
        assert into_acme.status_code == 403
        into_beta = await client.post(LOGIN, json={"email": "member@acme.test",
                                                   "password": PASSWORD})
        assert into_beta.status_code == 200 and into_beta.json()["tenant"] == "beta"
        assert [t["slug"] for t in into_beta.json()["tenants"]] == ["beta"]
        # acme's admin turns it back on: acme works again
        back = await client.patch(f"{USERS}/{member_id}", json={"active": True}, headers=acme)
        assert back.status_code == 200
        again = await client.post(LOGIN, json={"email": "member@acme.test",
                                                "password": PASSWORD, "tenant": "acme"})
    assert again.status_code == 200


async def test_members_show_only_this_tenants_activity(world: World) -> None:
    async with client_for(world.app) as client:
        member_id = await _join_beta(world, client, "member")
        await client.post(LOGIN, json={"email": "member@acme.test", "password": PASSWORD,
                                       "tenant": "acme"})
        seen = [u for u in (await client.get(USERS, headers=world.headers("b_admin"))
                            ).json()["users"] if u["id"] == member_id]
    assert seen[0]["last_login_at"] is None  # logged into acme, never into beta
