"""`/api/v1/invitations`: the invitations addressed to the caller, and joining with a code.

A logged-in user lists the pending invitations to their email and accepts or declines them.
Someone who cannot log in yet (no account, or no active tenant) joins with the one-time code
the inviting admin handed over: `POST /api/v1/invitations/redeem {code, password}` answers
like a login.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.accounts import logins, tenancy
from app.accounts.authz import Principal
from app.accounts.errors import PermissionDenied
from web.auth import auth_config, db_sessions, json_body, path_id, require, text_field


def _user(request: Request) -> Principal:
    principal = require(request)
    if principal.user_id is None:
        raise PermissionDenied("invitations are for people: log in as a user, not with a key")
    return principal


async def my_invitations(request: Request) -> Response:
    """GET → the caller's pending invitations (tenant, role, expiry)."""
    principal = _user(request)
    async with db_sessions(request)() as session:
        found = await tenancy.invitations_for(session, principal.email or "")
    return JSONResponse(
        {"invitations": [tenancy.invitation_dict(i, tenant) for i, tenant in found]}
    )


async def _answer(request: Request, accept: bool) -> Response:
    principal = _user(request)
    invitation_id = path_id(request, "invitation_id", "invitation")
    assert principal.user_id is not None
    async with db_sessions(request).begin() as session:
        invitation, tenant = await tenancy.answer_invitation(
            session, principal.user_id, invitation_id, accept=accept
        )
        answer = tenancy.invitation_dict(invitation, tenant)
    return JSONResponse(answer)


async def accept(request: Request) -> Response:
    """POST /{id}/accept → the invitation, now `accepted`; log in with `tenant` to use it."""
    return await _answer(request, True)


async def decline(request: Request) -> Response:
    """POST /{id}/decline → the invitation, now `declined`."""
    return await _answer(request, False)


async def redeem(request: Request) -> Response:
    """POST {code, password} → tokens in the invitation's tenant, as a login answers."""
    body = await json_body(request)
    pair = await logins.redeem_invitation(
        db_sessions(request),
        auth_config(request),
        code=text_field(body, "code") or "",
        password=text_field(body, "password") or "",
        client_address=request.client.host if request.client else None,
    )
    return JSONResponse(pair.to_dict(), headers={"Cache-Control": "no-store"})


routes = [
    Route("/api/v1/invitations", my_invitations, methods=["GET"]),
    Route("/api/v1/invitations/redeem", redeem, methods=["POST"]),
    Route("/api/v1/invitations/{invitation_id:int}/accept", accept, methods=["POST"]),
    Route("/api/v1/invitations/{invitation_id:int}/decline", decline, methods=["POST"]),
]
