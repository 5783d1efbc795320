"""`/api/v1/users` (admins): list members, invite, change role, (de)activate or remove a
membership. Nothing here reads or changes an account outside the caller's tenant."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.accounts import tenancy
from app.accounts.authz import Permission
from app.accounts.errors import InvalidInput
from app.settings import Settings
from web.auth import db_sessions, json_body, path_id, require, text_field


async def list_users(request: Request) -> Response:
    """GET → the members of the caller's tenant."""
    principal = require(request, Permission.MANAGE_USERS)
    async with db_sessions(request)() as session:
        members = await tenancy.list_members(session, principal.tenant_id)
    return JSONResponse({"users": [member.to_dict() for member in members]})


async def invite_user(request: Request) -> Response:
    """POST {email, role} → 201 {invitation, code}: the same answer whether or not the email
    has an account anywhere; the person joins by accepting (logged in) or with the code."""
    principal = require(request, Permission.MANAGE_USERS)
    body = await json_body(request)
    if body.get("password") is not None:
        raise InvalidInput("admins do not set passwords: the invited person chooses one when "
                           "joining with the invitation code", field="password")
    settings: Settings = request.app.state.settings
    async with db_sessions(request).begin() as session:
        made = await tenancy.invite(
            session,
            principal.tenant_id,
            text_field(body, "email") or "",
            text_field(body, "role") or "",
            invited_by_user_id=principal.user_id,
            ttl=timedelta(seconds=settings.invitation_ttl),
        )
    payload = {"invitation": tenancy.invitation_dict(made.invitation), "code": made.code}
    return JSONResponse(payload, status_code=201, headers={"Cache-Control": "no-store"})


async def list_invitations(request: Request) -> Response:
    """GET → the tenant's pending invitations."""
    principal = require(request, Permission.MANAGE_USERS)
    async with db_sessions(request)() as session:
        pending = await tenancy.tenant_invitations(session, principal.tenant_id)
    return JSONResponse({"invitations": [tenancy.invitation_dict(i) for i in pending]})


async def revoke_invitation(request: Request) -> Response:
    """DELETE /invitations/{id} → 204; the code stops working."""
    principal = require(request, Permission.MANAGE_USERS)
    invitation_id = path_id(request, "invitation_id", "invitation")
    async with db_sessions(request).begin() as session:
        await tenancy.revoke_invitation(session, principal.tenant_id, invitation_id)
    return Response(status_code=204)


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
        member = await tenancy.get_member(session, principal.tenant_id, user_id)
        if role is not None:
            member = await tenancy.change_role(session, principal.tenant_id, user_id, role)
        if active is not None:
            member = await tenancy.set_user_active(session, principal.tenant_id, user_id, active)
    return JSONResponse(member.to_dict())


async def remove_user(request: Request) -> Response:
    """DELETE /{id} → 204; the user leaves this tenant (their account stays)."""
    principal = require(request, Permission.MANAGE_USERS)
    user_id = path_id(request, "user_id", "user")
    async with db_sessions(request).begin() as session:
        await tenancy.remove_member(session, principal.tenant_id, user_id)
    return Response(status_code=204)


routes = [
    Route("/api/v1/users", list_users, methods=["GET"]),
    Route("/api/v1/users", invite_user, methods=["POST"]),
    Route("/api/v1/users/invitations", list_invitations, methods=["GET"]),
    Route("/api/v1/users/invitations/{invitation_id:int}", revoke_invitation,
          methods=["DELETE"]),
    Route("/api/v1/users/{user_id:int}", update_user, methods=["PATCH"]),
    Route("/api/v1/users/{user_id:int}", remove_user, methods=["DELETE"]),
]
