"""One source's detectors together: score a closed window, explain what fired, learn from it.

`SourceMonitor.observe(window)` runs every detector; each one over its threshold (and out of
its warm-up and cooldown) yields a `Finding` carrying the feature values, the detector's
baseline, the score and the threshold, and sample events. Windows that fired are not learnt
from (an incident must not become the new normal), unless that goes on for longer than
`max_unlearnt` windows in a row: then the level shift is accepted. Detectors that keep state
about the stream itself (`SeesSkippedWindows`: the error-burst detector's previous window and
usual peaks) are shown the windows they are not taught.
"""

from __future__ import annotations

import pickle
import zlib
from dataclasses import asdict, dataclass
from typing import Any

from app.anomaly.detectors import (
    ErrorBurstDetector,
    NewErrorTemplateDetector,
    SeesSkippedWindows,
    SilentSourceDetector,
    ThresholdDetector,
    VolumeSpikeDetector,
)
from app.anomaly.features import Features, Sample, Window
from app.anomaly.hst import HalfSpaceTreesDetector


@dataclass(frozen=True)
class MonitorConfig:
    """Detector settings of one source (10 s windows assumed in the defaults)."""

    hst_trees: int = 10
    hst_height: int = 8
    hst_window: int = 50
    hst_warmup: int = 100
    hst_quantile: float = 0.999
    hst_margin: float = 0.8
    warmup: int = 30  # explicit detectors
    silent_min_expected: float = 8.0
    spike_z: float = 6.0
    spike_ratio: float = 3.0
    error_z: float = 5.0  # one window
    error_pair_z: float = 3.0  # two windows in a row
    error_ratio: float = 1.5
    cooldown: int = 6  # windows before the same detector may fire again for this source
    max_unlearnt: int = 30
    seed: int = 42


@dataclass(frozen=True)
class Finding:
    """Why a window of a source looks wrong; everything an alert needs to explain itself."""

    detector: str
    source: str
    window_start: float
    window_end: float
    score: float
    threshold: float
    features: Features
    baseline: dict[str, float]
    samples: tuple[Sample, ...] = ()
    template_ids: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        return (f"{self.detector} on {self.source}: score {self.score:.3g} > threshold "
                f"{self.threshold:.3g} ({int(self.features['count'])} events, "
                f"{int(self.features['count_error'])} errors)")

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["summary"] = self.summary
        return doc


def _new_hst(cfg: MonitorConfig) -> HalfSpaceTreesDetector:
    return HalfSpaceTreesDetector(
        n_trees=cfg.hst_trees, height=cfg.hst_height, window_size=cfg.hst_window,
        warmup=cfg.hst_warmup, quantile=cfg.hst_quantile, margin=cfg.hst_margin, seed=cfg.seed,
    )


class SourceMonitor:
    """All detectors of one source. `observe` is the per-window entry point."""

    def __init__(self, source: str, config: MonitorConfig | None = None) -> None:
        cfg = self.config = config or MonitorConfig()
        self.source = source
        self.hst = _new_hst(cfg)
        self.explicit: list[ThresholdDetector] = [
            SilentSourceDetector(min_expected=cfg.silent_min_expected, warmup=cfg.warmup),
            NewErrorTemplateDetector(warmup=cfg.warmup),
            VolumeSpikeDetector(z=cfg.spike_z, ratio=cfg.spike_ratio, warmup=cfg.warmup),
            ErrorBurstDetector(z=cfg.error_z, pair_z=cfg.error_pair_z, ratio=cfg.error_ratio,
                               warmup=cfg.warmup),
        ]
        self._cooldown_until: dict[str, float] = {}
        self.unlearnt = 0
        self.windows = 0

    @property
    def detectors(self) -> list[ThresholdDetector]:
        return [*self.explicit, self.hst]

    def observe(self, window: Window) -> list[Finding]:
        """Score a closed window with every detector, then learn from it (unless it fired)."""
        f = window.features
        findings: list[Finding] = []
        anomalous = False
        for det in self.detectors:
            score = det.score_one(f)
            threshold = det.threshold()
            if not det.ready or score <= threshold:
                continue
            anomalous = True
            if window.start < self._cooldown_until.get(det.name, float("-inf")):
                continue
            self._cooldown_until[det.name] = window.start + self.config.cooldown * (
                window.end - window.start)
            samples = window.new_errors if det.name == "new_error_template" else window.samples
            findings.append(Finding(
                det.name, window.source, window.start, window.end, score, threshold, dict(f),
                det.baseline(), tuple(samples), tuple(sorted({s.template_id for s in samples})),
            ))
        if anomalous and self.unlearnt < self.config.max_unlearnt:
            self.unlearnt += 1
            for det in self.detectors:
                if isinstance(det, SeesSkippedWindows):
                    det.skip_one(f)
        else:
            self.unlearnt = 0
            for det in self.detectors:
                det.learn_one(f)
        self.windows += 1
        return findings

    # -- state: a small part every window, the HST model on a slower cadence -----------------

    def light_state(self) -> bytes:
        """Everything but the HST model (a few hundred bytes): write it every window."""
        hst, self.hst = self.hst, None  # type: ignore[assignment]
        try:
            return zlib.compress(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            self.hst = hst

    def model_state(self) -> bytes:
        """The HST detector (mass counters, scaler, score quantiles): 1-3 KB compressed (river's
        model was ~40 KB); snapshot it every few minutes and when the source is evicted (a
        table cannot be written while partitions are revoked)."""
        return zlib.compress(pickle.dumps(self.hst, protocol=pickle.HIGHEST_PROTOCOL))

    @classmethod
    def restore(cls, light: bytes, model: bytes | None) -> SourceMonitor:
        """Rebuild from the two snapshots (no model snapshot yet: a fresh HST that warms up;
        a snapshot of the river-based model is converted, app/anomaly/hst.py)."""
        monitor: SourceMonitor = pickle.loads(zlib.decompress(light))
        monitor.hst = (pickle.loads(zlib.decompress(model)) if model is not None
                       else _new_hst(monitor.config))
        return monitor
