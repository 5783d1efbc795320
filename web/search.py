"""Search, histogram, context and field facets over the caller's tenant's logs."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.accounts.authz import Permission
from app.query import search
from app.query.search import BadParameter
from app.settings import Settings
from web.auth import json_body, require
from web.es_requests import SearchUnavailable, es_search, unavailable

ES_TIMEOUT = "10s"  # per-shard search timeout: partial results are flagged, not failed


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def params_of(request: Request) -> dict[str, Any]:
    """Query-string parameters, or for POST the JSON body's fields."""
    if request.method == "POST":
        return await json_body(request)
    return dict(request.query_params)


async def search_endpoint(request: Request) -> Response:
    """GET/POST /api/v1/search: `q`, `since`, `until`, `limit`, `order`, `cursor`, `highlight`."""
    principal = require(request, Permission.READ)
    wanted = search.read_search(await params_of(request), now_ns=time.time_ns())
    body = search.search_body(settings_of(request), principal.tenant_id, wanted, ES_TIMEOUT)
    return JSONResponse(search.search_response(wanted, await es_search(request, body)))


async def histogram_endpoint(request: Request) -> Response:
    """GET /api/v1/histogram: counts per bucket split by level, for `q` over `since`..`until`."""
    principal = require(request, Permission.READ)
    params = await params_of(request)
    query = search.read_query(params, now_ns=time.time_ns())
    interval = search.histogram_interval(query.since, query.until, search.param(params, "interval"))
    body = search.histogram_body(settings_of(request), principal.tenant_id, query, interval)
    return JSONResponse(search.histogram_response(query, interval, await es_search(request, body)))


async def context_endpoint(request: Request) -> Response:
    """GET /api/v1/logs/{id}/context?before=N&after=N: neighbours from the same source, in order."""
    principal = require(request, Permission.READ)
    params = dict(request.query_params)
    before = search.read_int(params, "before", 20, 0, search.MAX_CONTEXT)
    after = search.read_int(params, "after", 20, 0, search.MAX_CONTEXT)
    settings, tenant = settings_of(request), principal.tenant_id
    doc_id = request.path_params["id"]
    found = (await es_search(request, search.anchor_body(settings, tenant, doc_id)))["hits"]["hits"]
    if not found:
        return JSONResponse({"error": "not_found", "detail": f"no event {doc_id!r}"}, 404)
    anchor = found[0]
    older = newer = []
    if before:
        body = search.neighbours_body(settings, tenant, anchor, "before", before)
        older = list(reversed((await es_search(request, body))["hits"]["hits"]))
    if after:
        body = search.neighbours_body(settings, tenant, anchor, "after", after)
        newer = (await es_search(request, body))["hits"]["hits"]
    return JSONResponse(
        {
            "event": search.shape_hit(anchor),
            "before": [search.shape_hit(h) for h in older],
            "after": [search.shape_hit(h) for h in newer],
        }
    )


async def fields_endpoint(request: Request) -> Response:
    """GET /api/v1/fields: fields seen in the range with their top values and counts."""
    principal = require(request, Permission.READ)
    params = await params_of(request)
    query = search.read_query(params, now_ns=time.time_ns(), default_since="1h")
    top = search.read_int(params, "top", 10, 1, 100)
    settings, tenant = settings_of(request), principal.tenant_id
    result = await es_search(request, search.fields_body(settings, tenant, query, top))
    fields = search.facets(result)
    keys = search.attribute_keys(result["hits"]["hits"], top=20)
    if keys:
        body = search.attribute_values_body(settings, tenant, query, keys, top)
        fields += search.facets(await es_search(request, body))
    return JSONResponse({"total": result["hits"]["total"]["value"], "fields": fields})


async def bad_parameter(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadParameter)
    return JSONResponse(exc.to_dict(), status_code=400)


routes = [
    Route("/api/v1/search", search_endpoint, methods=["GET", "POST"]),
    Route("/api/v1/histogram", histogram_endpoint, methods=["GET", "POST"]),
    Route("/api/v1/fields", fields_endpoint, methods=["GET", "POST"]),
    Route("/api/v1/logs/{id:path}/context", context_endpoint, methods=["GET"]),
]
exception_handlers = {BadParameter: bad_parameter, SearchUnavailable: unavailable}
