"""Online log-template miner for one tenant: a Drain-style fixed-depth parse tree.

See docs/analytics.md for the algorithm, the template id rule and the memory caps. In short:
mask variables (keeping compound tokens' shape), split on whitespace, look the masked line up
in a cache of lines already parsed, else collapse lists of one kind of value
(`blk_<NUM> blk_<NUM>` -> `blk_<NUM>`) and route by token count and the first few fixed tokens
to a leaf and join the most similar template there (or one of the same length the line fits
exactly), else start a new template; generalise a template where a line differs, and merge
templates that come to differ only in variable positions. A template's id is a hash of its
text: one id per text, whatever the arrival order or the partition; an id that a template
leaves (it widened, or merged into another) is kept as the template's former id.
"""

from __future__ import annotations

import hashlib
import json
import operator
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app.templates.masking import DEFAULT_MASKING, MaskingConfig
from app.templates.tokens import WILDCARD, Tokenizer, collapse_lists, is_variable_like

STATE_VERSION = 2
MAX_FORMER_IDS = 32  # former ids kept per template (oldest dropped first)
_CACHE_SIZE = 1 << 13  # masked lines -> template


@dataclass(frozen=True)
class MinerConfig:
    """Tuning and caps of a tenant's miner.

    `depth` counts the tree levels as Drain does (root, length, then `depth - 2` prefix tokens).
    `similarity` is the least share of positions a line must match to join a template.
    `typed` is how much of a match two different variable-like tokens at one position count
    for (a token with a digit or a placeholder: `rand/_task_<NUM>` vs `rand8/_task_<NUM>`).
    `merge` merges templates that differ only in variable positions (see `mergeable`).
    `max_clusters` caps the templates kept (least recently used are evicted); `max_children`
    caps the branches of one tree node (further tokens share the wildcard branch);
    `max_tokens` and `max_chars` cap how much of one message is mined.
    """

    masking: MaskingConfig = DEFAULT_MASKING
    depth: int = 4
    similarity: float = 0.8
    typed: float = 0.0
    merge: bool = True
    max_children: int = 100
    max_clusters: int = 2000
    max_tokens: int = 64
    max_chars: int = 4096

    def to_dict(self) -> dict[str, Any]:
        return {
            "masking": self.masking.to_dict(),
            "depth": self.depth,
            "similarity": self.similarity,
            "typed": self.typed,
            "merge": self.merge,
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


class Cluster:
    """One template: its id (hash of its text), tokens (`<*>` where it varies), the tree
    leaves it is filed under, count, when it was seen, and its former ids (newest first)."""

    __slots__ = ("_id", "_tokens", "template", "seen", "paths", "count", "first_seen",
                 "last_seen", "former", "merged_into", "live")
    template: str
    seen: Match  # what `add` answers for a line of this template that changes nothing

    def __init__(self, ident: str, tokens: list[str], paths: list[tuple[str, ...]],
                 count: int = 0, first_seen: float = 0.0, last_seen: float = 0.0,
                 former: list[str] | None = None) -> None:
        self.id = ident
        self.tokens = tokens
        self.paths = paths
        self.count = count
        self.first_seen = first_seen
        self.last_seen = last_seen
        self.former: list[str] = former or []
        self.merged_into: Cluster | None = None
        self.live = True

    @property
    def id(self) -> str:
        return self._id

    @id.setter
    def id(self, ident: str) -> None:
        self._id = ident
        self.seen = Match(ident, getattr(self, "template", ""), False, False)

    @property
    def tokens(self) -> list[str]:
        return self._tokens

    @tokens.setter
    def tokens(self, tokens: list[str]) -> None:
        self._tokens = tokens
        self.template = " ".join(tokens)
        self.seen = Match(getattr(self, "_id", ""), self.template, False, False)

    @property
    def path(self) -> tuple[str, ...]:
        return self.paths[0]

    def to_record(self) -> list[Any]:
        return [self.id, self.template, [list(p) for p in self.paths], self.count,
                self.first_seen, self.last_seen, list(self.former)]

    @classmethod
    def from_record(cls, rec: list[Any]) -> Cluster:
        """A record of `to_record()` (or of state version 1: one path, no former ids)."""
        ident, template, paths, count, first, last = rec[:6]
        tokens = template.split(" ") if template else []
        if not paths or isinstance(paths[0], str):  # version 1: one path
            paths = [paths]
        former = [str(f) for f in rec[6]] if len(rec) > 6 else []
        return cls(ident, tokens, [tuple(p) for p in paths], int(count), first, last, former)


class Match(NamedTuple):
    """What `TenantMiner.add` decided for one message."""

    template_id: str
    template: str
    is_new: bool  # the template was created by this message
    changed: bool  # the template was created, generalised or merged by this message


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    clusters: list[Cluster] = field(default_factory=list)


def template_id(tokens: Sequence[str]) -> str:
    """The id rule: 16 hex digits of BLAKE2b over the template's text (tokens joined by a
    space). Same text, same id: in any miner, partition, process or arrival order."""
    return hashlib.blake2b(" ".join(tokens).encode(), digest_size=8).hexdigest()


class TenantMiner:
    """The template miner of one tenant. Not thread-safe; one owner (the stream partition)."""

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self._tokenize = Tokenizer(self.config.masking, self.config.max_tokens,
                                   self.config.max_chars)
        self._mask = self._tokenize.masker.tokens
        self._max_chars = self.config.max_chars
        self._max_tokens = self.config.max_tokens
        self._prefix = max(self.config.depth - 2, 0)
        self._clusters: OrderedDict[str, Cluster] = OrderedDict()  # LRU order, oldest first
        self._by_length: dict[int, dict[str, Cluster]] = {}
        # templates with a <*> at a branch position (only merges make them), by length
        self._wild_routed: dict[int, dict[str, Cluster]] = {}
        self._aliases: dict[str, Cluster] = {}  # former id -> live template
        self._root: dict[int, _Node] = {}
        self._cache: dict[tuple[str, ...], Cluster] = {}
        self._changed: set[str] = set()
        self._removed: set[str] = set()
        self.evictions = 0
        self.merges = 0

    # -- public API -------------------------------------------------------------------------

    def add(self, message: str, now: float = 0.0) -> Match:
        """Mine one message: its template id and text, and whether it is new or changed."""
        # what self._tokenize does, but lists are collapsed only on a cache miss (or to fit)
        tokens = self._mask(message[: self._max_chars])
        if len(tokens) > self._max_tokens:
            tokens = collapse_lists(tokens)
            if len(tokens) > self._max_tokens:
                tokens = (*tokens[: self._max_tokens - 1], WILDCARD)
        cluster = self._cache.get(tokens)
        if cluster is not None and (cluster.merged_into is not None or not cluster.live):
            cluster = self._cached(tokens)
        if cluster is None:
            cluster, is_new, changed = self._learn(collapse_lists(tokens), now)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[tokens] = cluster
            match = Match(cluster.id, cluster.template, is_new, changed)
        else:
            match = cluster.seen  # the answer for a line of a known template, made once
        ident = match.template_id
        self._clusters.move_to_end(ident)
        cluster.count += 1
        if now > cluster.last_seen:
            cluster.last_seen = now
        self._changed.add(ident)
        return match

    def _learn(self, tokens: Sequence[str], now: float) -> tuple[Cluster, bool, bool]:
        """A line not in the cache: the template it joins or starts, whether new, changed."""
        is_new = changed = False
        leaf = self._search(tokens)
        cluster = None if leaf is None else self._best(leaf, tokens)
        if cluster is None:
            cluster = self._fitting(tokens)
            if cluster is not None:
                self._file(cluster, self._place(tokens))
        if cluster is None:
            cluster = self._create(tokens, now)
            is_new = changed = True
        else:
            generalised = self._generalised(cluster.tokens, tokens)
            if generalised is not None:
                cluster = self._retemplate(cluster, generalised)
                changed = True
        if self.config.merge and changed:
            before = cluster
            cluster = self._merge_around(cluster, created=is_new)
            is_new = is_new and cluster is before
        return cluster, is_new, changed

    def match(self, message: str) -> Cluster | None:
        """The template a message belongs to, without learning from it."""
        tokens = self._tokenize(message)
        cluster = self._cached(tokens)
        if cluster is None:
            leaf = self._search(tokens)
            cluster = None if leaf is None else self._best(leaf, tokens)
        return cluster if cluster is not None else self._fitting(tokens)

    def get(self, cluster_id: str) -> Cluster | None:
        """A live template by its id or by one of its former ids."""
        return self._clusters.get(cluster_id) or self._aliases.get(cluster_id)

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
        if state.get("v") not in (1, STATE_VERSION):
            raise ValueError(f"unsupported miner state version {state.get('v')!r}")
        miner = cls(config or MinerConfig.from_dict(state["config"]))
        for rec in state["clusters"]:
            miner._restore(Cluster.from_record(rec))
        miner._changed.clear()
        miner._removed.clear()
        return miner

    def to_bytes(self) -> bytes:
        """Compact snapshot: zlib-compressed JSON of `to_state()`."""
        raw = json.dumps(self.to_state(), separators=(",", ":"), ensure_ascii=False)
        return zlib.compress(raw.encode(), 6)

    @classmethod
    def from_bytes(cls, data: bytes, config: MinerConfig | None = None) -> TenantMiner:
        return cls.from_state(json.loads(zlib.decompress(data)), config)

    def take_changes(self) -> dict[str, list[Any] | None]:
        """Templates changed (record) or gone (None: evicted, or its id left for another)
        since the last call, for a changelog table keyed by template id; `restore_records`
        rebuilds a miner from such a table. A record's last field lists its former ids."""
        out: dict[str, list[Any] | None] = {cid: None for cid in self._removed}
        for cid in self._changed:
            cluster = self._clusters.get(cid)
            if cluster is not None:
                out[cid] = cluster.to_record()
        self._changed.clear()
        self._removed.clear()
        return out

    @classmethod
    def restore_records(cls, records: list[list[Any]], config: MinerConfig | None = None
                        ) -> TenantMiner:
        """Rebuild from per-template records (order: least recently seen first)."""
        miner = cls(config)
        for rec in sorted(records, key=lambda r: r[5]):
            miner._restore(Cluster.from_record(rec))
        miner._changed.clear()
        miner._removed.clear()
        return miner

    # -- lookup -----------------------------------------------------------------------------

    def _cached(self, key: tuple[str, ...]) -> Cluster | None:
        """The template a masked line went to before (a merge moved it: where to)."""
        cluster = self._cache.get(key)
        if cluster is None:
            return None
        while cluster.merged_into is not None:
            cluster = cluster.merged_into
        return cluster if cluster.live else None

    def _search(self, tokens: Sequence[str]) -> _Node | None:
        """The leaf a message belongs to: exact token branch, else the wildcard branch."""
        node = self._root.get(len(tokens))
        for token in tokens[: self._prefix]:
            if node is None:
                return None
            child = node.children.get(token)
            node = child if child is not None else node.children.get(WILDCARD)
        return node

    def _best(self, leaf: _Node, tokens: Sequence[str]) -> Cluster | None:
        """The most similar template of a leaf with similarity >= the threshold (ties: the
        one with more wildcards)."""
        best: Cluster | None = None
        best_key = (self.config.similarity, -1)
        typed = self.config.typed
        for cluster in leaf.clusters:
            sim, wild = compare(cluster.tokens, tokens, typed)
            if sim >= best_key[0] and (sim, wild) > best_key:
                best, best_key = cluster, (sim, wild)
        return best

    def _fitting(self, tokens: Sequence[str]) -> Cluster | None:
        """A template of the same length the line fits exactly (every constant equal) that the
        tree did not lead to (it has a wildcard where the line's branch key is)."""
        for cluster in self._candidates(tokens, wide=False):
            if fits(tokens, cluster.tokens):
                return cluster
        return None

    def _candidates(self, tokens: Sequence[str], wide: bool) -> list[Cluster]:
        """The templates of the same length that can fit `tokens` (wide=False) or differ from
        them only in variable positions (wide=True): those filed under a leaf whose branch key
        at each level is the token there or `<*>` (any key, when wide and the token there is
        variable-like), plus those with a `<*>` at a branch position (made by a merge), whose
        leaves say nothing. Not the whole length's templates: their number is capped only by
        `max_clusters`."""
        node = self._root.get(len(tokens))
        if node is None:
            return []
        nodes = [node]
        for token in tokens[: self._prefix]:
            step: list[_Node] = []
            for at in nodes:
                if wide and is_variable_like(token):
                    step.extend(at.children.values())
                    continue
                exact = at.children.get(token)
                if exact is not None:
                    step.append(exact)
                if token != WILDCARD and (other := at.children.get(WILDCARD)) is not None:
                    step.append(other)
            nodes = step
        found: dict[int, Cluster] = {}
        for leaf in nodes:
            for cluster in leaf.clusters:
                found.setdefault(id(cluster), cluster)
        for cluster in self._wild_routed.get(len(tokens), {}).values():
            found.setdefault(id(cluster), cluster)
        return list(found.values())

    # -- changes ----------------------------------------------------------------------------

    def _place(self, tokens: Sequence[str]) -> tuple[str, ...]:
        """The tree path of a new template within `max_children` (`_node_at` grows it)."""
        node = self._root.get(len(tokens))
        path: list[str] = []
        for token in tokens[: self._prefix]:
            key = WILDCARD if is_variable_like(token) else token
            children = node.children if node is not None else {}
            node = children.get(key)
            if node is None and len(children) >= self.config.max_children:
                key = WILDCARD
                node = children.get(key)
            path.append(key)
        return tuple(path)

    def _node_at(self, length: int, path: tuple[str, ...]) -> _Node:
        node = self._root.get(length)
        if node is None:
            node = self._root[length] = _Node()
        for key in path:
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Node()
            node = child
        return node

    def _file(self, cluster: Cluster, path: tuple[str, ...]) -> None:
        """File a template under one more leaf (a merge joined templates of two leaves)."""
        if path not in cluster.paths:
            cluster.paths.append(path)
            self._node_at(len(cluster.tokens), path).clusters.append(cluster)

    def _create(self, tokens: Sequence[str], now: float) -> Cluster:
        cluster = Cluster(template_id(tokens), list(tokens), [], 0, now, now)
        self._insert(cluster)
        self._file(cluster, self._place(tokens))
        while len(self._clusters) > self.config.max_clusters:
            self._evict()
        return cluster

    def _insert(self, cluster: Cluster) -> None:
        self._clusters[cluster.id] = cluster
        self._by_length.setdefault(len(cluster.tokens), {})[cluster.id] = cluster
        if WILDCARD in cluster.tokens[: self._prefix]:
            self._wild_routed.setdefault(len(cluster.tokens), {})[cluster.id] = cluster
        self._removed.discard(cluster.id)
        self._changed.add(cluster.id)
        for old in cluster.former:
            self._aliases[old] = cluster

    def _unlist(self, cluster: Cluster) -> None:
        """Take a template out of the id maps (its id is gone or changing)."""
        del self._clusters[cluster.id]
        del self._by_length[len(cluster.tokens)][cluster.id]
        self._wild_routed.get(len(cluster.tokens), {}).pop(cluster.id, None)
        self._changed.discard(cluster.id)
        self._removed.add(cluster.id)

    def _retemplate(self, cluster: Cluster, tokens: list[str]) -> Cluster:
        """Give a template new tokens: its id becomes the new text's and the old one a former
        id; if a live template already has that text, the two become one."""
        new_id = template_id(tokens)
        self._unlist(cluster)
        cluster.former = _former(cluster.id, cluster.former, new_id)
        self._aliases[cluster.former[0]] = cluster
        cluster.tokens = tokens
        other = self._clusters.get(new_id)
        if other is not None:
            self._absorb(other, cluster)
            return other
        cluster.id = new_id
        self._insert(cluster)
        return cluster

    def _absorb(self, survivor: Cluster, gone: Cluster) -> None:
        """`gone` (already out of the id maps, or not) joins `survivor`: counts, times, leaves
        and former ids; lines cached for `gone` now find `survivor`."""
        if gone.id in self._clusters and self._clusters[gone.id] is gone:
            self._unlist(gone)
        survivor.count += gone.count
        survivor.first_seen = min(survivor.first_seen, gone.first_seen)
        survivor.last_seen = max(survivor.last_seen, gone.last_seen)
        former = [gone.id, *gone.former, *survivor.former]
        survivor.former = list(dict.fromkeys(f for f in former if f != survivor.id)
                               )[:MAX_FORMER_IDS]
        for old in survivor.former:
            self._aliases[old] = survivor
        for path in gone.paths:
            leaf = self._node_at(len(gone.tokens), path)
            leaf.clusters.remove(gone)
            if path not in survivor.paths:
                survivor.paths.append(path)
                leaf.clusters.append(survivor)
        gone.paths = []
        gone.merged_into = survivor
        gone.live = False
        self._changed.add(survivor.id)
        self.merges += 1

    def _merge_around(self, cluster: Cluster, created: bool = False) -> Cluster:
        """The merge step after a template was created or changed: templates of the same length
        that differ from it only in variable positions become one (the one seen more often
        survives, widened to cover both). Returns the template `cluster` is now part of.
        A template just created from a line cannot merge with one of its own leaf (the line
        matched none of them well enough), so those are skipped then."""
        need = self.config.similarity * len(cluster.tokens)
        home = cluster.paths[0] if created and cluster.paths else None
        for other in self._candidates(cluster.tokens, wide=True):
            if other is cluster or not other.live or not cluster.live or home in other.paths:
                continue
            if sum(map(operator.eq, cluster.tokens, other.tokens)) < need:
                continue  # too few equal positions to keep enough fixed: not mergeable
            merged = mergeable(cluster.tokens, other.tokens, self.config.similarity)
            if merged is None:
                continue
            survivor, gone = (other, cluster) if other.count >= cluster.count \
                else (cluster, other)
            self._unlist(gone)
            if merged != survivor.tokens:
                survivor = self._retemplate(survivor, merged)
            self._absorb(survivor, gone)
            cluster = survivor
        return cluster

    def _restore(self, cluster: Cluster) -> None:
        other = self._clusters.get(cluster.id)
        if other is not None:  # one text, one template
            for path in cluster.paths:
                self._file(other, path)
            cluster.paths = []
            self._absorb(other, cluster)
            return
        paths, cluster.paths = cluster.paths, []
        self._insert(cluster)
        self._clusters.move_to_end(cluster.id)
        for path in paths:
            self._file(cluster, path)
        while len(self._clusters) > self.config.max_clusters:
            self._evict()

    def _evict(self) -> None:
        cluster = next(iter(self._clusters.values()))
        self._unlist(cluster)
        self.evictions += 1
        cluster.live = False
        for old in cluster.former:
            if self._aliases.get(old) is cluster:
                del self._aliases[old]
        length = len(cluster.tokens)
        for path in cluster.paths:
            trail: list[tuple[_Node, str]] = []
            node = self._root[length]
            for key in path:
                trail.append((node, key))
                node = node.children[key]
            node.clusters.remove(cluster)
            # prune empty branches so their slots count against max_children no more
            while trail and not node.clusters and not node.children:
                parent, key = trail.pop()
                del parent.children[key]
                node = parent
            if not trail and not node.clusters and not node.children:
                self._root.pop(length, None)
        if not self._by_length.get(length):
            self._by_length.pop(length, None)

    @staticmethod
    def _generalised(template: list[str], tokens: Sequence[str]) -> list[str] | None:
        """The template widened to cover the tokens (None: it covers them already)."""
        if fits(tokens, template):
            return None
        return [have if have == got else WILDCARD for have, got in zip(template, tokens,
                                                                       strict=True)]


def _former(old: str, former: list[str], new: str) -> list[str]:
    return [old, *(f for f in former if f not in (old, new))][:MAX_FORMER_IDS]


def compare(template: list[str], tokens: Sequence[str], typed: float = 0.0) -> tuple[float, int]:
    """Drain's sequence similarity (the share of positions equal to the template's constant
    tokens; a wildcard is neither match nor mismatch; two different variable-like tokens,
    such as `/u/<NUM>/a` and `/v/<NUM>/b`, count `typed` of a match) and the wildcard count."""
    equal = 0.0
    wild = 0
    for have, got in zip(template, tokens, strict=True):
        if have == got:
            equal += 1
        elif have == WILDCARD:
            wild += 1
        elif typed and is_variable_like(have) and is_variable_like(got):
            equal += typed
    size = len(template)
    return (equal / size if size else 1.0), wild


def fits(tokens: Sequence[str], template: list[str]) -> bool:
    """Every position of `tokens` equals the template's token or the template's is `<*>`."""
    for have, got in zip(template, tokens, strict=True):
        if have != got and have != WILDCARD:
            return False
    return True


def mergeable(a: list[str], b: list[str], similarity: float) -> list[str] | None:
    """The merged template when `a` and `b` differ only in variable positions (where they
    differ, one of them has a wildcard or a variable-like token) and the merged template keeps
    at least `similarity` of its positions fixed; else None."""
    merged: list[str] = []
    fixed = 0
    for x, y in zip(a, b, strict=True):
        if x == y:
            merged.append(x)
            fixed += x != WILDCARD
        elif is_variable_like(x) or is_variable_like(y):
            merged.append(WILDCARD)
        else:
            return None
    return merged if merged and fixed >= similarity * len(merged) else None
