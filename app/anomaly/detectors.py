"""The detector protocol and the explicit detectors (silent source, new error template, spike).

A detector learns from and scores one window's feature vector (`app.anomaly.features`); high
scores mean anomalous, as in `river.base.AnomalyDetector`. A `ThresholdDetector` also says
when it has seen enough (`ready`), where its threshold is, and what its baseline looks like:
that is what an alert explains itself with.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class SeesSkippedWindows(Protocol):
    """A detector that is also shown the windows the monitor does not learn from (they
    looked anomalous), through `skip_one`: for state that must follow the actual stream."""

    def skip_one(self, features: Features) -> None: ...


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
    """A count far above its recent baseline (EWMA mean and deviation), `count` by default.

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


class _Peaks:
    """The usual peak of a series: the median of its last `blocks` block maxima (blocks of
    `size` windows). Fed every window, incidents included: one incident moves one block's
    maximum, not the median, but errors that come back in most blocks set the usual peak."""

    __slots__ = ("size", "maxima", "current", "filled")

    def __init__(self, size: int, blocks: int) -> None:
        self.size = size
        self.maxima: deque[float] = deque(maxlen=blocks)
        self.current = 0.0
        self.filled = 0

    def add(self, x: float) -> None:
        self.current = max(self.current, x)
        self.filled += 1
        if self.filled >= self.size:
            self.maxima.append(self.current)
            self.current = 0.0
            self.filled = 0

    def usual(self) -> float | None:
        """Median block maximum; None before the first block is complete."""
        if not self.maxima:
            return None
        ordered = sorted(self.maxima)
        return ordered[len(ordered) // 2]


class ErrorBurstDetector:
    """Many more errors than usual within one window, or within two windows in a row.

    Two tests on `count_error`, each against its own EWMA baseline: the window alone
    (z >= `z`) and the sum of this and the previous window (z >= `pair_z`), which finds a
    burst that is real but within one window's noise on a source already noisy in errors.
    Each test must also pass two guards: at least `ratio` times its baseline mean, and above
    the source's usual peak (`_Peaks`: median of the last `blocks` maxima over blocks of
    `block` windows, plus `margin` standard deviations), so errors that recur every few
    minutes are part of the source's normal and stop alerting.

    z = (x - mean) / sqrt(max(var, mean) + 1): the EWMA variance already holds the Poisson
    noise of the counts; the Poisson floor (`mean`) stands in while the variance is still
    small. Score: the larger over both tests of min(z / needed, ratio / needed,
    (x + 1) / (peak + 1)); threshold 1.

    The monitor learns only windows that did not fire (`learn_one`); it passes the others to
    `skip_one`, so the previous window and the peaks always refer to the actual stream.
    """

    name = "error_burst"

    def __init__(self, alpha: float = 0.05, z: float = 5.0, pair_z: float = 3.0,
                 ratio: float = 1.5, warmup: int = 30, block: int = 60, blocks: int = 12,
                 margin: float = 1.0) -> None:
        self.one = Ewma(alpha)  # count_error of a window
        self.two = Ewma(alpha)  # count_error of two consecutive windows
        self.peaks_one = _Peaks(block, blocks)
        self.peaks_two = _Peaks(block, blocks)
        self.previous: float | None = None
        self.z = z
        self.pair_z = pair_z
        self.ratio = ratio
        self.warmup = warmup
        self.margin = margin

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "one" not in state:  # state of the first version (the volume-spike rule on
            # count_error, z >= 8 and 3x): keep its baseline, take the current rule
            fresh = ErrorBurstDetector(alpha=state["count"].alpha, warmup=state["warmup"])
            fresh.one = state["count"]
            state = fresh.__dict__
        self.__dict__.update(state)

    @property
    def ready(self) -> bool:
        return self.one.n >= self.warmup

    def learn_one(self, features: Features) -> None:
        x = features["count_error"]
        self.one.update(x)
        if self.previous is not None:
            self.two.update(self.previous + x)
        self.skip_one(features)

    def skip_one(self, features: Features) -> None:
        """A window the monitor does not learn from: it still counts as the previous window
        and towards the usual peaks."""
        x = features["count_error"]
        self.peaks_one.add(x)
        if self.previous is not None:
            self.peaks_two.add(self.previous + x)
        self.previous = x

    def _score(self, x: float, base: Ewma, peaks: _Peaks, z_needed: float) -> float:
        sd = math.sqrt(max(base.var, base.mean) + 1.0)
        z = (x - base.mean) / sd
        ratio = x / (base.mean + 1.0)
        peak = peaks.usual()
        over_peak = (x + 1.0) / (peak + self.margin * sd + 1.0) if peak is not None else math.inf
        return max(0.0, min(z / z_needed, ratio / self.ratio, over_peak))

    def score_one(self, features: Features) -> float:
        x = features["count_error"]
        score = self._score(x, self.one, self.peaks_one, self.z)
        if self.previous is not None and self.two.n >= self.warmup:
            score = max(score, self._score(self.previous + x, self.two, self.peaks_two,
                                           self.pair_z))
        return score

    def threshold(self) -> float:
        return 1.0

    def baseline(self) -> dict[str, float]:
        out = {
            "mean_count_error": self.one.mean,
            "std_count_error": math.sqrt(self.one.var),
            "mean_count_error_2w": self.two.mean,
            "std_count_error_2w": math.sqrt(self.two.var),
            "previous_count_error": self.previous or 0.0,
            "z_needed": self.z,
            "z_needed_2w": self.pair_z,
            "ratio_needed": self.ratio,
        }
        for key, peaks in (("usual_peak", self.peaks_one), ("usual_peak_2w", self.peaks_two)):
            peak = peaks.usual()
            if peak is not None:
                out[key] = peak
        return out
