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

def merge_template(stored: dict[str, Any] | None, doc: dict[str, Any]) -> dict[str, Any]:
    """A template reported again (maybe by another partition's miner): the latest text, the
    earliest first_seen, the latest last_seen."""
    if stored is None:
        return doc
    return {
        **doc,
        "first_seen": min(stored["first_seen"], doc["first_seen"]),
        "last_seen": max(stored["last_seen"], doc["last_seen"]),
    }


async def store_templates(
    es: AsyncElasticsearch, settings: Settings, docs: dict[str, dict[str, Any]]
) -> list[str]:
    """Merge `docs` (by `_id`) into the index with optimistic concurrency (no scripts: the local
    Elasticsearch has no painless); returns the ids to retry (changed concurrently or failed)."""
    index = patterns_index(settings)
    found = await es.mget(index=index, ids=list(docs))
    operations: list[dict[str, Any]] = []
    for hit in found["docs"]:
        key = hit["_id"]
        if hit.get("found"):
            action = {"_index": index, "_id": key, "if_seq_no": hit["_seq_no"],
                      "if_primary_term": hit["_primary_term"]}
            operations += [{"index": action}, merge_template(hit["_source"], docs[key])]
        else:
            operations += [{"create": {"_index": index, "_id": key}}, docs[key]]
    response = await es.bulk(operations=operations)
    return [
        item[op]["_id"] for item in response["items"] for op in item if item[op].get("error")
    ]


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
