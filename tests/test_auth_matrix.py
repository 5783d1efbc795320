"""Role and scope matrix for every endpoint, and cross-tenant access attempts.

`MATRIX` lists every `/api` route of the app with the status each kind of caller gets.
`test_matrix_covers_every_endpoint` fails when a route is added without a row here: add
one (with `prepare` if the route needs a target) when you add an endpoint.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.routing import Route, WebSocketRoute

from app.accounts import logins, tenancy
from app.db.models import Role, Scope
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import PASSWORD, World, client_for, make_settings
from web.app import create_app

WHO = ["anonymous", "viewer", "member", "admin", "key_ingest", "key_read", "key_admin"]


@dataclass(frozen=True)
class Target:
    path: str
    body: Any = None
    headers: dict[str, str] | None = None  # replaces the caller's credentials
    content: bytes | None = None  # raw body instead of JSON
    content_type: str | None = None


OK = -1  # passes authentication and authorisation: anything but 401/403
DENY = -2  # 401 or 403 (endpoints with their own key check answer users with 401)


def matches(expected: int, status: int) -> bool:
    if expected == OK:
        return status not in (401, 403)
    if expected == DENY:
        return status in (401, 403)
    return status == expected


Prepare = Callable[[World, str], Awaitable[Target]]


def fixed(path: str, body: Any = None) -> Prepare:
    async def prepare(world: World, who: str) -> Target:
        return Target(path, body)

    return prepare


async def own_key(world: World, who: str) -> Target:
    """A key the caller made (admin's for anonymous callers and API keys)."""
    maker = who if who in ("viewer", "member", "admin") else "admin"
    name = f"target-{who}-{uuid.uuid4().hex[:6]}"
    await world.add_key("acme", name, Scope.READ, by=maker)
    return Target(f"/api/v1/apikeys/{world.key_ids[name]}")


async def spare_user(world: World, who: str) -> Target:
    user_id = await world.add_user("acme", f"spare-{who}-{uuid.uuid4().hex[:6]}", Role.VIEWER)
    return Target(f"/api/v1/users/{user_id}", {"role": "member"})


async def new_user(world: World, who: str) -> Target:
    email = f"new-{uuid.uuid4().hex[:8]}@acme.test"
    return Target("/api/v1/users", {"email": email, "role": "viewer"})


async def own_invitation(world: World, who: str) -> Target:
    """A pending invitation of acme (to withdraw)."""
    async with world.sessions.begin() as session:
        made = await tenancy.invite(
            session, world.tenant_ids["acme"], f"inv-{uuid.uuid4().hex[:8]}@x.test", "viewer",
            invited_by_user_id=None, ttl=timedelta(days=1))
    return Target(f"/api/v1/users/invitations/{made.invitation.id}")


def invitation_to_caller(answer: str) -> Prepare:
    """An invitation into a new tenant addressed to the calling user (to anyone for other
    callers)."""

    async def prepare(world: World, who: str) -> Target:
        email = world.emails.get(who) or f"nobody-{uuid.uuid4().hex[:8]}@x.test"
        async with world.sessions.begin() as session:
            tenant = await tenancy.create_tenant(session, f"t-{uuid.uuid4().hex[:8]}")
            made = await tenancy.invite(
                session, tenant.id, email, "viewer", invited_by_user_id=None,
                ttl=timedelta(days=1))
        return Target(f"/api/v1/invitations/{made.invitation.id}/{answer}")

    return prepare


async def fresh_session(world: World, who: str) -> Target:
    """Logout ends a session: give each user caller a session of its own to end."""
    if who in ("viewer", "member", "admin"):
        pair = await logins.login(
            world.sessions, world.app.state.auth, email=world.emails[who], password=PASSWORD
        )
        return Target(
            "/api/v1/auth/logout", headers={"Authorization": f"Bearer {pair.access_token}"}
        )
    return Target("/api/v1/auth/logout")


async def websocket_status(app: Any, path: str, headers: dict[str, str]) -> int:
    """Open a WebSocket at the ASGI level and report how the app answered the handshake.

    101: accepted; 403: closed with 1008 (policy violation: `require` refused); any other
    close code or HTTP status as is. The client disconnects right after the first answer.
    """
    route, _, query = path.partition("?")
    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": route,
        "raw_path": route.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000), "server": ("laas.test", 80), "subprotocols": [],
    }
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    try:
        first = await asyncio.wait_for(outbox.get(), 10)
    finally:
        await inbox.put({"type": "websocket.disconnect", "code": 1000})
        try:
            await asyncio.wait_for(task, 10)
        except Exception:  # noqa: BLE001 - the endpoint's own fate after we left is not tested
            task.cancel()
    if first["type"] == "websocket.accept":
        return 101
    if first["type"] == "websocket.close":
        return 403 if first.get("code") == 1008 else int(first.get("code", 1000))
    return int(first.get("status", 0))


def raw(path: str, content: bytes, content_type: str) -> Prepare:
    """A body the endpoint refuses only after authenticating (so no Kafka is needed)."""

    async def prepare(world: World, who: str) -> Target:
        return Target(path, content=content, content_type=content_type)

    return prepare


RULE_BODY = {"name": "errors", "query": "level:error", "threshold": 5}
# a public address (example.com's), as webhook URLs must be; the matrix never delivers
HOOK_BODY = {"name": "ops", "url": "https://93.184.215.14/hook"}


async def own_rule(world: World, who: str) -> Target:
    """A rule of acme (a fresh one per caller, so DELETE has something to delete)."""
    from app.db.models import AlertRule

    async with world.sessions.begin() as session:
        rule = AlertRule(tenant_id=world.tenant_ids["acme"], name="r", query="level:error",
                         window_seconds=60, condition="above", threshold=1,
                         cooldown_seconds=60, enabled=True)
        session.add(rule)
        await session.flush()
        return Target(f"/api/v1/alert-rules/{rule.id}", {"threshold": 3})


async def own_hook(world: World, who: str) -> Target:
    from app.db.models import Webhook

    async with world.sessions.begin() as session:
        hook = Webhook(tenant_id=world.tenant_ids["acme"], name="h", url="http://127.0.0.1:9/",
                       secret="s", enabled=True)
        session.add(hook)
        await session.flush()
        return Target(f"/api/v1/webhooks/{hook.id}", {"enabled": False})


async def hook_deliveries(world: World, who: str) -> Target:
    target = await own_hook(world, who)
    return Target(target.path + "/deliveries")


@dataclass(frozen=True)
class Row:
    method: str
    route: str
    prepare: Prepare
    expect: dict[str, int]  # caller -> status

    @staticmethod
    def of(method: str, route: str, prepare: Prepare, *codes: int) -> Row:
        assert len(codes) == len(WHO)
        return Row(method, route, prepare, dict(zip(WHO, codes, strict=True)))


# fmt: off
#                                                      anon view memb admin ingest read adminkey
MATRIX = [
    Row.of("GET", "/api/v1/me", fixed("/api/v1/me"),  401, 200, 200, 200, 200, 200, 200),
    Row.of("POST", "/api/v1/auth/logout", fresh_session,
                                                       401, 204, 204, 204, 422, 422, 422),
    Row.of("GET", "/api/v1/tenant", fixed("/api/v1/tenant"),
                                                       401, 200, 200, 200, 403, 200, 200),
    Row.of("PATCH", "/api/v1/tenant", fixed("/api/v1/tenant", {"retention_days": 9}),
                                                       401, 403, 403, 200, 403, 403, 200),
    Row.of("GET", "/api/v1/apikeys", fixed("/api/v1/apikeys"),
                                                       401, 403, 200, 200, 403, 403, 200),
    Row.of("POST", "/api/v1/apikeys", fixed("/api/v1/apikeys", {"name": "n", "scope": "read"}),
                                                       401, 403, 201, 201, 403, 403, 201),
    Row.of("POST", "/api/v1/apikeys", fixed("/api/v1/apikeys", {"name": "n", "scope": "admin"}),
                                                       401, 403, 403, 201, 403, 403, 201),
    Row.of("DELETE", "/api/v1/apikeys/{key_id:int}", own_key,
                                                       401, 403, 200, 200, 403, 403, 200),
    Row.of("GET", "/api/v1/users", fixed("/api/v1/users"),
                                                       401, 403, 403, 200, 403, 403, 200),
    Row.of("POST", "/api/v1/users", new_user,
                                                       401, 403, 403, 201, 403, 403, 201),
    Row.of("PATCH", "/api/v1/users/{user_id:int}", spare_user,
                                                       401, 403, 403, 200, 403, 403, 200),
    Row.of("DELETE", "/api/v1/users/{user_id:int}", spare_user,
                                                       401, 403, 403, 204, 403, 403, 204),
    Row.of("GET", "/api/v1/users/invitations", fixed("/api/v1/users/invitations"),
                                                       401, 403, 403, 200, 403, 403, 200),
    Row.of("DELETE", "/api/v1/users/invitations/{invitation_id:int}", own_invitation,
                                                       401, 403, 403, 204, 403, 403, 204),
    # invitations (web.invitations): for people, not keys; redeeming is public (a code)
    Row.of("GET", "/api/v1/invitations", fixed("/api/v1/invitations"),
                                                       401, 200, 200, 200, 403, 403, 403),
    Row.of("POST", "/api/v1/invitations/{invitation_id:int}/accept",
           invitation_to_caller("accept"),             401, 200, 200, 200, 403, 403, 403),
    Row.of("POST", "/api/v1/invitations/{invitation_id:int}/decline",
           invitation_to_caller("decline"),            401, 200, 200, 200, 403, 403, 403),
    Row.of("POST", "/api/v1/invitations/redeem",
           fixed("/api/v1/invitations/redeem", {"code": "inv_nope", "password": "x"}),
                                                       401, 401, 401, 401, 401, 401, 401),
    # ingest (web.ingest): authenticates before checking content type / decoding the body
    Row.of("POST", "/api/v1/logs", raw("/api/v1/logs", b"<x/>", "application/xml"),
                                                       401, DENY, DENY, DENY, OK, 403, OK),
    Row.of("POST", "/v1/logs", raw("/v1/logs", b"{not json", "application/json"),
                                                       401, DENY, DENY, DENY, OK, 403, OK),
    # live tail (web.tail); a bad `since` makes the endpoint close without touching Kafka
    Row.of("WEBSOCKET", "/api/v1/tail", fixed("/api/v1/tail?since=not-a-time"),
                                                       403, 101, 101, 101, 403, 101, 101),
    # search (web.search): read permission; an empty tenant answers 200 with no hits
    *[Row.of(method, path, fixed(path, {} if method == "POST" else None),
                                                       401, 200, 200, 200, 403, 200, 200)
      for path in ("/api/v1/search", "/api/v1/histogram", "/api/v1/fields")
      for method in ("GET", "POST")],
    Row.of("GET", "/api/v1/sources", fixed("/api/v1/sources"),
                                                       401, 200, 200, 200, 403, 200, 200),
    Row.of("GET", "/api/v1/patterns", fixed("/api/v1/patterns"),
                                                       401, 200, 200, 200, 403, 200, 200),
    # alerts (web.alerts, web.alert_rules); unknown alert ids answer 404 once authorised
    Row.of("GET", "/api/v1/alerts", fixed("/api/v1/alerts"),
                                                       401, 200, 200, 200, 403, 200, 200),
    Row.of("POST", "/api/v1/alerts/{alert_id}/ack", fixed("/api/v1/alerts/nope/ack"),
                                                       401, 403, 404, 404, 403, 403, 404),
    Row.of("POST", "/api/v1/alerts/{alert_id}/resolve", fixed("/api/v1/alerts/nope/resolve"),
                                                       401, 403, 404, 404, 403, 403, 404),
    Row.of("WEBSOCKET", "/api/v1/alerts/stream", fixed("/api/v1/alerts/stream"),
                                                       403, 101, 101, 101, 403, 101, 101),
    Row.of("GET", "/api/v1/alert-rules", fixed("/api/v1/alert-rules"),
                                                       401, 200, 200, 200, 403, 200, 200),
    Row.of("POST", "/api/v1/alert-rules", fixed("/api/v1/alert-rules", RULE_BODY),
                                                       401, 403, 201, 201, 403, 403, 201),
    Row.of("GET", "/api/v1/alert-rules/{rule_id:int}", own_rule,
                                                       401, 200, 200, 200, 403, 200, 200),
    Row.of("PATCH", "/api/v1/alert-rules/{rule_id:int}", own_rule,
                                                       401, 403, 200, 200, 403, 403, 200),
    Row.of("DELETE", "/api/v1/alert-rules/{rule_id:int}", own_rule,
                                                       401, 403, 204, 204, 403, 403, 204),
    Row.of("GET", "/api/v1/webhooks", fixed("/api/v1/webhooks"),
                                                       401, 403, 403, 200, 403, 403, 200),
    Row.of("POST", "/api/v1/webhooks", fixed("/api/v1/webhooks", HOOK_BODY),
                                                       401, 403, 403, 201, 403, 403, 201),
    Row.of("PATCH", "/api/v1/webhooks/{hook_id:int}", own_hook,
                                                       401, 403, 403, 200, 403, 403, 200),
    Row.of("DELETE", "/api/v1/webhooks/{hook_id:int}", own_hook,
                                                       401, 403, 403, 204, 403, 403, 204),
    Row.of("GET", "/api/v1/webhooks/{hook_id:int}/deliveries", hook_deliveries,
                                                       401, 403, 403, 200, 403, 403, 200),
    Row.of("GET", "/api/v1/logs/{id:path}/context", fixed("/api/v1/logs/logs.raw/0/1/context"),
                                                       401, 404, 404, 404, 403, 404, 404),
]
# fmt: on
PUBLIC = {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh")}


def test_matrix_covers_every_endpoint(tmp_path: Path) -> None:
    app = create_app(make_settings("sqlite+aiosqlite://", tmp_path))
    routes: set[tuple[str, str]] = set()
    for route in app.routes:
        if not (isinstance(route, Route | WebSocketRoute)
                and route.path.startswith(("/api/", "/v1/"))):
            continue
        if isinstance(route, Route):
            routes |= {(m, route.path) for m in (route.methods or set()) if m != "HEAD"}
        elif isinstance(route, WebSocketRoute):
            routes.add(("WEBSOCKET", route.path))
    covered = {(row.method, row.route) for row in MATRIX} | PUBLIC
    assert routes - covered == set(), "add these endpoints to MATRIX"
    assert covered - routes == set(), "MATRIX names endpoints that do not exist"


async def test_role_and_scope_matrix(world: World) -> None:
    mismatches = []
    async with client_for(world.app) as client:
        for row in MATRIX:
            for who, expected in row.expect.items():
                target = await row.prepare(world, who)
                headers = target.headers if target.headers is not None else world.headers(who)
                if row.method == "WEBSOCKET":
                    status = await websocket_status(world.app, target.path, headers)
                    if not matches(expected, status):
                        mismatches.append(f"WS {target.path} as {who}: {status} (want {expected})")
                    continue
                if target.content is not None:
                    headers = {**headers, "Content-Type": target.content_type or ""}
                    response = await client.request(
                        row.method, target.path, content=target.content, headers=headers
                    )
                else:
                    response = await client.request(
                        row.method, target.path, json=target.body, headers=headers
                    )
                if not matches(expected, response.status_code):
                    mismatches.append(
                        f"{row.method} {target.path} as {who}: {response.status_code} "
                        f"(expected {expected}) {response.text[:120]}"
                    )
                if response.status_code in (401, 403) and not row.route.startswith("/v1/"):
                    body = response.json()
                    assert {"error"} <= set(body) or {"detail"} <= set(body), body
    assert mismatches == []


async def test_cross_tenant_access_is_refused(world: World) -> None:
    acme_key = world.key_ids["key_read"]
    acme_user = world.user_ids["member"]
    beta = world.headers("b_admin")
    beta_key = world.headers("b_key_admin")
    async with client_for(world.app) as client:
        for headers in (beta, beta_key):
            keys = (await client.get("/api/v1/apikeys", headers=headers)).json()["keys"]
            assert {k["id"] for k in keys} == {
                world.key_ids["b_key_admin"],
                world.key_ids["b_key_ingest"],
            }
            users = (await client.get("/api/v1/users", headers=headers)).json()["users"]
            assert {u["email"] for u in users} == {"b-admin@beta.test", "b-member@beta.test"}
            tenant = (await client.get("/api/v1/tenant", headers=headers)).json()
            assert tenant["slug"] == "beta"

            revoke = await client.delete(f"/api/v1/apikeys/{acme_key}", headers=headers)
            patch = await client.patch(
                f"/api/v1/users/{acme_user}", json={"role": "admin"}, headers=headers
            )
            remove = await client.delete(f"/api/v1/users/{acme_user}", headers=headers)
            for response in (revoke, patch, remove):
                assert response.status_code == 404, response.text
                assert "acme" not in response.text and "member@" not in response.text

        # the acme objects are untouched
        mine = (await client.get("/api/v1/apikeys", headers=world.headers("admin"))).json()
        assert all(k["active"] for k in mine["keys"])
        me = (await client.get("/api/v1/me", headers=world.headers("member"))).json()
        assert me["role"] == "member"

        # a beta admin cannot log into acme, nor pass acme's slug anywhere
        cross = await client.post(
            "/api/v1/auth/login",
            json={
                "email": "b-admin@beta.test",
                "password": "correct horse battery",
                "tenant": "acme",
            },
        )
        assert cross.status_code == 403
        smuggled = await client.post(
            "/api/v1/apikeys",
            json={"name": "x", "scope": "read", "tenant": "acme"},
            headers=beta,
        )
        assert smuggled.status_code == 201
        assert smuggled.json()["id"] not in {k["id"] for k in mine["keys"]}
        listed = (await client.get("/api/v1/apikeys", headers=world.headers("admin"))).json()
        assert smuggled.json()["id"] not in {k["id"] for k in listed["keys"]}


async def test_member_sees_and_revokes_only_own_keys(world: World) -> None:
    async with client_for(world.app) as client:
        made = await client.post(
            "/api/v1/apikeys",
            json={"name": "mine", "scope": "ingest"},
            headers=world.headers("member"),
        )
        assert made.status_code == 201
        listed = (await client.get("/api/v1/apikeys", headers=world.headers("member"))).json()
        assert [k["id"] for k in listed["keys"]] == [made.json()["id"]]
        admins_key = world.key_ids["key_read"]
        refused = await client.delete(
            f"/api/v1/apikeys/{admins_key}", headers=world.headers("member")
        )
        assert refused.status_code == 404
        everything = (await client.get("/api/v1/apikeys", headers=world.headers("admin"))).json()
    assert made.json()["id"] in {k["id"] for k in everything["keys"]}
    assert len(everything["keys"]) == 4
