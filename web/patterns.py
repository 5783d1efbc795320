"""`GET /api/v1/patterns`: the caller's tenant's log templates in a time range.

Counts, first/last seen in the range, a trend (counts per bucket) and sample events come from
one aggregation over the tenant's logs (terms on `template_id` with a date histogram and top
hits); template texts and when a template was first seen at all come from the worker's
`{index_prefix}patterns` snapshot index. A template is `new` when first seen inside the range.
Parameters: `q`, `since` (default 1h), `until`, `interval` (bucket size, as the histogram),
`limit` (templates, by count; default 50, at most 500), `samples` (per template, 0-10, default 3).
"""

from __future__ import annotations

import time
from typing import Any

from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch import ConnectionError as EsConnectionError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import search
from app.authz import Permission
from app.events import NS, iso_nanos
from app.pattern_index import patterns_index
from app.settings import Settings
from web.auth import require
from web.openapi_schemas import (
    ANY_CREDENTIAL,
    ANY_MAP,
    DURATION,
    INT,
    STR,
    TIME_PARAM,
    json_content,
    query,
    responses,
)

SAMPLE_FIELDS = ["@timestamp", "message", "severity", "service", "host"]


def patterns_body(settings: Settings, tenant_id: int | str, query: search.Query, interval: int,
                  limit: int, samples: int) -> dict[str, Any]:
    per_template: dict[str, Any] = {
        "first": {"min": {"field": "@timestamp"}},
        "last": {"max": {"field": "@timestamp"}},
        "trend": {"date_histogram": {
            "field": "@timestamp", "fixed_interval": f"{interval}s", "min_doc_count": 0,
            "extended_bounds": {"min": query.since // 1_000_000,
                                "max": (query.until - 1) // 1_000_000}}},
    }
    if samples:
        per_template["samples"] = {"top_hits": {"size": samples, "_source": SAMPLE_FIELDS,
                                                "sort": [{"@timestamp": "desc"}]}}
    aggs = {"templates": {"terms": {"field": "template_id", "size": limit,
                                    "exclude": [""]}, "aggs": per_template}}
    return query.body(settings, tenant_id, size=0, aggs=aggs, track_total_hits=True)


def elastic(request: Request) -> AsyncElasticsearch:
    es: AsyncElasticsearch = request.app.state.es
    return es


async def run(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """One aggregation; Elasticsearch trouble answers 503 (a refused query: bad `q`)."""
    try:
        return dict((await elastic(request).search(**body)).body)
    except EsConnectionError as exc:
        raise HTTPException(503, "Elasticsearch is unreachable; retry shortly") from exc
    except ApiError as exc:
        if exc.status_code == 400:
            raise search.BadParameter("q", f"Elasticsearch refused the query: {exc.message}"
                                      ) from exc
        if exc.status_code in (429, 503):
            raise HTTPException(503, "Elasticsearch is overloaded; retry shortly") from exc
        raise


def _ms_iso(ms: float | None) -> str | None:
    return iso_nanos(int(ms) * 1_000_000) if ms is not None else None


async def list_patterns(request: Request) -> Response:
    """GET → {since, until, interval_seconds, total, patterns: [{template_id, template, count,
    new, first_seen, last_seen, first_seen_in_range, last_seen_in_range, trend, samples,
    query}]}, most frequent first."""
    principal = require(request, Permission.READ)
    settings: Settings = request.app.state.settings
    params = dict(request.query_params)
    query = search.read_query(params, now_ns=time.time_ns(), default_since="1h")
    interval = search.histogram_interval(query.since, query.until, params.get("interval"))
    limit = search.read_int(params, "limit", 50, 1, 500)
    samples = search.read_int(params, "samples", 3, 0, 10)
    result = await run(request, patterns_body(settings, principal.tenant_id, query, interval,
                                              limit, samples))
    buckets = result.get("aggregations", {}).get("templates", {}).get("buckets", [])
    tenant = str(principal.tenant_id)
    known: dict[str, dict[str, Any]] = {}
    if buckets:
        found = await elastic(request).options(ignore_status=404).mget(
            index=patterns_index(settings), ids=[f"{tenant}/{b['key']}" for b in buckets])
        for doc in found.get("docs", []):
            source = doc.get("_source")
            if doc.get("found") and source and source.get("tenant_id") == tenant:
                known[source["template_id"]] = source
    patterns = []
    for bucket in buckets:
        tid = bucket["key"]
        stored = known.get(tid, {})
        first_in_range = bucket["first"]["value"]
        first_seen = stored.get("first_seen", first_in_range)
        patterns.append({
            "template_id": tid,
            "template": stored.get("template"),
            "count": bucket["doc_count"],
            "new": first_seen is not None and int(first_seen) * 1_000_000 >= query.since,
            "first_seen": _ms_iso(first_seen),
            "last_seen": _ms_iso(stored.get("last_seen", bucket["last"]["value"])),
            "first_seen_in_range": _ms_iso(first_in_range),
            "last_seen_in_range": _ms_iso(bucket["last"]["value"]),
            "trend": [b["doc_count"] for b in bucket["trend"]["buckets"]],
            "samples": [search.shape_hit(h) for h in
                        bucket.get("samples", {}).get("hits", {}).get("hits", [])],
            "query": f"template:{tid}",
        })
    return JSONResponse({
        "since": iso_nanos(query.since), "until": iso_nanos(query.until),
        "interval_seconds": interval, "trend_start": iso_nanos(
            query.since - query.since % (interval * NS)),
        "total": result["hits"]["total"]["value"], "patterns": patterns,
    })


routes = [Route("/api/v1/patterns", list_patterns, methods=["GET"])]

openapi = {
    ("GET", "/api/v1/patterns"): {
        "summary": "The tenant's log templates in a time range", "tags": ["analytics"],
        "security": ANY_CREDENTIAL,
        "parameters": [
            query("q", STR, "query narrowing the events counted (search syntax)"),
            query("since", TIME_PARAM, "start of the range; default 1h"),
            query("until", TIME_PARAM, "end of the range; default now"),
            query("interval", DURATION, "trend bucket size; default fitted to the range"),
            query("limit", {**INT, "minimum": 1, "maximum": 500, "default": 50}),
            query("samples", {**INT, "minimum": 0, "maximum": 10, "default": 3}),
        ],
        "responses": responses({"200": {"description": "most frequent first",
                                        "content": json_content(ANY_MAP)}},
                               "400", "401", "403", "503"),
    },
}
