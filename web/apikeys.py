"""`/api/v1/apikeys`: create, list and revoke the API keys of the caller's tenant.

Admins (and admin-scope keys) see and revoke every key of the tenant and may create
admin-scope keys; members see, create (ingest or read) and revoke only keys they made.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.accounts import tenancy
from app.accounts.authz import Permission, Principal, creatable_scopes
from app.accounts.errors import PermissionDenied
from web.auth import db_sessions, json_body, path_id, require, text_field


def _require_key_manager(request: Request) -> tuple[Principal, int | None]:
    """The caller and, for members, the user id their view of keys is limited to."""
    principal = require(request, Permission.MANAGE_OWN_KEYS)
    if principal.can(Permission.MANAGE_KEYS):
        return principal, None
    if principal.user_id is None:
        raise PermissionDenied(f"{principal.describe()} may not manage keys")
    return principal, principal.user_id


async def list_keys(request: Request) -> Response:
    """GET → the keys the caller may see (never secrets or hashes)."""
    principal, own = _require_key_manager(request)
    async with db_sessions(request)() as session:
        keys = await tenancy.list_api_keys(session, principal.tenant_id, created_by_user_id=own)
    return JSONResponse({"keys": [tenancy.api_key_dict(key) for key in keys]})


async def create_key(request: Request) -> Response:
    """POST {name, scope} → 201 with the full key in `key`, shown this once."""
    principal, _ = _require_key_manager(request)
    body = await json_body(request)
    name = text_field(body, "name") or ""
    scope = tenancy.parse_scope(text_field(body, "scope") or "")
    allowed = creatable_scopes(principal.permissions)
    if scope not in allowed:
        names = ", ".join(sorted(s.value for s in allowed))
        raise PermissionDenied(
            f"{principal.describe()} may not create {scope.value} keys; allowed: {names}"
        )
    async with db_sessions(request).begin() as session:
        key, plain = await tenancy.create_api_key(
            session, principal.tenant_id, name, scope, created_by_user_id=principal.user_id
        )
        payload = {**tenancy.api_key_dict(key), "key": plain}
    return JSONResponse(payload, status_code=201, headers={"Cache-Control": "no-store"})


async def revoke_key(request: Request) -> Response:
    """DELETE /{id} → the revoked key; keys of other tenants (or other people's) are 404."""
    principal, own = _require_key_manager(request)
    key_id = path_id(request, "key_id", "API key")
    async with db_sessions(request).begin() as session:
        key = await tenancy.revoke_api_key(
            session, principal.tenant_id, key_id, created_by_user_id=own
        )
        payload = tenancy.api_key_dict(key)
    return JSONResponse(payload)


routes = [
    Route("/api/v1/apikeys", list_keys, methods=["GET"]),
    Route("/api/v1/apikeys", create_key, methods=["POST"]),
    Route("/api/v1/apikeys/{key_id:int}", revoke_key, methods=["DELETE"]),
]
