"""Alerts of the caller's tenant: `GET /api/v1/alerts`, `POST /api/v1/alerts/{id}/ack` and
`/resolve`, and WebSocket `/api/v1/alerts/stream`.

Alerts are stored by the worker's alert stage in the `{index_prefix}alerts` index (one index,
`tenant_id` filter on every request; agents/alerts.py). The stream is fed by the process's
`AlertHub` (its own `alerts` reader, no consumer group): frames `{"type": "alert", "alert":
{...}}` (a repeated firing re-sends the same `id` with more `occurrences`), `{"type": "ready"}`
once live, `{"type": "notice", "dropped": N}` for a client too slow, heartbeats when idle; the
credentials are re-checked while it runs (closed with 4401 or 4403, as the tail: web/auth.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError, NotFoundError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.accounts.authz import Permission
from app.accounts.errors import InvalidInput, NotFound
from app.live.alerts import AlertHub
from app.pipeline.alerting import ALERT_ID, KINDS, STATUSES, alerts_index
from app.pipeline.events import iso_nanos
from app.query.timerange import TimeError, time_range
from app.settings import Settings
from web.auth import require, stream_while_authorized
from web.openapi_schemas import (
    ANY_CREDENTIAL,
    ANY_MAP,
    INT,
    STR,
    TIME_PARAM,
    json_content,
    query,
    responses,
)


def _es(request: Request) -> AsyncElasticsearch:
    es: AsyncElasticsearch = request.app.state.es
    return es


def shaped(source: dict[str, Any]) -> dict[str, Any]:
    out = dict(source)
    out.pop("tenant_id", None)
    return out


async def list_alerts(request: Request) -> Response:
    """GET ?status=open|acknowledged|resolved&kind=anomaly|rule&since=24h&limit=100 → alerts,
    most recently fired first."""
    principal = require(request, Permission.READ)
    settings: Settings = request.app.state.settings
    params = request.query_params
    filters: list[dict[str, Any]] = [{"term": {"tenant_id": str(principal.tenant_id)}}]
    for name, allowed in (("status", STATUSES), ("kind", KINDS)):
        if value := params.get(name):
            if value not in allowed:
                raise InvalidInput(f"{name} must be one of {', '.join(allowed)}", field=name)
            filters.append({"term": {name: value}})
    if params.get("since"):
        try:
            since, _ = time_range(params["since"], None, now_ns=time.time_ns(),
                                  default_since="24h")
        except TimeError as exc:
            raise InvalidInput(f"since: {exc.reason}", field="since") from exc
        filters.append({"range": {"last_fired": {"gte": iso_nanos(since)}}})
    try:
        limit = min(max(int(params.get("limit", "100")), 1), 1000)
    except ValueError as exc:
        raise InvalidInput("limit must be an integer", field="limit") from exc
    try:
        found = await _es(request).search(
            index=alerts_index(settings), query={"bool": {"filter": filters}},
            sort=[{"last_fired": "desc"}], size=limit)
    except NotFoundError:
        return JSONResponse({"alerts": [], "total": 0})
    except BadRequestError as exc:  # a filter the checks above let through: the caller's
        raise InvalidInput(f"Elasticsearch refused the filter: {exc.message}") from exc
    alerts = [shaped(h["_source"]) for h in found["hits"]["hits"]]
    return JSONResponse({"alerts": alerts, "total": found["hits"]["total"]["value"]})


async def _set_status(request: Request, status: str) -> Response:
    principal = require(request, Permission.MANAGE_ALERTS)
    settings: Settings = request.app.state.settings
    alert_id = request.path_params["alert_id"]
    es = _es(request)
    doc = None
    if ALERT_ID.fullmatch(alert_id):
        try:
            doc = await es.get(index=alerts_index(settings), id=alert_id)
        except NotFoundError:
            pass
    if doc is None or doc["_source"].get("tenant_id") != str(principal.tenant_id):
        raise NotFound(f"alert {alert_id} not found in this tenant")
    change = {"status": status, f"{status}_at": iso_nanos(time.time_ns()),
              f"{status}_by": principal.display_name}
    await es.update(index=alerts_index(settings), id=alert_id, doc=change,
                    if_seq_no=doc["_seq_no"], if_primary_term=doc["_primary_term"],
                    refresh="wait_for")
    return JSONResponse(shaped({**doc["_source"], **change}))


async def ack_alert(request: Request) -> Response:
    """POST → the alert, `acknowledged` (a later firing keeps it so)."""
    return await _set_status(request, "acknowledged")


async def resolve_alert(request: Request) -> Response:
    """POST → the alert, `resolved` (a later firing of its condition re-opens it)."""
    return await _set_status(request, "resolved")


def hub_of(app: Any) -> AlertHub:
    hub: AlertHub | None = getattr(app.state, "alert_hub", None)
    if hub is None:
        hub = app.state.alert_hub = AlertHub(app.state.settings)
    return hub


async def alert_stream(ws: WebSocket) -> None:
    principal = require(ws, Permission.READ)
    settings: Settings = ws.app.state.settings
    hub = hub_of(ws.app)
    await ws.accept()
    sub = hub.subscribe(str(principal.tenant_id))
    try:
        await asyncio.wait_for(hub.ready.wait(), 30)
        await ws.send_json({"type": "ready"})

        async def pump() -> None:
            while True:
                try:
                    alert = await asyncio.wait_for(sub.queue.get(),
                                                   settings.tail_heartbeat_seconds)
                except TimeoutError:
                    await ws.send_json({"type": "heartbeat", "time": iso_nanos(time.time_ns())})
                    continue
                if sub.dropped:
                    dropped, sub.dropped = sub.dropped, 0
                    await ws.send_json({"type": "notice", "dropped": dropped,
                                        "detail": f"dropped {dropped} alerts: the client reads "
                                                  "too slowly"})
                await ws.send_json({"type": "alert", "alert": shaped(alert)})

        await stream_while_authorized(ws, Permission.READ, pump())
    except (WebSocketDisconnect, RuntimeError):
        pass
    except TimeoutError:
        await ws.send_json({"type": "error", "error": "unavailable",
                            "detail": "the alert stream (Kafka) is not reachable"})
        await ws.close(1013)
    finally:
        hub.unsubscribe(sub)


routes = [
    Route("/api/v1/alerts", list_alerts, methods=["GET"]),
    Route("/api/v1/alerts/{alert_id}/ack", ack_alert, methods=["POST"]),
    Route("/api/v1/alerts/{alert_id}/resolve", resolve_alert, methods=["POST"]),
    WebSocketRoute("/api/v1/alerts/stream", alert_stream),
]


def _spec(summary: str, errors: tuple[str, ...], params: list[Any]) -> dict[str, Any]:
    return {"summary": summary, "tags": ["alerts"], "security": ANY_CREDENTIAL,
            "parameters": params,
            "responses": responses({"200": {"description": "OK",
                                            "content": json_content(ANY_MAP)}}, *errors)}


_ALERT_ID = {"name": "alert_id", "in": "path", "required": True,
             "schema": {**STR, "pattern": ALERT_ID.pattern}}
openapi = {
    ("GET", "/api/v1/alerts"): _spec("The tenant's alerts, most recently fired first",
                                     ("401", "403", "422"), [
        query("status", {**STR, "enum": list(STATUSES)}),
        query("kind", {**STR, "enum": list(KINDS)}),
        query("since", TIME_PARAM, "fired since"),
        query("limit", {**INT, "minimum": 1, "maximum": 1000, "default": 100})]),
    ("POST", "/api/v1/alerts/{alert_id}/ack"): _spec("Acknowledge an alert",
                                                     ("401", "403", "404"), [_ALERT_ID]),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): _spec("Resolve an alert",
                                                         ("401", "403", "404"), [_ALERT_ID]),
    ("WEBSOCKET", "/api/v1/alerts/stream"): {
        "summary": "Live alerts of the tenant (frames: alert, ready, notice, heartbeat)",
        "security": ANY_CREDENTIAL,
        "close_codes": {"1008": "refused handshake: no valid credentials or no read permission",
                        "1013": "the alert stream (Kafka) is unreachable; reconnect later"},
    },
}
