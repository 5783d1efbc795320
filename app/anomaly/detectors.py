"""The detector protocol and the explicit detectors (silent source, new error template, spike).

A detector learns from and scores one window's feature vector (`app.anomaly.features`); high
scores mean anomalous, as in `river.base.AnomalyDetector`. A `ThresholdDetector` also says
when it has seen enough (`ready`), where its threshold is, and what its baseline looks like:
that is what an alert explains itself with.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from app.anomaly.features import Features


@runtime_checkable
class Detector(Protocol):
    """river's anomaly-detector interface: learn from a vector, score one (high = anomalous)."""

    def learn_one(self, features: Features) -> None: ...

    def score_one(self, features: Features) -> float: ...


@runtime_checkable
class ThresholdDetector(Detector, Protocol):
    """A detector that knows its own threshold and baseline."""

    name: str

    @property
    def ready(self) -> bool: ...

    def threshold(self) -> float: ...

    def baseline(self) -> dict[str, float]: ...


class Ewma:
    """Exponentially weighted mean and variance (West's incremental form)."""

    __slots__ = ("alpha", "mean", "var", "n")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.mean = 0.0
        self.var = 0.0
        self.n = 0

    def update(self, x: float) -> None:
        if self.n == 0:
            self.mean = x
        else:
            diff = x - self.mean
            incr = self.alpha * diff
            self.mean += incr
            self.var = (1 - self.alpha) * (self.var + diff * incr)
        self.n += 1


class SilentSourceDetector:
    """A source that usually sends goes quiet: an empty window where traffic was expected.

    Score: the expected count (EWMA) when the window is empty, else 0. Under a Poisson model the
    chance of an empty window is exp(-expected), so the default threshold of 8 events means a
    false alarm about once in 3,000 windows (~0.1 per source-hour at 10 s windows).
    """

    name = "silent_source"

    def __init__(self, alpha: float = 0.05, min_expected: float = 8.0, warmup: int = 30) -> None:
        self.rate = Ewma(alpha)
        self.min_expected = min_expected
        self.warmup = warmup

    @property
    def ready(self) -> bool:
        return self.rate.n >= self.warmup

    def learn_one(self, features: Features) -> None:
        self.rate.update(features["count"])

    def score_one(self, features: Features) -> float:
        return self.rate.mean if features["count"] == 0 else 0.0

    def threshold(self) -> float:
        return self.min_expected

    def baseline(self) -> dict[str, float]:
        return {"expected_count": self.rate.mean}


class NewErrorTemplateDetector:
    """An error whose template the tenant has never seen before (after the warm-up).

    Score: the number of new error templates in the window; threshold 0.5 (one is enough).
    """

    name = "new_error_template"

    def __init__(self, warmup: int = 30) -> None:
        self.windows = 0
        self.warmup = warmup
        self.known_errors = 0.0

    @property
    def ready(self) -> bool:
        return self.windows >= self.warmup

    def learn_one(self, features: Features) -> None:
        self.windows += 1
        self.known_errors = max(self.known_errors, features["error_templates"])

    def score_one(self, features: Features) -> float:
        return features["new_error_templates"]

    def threshold(self) -> float:
        return 0.5

    def baseline(self) -> dict[str, float]:
        return {"max_error_templates_per_window": self.known_errors}


class VolumeSpikeDetector:
    """A count far above its recent baseline (EWMA mean and deviation); `count` by default,
    `count_error` for the error-burst detector (`ErrorBurstDetector`).

    Both must hold: a z-score of at least `z` (with a Poisson floor on the variance, so a
    steady source's jitter does not count) and a ratio to the baseline of at least `ratio`.
    The score is the smaller of z/`z` and ratio/`ratio`; the threshold is 1. Slow drift moves
    the EWMA along with it and does not fire.
    """

    name = "volume_spike"

    def __init__(self, alpha: float = 0.05, z: float = 6.0, ratio: float = 3.0,
                 warmup: int = 30, feature: str = "count") -> None:
        self.feature = feature
        self.count = Ewma(alpha)
        self.z = z
        self.ratio = ratio
        self.warmup = warmup

    @property
    def ready(self) -> bool:
        return self.count.n >= self.warmup

    def learn_one(self, features: Features) -> None:
        self.count.update(features[self.feature])

    def _stats(self, count: float) -> tuple[float, float]:
        mean = self.count.mean
        z = (count - mean) / math.sqrt(self.count.var + mean + 1.0)
        return z, count / (mean + 1.0)

    def score_one(self, features: Features) -> float:
        z, ratio = self._stats(features[self.feature])
        return max(0.0, min(z / self.z, ratio / self.ratio))

    def threshold(self) -> float:
        return 1.0

    def baseline(self) -> dict[str, float]:
        return {
            f"mean_{self.feature}": self.count.mean,
            f"std_{self.feature}": math.sqrt(self.count.var),
            "z_needed": self.z,
            "ratio_needed": self.ratio,
        }


class ErrorBurstDetector(VolumeSpikeDetector):
    """Errors far above their recent baseline: the volume-spike rule on `count_error`, with
    lower bars (z >= 4 and twice the baseline) because errors are rarer and matter more."""

    name = "error_burst"

    def __init__(self, alpha: float = 0.05, z: float = 4.0, ratio: float = 2.0,
                 warmup: int = 30) -> None:
        super().__init__(alpha, z, ratio, warmup, feature="count_error")
