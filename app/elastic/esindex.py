"""Elasticsearch layout of the log index: names, template, documents, and tenant-scoped queries.

Tiered layout (docs/scaling.md, "Index layout"). Small tenants share daily indices, one family
per retention class, `{index_prefix}shared-r{days}-{YYYY.MM.DD}`, their documents routed by
tenant id. A promoted tenant (large: `laas tenant promote` or the hourly size check) has its
own daily indices `{index_prefix}logs-{tenant_id}-{YYYY.MM.DD}` from its promotion day on,
reached through its alias `{index_prefix}logs-{tenant_id}` (the layout every tenant had before;
such indices keep being read and written until retention deletes them). Every document carries
`tenant_id`. A search never names an index itself: `tenant_search()` builds the request (the
tenant's alias and the shared indices, *and* a `tenant_id` filter), so forgetting the tenant is
not possible through this module, and a query cannot widen it (the filter is ANDed).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError

from app.pipeline.events import NS, LogEvent, iso_nanos
from app.settings import Settings

_TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


class InvalidTenant(ValueError):
    """A tenant id that cannot be part of an index name."""


@functools.lru_cache(maxsize=4096)
def _tenant(tenant_id: str | int) -> str:
    value = str(tenant_id).lower()
    if not _TENANT_ID.fullmatch(value):
        raise InvalidTenant(f"tenant id {tenant_id!r} cannot name an index")
    return value


def logs_base(settings: Settings, name: str = "logs") -> str:
    """`{index_prefix}{name}`: the base of a set of log indices (`logs` is the live set)."""
    return f"{settings.index_prefix}{name}"


def tenant_alias(settings: Settings, tenant_id: str | int) -> str:
    """The alias every search of one tenant goes through: `{prefix}logs-{tenant_id}`."""
    return f"{logs_base(settings)}-{_tenant(tenant_id)}"


def daily_index(settings: Settings, tenant_id: str | int, time_ns: int,
                base: str | None = None) -> str:
    """`{base}-{tenant_id}-{YYYY.MM.DD}` (UTC day of the event's time)."""
    return f"{base or logs_base(settings)}-{_tenant(tenant_id)}-{_day(time_ns // DAY_NS)}"


DAY_NS = 86_400 * NS


@functools.lru_cache(maxsize=256)
def _day(days: int) -> str:
    """`YYYY.MM.DD` of a day number since the epoch (cached: asked for every event)."""
    return datetime.fromtimestamp(days * 86_400, UTC).strftime("%Y.%m.%d")


def shared_base(settings: Settings) -> str:
    """`{index_prefix}shared`: the base of the shared daily indices of small tenants."""
    return f"{settings.index_prefix}shared"


def shared_index(settings: Settings, retention_days: int, time_ns: int) -> str:
    """`{prefix}shared-r{retention_days}-{YYYY.MM.DD}`: the shared index of one retention class
    and UTC day (retention deletes it whole once the class's days are past)."""
    return f"{shared_base(settings)}-r{int(retention_days)}-{_day(time_ns // DAY_NS)}"


def shared_pattern(settings: Settings) -> str:
    """Every shared log index (searches add the `tenant_id` filter)."""
    return f"{shared_base(settings)}-*"


@dataclass(frozen=True)
class TenantIndexing:
    """What decides where a tenant's events go: its retention class and, once promoted, the
    UTC day number (days since the epoch) from which it has dedicated indices."""

    retention_days: int
    dedicated_from: int | None = None


@dataclass(frozen=True)
class Placement:
    """Where one event is written: the index, the routing (shared indices: the tenant id),
    the alias a new index gets (dedicated indices: the tenant's), whether the index is shared."""

    index: str
    routing: str | None
    alias: str | None
    shared: bool


def placement(settings: Settings, tenant_id: str | int, time_ns: int,
              indexing: TenantIndexing | None, existing: Container[str],
              base: str | None = None) -> Placement:
    """The index of a tenant's event, deterministic per tenant and UTC day so that retries,
    replays and late events of a day all land where that day's first copy went:

    - a replay into a new index set (`base`): `{base}-{tenant}-{day}`, no alias (swapped later);
    - a dedicated index of that tenant and day that already exists (a promoted tenant's, or one
      of the per-tenant layout used before shared indices): that index;
    - a promoted tenant, from its `dedicated_from` day on: its dedicated index, with its alias;
    - otherwise the shared index of the tenant's retention class, routed by tenant id.
    """
    tenant = _tenant(tenant_id)
    if base is not None and base != logs_base(settings):
        return Placement(daily_index(settings, tenant, time_ns, base), None, None, False)
    own = daily_index(settings, tenant, time_ns)
    day = time_ns // DAY_NS
    if own in existing or (indexing is not None and indexing.dedicated_from is not None
                           and day >= indexing.dedicated_from):
        return Placement(own, None, tenant_alias(settings, tenant), False)
    days = indexing.retention_days if indexing is not None else settings.retention_default_days
    return Placement(shared_index(settings, days, time_ns), tenant, None, True)


def index_day(name: str) -> datetime | None:
    """The UTC day a daily index holds, from its name; None for other names."""
    m = re.search(r"-(\d{4}\.\d{2}\.\d{2})$", name)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y.%m.%d").replace(tzinfo=UTC)


def all_logs_pattern(settings: Settings) -> str:
    """Every live log index of every tenant, both tiers (operators only: retention, metrics)."""
    return f"{logs_base(settings)}-*,{shared_pattern(settings)}"


def template_name(settings: Settings) -> str:
    return f"{settings.index_prefix}logs"


def sources_index(settings: Settings) -> str:
    """The snapshot index of per-source statistics written by the stats agent."""
    return f"{settings.index_prefix}sources"


# Typed attributes (docs/ingest.md, "Typed attributes"): every attribute is in the `flattened`
# field `attributes` (text, one mapping entry whatever the keys); int and double values are
# also in `attributes_num`, one `double` field per key, mapped on first sight and bounded by
# `es_numeric_attribute_fields` per index: keys past the bound are kept in `_source` but not
# indexed, and such a key, or a value a field cannot take, is listed in the document's
# `_ignored` meta field (counted by `ignored_attributes`), never a refused document.
NUMERIC_ATTRIBUTES = "attributes_num"
_NUMERIC_TEMPLATE = {"attributes_numbers": {
    "path_match": f"{NUMERIC_ATTRIBUTES}.*",
    "mapping": {"type": "double", "ignore_malformed": True}}}
_NUMERIC_FIELD = {"type": "object", "dynamic": True, "subobjects": False}


def numeric_attributes(attributes: dict[str, Any]) -> dict[str, int | float]:
    """The int and double attributes of an event (`attributes_num` of its document)."""
    return {k: v for k, v in attributes.items()
            if type(v) is int or type(v) is float}


def mappings(settings: Settings) -> dict[str, Any]:
    """Explicit, strict mappings: unknown top-level fields are refused, attributes are one
    `flattened` field (one mapping entry whatever keys producers send), numeric attributes
    also bounded dynamic `double` fields (`NUMERIC_ATTRIBUTES`)."""
    keyword = {"type": "keyword"}
    return {
        "dynamic": "strict",
        "dynamic_templates": [_NUMERIC_TEMPLATE],
        "properties": {
            "@timestamp": {"type": "date_nanos"},
            "observed_timestamp": {"type": "date_nanos"},
            "tenant_id": keyword,
            "tenant": keyword,
            "severity": keyword,
            "severity_number": {"type": "byte"},
            "message": {
                "type": "text",
                "fields": {"keyword": {"type": "keyword",
                                       "ignore_above": settings.message_keyword_max}},
            },
            "service": keyword,
            "host": keyword,
            "template_id": keyword,
            "trace_id": keyword,
            "span_id": keyword,
            "format": keyword,
            "source": keyword,
            "size": {"type": "integer"},
            "attributes": {"type": "flattened", "ignore_above": 1024, "depth_limit": 8},
            NUMERIC_ATTRIBUTES: _NUMERIC_FIELD,
            "raw": {
                "properties": {
                    "topic": keyword,
                    "partition": {"type": "integer"},
                    "offset": {"type": "long"},
                    "index": {"type": "integer"},
                }
            },
        },
    }


def index_settings(settings: Settings) -> dict[str, Any]:
    return {
        "number_of_shards": settings.es_shards,
        "number_of_replicas": settings.es_replicas,
        "refresh_interval": "1s",
        **_field_limits(settings),
    }


def _field_limits(settings: Settings) -> dict[str, Any]:
    """The fixed mapping's fields plus `es_numeric_attribute_fields` dynamic ones."""
    fixed = _count_fields(mappings(settings)["properties"])
    return {"mapping.total_fields.limit": fixed + settings.es_numeric_attribute_fields,
            "mapping.total_fields.ignore_dynamic_beyond_limit": True}


def _count_fields(properties: dict[str, Any]) -> int:
    """Fields as `mapping.total_fields.limit` counts them: each field, object and multi-field."""
    return sum(1 + _count_fields(spec.get("properties", {})) + len(spec.get("fields", {}))
               for spec in properties.values())


def template_body(settings: Settings) -> dict[str, Any]:
    """The composable index template of every log index set under `index_prefix`."""
    return {
        "index_patterns": [f"{settings.index_prefix}logs-*", f"{settings.index_prefix}replay-*",
                           f"{shared_base(settings)}-*"],
        "priority": 200,
        "template": {"settings": index_settings(settings), "mappings": mappings(settings)},
        "_meta": {"owner": "laas", "doc": "docs/stream.md"},
    }


async def ensure_template(es: AsyncElasticsearch, settings: Settings) -> None:
    """Install (or update) the index template; idempotent. Log indices made by an older
    template get the typed-attribute mapping and field limits too (else their strict mapping
    would refuse every document with a numeric attribute until the next day's index)."""
    body = template_body(settings)
    await es.indices.put_index_template(
        name=template_name(settings), index_patterns=body["index_patterns"],
        priority=body["priority"], template=body["template"], meta=body["_meta"])
    existing = ",".join(body["index_patterns"])
    await es.indices.put_mapping(
        index=existing, dynamic_templates=[_NUMERIC_TEMPLATE],
        properties={NUMERIC_ATTRIBUTES: _NUMERIC_FIELD},
        allow_no_indices=True, ignore_unavailable=True, expand_wildcards="open")
    await es.indices.put_settings(index=existing, settings=_field_limits(settings),
                                  allow_no_indices=True, ignore_unavailable=True,
                                  expand_wildcards="open")


async def ignored_attributes(es: AsyncElasticsearch, index: str,
                             query: dict[str, Any] | None = None) -> dict[str, int]:
    """Attribute fields Elasticsearch left unindexed in `index` (`_ignored`: a numeric key past
    the per-index bound, a value its field cannot take, a text over 1024 characters) with
    the number of documents of each."""
    found = await es.search(index=index, size=0, query=query or {"match_all": {}},
                            aggs={"ignored": {"terms": {"field": "_ignored", "size": 1000}}},
                            ignore_unavailable=True, allow_no_indices=True)
    buckets = (found.body.get("aggregations") or {}).get("ignored", {}).get("buckets", [])
    return {str(b["key"]): int(b["doc_count"]) for b in buckets}


async def ensure_index(es: AsyncElasticsearch, name: str, alias: str | None = None, *,
                       mappings: dict[str, Any] | None = None,
                       settings: dict[str, Any] | None = None) -> bool:
    """Create index `name` (with `alias`, `mappings` and index `settings`) unless it exists;
    True if this call created it. The one way LaaS creates an index: safe to call again and from
    concurrent callers (one creates it, the others find it there); an existing index is left
    as it is (a caller that needs newer fields puts them itself)."""
    try:
        await es.indices.create(index=name, aliases={alias: {}} if alias else None,
                                mappings=mappings, settings=settings)
    except BadRequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise
        return False
    return True


def small_index(settings: Settings) -> dict[str, Any]:
    """Index settings of LaaS's own small indices (alerts, templates, sources): one shard."""
    return {"number_of_shards": 1, "number_of_replicas": settings.es_replicas}


async def ensure_shared_index(es: AsyncElasticsearch, settings: Settings, name: str) -> None:
    """Create a shared daily index (`es_shared_shards` primaries; every document must carry a
    routing, the tenant id) unless it exists already."""
    await ensure_index(es, name, settings={"number_of_shards": settings.es_shared_shards},
                       mappings={"_routing": {"required": True}})


async def ensure_placement(es: AsyncElasticsearch, settings: Settings, where: Placement) -> None:
    """Create the index of `where` (shared or dedicated) unless it exists already."""
    if where.shared:
        await ensure_shared_index(es, settings, where.index)
    else:
        await ensure_index(es, where.index, where.alias)


async def dedicated_indices(es: AsyncElasticsearch, settings: Settings) -> set[str]:
    """Names of the existing dedicated (per-tenant) daily log indices."""
    found = await es.indices.get(index=f"{logs_base(settings)}-*", allow_no_indices=True,
                                 ignore_unavailable=True, expand_wildcards="open,closed",
                                 filter_path="*.settings.index.provided_name")
    return {name for name in found.body if index_day(name) is not None}


def document(event: LogEvent) -> dict[str, Any]:
    """The Elasticsearch source of an event (its `_id` is `event.doc_id()`)."""
    doc: dict[str, Any] = {
        "@timestamp": iso_nanos(event.time),
        "observed_timestamp": iso_nanos(event.observed_time),
        "tenant_id": event.tenant_id,
        "tenant": event.tenant,
        "severity": event.severity,
        "severity_number": event.severity_number,
        "message": event.message,
        "service": event.service,
        "host": event.host,
        "template_id": event.template_id,
        "format": event.format,
        "source": event.source,
        "size": event.size,
        "attributes": event.attributes,
        "raw": {"topic": event.raw.topic, "partition": event.raw.partition,
                "offset": event.raw.offset, "index": event.raw.index},
    }
    numbers = numeric_attributes(event.attributes)
    if numbers:
        doc[NUMERIC_ATTRIBUTES] = numbers
    if event.trace_id:
        doc["trace_id"] = event.trace_id
    if event.span_id:
        doc["span_id"] = event.span_id
    return doc


# --- the one way to query ------------------------------------------------------------------------

def _time(value: int | str | datetime) -> str:
    if isinstance(value, datetime):
        return iso_nanos(int(value.timestamp()) * NS + value.microsecond * 1000)
    if isinstance(value, int):
        return iso_nanos(value)
    return value


def tenant_query(tenant_id: str | int, query: dict[str, Any] | None = None, *,
                 since: int | str | datetime | None = None,
                 until: int | str | datetime | None = None) -> dict[str, Any]:
    """`query` (any Elasticsearch query, e.g. `query_string`) wrapped in a bool query whose
    filter pins `tenant_id` (and the optional `@timestamp` range: ns ints, datetimes or
    date-math strings; `since` inclusive, `until` exclusive)."""
    filters: list[dict[str, Any]] = [{"term": {"tenant_id": str(tenant_id)}}]
    if since is not None or until is not None:
        bounds: dict[str, str] = {}
        if since is not None:
            bounds["gte"] = _time(since)
        if until is not None:
            bounds["lt"] = _time(until)
        filters.append({"range": {"@timestamp": bounds}})
    bool_query: dict[str, Any] = {"filter": filters}
    if query:
        bool_query["must"] = [query]
    return {"bool": bool_query}


def tenant_indices(settings: Settings, tenant_id: str | int) -> str:
    """The indices one tenant's documents can be in: its alias and the shared indices."""
    return f"{tenant_alias(settings, tenant_id)},{shared_pattern(settings)}"


def tenant_search(settings: Settings, tenant_id: str | int, query: dict[str, Any] | None = None,
                  *, since: int | str | datetime | None = None,
                  until: int | str | datetime | None = None, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for `AsyncElasticsearch.search` / `.count` scoped to one tenant.

    The search layer builds every log query with this: `es.search(**tenant_search(settings,
    principal.tenant_id, {"query_string": {...}}, since=..., size=50, sort=[...]))`. It targets
    the tenant's alias (its dedicated indices; `ignore_unavailable`: a tenant without them has
    none) and the shared indices, and filters on `tenant_id` (the only thing that separates
    tenants in a shared index; it is ANDed with the query, which therefore cannot widen it).
    `extra` passes through (size, sort, aggs, highlight, search_after ...) but may not replace
    `index`, `query` or `routing`.
    """
    if "index" in extra or "query" in extra or "routing" in extra:
        raise ValueError("tenant_search sets index and query itself")
    return {
        "index": tenant_indices(settings, tenant_id),
        "query": tenant_query(tenant_id, query, since=since, until=until),
        "ignore_unavailable": True,
        "allow_no_indices": True,
        **extra,
    }
