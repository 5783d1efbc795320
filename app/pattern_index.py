"""The template snapshot index `{index_prefix}patterns`: one document per tenant and template id
(text, first and last seen), written by the worker (agents/templates.py), read by
`GET /api/v1/patterns` (web/patterns.py) with a tenant filter."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError

from app.settings import Settings

PATTERNS_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "tenant_id": {"type": "keyword"},
        "template_id": {"type": "keyword"},
        "template": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 2048}}},
        "first_seen": {"type": "date", "format": "epoch_millis"},
        "last_seen": {"type": "date", "format": "epoch_millis"},
        "updated": {"type": "date", "format": "epoch_millis"},
    },
}

# Keeps the earliest first_seen when several partition miners report one template id.
UPSERT_SCRIPT = ("ctx._source.template = params.d.template; "
                 "ctx._source.first_seen = Math.min(ctx._source.first_seen, params.d.first_seen); "
                 "ctx._source.last_seen = Math.max(ctx._source.last_seen, params.d.last_seen); "
                 "ctx._source.updated = params.d.updated;")


def patterns_index(settings: Settings) -> str:
    """The template snapshot index the web reads (`GET /api/v1/patterns`)."""
    return f"{settings.index_prefix}patterns"


async def ensure_patterns_index(es: AsyncElasticsearch, settings: Settings) -> None:
    try:
        await es.indices.create(index=patterns_index(settings), mappings=PATTERNS_MAPPINGS,
                                settings={"number_of_shards": 1,
                                          "number_of_replicas": settings.es_replicas})
    except BadRequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise
