"""Parse a Lucene-syntax query into the syntax tree, with errors that give the position.

Supported: free text words and "phrases" (searched in the message), `field:value`,
`field:"phrase"`, `field:(a OR b)`, `field:[a TO b]` / `{a TO b}`, `field:>=x` (`>`, `<`, `<=`),
`_exists_:field`, `AND`/`&&`, `OR`/`||`, `NOT`/`!`/`-`, `+`, parentheses, trailing or inner
wildcards (`time*`, `ab?d`). Terms next to each other are ANDed (as in Loki, Graylog and
Kibana's KQL), not ORed as in raw Lucene. Refused with a clear error: leading wildcards and
regular expressions (both scan every term of the index), fuzzy and proximity operators (`~`),
boosts (`^`), unknown fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.pipeline.parsing import severity_from_text, severity_name
from app.query.ast import And, Exists, MatchAll, Node, Not, Or, Range, Term

# The limits every query meets, wherever it comes from (search, histogram, fields, live tail,
# alert rules in the web and in the worker): bounded parse, compile and evaluation recursion,
# and a tree Elasticsearch accepts (its `indices.query.bool.max_nested_depth` is 30 bools, and
# the tenant filter wraps the query in one more).
MAX_LENGTH = 4096
MAX_DEPTH = 24  # open '(' plus pending NOT/-/! while parsing; AND/OR/NOT levels of the tree
MAX_CLAUSES = 512

# user-facing name -> document field
FIELDS = {
    "message": "message",
    "msg": "message",
    "service": "service",
    "host": "host",
    "level": "severity",
    "severity": "severity",
    "template": "template_id",
    "template_id": "template_id",
    "trace_id": "trace_id",
    "span_id": "span_id",
    "source": "source",
    "format": "format",
    "tenant": "tenant",
}
ATTRIBUTES = "attributes."
SPECIAL = set('()[]{}:"\\+-!&|^~*?/<>= ')
TERMINATORS = set('()[]{}:" ')


@dataclass
class QuerySyntaxError(ValueError):
    """The query cannot be run: `position` is the 0-based character offset of the problem."""

    position: int
    reason: str

    def __post_init__(self) -> None:
        self.reason = printable(self.reason)

    def __str__(self) -> str:
        return f"{self.reason} (at position {self.position})"


def printable(text: str) -> str:
    """`text` with lone surrogates written as `\\udXXX`: error details echo the caller's
    input, and an answer holding a lone surrogate cannot be encoded (a 500, issue 21)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def parse(text: str) -> Node:
    """The syntax tree of `text`; an empty query matches everything."""
    if len(text) > MAX_LENGTH:
        raise QuerySyntaxError(MAX_LENGTH, f"query longer than {MAX_LENGTH} characters")
    parser = _Parser(text)
    node = parser.parse()
    if parser.clauses > MAX_CLAUSES:
        raise QuerySyntaxError(0, f"query has {parser.clauses} clauses; at most {MAX_CLAUSES}")
    if (levels := depth(node)) > MAX_DEPTH:
        raise QuerySyntaxError(
            0,
            f"query nested {levels} levels deep, at most {MAX_DEPTH} allowed (each NOT, and "
            "each AND or OR inside another operator, is one level)",
        )
    return node


def depth(node: Node) -> int:
    """How deep AND, OR and NOT nest in `node` (a term is 0, `a AND b` 1, `NOT (a OR b)` 2)."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(node, 0)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, Not):
            stack.append((current.node, level + 1))
        elif isinstance(current, And | Or):
            stack.extend((child, level + 1) for child in current.nodes)
        else:
            deepest = max(deepest, level)
    return deepest


def canonical_field(name: str, position: int) -> str:
    if name.startswith(ATTRIBUTES) and len(name) > len(ATTRIBUTES):
        return name
    if name in FIELDS:
        return FIELDS[name]
    known = ", ".join(sorted(FIELDS)) + ", attributes.<key>, _exists_"
    raise QuerySyntaxError(position, f"unknown field '{name}'; known fields: {known}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.clauses = 0

    # -- helpers --------------------------------------------------------------------------
    def error(self, reason: str, position: int | None = None) -> QuerySyntaxError:
        return QuerySyntaxError(self.pos if position is None else position, reason)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_keyword(self, *words: str) -> str | None:
        self.skip_space()
        for word in words:
            end = self.pos + len(word)
            if self.text.startswith(word, self.pos) and (
                word in ("&&", "||") or end == len(self.text) or self.text[end] in " ()"
            ):
                return word
        return None

    def take(self, word: str) -> None:
        self.skip_space()
        self.pos += len(word)

    # -- grammar --------------------------------------------------------------------------
    def parse(self) -> Node:
        if not self.text.strip():
            return MatchAll()
        node = self.or_expr(None)
        if self.peek():
            char = self.peek()
            if char == ")":
                raise self.error("unbalanced ')': no '(' to close")
            raise self.error(f"unexpected '{char}'")
        return node

    def or_expr(self, field: str | None) -> Node:
        nodes = [self.and_expr(field)]
        while (op := self.at_keyword("OR", "||")) is not None:
            self.take(op)
            nodes.append(self.and_expr(field))
        return nodes[0] if len(nodes) == 1 else Or(tuple(nodes))

    def and_expr(self, field: str | None) -> Node:
        nodes = [self.unary(field)]
        while True:
            if (op := self.at_keyword("AND", "&&")) is not None:
                self.take(op)
                nodes.append(self.unary(field))
            elif self.peek() not in ("", ")") and self.at_keyword("OR", "||") is None:
                nodes.append(self.unary(field))
            else:
                break
        return nodes[0] if len(nodes) == 1 else And(tuple(nodes))

    def unary(self, field: str | None) -> Node:
        if (op := self.at_keyword("NOT")) is not None:
            self.enter()
            self.take(op)
            return self.negated(field)
        char = self.peek()
        if char in ("!", "-"):
            self.enter()
            self.pos += 1
            return self.negated(field)
        if char == "+":
            self.pos += 1
            return self.unary(field)
        return self.primary(field)

    def negated(self, field: str | None) -> Node:
        """NOT of what follows (after `enter`: a NOT opens a level like '(', both recurse)."""
        node = Not(self.unary(field))
        self.depth -= 1
        return node

    def enter(self) -> None:
        """One level deeper, at the operator or '(' at `pos`; refused past `MAX_DEPTH`."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"query nested deeper than {MAX_DEPTH} levels (each '(' and each NOT, - or ! "
                "opens one)"
            )

    def primary(self, field: str | None) -> Node:
        char = self.peek()
        start = self.pos
        if not char:
            raise self.error("query ends where a term was expected")
        if char == "(":
            self.enter()
            self.pos += 1
            node = self.or_expr(field)
            if self.peek() != ")":
                raise self.error("missing ')' to close the '(' here", start)
            self.pos += 1
            self.depth -= 1
            return node
        if char == ")":
            raise self.error("unexpected ')'")
        if char == '"':
            self.clauses += 1
            return Term(field or "message", self.phrase(), "phrase")
        if char == "/":
            raise self.error(
                "regular expressions are not supported: they scan every term "
                "(use a trailing wildcard like time* instead)"
            )
        if char in "[{":
            if field is None:
                raise self.error("a range needs a field, like level:[info TO error]")
            return self.range(field)
        if char in "<>" or (char == "=" and field is not None):
            if field is None:
                raise self.error("a comparison needs a field, like level:>=warn")
            return self.comparison(field)
        word, had_wildcard = self.word()
        if field is None and self.pos < len(self.text) and self.text[self.pos] == ":":
            self.pos += 1
            if word == "_exists_":
                name_pos = self.pos
                name, _ = self.word()
                self.clauses += 1
                return Exists(canonical_field(name, name_pos))
            target = canonical_field(word, start)
            if not self.peek() or self.peek() == ")":
                raise self.error(f"field '{word}' has no value")
            if self.text[self.pos].isspace():
                raise self.error(f"space after '{word}:'; write {word}:value")
            return self.primary(target)
        self.clauses += 1
        return self.term(field or "message", word, had_wildcard, start)

    def term(self, field: str, word: str, had_wildcard: bool, start: int) -> Node:
        if had_wildcard:
            if word[0] in "*?":
                if word.strip("*") == "":
                    return Exists(field) if field != "message" else MatchAll()
                raise QuerySyntaxError(
                    start,
                    "leading wildcards are not allowed: they scan "
                    "every term; anchor the pattern (time* not *out)",
                )
            return self.level(Term(field, word, "wildcard"), start)
        return self.level(Term(field, word, "word"), start)

    def level(self, term: Term, start: int) -> Node:
        """`level:` values are level names, normalised to the stored short name."""
        if term.field != "severity" or term.kind == "wildcard":
            return term
        number = severity_from_text(term.value)
        if number == 0 and term.value.upper() != "UNKNOWN":
            raise QuerySyntaxError(
                start,
                f"unknown level '{term.value}'; use trace, debug, "
                "info, warn, error, fatal or unknown",
            )
        return Term("severity", severity_name(number), term.kind)

    def word(self) -> tuple[str, bool]:
        self.skip_space()
        start = self.pos
        out: list[str] = []
        wildcard = False
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\":
                if self.pos + 1 >= len(self.text):
                    raise self.error("a '\\' at the end escapes nothing")
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char.isspace() or char in TERMINATORS:
                break
            if char in "~^":
                raise self.error(
                    f"'{char}' (fuzzy/proximity/boost) is not supported; escape it as \\" + char
                )
            if char in "*?":
                wildcard = True
            out.append(char)
            self.pos += 1
        if not out:
            char = self.text[self.pos] if self.pos < len(self.text) else "end of query"
            raise self.error(f"expected a term, found '{char}'", start)
        return "".join(out), wildcard

    def phrase(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise self.error("unterminated phrase: missing closing '\"'", start)

    def bound(self) -> str:
        if self.peek() == '"':
            return self.phrase()
        word, _ = self.word()
        return word

    def range(self, field: str) -> Node:
        start = self.pos
        include_low = self.text[self.pos] == "["
        self.pos += 1
        low = self.bound()
        if self.at_keyword("TO") is None:
            raise self.error("expected 'TO' in the range")
        self.take("TO")
        high = self.bound()
        closer = self.peek()
        if closer not in ("]", "}"):
            raise self.error("missing ']' or '}' to close the range", start)
        self.pos += 1
        self.clauses += 1
        return self.level_range(
            field,
            None if low == "*" else low,
            None if high == "*" else high,
            include_low,
            closer == "]",
            start,
        )

    def comparison(self, field: str) -> Node:
        start = self.pos
        op = self.text[self.pos]
        self.pos += 1
        inclusive = self.pos < len(self.text) and self.text[self.pos] == "="
        if inclusive:
            self.pos += 1
        if op == "=":
            raise self.error("use field:value for equality, or >=, <=, >, <", start)
        value = self.bound()
        self.clauses += 1
        if op == ">":
            return self.level_range(field, value, None, inclusive, True, start)
        return self.level_range(field, None, value, True, inclusive, start)

    def level_range(
        self,
        field: str,
        low: str | None,
        high: str | None,
        include_low: bool,
        include_high: bool,
        start: int,
    ) -> Node:
        """Ranges over `level` compare severity numbers (`level:>=warn` is WARN and above)."""
        if field != "severity":
            return Range(field, low, high, include_low, include_high)

        def number(value: str | None, edge: int) -> str | None:
            if value is None:
                return None
            found = severity_from_text(value)
            if found == 0:
                raise QuerySyntaxError(start, f"unknown level '{value}' in the range")
            # a level name covers its whole block of four numbers (WARN = 13..16)
            return str(found - (found - 1) % 4 + edge)

        return Range(
            "severity_number",
            number(low, 0 if include_low else 4),
            number(high, 3 if include_high else -1),
            True,
            True,
        )
