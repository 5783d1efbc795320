"""`/api/v1/alert-rules` (read: everyone; change: admins and members) and `/api/v1/webhooks`
(admins) of the caller's tenant, with each webhook's delivery log.

A webhook URL must resolve to public addresses only (or to `webhook_allow_networks`): checked
here on creation and change, and again by the worker on every delivery
(app/pipeline/webhook_guard.py).

A rule counts events matching `query` (search syntax, evaluated in the stream by the detect
stage) per `window_seconds` and fires when the count is `above` / `below` `threshold`, at most
once per `cooldown_seconds`. The worker picks changes up within `alert_rules_refresh_seconds`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.accounts.authz import Permission
from app.accounts.errors import InvalidInput, NotFound
from app.db.models import AlertRule, Webhook, WebhookDelivery, utcnow
from app.pipeline import webhook_guard
from app.pipeline.alerting import new_webhook_secret
from app.query import QuerySyntaxError, parse
from web.auth import db_sessions, json_body, path_id, require
from web.openapi_schemas import (
    ANY_CREDENTIAL,
    ANY_MAP,
    ID,
    NO_CONTENT,
    body,
    json_content,
    responses,
)
from web.openapi_schemas import path_id as path_param

RULE_FIELDS = {"name", "query", "window_seconds", "condition", "threshold", "cooldown_seconds",
               "enabled"}
HOOK_FIELDS = {"name", "url", "enabled"}


def rule_dict(rule: AlertRule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "query": rule.query,
            "window_seconds": rule.window_seconds, "condition": rule.condition,
            "threshold": rule.threshold, "cooldown_seconds": rule.cooldown_seconds,
            "enabled": rule.enabled, "created_at": rule.created_at.isoformat(),
            "updated_at": rule.updated_at.isoformat()}


def hook_dict(hook: Webhook, *, secret: bool = False) -> dict[str, Any]:
    out = {"id": hook.id, "name": hook.name, "url": hook.url, "enabled": hook.enabled,
           "created_at": hook.created_at.isoformat()}
    if secret:
        out["secret"] = hook.secret
    return out


def _int(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer {low}-{high}", field=name)
    return value


def _text(body: dict[str, Any], name: str, high: int) -> str:
    value = body[name]
    if not isinstance(value, str) or not value.strip() or len(value) > high:
        raise InvalidInput(f"{name} must be a non-empty string of at most {high} characters",
                           field=name)
    return value.strip()


def apply_rule(rule: AlertRule, body: dict[str, Any], *, create: bool) -> None:
    unknown = set(body) - RULE_FIELDS
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    if create:
        for name in ("name", "query", "threshold"):
            if name not in body:
                raise InvalidInput(f"field {name!r} is required", field=name)
    if "name" in body:
        rule.name = _text(body, "name", 200)
    if "query" in body:
        rule.query = _text(body, "query", 2000)
        try:
            parse(rule.query)
        except QuerySyntaxError as exc:
            raise InvalidInput(f"query: {exc.reason} at {exc.position}", field="query") from exc
    if "window_seconds" in body:
        rule.window_seconds = _int(body, "window_seconds", 1, 86400)
    if "condition" in body:
        if body["condition"] not in ("above", "below"):
            raise InvalidInput("condition must be 'above' or 'below'", field="condition")
        rule.condition = body["condition"]
    if "threshold" in body:
        rule.threshold = _int(body, "threshold", 0, 10**9)
    if "cooldown_seconds" in body:
        rule.cooldown_seconds = _int(body, "cooldown_seconds", 0, 7 * 86400)
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidInput("enabled must be true or false", field="enabled")
        rule.enabled = body["enabled"]
    rule.updated_at = utcnow()


Owned = TypeVar("Owned", AlertRule, Webhook)


async def owned(session: Any, model: type[Owned], tenant_id: int, row_id: int, what: str) -> Owned:
    """The tenant's row `row_id` of `model`; 404 when missing or another tenant's."""
    row = await session.get(model, row_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound(f"{what} {row_id} not found in this tenant")
    return row


async def _rule(session: Any, tenant_id: int, rule_id: int) -> AlertRule:
    return await owned(session, AlertRule, tenant_id, rule_id, "alert rule")


async def list_rules(request: Request) -> Response:
    principal = require(request, Permission.READ)
    async with db_sessions(request)() as session:
        rows = (await session.execute(select(AlertRule).where(
            AlertRule.tenant_id == principal.tenant_id).order_by(AlertRule.id))).scalars()
        return JSONResponse({"rules": [rule_dict(r) for r in rows]})


async def create_rule(request: Request) -> Response:
    principal = require(request, Permission.MANAGE_ALERTS)
    body = await json_body(request)
    rule = AlertRule(tenant_id=principal.tenant_id, window_seconds=60, condition="above",
                     cooldown_seconds=300, enabled=True, created_at=utcnow())
    apply_rule(rule, body, create=True)
    async with db_sessions(request).begin() as session:
        session.add(rule)
        await session.flush()
        payload = rule_dict(rule)
    return JSONResponse(payload, status_code=201)


async def get_rule(request: Request) -> Response:
    principal = require(request, Permission.READ)
    rule_id = path_id(request, "rule_id", "alert rule")
    async with db_sessions(request)() as session:
        return JSONResponse(rule_dict(await _rule(session, principal.tenant_id, rule_id)))


async def update_rule(request: Request) -> Response:
    principal = require(request, Permission.MANAGE_ALERTS)
    rule_id = path_id(request, "rule_id", "alert rule")
    body = await json_body(request)
    async with db_sessions(request).begin() as session:
        rule = await _rule(session, principal.tenant_id, rule_id)
        apply_rule(rule, body, create=False)
        await session.flush()
        payload = rule_dict(rule)
    return JSONResponse(payload)


async def delete_rule(request: Request) -> Response:
    principal = require(request, Permission.MANAGE_ALERTS)
    rule_id = path_id(request, "rule_id", "alert rule")
    async with db_sessions(request).begin() as session:
        await session.delete(await _rule(session, principal.tenant_id, rule_id))
    return Response(status_code=204)


# --- webhooks -------------------------------------------------------------------------------

def apply_hook(hook: Webhook, body: dict[str, Any], *, create: bool) -> None:
    unknown = set(body) - HOOK_FIELDS
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    if create:
        for name in ("name", "url"):
            if name not in body:
                raise InvalidInput(f"field {name!r} is required", field=name)
    if "name" in body:
        hook.name = _text(body, "name", 200)
    if "url" in body:
        url = _text(body, "url", 2000)
        try:
            webhook_guard.parse_url(url)
        except webhook_guard.InvalidTarget as exc:
            raise InvalidInput(exc.reason, field="url") from exc
        hook.url = url
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidInput("enabled must be true or false", field="enabled")
        hook.enabled = body["enabled"]


async def check_hook_url(request: Request, url: str) -> None:
    """422 unless `url`'s host resolves, and only to addresses webhooks may target."""
    settings = request.app.state.settings
    try:
        await webhook_guard.check_url(url, settings.webhook_allow_networks,
                                      timeout=settings.webhook_timeout)
    except webhook_guard.WebhookTargetError as exc:
        raise InvalidInput(exc.reason, field="url") from exc


async def _hook(session: Any, tenant_id: int, hook_id: int) -> Webhook:
    return await owned(session, Webhook, tenant_id, hook_id, "webhook")


async def list_hooks(request: Request) -> Response:
    principal = require(request, Permission.MANAGE_SETTINGS)
    async with db_sessions(request)() as session:
        rows = (await session.execute(select(Webhook).where(
            Webhook.tenant_id == principal.tenant_id).order_by(Webhook.id))).scalars()
        return JSONResponse({"webhooks": [hook_dict(h) for h in rows]})


async def create_hook(request: Request) -> Response:
    """POST {name, url, enabled?} → the webhook with its signing `secret` (shown only here)."""
    principal = require(request, Permission.MANAGE_SETTINGS)
    body = await json_body(request)
    hook = Webhook(tenant_id=principal.tenant_id, secret=new_webhook_secret(), enabled=True,
                   created_at=utcnow())
    apply_hook(hook, body, create=True)
    await check_hook_url(request, hook.url)
    async with db_sessions(request).begin() as session:
        session.add(hook)
        await session.flush()
        payload = hook_dict(hook, secret=True)
    return JSONResponse(payload, status_code=201)


async def update_hook(request: Request) -> Response:
    principal = require(request, Permission.MANAGE_SETTINGS)
    hook_id = path_id(request, "hook_id", "webhook")
    body = await json_body(request)
    async with db_sessions(request).begin() as session:
        hook = await _hook(session, principal.tenant_id, hook_id)
        apply_hook(hook, body, create=False)
        if "url" in body:
            await check_hook_url(request, hook.url)
        await session.flush()
        payload = hook_dict(hook)
    return JSONResponse(payload)


async def delete_hook(request: Request) -> Response:
    principal = require(request, Permission.MANAGE_SETTINGS)
    hook_id = path_id(request, "hook_id", "webhook")
    async with db_sessions(request).begin() as session:
        await session.delete(await _hook(session, principal.tenant_id, hook_id))
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    """GET → the webhook's latest 100 delivery attempts, newest first."""
    principal = require(request, Permission.MANAGE_SETTINGS)
    hook_id = path_id(request, "hook_id", "webhook")
    async with db_sessions(request)() as session:
        await _hook(session, principal.tenant_id, hook_id)
        rows = (await session.execute(select(WebhookDelivery).where(
            WebhookDelivery.webhook_id == hook_id).order_by(
            WebhookDelivery.id.desc()).limit(100))).scalars()
        return JSONResponse({"deliveries": [
            {"id": d.id, "alert_id": d.alert_id, "attempt": d.attempt,
             "status_code": d.status_code, "error": webhook_guard.shown_error(d.error),
             "delivered": d.delivered,
             "time": d.created_at.isoformat()} for d in rows]})


RULE = "/api/v1/alert-rules/{rule_id:int}"
HOOK = "/api/v1/webhooks/{hook_id:int}"
routes = [
    Route("/api/v1/alert-rules", list_rules, methods=["GET"]),
    Route("/api/v1/alert-rules", create_rule, methods=["POST"]),
    Route(RULE, get_rule, methods=["GET"]),
    Route(RULE, update_rule, methods=["PATCH"]),
    Route(RULE, delete_rule, methods=["DELETE"]),
    Route("/api/v1/webhooks", list_hooks, methods=["GET"]),
    Route("/api/v1/webhooks", create_hook, methods=["POST"]),
    Route(HOOK, update_hook, methods=["PATCH"]),
    Route(HOOK, delete_hook, methods=["DELETE"]),
    Route(HOOK + "/deliveries", list_deliveries, methods=["GET"]),
]


def _spec(summary: str, status: str = "200", with_body: bool = False, path: str = "",
          errors: tuple[str, ...] = ("401", "403")) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "summary": summary, "tags": ["alerts"], "security": ANY_CREDENTIAL,
        "responses": responses(NO_CONTENT if status == "204" else {status: {
            "description": "OK", "content": json_content(ANY_MAP)}}, *errors)}
    if path:
        spec["parameters"] = [path_param(path, ID, "id")]
    if with_body:
        spec["requestBody"] = body(ANY_MAP)
    return spec


_ONE = ("401", "403", "404")
_WRITE = ("401", "403", "404", "422")
openapi = {
    ("GET", "/api/v1/alert-rules"): _spec("The tenant's alert rules"),
    ("POST", "/api/v1/alert-rules"): _spec("Create an alert rule {name, query, window_seconds, "
                                           "condition, threshold, cooldown_seconds, enabled}",
                                           "201", True, errors=("401", "403", "422")),
    ("GET", RULE): _spec("One alert rule", path="rule_id", errors=_ONE),
    ("PATCH", RULE): _spec("Change an alert rule", with_body=True, path="rule_id",
                           errors=_WRITE),
    ("DELETE", RULE): _spec("Delete an alert rule", "204", path="rule_id", errors=_ONE),
    ("GET", "/api/v1/webhooks"): _spec("The tenant's webhooks (admin)"),
    ("POST", "/api/v1/webhooks"): _spec("Create a webhook {name, url}; answers its secret once",
                                        "201", True, errors=("401", "403", "422")),
    ("PATCH", HOOK): _spec("Change a webhook", with_body=True, path="hook_id", errors=_WRITE),
    ("DELETE", HOOK): _spec("Delete a webhook", "204", path="hook_id", errors=_ONE),
    ("GET", HOOK + "/deliveries"): _spec("A webhook's delivery log", path="hook_id",
                                         errors=_ONE),
}
