"""Process-wide Prometheus metrics of the worker in the text exposition format (no dependency).

Counters (`inc`), gauges (`set`) and summaries (`observe`: `_count` and `_sum` plus a max),
labelled by keyword arguments. The worker serves `render()` at `/metrics` on its web port,
together with the metrics its index sink process sends over (`snapshot` → `absorb`).
"""

from __future__ import annotations

import threading
from collections import defaultdict

HELP = {
    "laas_events_in_total": ("counter", "Records consumed, by stage (normalize: raw messages)"),
    "laas_events_out_total": ("counter", "Records produced, by stage and topic"),
    "laas_deadletters_total": ("counter", "Records sent to logs.deadletter, by stage and reason"),
    "laas_sink_events_total": ("counter", "Events accepted by Elasticsearch"),
    "laas_sink_retries_total": ("counter", "Bulk retries (request or item level)"),
    "laas_stage_retries_total": ("counter", "Batches a stage retried after a failure"),
    "laas_sink_batch_seconds": ("summary", "Time from bulk start to all items accepted"),
    "laas_consumer_lag": ("gauge", "Records behind the end of the partition, by group"),
    "laas_watchdog_stalls_total": ("counter", "Assigned partitions found stalled (lag, no "
                                   "progress) and recovered by the watchdog, by group"),
    "laas_retention_deleted_total": ("counter", "Indices deleted by the retention job"),
}


Series = dict[str, dict[tuple, float]]
Summaries = dict[str, dict[tuple, list[float]]]
Snapshot = tuple[Series, Series, Summaries]  # counters, gauges, summaries


def _labels(labels: dict[str, object]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self.gauges: dict[str, dict[tuple, float]] = defaultdict(dict)
        self.summaries: dict[str, dict[tuple, list[float]]] = defaultdict(dict)
        self.remote: dict[str, Snapshot] = {}  # the latest snapshot of each other process

    def inc(self, name: str, amount: float = 1, **labels: object) -> None:
        with self._lock:
            self.counters[name][_labels(labels)] += amount

    def set(self, name: str, value: float, **labels: object) -> None:
        with self._lock:
            self.gauges[name][_labels(labels)] = value

    def observe(self, name: str, value: float, **labels: object) -> None:
        with self._lock:
            entry = self.summaries[name].setdefault(_labels(labels), [0.0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += value
            entry[2] = max(entry[2], value)

    def snapshot(self) -> Snapshot:
        """This process's own series as plain, picklable dicts."""
        with self._lock:
            return ({n: dict(s) for n, s in self.counters.items()},
                    {n: dict(s) for n, s in self.gauges.items()},
                    {n: {k: list(v) for k, v in s.items()} for n, s in self.summaries.items()})

    def absorb(self, origin: str, snapshot: Snapshot) -> None:
        """Serve `origin`'s latest `snapshot` (another process) together with our own series."""
        with self._lock:
            self.remote[origin] = snapshot

    def merged(self) -> Snapshot:
        """Our series plus every absorbed snapshot: counters and summaries added, gauges the
        latest writer's."""
        counters: Series = defaultdict(lambda: defaultdict(float))
        gauges: Series = defaultdict(dict)
        summaries: Summaries = defaultdict(dict)
        with self._lock:
            remote = list(self.remote.values())
        for c, g, s in [self.snapshot(), *remote]:
            for name, series in c.items():
                for key, v in series.items():
                    counters[name][key] += v
            for name, series in g.items():
                gauges[name].update(series)
            for name, entries in s.items():
                for key, (count, total, peak) in entries.items():
                    have = summaries[name].setdefault(key, [0.0, 0.0, 0.0])
                    have[0] += count
                    have[1] += total
                    have[2] = max(have[2], peak)
        return counters, gauges, summaries

    def value(self, name: str, **labels: object) -> float:
        key = _labels(labels)
        counters, gauges, _ = self.merged()
        return counters.get(name, {}).get(key, gauges.get(name, {}).get(key, 0.0))

    def render(self) -> str:
        lines: list[str] = []

        def head(name: str, kind: str) -> None:
            lines.append(f"# HELP {name} {HELP.get(name, ('', name))[1]}")
            lines.append(f"# TYPE {name} {kind}")

        def fmt(labels: tuple, extra: str = "") -> str:
            parts = [f'{k}="{v}"' for k, v in labels]
            return "{" + ",".join(parts) + "}" if parts else ""

        counters, gauges, summaries = self.merged()
        for name, series in sorted(counters.items()):
            head(name, "counter")
            lines += [f"{name}{fmt(k)} {v}" for k, v in series.items()]
        for name, series in sorted(gauges.items()):
            head(name, "gauge")
            lines += [f"{name}{fmt(k)} {v}" for k, v in series.items()]
        for name, entries in sorted(summaries.items()):
            head(name, "summary")
            for k, (count, total, peak) in entries.items():
                lines += [f"{name}_count{fmt(k)} {count}", f"{name}_sum{fmt(k)} {total}",
                          f"{name}_max{fmt(k)} {peak}"]
        return "\n".join(lines) + "\n"


METRICS = Metrics()
