"""Query syntax tree; fields are canonical document fields (`severity`, `template_id`...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TermKind = Literal["word", "phrase", "wildcard"]


@dataclass(frozen=True)
class MatchAll:
    pass


@dataclass(frozen=True)
class Term:
    """`value` in `field` (`message` for free text). `word` and `phrase` match analysed text on
    `message` and exact values elsewhere; `wildcard` has `*`/`?` (never leading)."""

    field: str
    value: str
    kind: TermKind = "word"


@dataclass(frozen=True)
class Range:
    """`field:[low TO high]`, `field:{low TO high}` or `field:>=x` style bounds (None = open)."""

    field: str
    low: str | None
    high: str | None
    include_low: bool = True
    include_high: bool = True


@dataclass(frozen=True)
class Exists:
    field: str


@dataclass(frozen=True)
class Not:
    node: Node


@dataclass(frozen=True)
class And:
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    nodes: tuple[Node, ...]


Node = MatchAll | Term | Range | Exists | Not | And | Or
