"""WebSocket `/api/v1/tail`: a filtered live tail of the caller's tenant, optionally after history.

Protocol (server → client, JSON text frames):
- `{"type": "event", "event": {...}}` — one event, shaped like a search hit;
- `{"type": "ready", "history": N}` — history (if `since` was given) is complete, live follows;
- `{"type": "notice", "dropped": N, "detail": ...}` — the client read too slowly, N events skipped;
- `{"type": "heartbeat", "time": ...}` — after `tail_heartbeat_seconds` without events;
- `{"type": "error", "parameter": ..., "detail": ..., "position": ...}` then close 4400;
- `{"type": "error", "error": "not_authenticated" | "forbidden", "detail": ...}` then close 4401
  (key revoked, logged out, token expired, removed or deactivated) or 4403 (no longer allowed):
  the credentials are re-checked every `websocket_recheck_seconds` while the tail runs.
Parameters: `q` (same syntax as search), `since` (ISO 8601 or `15m`), credentials as for every
endpoint or `token`. Auth failures refuse the handshake (policy violation, 1008).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.accounts.authz import Permission
from app.elastic import esindex
from app.live.tail import Subscription, TailHub
from app.pipeline.events import LogEvent, iso_nanos
from app.query import search
from app.query.match import compile_predicate
from app.query.search import BadParameter
from app.settings import Settings
from web.auth import require, stream_while_authorized
from web.es_requests import SearchUnavailable, es_search

CLOSE_BAD_FILTER = 4400


def event_message(event: LogEvent) -> dict[str, Any]:
    hit = {"_id": event.doc_id(), "_source": esindex.document(event)}
    return {"type": "event", "event": search.shape_hit(hit)}


async def history(
    ws: WebSocket,
    settings: Settings,
    tenant_id: int,
    query: search.Query,
    hub: TailHub,
    limit: int,
) -> tuple[list[dict[str, Any]], set[str]]:
    """The latest `limit` events from `since` to now, oldest first: indexed ones from search,
    then those the hub has read but the index does not hold yet (the indexing delay)."""
    hits: list[dict[str, Any]] = []
    request = search.SearchRequest(query, min(limit, search.MAX_LIMIT), "newest", None, False)
    while limit and len(hits) < limit:
        body = search.search_body(settings, tenant_id, request, "10s")
        page = (await es_search(ws, body))["hits"]["hits"]
        hits += page
        if len(page) < request.limit:
            break
        cursor = search.Cursor(
            page[-1]["sort"], query.since, query.until, "newest", search.query_hash(query.text)
        )
        request = search.SearchRequest(query, request.limit, "newest", cursor, False)
    hits = hits[:limit]
    seen = {hit["_id"] for hit in hits}
    messages = [{"type": "event", "event": search.shape_hit(hit)} for hit in reversed(hits)]
    predicate = compile_predicate(query.node)
    for event in hub.recent(str(tenant_id)):
        if event.doc_id() not in seen and event.time >= query.since and predicate(event.__dict__):
            seen.add(event.doc_id())
            messages.append(event_message(event))
    return messages, seen


def event_text(event: LogEvent) -> str:
    return json.dumps(event_message(event), ensure_ascii=False, separators=(",", ":"))


async def pump(ws: WebSocket, sub: Subscription, seen: set[str], heartbeat: float) -> None:
    """Send live events (skipping those already sent as history), drop notices and heartbeats."""
    while True:
        if sub.queue.empty():
            try:
                delivery = await asyncio.wait_for(sub.queue.get(), heartbeat)
            except TimeoutError:
                await ws.send_json({"type": "heartbeat", "time": iso_nanos(time.time_ns())})
                continue
        else:
            delivery = sub.queue.get_nowait()
        if dropped := sub.take_dropped():
            await ws.send_json(
                {
                    "type": "notice",
                    "dropped": dropped,
                    "detail": f"dropped {dropped} events: the client reads too slowly",
                }
            )
        if seen and delivery.event.doc_id() in seen:
            seen.discard(delivery.event.doc_id())
            continue
        await ws.send_text(delivery.text(event_text))


async def unavailable(ws: WebSocket, detail: str) -> None:
    """Tell the client to come back later (close 1013, "try again later")."""
    await ws.send_json({"type": "error", "error": "unavailable", "detail": detail})
    await ws.close(1013)


async def tail_endpoint(ws: WebSocket) -> None:
    principal = require(ws, Permission.READ)
    settings: Settings = ws.app.state.settings
    hub: TailHub = ws.app.state.tail
    await ws.accept()
    params = dict(ws.query_params)
    params.pop("token", None)
    try:
        query = search.read_query(
            {**params, "since": params.get("since") or "1s"}, now_ns=time.time_ns()
        )
    except BadParameter as exc:
        await ws.send_json({"type": "error", **exc.to_dict()})
        await ws.close(CLOSE_BAD_FILTER, exc.reason[:120])
        return
    sub = hub.subscribe(str(principal.tenant_id), compile_predicate(query.node))
    try:
        await asyncio.wait_for(hub.ready.wait(), 30)
        sent: list[dict[str, Any]] = []
        seen: set[str] = set()
        if params.get("since"):
            sent, seen = await history(
                ws, settings, principal.tenant_id, query, hub, settings.tail_history_max
            )
        for message in sent:
            await ws.send_json(message)
        await ws.send_json({"type": "ready", "history": len(sent)})
        await stream_while_authorized(
            ws, Permission.READ, pump(ws, sub, seen, settings.tail_heartbeat_seconds)
        )
    except (WebSocketDisconnect, RuntimeError):
        pass
    except TimeoutError:
        await unavailable(ws, "the event stream (Kafka) is not reachable; reconnect later")
    except SearchUnavailable as exc:
        await unavailable(ws, f"history: {exc.detail}")
    finally:
        hub.unsubscribe(sub)


routes = [WebSocketRoute("/api/v1/tail", tail_endpoint)]
