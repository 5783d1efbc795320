"""`GET /api/v1/sources`: the caller's tenant's log sources with per-source statistics.

The worker's stats agent keeps the numbers in Faust tables and snapshots them every few seconds
into the `{index_prefix}sources` index (docs/stream.md, "Statistics"); this endpoint reads that
index, filtered on the caller's tenant. `?windows=1` adds the recent per-window counts.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.accounts.authz import Permission
from app.elastic import esindex
from app.settings import Settings
from web.auth import require
from web.es_requests import es_search

MAX_SOURCES = 1000


async def list_sources(request: Request) -> Response:
    """GET → {"sources": [{service, host, count, bytes, severity, first_seen, last_seen,
    window_seconds, windows?}], "total": n}, most recently seen first."""
    principal = require(request, Permission.READ)
    settings: Settings = request.app.state.settings
    with_windows = request.query_params.get("windows", "").lower() in ("1", "true", "yes")
    source_fields: Any = True if with_windows else {"excludes": ["windows"]}
    found = await es_search(
        request,
        {
            "index": esindex.sources_index(settings),
            "query": {"bool": {"filter": [{"term": {"tenant_id": str(principal.tenant_id)}}]}},
            "sort": [{"last_seen": "desc"}],
            "size": MAX_SOURCES,
            "source": source_fields,
            "ignore_unavailable": True,
            "allow_no_indices": True,
        },
    )
    sources = []
    for hit in found["hits"]["hits"]:
        doc = dict(hit["_source"])
        doc.pop("tenant_id", None)
        doc.pop("tenant", None)
        sources.append(doc)
    return JSONResponse({"sources": sources, "total": len(sources)})


routes = [Route("/api/v1/sources", list_sources, methods=["GET"])]
