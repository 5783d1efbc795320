"""The LaaS query language: a Lucene-syntax subset for Elasticsearch and the live tail."""

from app.query.ast import And, Exists, MatchAll, Node, Not, Or, Range, Term
from app.query.parser import QuerySyntaxError, parse

__all__ = [
    "And",
    "Exists",
    "MatchAll",
    "Node",
    "Not",
    "Or",
    "QuerySyntaxError",
    "Range",
    "Term",
    "parse",
]
