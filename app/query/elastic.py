"""Compile a query syntax tree into Elasticsearch query DSL (for the LaaS log mapping)."""

from __future__ import annotations

import math
from typing import Any

from app.elastic.esindex import NUMERIC_ATTRIBUTES
from app.query.ast import And, Exists, MatchAll, Node, Not, Or, Range, Term

TEXT_FIELDS = {"message"}
ATTRIBUTES = "attributes."


def numeric_range(field: str, low: str | None, high: str | None) -> bool:
    """Whether a range on `field` compares numbers: an attribute with a numeric bound and no
    other kind of bound (`attributes.latency_ms:>100`)."""
    if not field.startswith(ATTRIBUTES) or (low is None and high is None):
        return False
    try:
        return all(b is None or math.isfinite(float(b)) for b in (low, high))
    except ValueError:
        return False


def to_elasticsearch(node: Node) -> dict[str, Any]:
    """The Elasticsearch query of `node` (the caller adds the tenant filter: `tenant_query`)."""
    match node:
        case MatchAll():
            return {"match_all": {}}
        case Term(field=field, value=value, kind=kind) if field in TEXT_FIELDS:
            if kind == "phrase":
                return {"match_phrase": {field: value}}
            if kind == "wildcard":
                return {"wildcard": {field: {"value": value.lower(), "case_insensitive": True}}}
            return {"match": {field: {"query": value, "operator": "and"}}}
        case Term(field=field, value=value, kind="wildcard"):
            return {"wildcard": {field: {"value": value}}}
        case Term(field=field, value=value):
            return {"term": {field: value}}
        case Range(field=field, low=low, high=high, include_low=il, include_high=ih):
            if numeric_range(field, low, high):
                # numbers sent as numbers compare as numbers
                # (app.elastic.esindex.NUMERIC_ATTRIBUTES)
                field = f"{NUMERIC_ATTRIBUTES}.{field.removeprefix(ATTRIBUTES)}"
            bounds: dict[str, str] = {}
            if low is not None:
                bounds["gte" if il else "gt"] = low
            if high is not None:
                bounds["lte" if ih else "lt"] = high
            return {"range": {field: bounds}}
        case Exists(field=field):
            return {"exists": {"field": field}}
        case Not(node=inner):
            return {"bool": {"must_not": [to_elasticsearch(inner)]}}
        case And(nodes=nodes):
            return {"bool": {"must": [to_elasticsearch(n) for n in nodes]}}
        case Or(nodes=nodes):
            return {
                "bool": {"should": [to_elasticsearch(n) for n in nodes], "minimum_should_match": 1}
            }
    raise TypeError(f"not a query node: {node!r}")
