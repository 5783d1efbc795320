"""River's Half-Space Trees behind a min-max scaler, with a warm-up and an adaptive threshold,
kept in a compact per-source form.

Counts enter the model as log1p (a 10x spike is a clear step, not the whole scale), shares
as they are. The threshold is a running quantile of the detector's own scores (P² estimate,
`river.stats.Quantile`) plus a share of the headroom left below the maximum score of 1:
`q_hi + margin * (1 - q_hi)`, so it follows each source's own score distribution instead of
a fixed number.

Two details make spikes and drops visible to the trees. The trees span [-`pad`, 1 + `pad`]
(not [0, 1]) per feature, so values above or below everything seen in training land in
regions with no mass. And the
scaler is seeded, on the first vector, with that vector plus a floor (log1p(1) for counts,
0.05 for shares), so a feature constant during warm-up (no errors at all) still has a scale
and its first non-zero value stands out instead of being scaled to 0.

Memory. The trees' splits depend only on the settings and the seed, never on the data: every
source with the same settings has the same splits. They are built once per process by river
itself (`river_pipeline`, `Forest`) and shared; a source keeps only what it learnt: the
scaler's minima and maxima and two mass counters per node (one byte each while the window is
at most 255), ~10 KB instead of river's ~1.1 MB of node objects, with bit-identical scores
(`tests/test_anomaly.py` checks them against river). While a source is *young* (its first
`window_size` windows, when HST scores nothing: river returns 0 until its first reference
window is complete) it keeps one set of counters, the window being filled; its promotion at the
end of that window (river's mass pivot) makes them the reference and starts the second set.
Nothing is built when a source appears and nothing is replayed at promotion, so a burst of new
sources costs the same per window as old ones.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from functools import cache
from typing import Any

from river import anomaly, compose, preprocessing, stats

from app.anomaly.features import FEATURES, Features

_LOG2 = math.log1p(1.0)
_AS_IS = frozenset({"share_error", "share_warn", "template_entropy"})
_FLOOR = tuple(0.05 if k in _AS_IS else _LOG2 for k in FEATURES)
_N = len(FEATURES)


def model_input(features: Features) -> dict[str, float]:
    """The vector the model sees: log1p of counts and lengths, shares and entropy as they are."""
    return {k: (features[k] if k in _AS_IS else math.log1p(features[k])) for k in FEATURES}


def river_pipeline(n_trees: int = 10, height: int = 8, window_size: int = 50, pad: float = 1.0,
                   seed: int = 42) -> compose.Pipeline:
    """`MinMaxScaler | HalfSpaceTrees` as river builds it: the previous per-source model (the
    bench's baseline), the reference of the equivalence test and the source of `Forest`."""
    return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
        n_trees=n_trees, height=height, window_size=window_size, seed=seed,
        limits={k: (-pad, 1.0 + pad) for k in FEATURES},
    )


def _heap_order(root: Any, height: int) -> list[Any]:
    """The nodes of a river tree in heap order (children of i at 2i+1 and 2i+2)."""
    level, out = [root], []
    for _ in range(height + 1):
        out += level
        level = [child for node in level for child in getattr(node, "children", ())]
    return out


@dataclass(frozen=True)
class Forest:
    """The splits shared by every source with the same settings: per tree, the feature index
    and threshold of each internal node, in heap order."""

    n_trees: int
    height: int
    window_size: int
    features: tuple[tuple[int, ...], ...]
    thresholds: tuple[tuple[float, ...], ...]

    @property
    def nodes(self) -> int:
        return 2 ** (self.height + 1) - 1

    @property
    def max_score(self) -> int:
        return self.n_trees * self.window_size * self.nodes

    def path(self, z: array[float] | list[float], tree: int) -> list[int]:
        """The heap indices from the root to the leaf that `z` falls into."""
        feats, thr = self.features[tree], self.thresholds[tree]
        node, out = 0, [0]
        for _ in range(self.height):
            node = 2 * node + (1 if z[feats[node]] < thr[node] else 2)
            out.append(node)
        return out

    def counters(self) -> bytearray | array[int]:
        """Zeroed mass counters of one source (one byte each when a window fits in a byte)."""
        size = self.n_trees * self.nodes
        return bytearray(size) if self.window_size <= 255 else array("I", bytes(4 * size))


@cache
def forest(n_trees: int, height: int, window_size: int, pad: float, seed: int) -> Forest:
    """The shared splits, taken from the trees river builds with these settings."""
    model = river_pipeline(n_trees, height, window_size, pad, seed)
    hst = model["HalfSpaceTrees"]
    hst.learn_one(dict.fromkeys(FEATURES, 0.0))  # river builds its trees on the first vector
    index = {k: i for i, k in enumerate(FEATURES)}
    features, thresholds = [], []
    for tree in hst.trees:
        internal = _heap_order(tree, height)[: 2 ** height - 1]
        features.append(tuple(index[n.feature] for n in internal))
        thresholds.append(tuple(float(n.threshold) for n in internal))
    return Forest(n_trees, height, window_size, tuple(features), tuple(thresholds))


class HalfSpaceTreesDetector:
    """`MinMaxScaler | HalfSpaceTrees` with a warm-up and an adaptive threshold (compact)."""

    name = "half_space_trees"
    __slots__ = ("params", "warmup", "margin", "q_hi", "q_mid", "seen", "lo", "hi", "l_mass",
                 "r_mass", "counter", "_last", "_forest")

    def __init__(self, n_trees: int = 10, height: int = 8, window_size: int = 50,
                 warmup: int = 100, quantile: float = 0.995, margin: float = 0.5,
                 pad: float = 1.0, seed: int = 42) -> None:
        self.params = (n_trees, height, window_size, pad, seed)
        self._forest = forest(*self.params)
        self.warmup = warmup
        self.margin = margin
        self.q_hi = stats.Quantile(quantile)
        self.q_mid = stats.Quantile(0.5)
        self.seen = 0
        # the scaler's running minima and maxima: tuples of floats, which the garbage
        # collector stops tracking (10,000 sources' objects are walked by every full collection)
        self.lo: tuple[float, ...] = (math.inf,) * _N
        self.hi: tuple[float, ...] = (-math.inf,) * _N
        self.l_mass: bytearray | array[int] | None = None  # masses of the window being filled
        self.r_mass: bytearray | array[int] | None = None  # reference masses
        self.counter = 0  # vectors learnt since the last pivot
        self._last: tuple[tuple[float, ...], float] | None = None

    # -- state -------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k not in ("_forest", "_last")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "model" in state:  # a snapshot of the river-based detector: convert it
            state = _from_river(state)
        for key, value in state.items():
            setattr(self, key, value)
        self._last = None
        self._forest = forest(*self.params)

    @property
    def is_young(self) -> bool:
        """In its first window: no reference masses yet (scores 0, keeps one set of counters)."""
        return self.r_mass is None

    # -- the detector ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.seen >= self.warmup

    def _scaled(self, x: dict[str, float]) -> list[float]:
        lo, hi = self.lo, self.hi
        out = []
        for i, v in enumerate(x.values()):
            d = hi[i] - lo[i]
            out.append((v - lo[i]) / d if d else 0.0)
        return out

    def _score(self, z: list[float]) -> float:
        r_mass, f = self.r_mass, self._forest
        if r_mass is None:  # no reference window yet: river scores 0
            return 0.0
        nodes, height, limit = f.nodes, f.height, 0.1 * f.window_size
        total = 0.0
        for t in range(f.n_trees):
            feats, thr, base = f.features[t], f.thresholds[t], t * nodes
            node, depth_pow, score = 0, 1, 0.0
            for _ in range(height):
                r = r_mass[base + node]
                score += r * depth_pow
                if r < limit:
                    break
                node = 2 * node + (1 if z[feats[node]] < thr[node] else 2)
                depth_pow <<= 1
            else:
                score += r_mass[base + node] * depth_pow
            total += score
        return 1 - total / f.max_score

    def score_one(self, features: Features) -> float:
        x = model_input(features)
        score = float(self._score(self._scaled(x)))
        self._last = (tuple(x.values()), score)
        return score

    def learn_one(self, features: Features) -> None:
        x = model_input(features)
        key = tuple(x.values())
        score = self._last[1] if self._last and self._last[0] == key \
            else self._score(self._scaled(x))
        self._last = None
        f = self._forest
        # the first window_size scores are against an empty reference: keep them out
        if self.seen >= f.window_size:
            self.q_hi.update(score)
            self.q_mid.update(score)
        if self.seen == 0:
            self._learn_scale([v + floor for v, floor in zip(key, _FLOOR, strict=True)])
        self._learn_scale(key)
        self._add_mass(self._scaled(x))
        self.counter += 1
        if self.counter == f.window_size:
            self._pivot()
        self.seen += 1

    def _learn_scale(self, values: tuple[float, ...] | list[float]) -> None:
        lo, hi = self.lo, self.hi
        if any(v < m for v, m in zip(values, lo, strict=True)):
            self.lo = tuple(map(min, lo, values))
        if any(v > m for v, m in zip(values, hi, strict=True)):
            self.hi = tuple(map(max, hi, values))

    def _add_mass(self, z: list[float]) -> None:
        f = self._forest
        counts = self.l_mass
        if counts is None:
            counts = self.l_mass = f.counters()
        nodes = f.nodes
        for t in range(f.n_trees):
            base = t * nodes
            for node in f.path(z, t):
                counts[base + node] += 1

    def _pivot(self) -> None:
        """The window is complete: it becomes the reference (river's mass pivot). The first
        pivot promotes a young source to a full one (two sets of counters)."""
        self.r_mass, self.l_mass = self.l_mass, self._forest.counters()
        self.counter = 0

    def threshold(self) -> float:
        if not self.ready:
            return math.inf
        hi = self.q_hi.get() or 0.0
        return hi + self.margin * max(1.0 - hi, 0.0)

    def baseline(self) -> dict[str, float]:
        return {"score_quantile_hi": self.q_hi.get() or 0.0,
                "score_median": self.q_mid.get() or 0.0}


def _from_river(state: dict[str, Any]) -> dict[str, Any]:
    """The compact state of a pickled river-based detector (model: MinMaxScaler |
    HalfSpaceTrees): same scaler, same masses, same quantiles."""
    model = state["model"]
    scaler, hst = model["MinMaxScaler"], model["HalfSpaceTrees"]
    pad = -hst.limits[FEATURES[0]][0]
    params = (hst.n_trees, hst.height, hst.window_size, pad, hst.seed)
    f = forest(*params)
    lo = tuple(float(scaler.min[k].get()) if k in scaler.min else math.inf for k in FEATURES)
    hi = tuple(float(scaler.max[k].get()) if k in scaler.max else -math.inf for k in FEATURES)
    l_mass = r_mass = None
    if hst.trees:
        l_mass, r_mass = f.counters(), f.counters()
        for t, tree in enumerate(hst.trees):
            for i, node in enumerate(_heap_order(tree, hst.height)):
                l_mass[t * f.nodes + i] = node.l_mass
                r_mass[t * f.nodes + i] = node.r_mass
        if hst._first_window:
            r_mass = None
    return {"params": params, "warmup": state["warmup"], "margin": state["margin"],
            "q_hi": state["q_hi"], "q_mid": state["q_mid"], "seen": state["seen"],
            "lo": lo, "hi": hi, "l_mass": l_mass, "r_mass": r_mass,
            "counter": hst.counter}
