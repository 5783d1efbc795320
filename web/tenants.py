"""`/api/v1/tenant`: the caller's tenant settings (read: everyone; change: admins)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.accounts import tenancy
from app.accounts.authz import Permission
from app.accounts.errors import InvalidInput
from app.db.models import Tenant
from app.templates import MaskingConfig
from app.templates.masking import BUILTIN_MASKERS
from web.auth import db_sessions, json_body, require


def check_masking(value: object) -> dict[str, object] | None:
    """A `pattern_masking` value as stored (None: the default), or InvalidInput."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {*BUILTIN_MASKERS, "extra"}:
        raise InvalidInput(f"pattern_masking: an object with keys among "
                           f"{', '.join([*BUILTIN_MASKERS, 'extra'])}", field="pattern_masking")
    if any(not isinstance(value[k], bool) for k in value if k != "extra"):
        raise InvalidInput("pattern_masking: switches are true or false", field="pattern_masking")
    extra = value.get("extra") or []
    if not isinstance(extra, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in extra):
        raise InvalidInput("pattern_masking.extra: a list of [placeholder, regex] pairs",
                           field="pattern_masking")
    try:
        config = MaskingConfig.from_dict(value)
        config.masker()
    except re.error as exc:
        raise InvalidInput(f"pattern_masking.extra: bad regex ({exc})",
                           field="pattern_masking") from exc
    return config.to_dict()


def tenant_dict(tenant: Tenant) -> dict[str, object]:
    return {
        "id": tenant.id,
        "slug": tenant.slug,
        "name": tenant.name,
        "created_at": tenant.created_at.isoformat(),
        "retention_days": tenant.retention_days,
        "ingest_rate_limit": tenant.ingest_rate_limit,
        "pattern_masking": MaskingConfig.from_dict(tenant.pattern_masking or {}).to_dict(),
    }


async def get_tenant(request: Request) -> Response:
    """GET → the caller's tenant."""
    principal = require(request, Permission.READ)
    async with db_sessions(request)() as session:
        tenant = await tenancy.get_tenant_by_id(session, principal.tenant_id)
    return JSONResponse(tenant_dict(tenant))


async def update_tenant(request: Request) -> Response:
    """PATCH {name?, retention_days?, ingest_rate_limit?, pattern_masking?} → the tenant after
    the change. `pattern_masking`: maskers of the template miner to switch (`{"numbers":
    false}`; names as `app.templates.MaskingConfig`), `extra` [[placeholder, regex], ...];
    null restores the default (every masker on). The worker applies it within
    `tenant_config_ttl` seconds."""
    principal = require(request, Permission.MANAGE_SETTINGS)
    body = await json_body(request)
    unknown = set(body) - {"name", "retention_days", "ingest_rate_limit", "pattern_masking"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    async with db_sessions(request).begin() as session:
        tenant = await tenancy.get_tenant_by_id(session, principal.tenant_id)
        if "name" in body:
            if not isinstance(body["name"], str):
                raise InvalidInput("field 'name' must be a string", field="name")
            tenant.name = tenancy.check_name(body["name"])
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
        if "pattern_masking" in body:
            tenant.pattern_masking = check_masking(body["pattern_masking"])
        await session.flush()
        payload = tenant_dict(tenant)
    return JSONResponse(payload)


routes = [
    Route("/api/v1/tenant", get_tenant, methods=["GET"]),
    Route("/api/v1/tenant", update_tenant, methods=["PATCH"]),
]
