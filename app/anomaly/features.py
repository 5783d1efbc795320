"""Per source, per window (10 s by default): accumulate events, emit one feature vector.

`WindowAccumulator` is what a stream stage keeps per source for the open window; `Windows`
keeps the accumulators of many sources and closes windows by event time, emitting *empty*
windows for sources that sent nothing (that is how a silent source becomes visible).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

Features = dict[str, float]

ERROR_LEVELS = frozenset({"ERROR", "FATAL", "CRITICAL", "EMERGENCY", "ALERT"})
WARN_LEVELS = frozenset({"WARN", "WARNING"})

# The schema every detector sees, in this order (fixed keys: HST and the scaler want them).
FEATURES: tuple[str, ...] = (
    "count",  # events in the window
    "count_error",  # ERROR and FATAL events
    "count_warn",
    "share_error",  # count_error / count (0 for an empty window)
    "share_warn",
    "distinct_templates",
    "new_templates",  # templates the tenant's miner created in this window
    "new_error_templates",  # ... of which the first event was an error
    "error_templates",  # distinct templates among errors: one loud error vs many kinds
    "template_entropy",  # Shannon entropy (bits) of the template mix: a shift in what is logged
    "mean_length",  # mean message length (characters): stack traces, dumps, truncation
)


@dataclass
class Sample:
    """An event kept as evidence for an alert."""

    template_id: str
    severity: str
    message: str


@dataclass
class WindowAccumulator:
    """Counts of one source's open window; a few hundred bytes whatever the traffic."""

    start: float
    count: int = 0
    errors: int = 0
    warns: int = 0
    length_sum: int = 0
    templates: Counter[str] = field(default_factory=Counter)
    error_template_ids: set[str] = field(default_factory=set)
    new_templates: int = 0
    new_errors: list[Sample] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    max_samples: int = 5

    def add(self, severity: str, template_id: str, is_new: bool, message: str) -> None:
        """Count one event. `is_new` comes from the miner (`Match.is_new`)."""
        self.count += 1
        self.length_sum += len(message)
        self.templates[template_id] += 1
        is_error = severity in ERROR_LEVELS
        if is_error:
            self.errors += 1
            self.error_template_ids.add(template_id)
        elif severity in WARN_LEVELS:
            self.warns += 1
        if is_new:
            self.new_templates += 1
            if is_error and len(self.new_errors) < self.max_samples:
                self.new_errors.append(Sample(template_id, severity, message[:500]))
        if (is_error or len(self.samples) < self.max_samples // 2) and (
            len(self.samples) < self.max_samples
        ):
            self.samples.append(Sample(template_id, severity, message[:500]))

    def reset(self, start: float) -> None:
        """Empty, for the window starting at `start`. `Windows` reuses one accumulator per
        source: a new one per window would be ~5 new objects per source that the garbage
        collector must walk (the youngest generation held 60,000-80,000 of them at 10,000
        sources, ~25 ms of CPU per collection, bench/results/sources.md), and a reused one
        stays frozen (app/runtime/gc_tuning.py)."""
        self.start = start
        self.count = self.errors = self.warns = self.length_sum = self.new_templates = 0
        self.templates.clear()
        self.error_template_ids.clear()
        self.new_errors.clear()
        self.samples.clear()

    def features(self) -> Features:
        """The window's feature vector (keys: `FEATURES`)."""
        n = self.count
        entropy = 0.0
        for c in self.templates.values():
            p = c / n
            entropy -= p * math.log2(p)
        return {
            "count": float(n),
            "count_error": float(self.errors),
            "count_warn": float(self.warns),
            "share_error": self.errors / n if n else 0.0,
            "share_warn": self.warns / n if n else 0.0,
            "distinct_templates": float(len(self.templates)),
            "new_templates": float(self.new_templates),
            "new_error_templates": float(len(self.new_errors)),
            "error_templates": float(len(self.error_template_ids)),
            "template_entropy": entropy + 0.0,
            "mean_length": self.length_sum / n if n else 0.0,
        }


@dataclass(frozen=True)
class Window:
    """A closed window of one source: what detectors score."""

    source: str
    start: float
    end: float
    features: Features
    new_errors: tuple[Sample, ...] = ()
    samples: tuple[Sample, ...] = ()


class Windows:
    """Tumbling event-time windows for many sources.

    `add` routes an event to its source's window; `close(now)` emits every window that ended
    before `now - lateness`, including empty ones for known sources, oldest first (`closing`
    yields the same windows source by source, so a caller can let others run in between).
    Sources silent for longer than `forget_after` seconds are forgotten (bounded memory), and
    at most `max_sources` are tracked (the least recently active one is dropped); the dropped
    sources are listed by `take_dropped`, so their owner can snapshot and evict their state.
    """

    def __init__(self, size: float = 10.0, lateness: float = 2.0, forget_after: float = 3600.0,
                 max_sources: int = 10_000) -> None:
        self.size = size
        self.lateness = lateness
        self.forget_after = forget_after
        self.max_sources = max_sources
        self._open: dict[str, WindowAccumulator] = {}
        # last event time per source, least recently active first (O(1) eviction)
        self._last_event: OrderedDict[str, float] = OrderedDict()
        self._dropped: list[str] = []
        self.late_events = 0
        self._ready: list[Window] = []

    def window_start(self, t: float) -> float:
        return math.floor(t / self.size) * self.size

    def add(self, source: str, t: float, severity: str, template_id: str, is_new: bool,
            message: str) -> None:
        start = self.window_start(t)
        acc = self._open.get(source)
        if acc is None:
            if len(self._open) >= self.max_sources:
                self._drop(next(iter(self._last_event), None) or next(iter(self._open)))
            acc = self._open[source] = WindowAccumulator(start)
        if start < acc.start:
            self.late_events += 1  # its window is closed already; counted, not re-opened
            return
        if start - acc.start > self.forget_after:  # back after a long gap: start afresh
            acc = self._open[source] = WindowAccumulator(start)
        while start > acc.start:  # the source moved on before close() ran
            acc = self._roll(source, acc, self._ready)
        acc.add(severity, template_id, is_new, message)
        self._last_event[source] = max(self._last_event.pop(source, t), t)

    def _drop(self, source: str) -> None:
        self._open.pop(source, None)
        self._last_event.pop(source, None)
        self._dropped.append(source)

    def take_dropped(self) -> list[str]:
        """Sources forgotten or dropped since the last call (their windows are gone)."""
        out, self._dropped = self._dropped, []
        return out

    def close(self, now: float) -> list[Window]:
        """Close every window that ended before `now - lateness` (empty ones included)."""
        out = list(self.closing(now))
        out.sort(key=lambda w: (w.start, w.source))
        return out

    def closing(self, now: float) -> Iterator[Window]:
        """`close` one source at a time, unsorted: windows rolled by `add` first, then each
        source's ended windows in order. Safe against `add` running between two windows."""
        ready, self._ready = self._ready, []
        yield from ready
        horizon = now - self.lateness
        for source in list(self._open):
            acc = self._open.get(source)
            if acc is None:  # dropped meanwhile
                continue
            rolled: list[Window] = []
            while acc.start + self.size <= horizon:
                acc = self._roll(source, acc, rolled)
            if horizon - self._last_event.get(source, horizon) > self.forget_after:
                self._drop(source)
            yield from rolled

    def _roll(self, source: str, acc: WindowAccumulator, into: list[Window]
              ) -> WindowAccumulator:
        end = acc.start + self.size
        into.append(Window(source, acc.start, end, acc.features(),
                           tuple(acc.new_errors), tuple(acc.samples)))
        acc.reset(end)  # the same object for the next window (copied into the Window above)
        return acc

    def sources(self) -> list[str]:
        return list(self._open)
