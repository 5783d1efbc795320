"""River's Half-Space Trees behind a min-max scaler, with a warm-up and an adaptive threshold.

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
"""

from __future__ import annotations

import math

from river import anomaly, compose, preprocessing, stats

from app.anomaly.features import FEATURES, Features

_LOG2 = math.log1p(1.0)
_AS_IS = frozenset({"share_error", "share_warn", "template_entropy"})


def model_input(features: Features) -> dict[str, float]:
    """The vector the model sees: log1p of counts and lengths, shares and entropy as they are."""
    return {k: (features[k] if k in _AS_IS else math.log1p(features[k])) for k in FEATURES}


class HalfSpaceTreesDetector:
    """`MinMaxScaler | HalfSpaceTrees` with a warm-up and an adaptive threshold."""

    name = "half_space_trees"

    def __init__(self, n_trees: int = 10, height: int = 8, window_size: int = 50,
                 warmup: int = 100, quantile: float = 0.995, margin: float = 0.5,
                 pad: float = 1.0, seed: int = 42) -> None:
        self.model: compose.Pipeline = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed,
            limits={k: (-pad, 1.0 + pad) for k in FEATURES},
        )
        self.warmup = warmup
        self.margin = margin
        self.q_hi = stats.Quantile(quantile)
        self.q_mid = stats.Quantile(0.5)
        self.seen = 0
        self._last: tuple[tuple[float, ...], float] | None = None

    @property
    def ready(self) -> bool:
        return self.seen >= self.warmup

    def score_one(self, features: Features) -> float:
        x = model_input(features)
        score = float(self.model.score_one(x))
        self._last = (tuple(x.values()), score)
        return score

    def learn_one(self, features: Features) -> None:
        x = model_input(features)
        key = tuple(x.values())
        score = self._last[1] if self._last and self._last[0] == key else self.model.score_one(x)
        # the first window_size scores are against an empty reference: keep them out
        if self.seen >= self.model["HalfSpaceTrees"].window_size:
            self.q_hi.update(score)
            self.q_mid.update(score)
        if self.seen == 0:
            floor = {k: v + (0.05 if k in _AS_IS else _LOG2) for k, v in x.items()}
            self.model["MinMaxScaler"].learn_one(floor)
        self.model.learn_one(x)
        self.seen += 1

    def threshold(self) -> float:
        if not self.ready:
            return math.inf
        hi = self.q_hi.get() or 0.0
        return hi + self.margin * max(1.0 - hi, 0.0)

    def baseline(self) -> dict[str, float]:
        return {"score_quantile_hi": self.q_hi.get() or 0.0,
                "score_median": self.q_mid.get() or 0.0}
