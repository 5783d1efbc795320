"""`/api/v1/tenant`: the caller's tenant settings (read: everyone; change: admins)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import accounts
from app.account_errors import InvalidInput
from app.authz import Permission
from app.models import Tenant
from web.auth import db_sessions, json_body, require


def tenant_dict(tenant: Tenant) -> dict[str, object]:
    return {
        "id": tenant.id,
        "slug": tenant.slug,
        "name": tenant.name,
        "created_at": tenant.created_at.isoformat(),
        "retention_days": tenant.retention_days,
        "ingest_rate_limit": tenant.ingest_rate_limit,
    }


async def get_tenant(request: Request) -> Response:
    """GET → the caller's tenant."""
    principal = require(request, Permission.READ)
    async with db_sessions(request)() as session:
        tenant = await accounts.get_tenant_by_id(session, principal.tenant_id)
    return JSONResponse(tenant_dict(tenant))


async def update_tenant(request: Request) -> Response:
    """PATCH {name?, retention_days?, ingest_rate_limit?} → the tenant after the change."""
    principal = require(request, Permission.MANAGE_SETTINGS)
    body = await json_body(request)
    unknown = set(body) - {"name", "retention_days", "ingest_rate_limit"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    async with db_sessions(request).begin() as session:
        tenant = await accounts.get_tenant_by_id(session, principal.tenant_id)
        if "name" in body:
            if not isinstance(body["name"], str):
                raise InvalidInput("field 'name' must be a string", field="name")
            tenant.name = accounts.check_name(body["name"])
        if "retention_days" in body:
            days = body["retention_days"]
            if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
                raise InvalidInput(
                    "retention_days must be an integer 1-3650", field="retention_days"
                )
            tenant.retention_days = days
        if "ingest_rate_limit" in body:
            limit = body["ingest_rate_limit"]
            valid = limit is None or (
                isinstance(limit, int | float) and not isinstance(limit, bool) and limit >= 0
            )
            if not valid:
                raise InvalidInput(
                    "ingest_rate_limit must be a number >= 0 records/s, or null for the default",
                    field="ingest_rate_limit",
                )
            tenant.ingest_rate_limit = None if limit is None else float(limit)
        await session.flush()
        payload = tenant_dict(tenant)
    return JSONResponse(payload)


routes = [
    Route("/api/v1/tenant", get_tenant, methods=["GET"]),
    Route("/api/v1/tenant", update_tenant, methods=["PATCH"]),
]
