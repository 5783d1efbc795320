"""Search requests: parameters read and checked, Elasticsearch bodies built, hits shaped.

Pure functions; `web/search.py` runs them. Every body goes through
`app.elastic.esindex.tenant_search`, which pins the caller's tenant alias and a `tenant_id` filter
the query cannot escape.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from app.elastic.esindex import tenant_search
from app.pipeline.events import NS, iso_nanos
from app.query import Node, QuerySyntaxError, parse
from app.query.elastic import to_elasticsearch
from app.query.parser import printable
from app.query.timerange import RELATIVE, UNITS, TimeError, time_range
from app.settings import Settings

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
TOTAL_EXACT_UP_TO = 10_000  # totals are exact up to here, then reported as "gte"
MAX_CONTEXT = 500
NANOS_FORMAT = "strict_date_optional_time_nanos"
Order = Literal["newest", "oldest"]
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "UNKNOWN")
# Candidate histogram buckets, seconds: the smallest giving at most MAX_BUCKETS is chosen.
INTERVALS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 120


@dataclass
class BadParameter(ValueError):
    """A request parameter that cannot be used; `position` is set for query syntax errors."""

    parameter: str
    reason: str
    position: int | None = None

    def __post_init__(self) -> None:
        self.reason = printable(self.reason)

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "error": "bad_parameter",
            "parameter": self.parameter,
            "detail": self.reason,
        }
        if self.position is not None:
            body["position"] = self.position
        return body


@dataclass(frozen=True)
class Query:
    """A checked query: its text, syntax tree and time range (ns, since inclusive)."""

    text: str
    node: Node
    since: int
    until: int

    def body(self, settings: Settings, tenant_id: int | str, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for `AsyncElasticsearch.search`, scoped to the tenant."""
        return tenant_search(
            settings,
            tenant_id,
            to_elasticsearch(self.node),
            since=self.since,
            until=self.until,
            **extra,
        )


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: the last hit's sort values, and the first page's frame."""

    after: list[Any]
    since: int
    until: int
    order: Order
    query_hash: str

    def encode(self) -> str:
        raw = json.dumps(
            {
                "a": self.after,
                "s": self.since,
                "u": self.until,
                "o": self.order,
                "q": self.query_hash,
            },
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            cursor = cls(list(data["a"]), int(data["s"]), int(data["u"]), data["o"], str(data["q"]))
        except (ValueError, KeyError, TypeError):
            raise BadParameter("cursor", "not a cursor returned by this API") from None
        if cursor.order not in ("newest", "oldest"):
            raise BadParameter("cursor", "not a cursor returned by this API")
        return cursor


def query_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def param(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadParameter(name, "must be a string")
    return str(value)


def read_query(params: Mapping[str, Any], *, now_ns: int, default_since: str = "15m") -> Query:
    """The `q`, `since` and `until` parameters, checked."""
    text = param(params, "q") or ""
    try:
        node = parse(text)
    except QuerySyntaxError as exc:
        raise BadParameter("q", exc.reason, exc.position) from None
    try:
        since, until = time_range(
            param(params, "since"),
            param(params, "until"),
            now_ns=now_ns,
            default_since=default_since,
        )
    except TimeError as exc:
        raise BadParameter(exc.parameter, exc.reason) from None
    return Query(text, node, since, until)


def read_int(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    text = param(params, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(name, f"'{text}' is not a whole number") from None
    if not low <= value <= high:
        raise BadParameter(name, f"must be between {low} and {high}")
    return value


@dataclass(frozen=True)
class SearchRequest:
    query: Query
    limit: int
    order: Order
    cursor: Cursor | None
    highlight: bool


def read_search(params: Mapping[str, Any], *, now_ns: int) -> SearchRequest:
    """All search parameters; with a cursor, its frame (time range, order) wins."""
    cursor_text = param(params, "cursor")
    cursor = Cursor.decode(cursor_text) if cursor_text else None
    query = read_query(params, now_ns=now_ns)
    order: Order
    match param(params, "order") or param(params, "sort") or "newest":
        case "newest" | "oldest" as given:
            order = given
        case _:
            raise BadParameter("order", "must be 'newest' or 'oldest'")
    if cursor is not None:
        if cursor.query_hash != query_hash(query.text):
            raise BadParameter("cursor", "belongs to another query; start again without it")
        query = Query(query.text, query.node, cursor.since, cursor.until)
        order = cursor.order
    highlight = (param(params, "highlight") or "true").lower() not in ("0", "false", "no")
    return SearchRequest(
        query, read_int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT), order, cursor, highlight
    )


def sort_clause(order: Order) -> list[dict[str, Any]]:
    """A total order: event time, then the raw record's position (unique per tenant)."""
    direction = "desc" if order == "newest" else "asc"
    return [
        {"@timestamp": {"order": direction, "format": NANOS_FORMAT}},
        {"raw.partition": direction},
        {"raw.offset": direction},
        {"raw.index": direction},
    ]


def search_body(
    settings: Settings, tenant_id: int | str, request: SearchRequest, timeout: str
) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "size": request.limit,
        "sort": sort_clause(request.order),
        "track_total_hits": TOTAL_EXACT_UP_TO,
        "timeout": timeout,
    }
    if request.cursor is not None:
        extra["search_after"] = request.cursor.after
    if request.highlight:
        extra["highlight"] = {
            "fields": {"message": {"number_of_fragments": 0}},
            "pre_tags": ["<mark>"],
            "post_tags": ["</mark>"],
            "encoder": "html",
        }
    return request.query.body(settings, tenant_id, **extra)


def shape_hit(hit: Mapping[str, Any]) -> dict[str, Any]:
    """The API form of one Elasticsearch hit."""
    source = hit["_source"]
    shaped = {
        "id": hit["_id"],
        "time": source["@timestamp"],
        "observed_time": source.get("observed_timestamp"),
        "level": source.get("severity"),
        "service": source.get("service"),
        "host": source.get("host"),
        "message": source.get("message"),
        "template_id": source.get("template_id") or None,
        "trace_id": source.get("trace_id"),
        "span_id": source.get("span_id"),
        "attributes": source.get("attributes") or {},
    }
    if "highlight" in hit:
        shaped["highlight"] = hit["highlight"]
    return shaped


def search_response(request: SearchRequest, result: Mapping[str, Any]) -> dict[str, Any]:
    hits = result["hits"]["hits"]
    next_cursor = None
    if len(hits) == request.limit:
        next_cursor = Cursor(
            hits[-1]["sort"],
            request.query.since,
            request.query.until,
            request.order,
            query_hash(request.query.text),
        ).encode()
    total = result["hits"]["total"]
    return {
        "hits": [shape_hit(hit) for hit in hits],
        "total": {"value": total["value"], "relation": total["relation"]},
        "next_cursor": next_cursor,
        "partial": bool(result.get("timed_out")),
        "took_ms": result.get("took"),
        "since": iso_nanos(request.query.since),
        "until": iso_nanos(request.query.until),
    }


def histogram_interval(since: int, until: int, requested: str | None) -> int:
    """Bucket size in seconds: the one asked for (`30s`, `5m`...), else fitted to the range."""
    span = (until - since) / NS
    if requested:
        match = RELATIVE.fullmatch(requested.strip())
        if match is None:
            raise BadParameter("interval", "use a duration like 30s, 5m, 1h or 1d")
        seconds = int(match.group(1)) * UNITS[match.group(2)]
        if seconds <= 0 or span / seconds > 10 * MAX_BUCKETS:
            raise BadParameter("interval", f"gives more than {10 * MAX_BUCKETS} buckets")
        return seconds
    return next((s for s in INTERVALS if span / s <= MAX_BUCKETS), INTERVALS[-1])


def histogram_body(
    settings: Settings, tenant_id: int | str, query: Query, interval: int
) -> dict[str, Any]:
    aggs = {
        "over_time": {
            "date_histogram": {
                "field": "@timestamp",
                "fixed_interval": f"{interval}s",
                "min_doc_count": 0,
                "extended_bounds": {
                    "min": query.since // 1_000_000,
                    "max": (query.until - 1) // 1_000_000,
                },
            },
            "aggs": {"levels": {"terms": {"field": "severity", "size": len(LEVELS)}}},
        }
    }
    return query.body(settings, tenant_id, size=0, aggs=aggs, track_total_hits=True)


def histogram_response(query: Query, interval: int, result: Mapping[str, Any]) -> dict[str, Any]:
    buckets = []
    for bucket in result.get("aggregations", {}).get("over_time", {}).get("buckets", []):
        levels = {b["key"]: b["doc_count"] for b in bucket["levels"]["buckets"]}
        buckets.append(
            {"time": bucket["key_as_string"], "count": bucket["doc_count"], "levels": levels}
        )
    return {
        "interval_seconds": interval,
        "since": iso_nanos(query.since),
        "until": iso_nanos(query.until),
        "total": result["hits"]["total"]["value"],
        "buckets": buckets,
    }


# --- context: the lines around one event from the same source ---------------------------------


def anchor_body(settings: Settings, tenant_id: int | str, doc_id: str) -> dict[str, Any]:
    return tenant_search(
        settings, tenant_id, {"ids": {"values": [doc_id]}}, size=1, sort=sort_clause("oldest")
    )


def neighbours_body(
    settings: Settings,
    tenant_id: int | str,
    anchor: Mapping[str, Any],
    side: Literal["before", "after"],
    count: int,
) -> dict[str, Any]:
    """The `count` events of the anchor's service and host just before or after it."""
    source = anchor["_source"]
    same_source = {
        "bool": {
            "filter": [
                {"term": {"service": source.get("service", "")}},
                {"term": {"host": source.get("host", "")}},
            ]
        }
    }
    order: Order = "newest" if side == "before" else "oldest"
    return tenant_search(
        settings,
        tenant_id,
        same_source,
        size=count,
        sort=sort_clause(order),
        search_after=anchor["sort"],
    )


# --- fields: facets for a range --------------------------------------------------------------

FACETS = {
    "service": "service",
    "host": "host",
    "level": "severity",
    "template": "template_id",
    "source": "source",
    "format": "format",
}
ATTRIBUTE_SAMPLE = 500


def fields_body(settings: Settings, tenant_id: int | str, query: Query, top: int) -> dict[str, Any]:
    """Top values of the fixed fields, and a sample of recent events to find attribute keys."""
    aggs = {name: {"terms": {"field": field, "size": top}} for name, field in FACETS.items()}
    return query.body(
        settings,
        tenant_id,
        size=ATTRIBUTE_SAMPLE,
        aggs=aggs,
        source=["attributes"],
        sort=sort_clause("newest"),
        track_total_hits=True,
    )


def attribute_keys(hits: list[Mapping[str, Any]], top: int) -> list[str]:
    """The `top` attribute keys seen most often in the sampled hits."""
    counts: dict[str, int] = {}
    for hit in hits:
        for key in (hit.get("_source") or {}).get("attributes") or {}:
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))[:top]


def attribute_values_body(
    settings: Settings, tenant_id: int | str, query: Query, keys: list[str], top: int
) -> dict[str, Any]:
    aggs = {
        f"attributes.{key}": {"terms": {"field": f"attributes.{key}", "size": top}} for key in keys
    }
    return query.body(settings, tenant_id, size=0, aggs=aggs)


def facets(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`[{"field", "values": [{"value", "count"}], "other"}]` from terms aggregations."""
    out = []
    for name, agg in (result.get("aggregations") or {}).items():
        values = [{"value": b["key"], "count": b["doc_count"]} for b in agg["buckets"]]
        if values:
            out.append({"field": name, "values": values, "other": agg["sum_other_doc_count"]})
    return out
