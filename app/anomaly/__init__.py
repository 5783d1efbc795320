"""Anomaly detection on per-source window features: River Half-Space Trees plus explicit rules."""

from __future__ import annotations

from app.anomaly.detectors import (
    Detector,
    ErrorBurstDetector,
    NewErrorTemplateDetector,
    SeesSkippedWindows,
    SilentSourceDetector,
    ThresholdDetector,
    VolumeSpikeDetector,
)
from app.anomaly.features import FEATURES, Features, Sample, Window, WindowAccumulator, Windows
from app.anomaly.hst import HalfSpaceTreesDetector
from app.anomaly.monitor import Finding, MonitorConfig, SourceMonitor

__all__ = [
    "FEATURES",
    "Detector",
    "ErrorBurstDetector",
    "Features",
    "Finding",
    "HalfSpaceTreesDetector",
    "MonitorConfig",
    "NewErrorTemplateDetector",
    "Sample",
    "SeesSkippedWindows",
    "SilentSourceDetector",
    "SourceMonitor",
    "ThresholdDetector",
    "VolumeSpikeDetector",
    "Window",
    "WindowAccumulator",
    "Windows",
]
