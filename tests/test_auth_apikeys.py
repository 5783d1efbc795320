"""API keys: stored only hashed, usable by header, revocable; WebSocket authentication."""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import pytest
from sqlalchemy import select, text
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.accounts import tenancy
from app.accounts.authz import Permission
from app.accounts.errors import InvalidCredentials
from app.db.models import ApiKey, Base
from app.settings import Settings
from tests.auth_fixtures import *  # noqa: F403
from tests.auth_fixtures import PASSWORD, World, bearer, build_world, client_for
from web.app import create_app
from web.auth import require

with warnings.catch_warnings():
    # Starlette 1.x would like `httpx2` for its TestClient; httpx still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


async def _all_stored_text(world: World) -> str:
    """Every value of every row of every table, as one string."""
    chunks: list[str] = []
    async with world.sessions() as session:
        for table in Base.metadata.sorted_tables:
            rows = await session.execute(text(f"SELECT * FROM {table.name}"))
            chunks.extend(repr(tuple(row)) for row in rows)
    return "\n".join(chunks)


async def test_plain_keys_and_passwords_are_not_stored(world: World) -> None:
    async with client_for(world.app) as client:
        made = await client.post(
            "/api/v1/apikeys", json={"name": "ci", "scope": "ingest"},
            headers=world.headers("admin"),
        )
    assert made.status_code == 201
    plain = made.json()["key"]
    secret = plain.rsplit("_", 1)[1]
    stored = await _all_stored_text(world)
    for value in (plain, secret, world.creds["key_read"], PASSWORD, world.refresh["admin"]):
        assert value not in stored
    async with world.sessions() as session:
        key = await session.scalar(select(ApiKey).where(ApiKey.id == made.json()["id"]))
    assert key is not None
    assert key.key_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert plain.startswith(f"laas_{key.prefix}_")
    assert made.json()["prefix"] == key.prefix
    async with client_for(world.app) as client:
        listed = (await client.get("/api/v1/apikeys", headers=world.headers("admin"))).json()
    assert plain not in str(listed) and key.key_hash not in str(listed)


async def test_key_works_in_either_header_and_records_last_use(world: World) -> None:
    plain = world.creds["key_read"]
    async with client_for(world.app) as client:
        by_bearer = await client.get("/api/v1/me", headers=bearer(plain))
        by_header = await client.get("/api/v1/me", headers={"X-API-Key": plain})
    for response in (by_bearer, by_header):
        assert response.status_code == 200
        assert response.json()["kind"] == "api_key" and response.json()["scope"] == "read"
        assert response.json()["tenant"]["slug"] == "acme"
    async with world.sessions() as session:
        key = await session.get(ApiKey, world.key_ids["key_read"])
    assert key is not None and key.last_used_at is not None


async def test_revoked_keys_are_rejected(world: World) -> None:
    plain = world.creds["key_ingest"]
    async with client_for(world.app) as client:
        assert (await client.get("/api/v1/me", headers=bearer(plain))).status_code == 200
        revoked = await client.delete(
            f"/api/v1/apikeys/{world.key_ids['key_ingest']}", headers=world.headers("admin")
        )
        assert revoked.status_code == 200 and revoked.json()["active"] is False
        refused = await client.get("/api/v1/me", headers={"X-API-Key": plain})
    assert refused.status_code == 401
    assert refused.json() == {"error": "not_authenticated", "detail": "API key revoked"}
    async with world.sessions() as session:
        with pytest.raises(InvalidCredentials, match="revoked"):
            await tenancy.verify_api_key(session, plain)


@pytest.mark.parametrize(
    "credential",
    ["laas_short_x", "laas_abcdefghij_" + "A" * 40, "laas_" + "x" * 60],
    ids=["malformed", "unknown", "no-prefix"],
)
async def test_unknown_and_malformed_keys_are_rejected(world: World, credential: str) -> None:
    async with client_for(world.app) as client:
        response = await client.get("/api/v1/me", headers={"X-API-Key": credential})
    assert response.status_code == 401


async def test_key_create_validates_input(world: World) -> None:
    async with client_for(world.app) as client:
        bad_scope = await client.post(
            "/api/v1/apikeys", json={"name": "x", "scope": "superuser"},
            headers=world.headers("admin"),
        )
        no_name = await client.post(
            "/api/v1/apikeys", json={"scope": "read"}, headers=world.headers("admin")
        )
        missing = await client.delete("/api/v1/apikeys/999999", headers=world.headers("admin"))
    assert bad_scope.status_code == 422 and "ingest, read, admin" in bad_scope.json()["detail"]
    assert no_name.status_code == 422 and no_name.json()["field"] == "name"
    assert missing.status_code == 404


async def _whoami(websocket: WebSocket) -> None:
    principal = require(websocket, Permission.READ)
    await websocket.accept()
    await websocket.send_json({"tenant": principal.tenant_slug, "kind": principal.kind})
    await websocket.close()


def _ws_app(settings: Settings) -> Any:
    app = create_app(settings)
    app.router.routes.append(WebSocketRoute("/test/whoami", _whoami))
    return app


async def test_websockets_authenticate_by_header_or_token_parameter(
    auth_settings: Settings,
) -> None:
    from tests.auth_fixtures import running_app

    async with running_app(auth_settings) as seeded:
        world = await build_world(seeded)
    # TestClient runs the app (and its lifespan) on its own event loop
    with TestClient(_ws_app(auth_settings)) as client:
        url = "/test/whoami"
        for query, headers in (
            (f"?token={world.creds['viewer']}", {}),
            (f"?token={world.creds['key_read']}", {}),
            ("", {"X-API-Key": world.creds["key_admin"]}),
            ("", bearer(world.creds["b_admin"])),
        ):
            with client.websocket_connect(url + query, headers=headers) as ws:
                greeting = ws.receive_json()
            assert greeting["tenant"] in ("acme", "beta")
        for query in ("", "?token=nonsense", f"?token={world.creds['key_ingest']}"):
            with pytest.raises(WebSocketDisconnect) as closed:
                with client.websocket_connect(url + query) as ws:
                    ws.receive_json()
            assert closed.value.code == 1008
        # HTTP never reads credentials from the URL (they would end up in access logs)
        response = client.get(f"/api/v1/me?token={world.creds['viewer']}")
        assert response.status_code == 401
