"""The template snapshot index `{index_prefix}patterns`: one document per tenant and template id
(text, first and last seen, former ids), written by the worker (agents/templates.py), read by
`GET /api/v1/patterns` (web/templates.py) with a tenant filter.

A template's id is the hash of its text (app/templates/miner.py). When a template widens or
merges into another, the id it leaves gets an *alias* document: `merged_into` names the id
that now holds it (`_id` `{tenant}/{old id}`). Once a document is an alias it stays one (the
id it points to is a wider template that holds the old one's lines), so every reader resolves
an id the same way, whatever partition reported it."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch

from app.elastic.esindex import ensure_index, small_index
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
        "merged_into": {"type": "keyword"},
        "former_ids": {"type": "keyword"},
    },
}
MAX_ALIAS_HOPS = 8  # how far readers follow merged_into


def template_doc(tenant_id: str, record: list[Any], now: float) -> dict[str, Any]:
    """The snapshot document of a miner record (`Cluster.to_record()`)."""
    return {
        "tenant_id": tenant_id, "template_id": record[0], "template": record[1],
        "first_seen": int(record[4] * 1000), "last_seen": int(record[5] * 1000),
        "updated": int(now * 1000), "former_ids": list(record[6]) if len(record) > 6 else [],
    }


def alias_doc(tenant_id: str, old_id: str, record: list[Any], now: float) -> dict[str, Any]:
    """The document of an id a template left: it points to the template's id now."""
    return {**template_doc(tenant_id, record, now), "template_id": old_id,
            "merged_into": record[0], "former_ids": []}

def merge_template(stored: dict[str, Any] | None, doc: dict[str, Any]) -> dict[str, Any]:
    """A template reported again (maybe by another partition's miner): the latest text, the
    earliest first_seen, the latest last_seen, the former ids of both; an alias stays an
    alias (the latest target wins)."""
    if stored is None:
        return doc
    merged = {
        **doc,
        "first_seen": min(stored["first_seen"], doc["first_seen"]),
        "last_seen": max(stored["last_seen"], doc["last_seen"]),
    }
    former = list(dict.fromkeys([*doc.get("former_ids", []), *stored.get("former_ids", [])]))
    if former:
        merged["former_ids"] = former[:64]
    target = doc.get("merged_into") or stored.get("merged_into")
    if target and target != doc["template_id"]:
        merged["merged_into"] = target
        if not doc.get("merged_into"):  # a partition still reports the old text: keep the alias
            merged["template"] = stored.get("template", doc["template"])
    return merged


def resolve_ids(docs: dict[str, dict[str, Any]], ids: list[str]) -> dict[str, str]:
    """Each id -> the id of the template that holds it now, following `merged_into` through
    `docs` (template id -> stored document) at most MAX_ALIAS_HOPS times (an id without a
    document is its own)."""
    out: dict[str, str] = {}
    for start in ids:
        current, seen = start, {start}
        for _ in range(MAX_ALIAS_HOPS):
            target = (docs.get(current) or {}).get("merged_into")
            if not target or target in seen:
                break
            current = target
            seen.add(target)
        out[start] = current
    return out


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
    """Create the index, or add the fields a newer version writes to an existing one."""
    if not await ensure_index(es, patterns_index(settings), mappings=PATTERNS_MAPPINGS,
                              settings=small_index(settings)):
        await es.indices.put_mapping(index=patterns_index(settings),
                                     properties=PATTERNS_MAPPINGS["properties"])
