"""`/api/v1/users` (admins): list, invite/create, change role, (de)activate, remove members."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import accounts
from app.account_errors import InvalidInput
from app.authz import Permission
from web.auth import db_sessions, json_body, path_id, require, text_field


async def list_users(request: Request) -> Response:
    """GET → the members of the caller's tenant."""
    principal = require(request, Permission.MANAGE_USERS)
    async with db_sessions(request)() as session:
        members = await accounts.list_members(session, principal.tenant_id)
    return JSONResponse({"users": [member.to_dict() for member in members]})


async def create_user(request: Request) -> Response:
    """POST {email, role, password?} → 201; a generated password is returned once."""
    principal = require(request, Permission.MANAGE_USERS)
    body = await json_body(request)
    async with db_sessions(request).begin() as session:
        added = await accounts.add_user_to_tenant(
            session,
            principal.tenant_id,
            text_field(body, "email") or "",
            text_field(body, "role") or "",
            text_field(body, "password", required=False),
        )
    payload: dict[str, object] = {**added.member.to_dict(), "created_user": added.created_user}
    if added.password is not None:
        payload["password"] = added.password
    return JSONResponse(payload, status_code=201, headers={"Cache-Control": "no-store"})


async def update_user(request: Request) -> Response:
    """PATCH /{id} {role?, active?} → the member after the change."""
    principal = require(request, Permission.MANAGE_USERS)
    user_id = path_id(request, "user_id", "user")
    body = await json_body(request)
    role = text_field(body, "role", required=False)
    active = body.get("active")
    if active is not None and not isinstance(active, bool):
        raise InvalidInput("field 'active' must be true or false", field="active")
    if role is None and active is None:
        raise InvalidInput("nothing to change: send 'role' and/or 'active'")
    async with db_sessions(request).begin() as session:
        member = await accounts.get_member(session, principal.tenant_id, user_id)
        if role is not None:
            member = await accounts.change_role(session, principal.tenant_id, user_id, role)
        if active is not None:
            member = await accounts.set_user_active(session, principal.tenant_id, user_id, active)
    return JSONResponse(member.to_dict())


async def remove_user(request: Request) -> Response:
    """DELETE /{id} → 204; the user leaves this tenant (their account stays)."""
    principal = require(request, Permission.MANAGE_USERS)
    user_id = path_id(request, "user_id", "user")
    async with db_sessions(request).begin() as session:
        await accounts.remove_member(session, principal.tenant_id, user_id)
    return Response(status_code=204)


routes = [
    Route("/api/v1/users", list_users, methods=["GET"]),
    Route("/api/v1/users", create_user, methods=["POST"]),
    Route("/api/v1/users/{user_id:int}", update_user, methods=["PATCH"]),
    Route("/api/v1/users/{user_id:int}", remove_user, methods=["DELETE"]),
]
