"""Online log-template miner for one tenant: a Drain-style fixed-depth parse tree.

See docs/analytics.md for the algorithm, the template id rule and the memory caps. In short:
mask variables, split on whitespace, route by token count and the first few tokens to a leaf,
join the most similar template in that leaf (or start a new one), and generalise the template
where the line differs. A template's id is fixed when it is created and never changes.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from app.patterns.masking import DEFAULT_MASKING, MaskingConfig
from app.patterns.tokens import WILDCARD, Tokenizer, is_variable_like

STATE_VERSION = 1


@dataclass(frozen=True)
class MinerConfig:
    """Tuning and caps of a tenant's miner.

    `depth` counts the tree levels as Drain does (root, length, then `depth - 2` prefix tokens).
    `similarity` is the least share of positions a line must match to join a template (a line
    whose only difference is one constant token joins regardless: one variable per line).
    `max_clusters` caps the templates kept (least recently used are evicted); `max_children`
    caps the branches of one tree node (further tokens share the wildcard branch);
    `max_tokens` and `max_chars` cap how much of one message is mined.
    """

    masking: MaskingConfig = DEFAULT_MASKING
    depth: int = 4
    similarity: float = 0.8
    max_children: int = 100
    max_clusters: int = 2000
    max_tokens: int = 64
    max_chars: int = 4096

    def to_dict(self) -> dict[str, Any]:
        return {
            "masking": self.masking.to_dict(),
            "depth": self.depth,
            "similarity": self.similarity,
            "max_children": self.max_children,
            "max_clusters": self.max_clusters,
            "max_tokens": self.max_tokens,
            "max_chars": self.max_chars,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> MinerConfig:
        values = dict(doc)
        values["masking"] = MaskingConfig.from_dict(values.get("masking") or {})
        return cls(**values)


@dataclass
class Cluster:
    """One template: its fixed id, tokens (`<*>` where it varies), count and when it was seen."""

    id: str
    tokens: list[str]
    path: tuple[str, ...]
    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0

    @property
    def template(self) -> str:
        return " ".join(self.tokens)

    def to_record(self) -> list[Any]:
        return [self.id, self.template, list(self.path), self.count, self.first_seen,
                self.last_seen]

    @classmethod
    def from_record(cls, rec: list[Any]) -> Cluster:
        ident, template, path, count, first, last = rec
        tokens = template.split(" ") if template else []
        return cls(ident, tokens, tuple(path), int(count), first, last)


@dataclass(frozen=True)
class Match:
    """What `TenantMiner.add` decided for one message."""

    template_id: str
    template: str
    is_new: bool  # the template was created by this message
    changed: bool  # the template was created or generalised by this message


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    clusters: list[str] = field(default_factory=list)


def template_id(tokens: list[str]) -> str:
    """The id rule: 16 hex digits of BLAKE2b over the template's tokens *at creation*."""
    return hashlib.blake2b(" ".join(tokens).encode(), digest_size=8).hexdigest()


class TenantMiner:
    """The template miner of one tenant. Not thread-safe; one owner (the stream partition)."""

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self._tokenize = Tokenizer(self.config.masking, self.config.max_tokens,
                                   self.config.max_chars)
        self._clusters: OrderedDict[str, Cluster] = OrderedDict()  # LRU order, oldest first
        self._root: dict[int, _Node] = {}
        self._changed: set[str] = set()
        self._evicted: set[str] = set()
        self.evictions = 0

    # -- public API -------------------------------------------------------------------------

    def add(self, message: str, now: float = 0.0) -> Match:
        """Mine one message: its template id and text, and whether it is new or changed."""
        tokens = self._tokenize(message)
        leaf = self._search(tokens)
        cluster = None if leaf is None else self._best(leaf, tokens)
        if cluster is None:
            path, leaf = self._place(tokens)
            cluster = self._create(tokens, path, leaf, now)
            is_new = changed = True
        else:
            is_new = False
            changed = self._generalise(cluster, tokens)
            self._clusters.move_to_end(cluster.id)
        cluster.count += 1
        cluster.last_seen = max(cluster.last_seen, now)
        self._changed.add(cluster.id)
        return Match(cluster.id, cluster.template, is_new, changed)

    def match(self, message: str) -> Cluster | None:
        """The template a message belongs to, without learning from it."""
        tokens = self._tokenize(message)
        leaf = self._search(tokens)
        return None if leaf is None else self._best(leaf, tokens)

    def get(self, cluster_id: str) -> Cluster | None:
        return self._clusters.get(cluster_id)

    def clusters(self) -> list[Cluster]:
        """Every kept template, least recently used first."""
        return list(self._clusters.values())

    def __len__(self) -> int:
        return len(self._clusters)

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The whole state as a JSON-able dict (config and templates in LRU order)."""
        return {
            "v": STATE_VERSION,
            "config": self.config.to_dict(),
            "clusters": [c.to_record() for c in self._clusters.values()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: MinerConfig | None = None) -> TenantMiner:
        """Rebuild a miner; `config` overrides the stored one (caps changed since)."""
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported miner state version {state.get('v')!r}")
        miner = cls(config or MinerConfig.from_dict(state["config"]))
        for rec in state["clusters"]:
            miner._restore(Cluster.from_record(rec))
        miner._changed.clear()
        return miner

    def to_bytes(self) -> bytes:
        """Compact snapshot: zlib-compressed JSON of `to_state()`."""
        raw = json.dumps(self.to_state(), separators=(",", ":"), ensure_ascii=False)
        return zlib.compress(raw.encode(), 6)

    @classmethod
    def from_bytes(cls, data: bytes, config: MinerConfig | None = None) -> TenantMiner:
        return cls.from_state(json.loads(zlib.decompress(data)), config)

    def take_changes(self) -> dict[str, list[Any] | None]:
        """Templates changed (record) or evicted (None) since the last call, for a changelog
        table keyed by template id; `restore_records` rebuilds a miner from such a table."""
        out: dict[str, list[Any] | None] = {cid: None for cid in self._evicted}
        for cid in self._changed:
            if cid in self._clusters:
                out[cid] = self._clusters[cid].to_record()
        self._changed.clear()
        self._evicted.clear()
        return out

    @classmethod
    def restore_records(cls, records: list[list[Any]], config: MinerConfig | None = None
                        ) -> TenantMiner:
        """Rebuild from per-template records (order: least recently seen first)."""
        miner = cls(config)
        for rec in sorted(records, key=lambda r: r[5]):
            miner._restore(Cluster.from_record(rec))
        miner._changed.clear()
        return miner

    # -- internals --------------------------------------------------------------------------

    def _search(self, tokens: list[str]) -> _Node | None:
        """The leaf a message belongs to: exact token branch, else the wildcard branch."""
        node = self._root.get(len(tokens))
        for token in tokens[: max(self.config.depth - 2, 0)]:
            if node is None:
                return None
            child = node.children.get(token)
            node = child if child is not None else node.children.get(WILDCARD)
        return node

    def _place(self, tokens: list[str]) -> tuple[tuple[str, ...], _Node]:
        """The leaf a new template goes to, growing the tree within `max_children`."""
        node = self._root.setdefault(len(tokens), _Node())
        path: list[str] = []
        for token in tokens[: max(self.config.depth - 2, 0)]:
            key = WILDCARD if is_variable_like(token) else token
            if key not in node.children and len(node.children) >= self.config.max_children:
                key = WILDCARD
            node = node.children.setdefault(key, _Node())
            path.append(key)
        return tuple(path), node

    def _node_at(self, length: int, path: tuple[str, ...]) -> _Node:
        node = self._root.setdefault(length, _Node())
        for key in path:
            node = node.children.setdefault(key, _Node())
        return node

    def _best(self, leaf: _Node, tokens: list[str]) -> Cluster | None:
        """The most similar template of a leaf that the tokens may join (see `joins`)."""
        best: Cluster | None = None
        best_key = (-1.0, -1)
        threshold = self.config.similarity
        for cid in leaf.clusters:
            cluster = self._clusters[cid]
            sim, wild, differ = compare(cluster.tokens, tokens)
            if (sim >= threshold or (differ <= 1 and sim > 0.0)) and (sim, wild) > best_key:
                best, best_key = cluster, (sim, wild)
        return best

    def _create(self, tokens: list[str], path: tuple[str, ...], leaf: _Node, now: float
                ) -> Cluster:
        ident = template_id(tokens)
        salt = 0
        while ident in self._clusters:  # same creation text in another branch: stay unique
            salt += 1
            ident = template_id([*tokens, f"#{salt}"])
        cluster = Cluster(ident, list(tokens), path, 0, now, now)
        self._clusters[ident] = cluster
        leaf.clusters.append(ident)
        self._evicted.discard(ident)
        while len(self._clusters) > self.config.max_clusters:
            self._evict()
        return cluster

    def _restore(self, cluster: Cluster) -> None:
        self._clusters[cluster.id] = cluster
        self._clusters.move_to_end(cluster.id)
        self._node_at(len(cluster.tokens), cluster.path).clusters.append(cluster.id)
        while len(self._clusters) > self.config.max_clusters:
            self._evict()

    def _evict(self) -> None:
        cid, cluster = self._clusters.popitem(last=False)
        self.evictions += 1
        self._changed.discard(cid)
        self._evicted.add(cid)
        length = len(cluster.tokens)
        trail: list[tuple[_Node, str]] = []
        node = self._root[length]
        for key in cluster.path:
            trail.append((node, key))
            node = node.children[key]
        node.clusters.remove(cid)
        # prune empty branches so their slots count against max_children no more
        while trail and not node.clusters and not node.children:
            parent, key = trail.pop()
            del parent.children[key]
            node = parent
        if not trail and not node.clusters and not node.children:
            self._root.pop(length, None)

    @staticmethod
    def _generalise(cluster: Cluster, tokens: list[str]) -> bool:
        changed = False
        for i, (have, got) in enumerate(zip(cluster.tokens, tokens, strict=True)):
            if have != got and have != WILDCARD:
                cluster.tokens[i] = WILDCARD
                changed = True
        return changed


def compare(template: list[str], tokens: list[str]) -> tuple[float, int, int]:
    """Drain's sequence similarity (the share of positions equal to the template's constant
    tokens; a wildcard is neither match nor mismatch), the wildcard count and the number of
    constant tokens that differ. A line joins a template when similarity >= threshold, or when
    at most one constant token differs and at least one is equal."""
    equal = wild = 0
    for have, got in zip(template, tokens, strict=True):
        if have == WILDCARD:
            wild += 1
        elif have == got:
            equal += 1
    size = len(template)
    return (equal / size if size else 1.0), wild, size - equal - wild
