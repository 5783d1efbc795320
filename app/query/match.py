"""Evaluate a query syntax tree against one event in Python (the live tail's server-side filter).

Keyword fields compare exactly (wildcards with `fnmatch`); free text approximates
Elasticsearch's standard analyser: the message is split into lower-cased word tokens, a word
matches a token, a phrase matches consecutive tokens, a wildcard matches a token. Ranges on
keyword fields compare strings, on `severity_number` numbers, and a numeric range on an
attribute compares the attributes that are numbers (as the index does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from functools import lru_cache

from app.query.ast import And, Exists, MatchAll, Node, Not, Or, Range, Term
from app.query.elastic import numeric_range

TOKEN = re.compile(r"\w+", re.UNICODE)

Fields = Mapping[str, object]
Predicate = Callable[[Fields], bool]


@lru_cache(maxsize=4096)
def tokens(text: str) -> tuple[str, ...]:
    return tuple(TOKEN.findall(text.lower()))


def values(doc: Fields, field: str) -> Sequence[str]:
    """The string values of `field` in a flat event document (`attributes.x` looked up inside)."""
    if field.startswith("attributes."):
        attributes = doc.get("attributes")
        value = (
            attributes.get(field.removeprefix("attributes."))
            if isinstance(attributes, Mapping)
            else None
        )
    else:
        value = doc.get(field)
    if value is None or value == "":
        return ()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return (str(value),)


def contains_sequence(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    if not needle:
        return True
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def compile_predicate(node: Node) -> Predicate:
    """A function telling whether an event document (dict of LaaS fields) matches `node`."""
    match node:
        case MatchAll():
            return lambda doc: True
        case Term(field="message", value=value, kind=kind):
            wanted = tokens(value)
            if kind == "wildcard":
                pattern = value.lower()
                return lambda doc: any(
                    fnmatchcase(t, pattern) for text in values(doc, "message") for t in tokens(text)
                )
            if kind == "phrase":
                return lambda doc: any(
                    contains_sequence(tokens(t), wanted) for t in values(doc, "message")
                )
            return lambda doc: any(set(wanted) <= set(tokens(t)) for t in values(doc, "message"))
        case Term(field=field, value=value, kind="wildcard"):
            return lambda doc: any(fnmatchcase(v, value) for v in values(doc, field))
        case Term(field=field, value=value):
            return lambda doc: value in values(doc, field)
        case Range(field=field, low=low, high=high, include_low=il, include_high=ih) if (
                numeric_range(field, low, high)):
            # as in the index: only attributes that are numbers compare, as numbers
            lo_n = None if low is None else float(low)
            hi_n = None if high is None else float(high)

            def in_numbers(doc: Fields) -> bool:
                attributes = doc.get("attributes")
                v = attributes.get(field[len("attributes."):]) \
                    if isinstance(attributes, Mapping) else None
                if type(v) is not int and type(v) is not float:
                    return False
                if lo_n is not None and (v < lo_n or (v == lo_n and not il)):
                    return False
                return hi_n is None or v < hi_n or (v == hi_n and ih)

            return in_numbers
        case Range(field=field, low=low, high=high, include_low=il, include_high=ih):
            numeric = field == "severity_number"

            def in_range(v: str) -> bool:
                key: float | str = float(v) if numeric else v
                lo: float | str | None = float(low) if numeric and low is not None else low
                hi: float | str | None = float(high) if numeric and high is not None else high
                if lo is not None and (key < lo or (key == lo and not il)):  # type: ignore[operator]
                    return False
                return hi is None or key < hi or (key == hi and ih)  # type: ignore[operator]

            return lambda doc: any(in_range(v) for v in values(doc, field))
        case Exists(field=field):
            return lambda doc: bool(values(doc, field))
        case Not(node=inner):
            predicate = compile_predicate(inner)
            return lambda doc: not predicate(doc)
        case And(nodes=nodes):
            predicates = [compile_predicate(n) for n in nodes]
            return lambda doc: all(p(doc) for p in predicates)
        case Or(nodes=nodes):
            predicates = [compile_predicate(n) for n in nodes]
            return lambda doc: any(p(doc) for p in predicates)
    raise TypeError(f"not a query node: {node!r}")
