"""`GET /api/v1/patterns`: the caller's tenant's log templates in a time range.

Counts, first/last seen in the range, a trend (counts per bucket) and sample events come from
one aggregation over the tenant's logs (terms on `template_id` with a date histogram and top
hits); template texts, when a template was first seen at all and which ids a template left
(widened or merged: `merged_into`) come from the worker's `{index_prefix}patterns` snapshot
index. One row per template text; a template is `new` when first seen inside the range.
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

from app.accounts.authz import Permission
from app.elastic.template_index import MAX_ALIAS_HOPS, patterns_index, resolve_ids
from app.pipeline.events import NS, iso_nanos
from app.query import search
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


async def stored_templates(request: Request, tenant: str, ids: list[str]
                           ) -> dict[str, dict[str, Any]]:
    """The tenant's snapshot documents of `ids` and of the ids they point to (merged_into),
    by template id."""
    known: dict[str, dict[str, Any]] = {}
    todo = list(dict.fromkeys(ids))
    for _ in range(MAX_ALIAS_HOPS):
        if not todo:
            break
        found = await elastic(request).options(ignore_status=404).mget(
            index=patterns_index(request.app.state.settings),
            ids=[f"{tenant}/{tid}" for tid in todo])
        for doc in found.get("docs", []):
            source = doc.get("_source")
            if doc.get("found") and source and source.get("tenant_id") == tenant:
                known[source["template_id"]] = source
        todo = list(dict.fromkeys(
            target for tid in todo
            if (target := known.get(tid, {}).get("merged_into")) and target not in known))
    return known


def _group(buckets: list[dict[str, Any]], known: dict[str, dict[str, Any]]
           ) -> list[tuple[str, list[dict[str, Any]]]]:
    """Buckets grouped by the template that holds their id now: one group per template text
    (an id without a snapshot document yet is its own group)."""
    holder = resolve_ids(known, [b["key"] for b in buckets])
    groups: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for bucket in buckets:
        tid = holder[bucket["key"]]
        # an alias carries its target's text, should the target's own document lag behind
        text = known.get(tid, known.get(bucket["key"], {})).get("template")
        key = f"text:{text}" if text is not None else f"id:{tid}"
        groups.setdefault(key, (tid, []))[1].append(bucket)
    return list(groups.values())


def _pattern_row(tid: str, members: list[dict[str, Any]], known: dict[str, dict[str, Any]],
                 query: search.Query, samples: int) -> dict[str, Any]:
    """One row of the list: the buckets of every id the template has had, added up."""
    stored = known.get(tid) or next((known[b["key"]] for b in members if b["key"] in known), {})
    ids = list(dict.fromkeys([tid, *(b["key"] for b in members)]))
    firsts = [b["first"]["value"] for b in members if b["first"]["value"] is not None]
    lasts = [b["last"]["value"] for b in members if b["last"]["value"] is not None]
    first_in_range = min(firsts) if firsts else None
    last_in_range = max(lasts) if lasts else None
    first_seen = min([v for v in (stored.get("first_seen"), *(
        known.get(i, {}).get("first_seen") for i in ids)) if v is not None],
        default=first_in_range)
    last_seen = max([v for v in (stored.get("last_seen"), last_in_range) if v is not None],
                    default=None)
    trend: dict[Any, int] = {}
    for bucket in members:
        for point in bucket["trend"]["buckets"]:
            trend[point["key"]] = trend.get(point["key"], 0) + point["doc_count"]
    hits = [h for b in members for h in b.get("samples", {}).get("hits", {}).get("hits", [])]
    hits.sort(key=lambda h: (h.get("sort") or [0])[0], reverse=True)  # newest first
    in_ids = " OR ".join(f"template:{i}" for i in ids if any(b["key"] == i for b in members))
    return {
        "template_id": tid,
        "template_ids": [i for i in ids if any(b["key"] == i for b in members)],
        "template": stored.get("template"),
        "count": sum(b["doc_count"] for b in members),
        "new": first_seen is not None and int(first_seen) * 1_000_000 >= query.since,
        "first_seen": _ms_iso(first_seen),
        "last_seen": _ms_iso(last_seen),
        "first_seen_in_range": _ms_iso(first_in_range),
        "last_seen_in_range": _ms_iso(last_in_range),
        "trend": [trend[k] for k in sorted(trend)],
        "samples": [search.shape_hit(h) for h in hits[:samples]],
        "query": in_ids if len(members) == 1 else f"({in_ids})",
    }


async def list_patterns(request: Request) -> Response:
    """GET → {since, until, interval_seconds, total, patterns: [{template_id, template_ids,
    template, count, new, first_seen, last_seen, first_seen_in_range, last_seen_in_range,
    trend, samples, query}]}, most frequent first. One row per template text: the events of
    ids a template left (it widened or merged) count under the id it has now
    (`template_ids` lists the ids counted, `query` finds them all)."""
    principal = require(request, Permission.READ)
    settings: Settings = request.app.state.settings
    params = dict(request.query_params)
    query = search.read_query(params, now_ns=time.time_ns(), default_since="1h")
    interval = search.histogram_interval(query.since, query.until, params.get("interval"))
    limit = search.read_int(params, "limit", 50, 1, 500)
    samples = search.read_int(params, "samples", 3, 0, 10)
    # ids a template left hold a few early events each: ask for more buckets than rows
    result = await run(request, patterns_body(settings, principal.tenant_id, query, interval,
                                              min(2 * limit, 1000), samples))
    buckets = result.get("aggregations", {}).get("templates", {}).get("buckets", [])
    tenant = str(principal.tenant_id)
    known = await stored_templates(request, tenant, [b["key"] for b in buckets]) \
        if buckets else {}
    rows = [_pattern_row(tid, members, known, query, samples)
            for tid, members in _group(buckets, known)]
    rows.sort(key=lambda r: -r["count"])
    return JSONResponse({
        "since": iso_nanos(query.since), "until": iso_nanos(query.until),
        "interval_seconds": interval, "trend_start": iso_nanos(
            query.since - query.since % (interval * NS)),
        "total": result["hits"]["total"]["value"], "patterns": rows[:limit],
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
